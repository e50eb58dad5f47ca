"""Reading models on the Hugging Face Hub without downloading them: HTTP range sources."""

from heritage.hub.http_source import HttpRangeSource, redact

__all__ = ["HttpRangeSource", "redact"]
