"""Lineage engine: plain functions over fingerprints (numpy), no I/O."""

from heritage.lineage.engine import METHOD, LineageSettings, ModelInput, recover_lineage
from heritage.lineage.evidence import architecture_key
from heritage.lineage.metrics import Scores, TruthModel, adjusted_rand_index, score

__all__ = [
    "METHOD",
    "LineageSettings",
    "ModelInput",
    "Scores",
    "TruthModel",
    "adjusted_rand_index",
    "architecture_key",
    "recover_lineage",
    "score",
]
