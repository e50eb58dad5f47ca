"""The vocabulary lineage shares with the index, the site and the zoo."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Direction", "Relation"]


class Relation(StrEnum):
    """How a child was derived from its parent (one edge of the lineage graph)."""

    FINETUNE = "finetune"
    ADAPTER = "adapter"
    MERGE = "merge"
    QUANTIZED = "quantized"
    DUPLICATE = "duplicate"


class Direction(StrEnum):
    """Whether the weights tell which end of an edge is the parent.

    ``uncertain`` edges are kept (the two models are kin and adjacent) but their
    orientation is a coin the weights could not decide; their confidence is at most 0.6.
    """

    INFERRED = "inferred"
    UNCERTAIN = "uncertain"
