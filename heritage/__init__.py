"""Model Heritage: recover the family tree of ML models from their weights alone."""

__version__ = "0.1.0"
