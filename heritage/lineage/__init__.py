"""Lineage engine: plain functions over fingerprints (numpy), no I/O."""

from heritage.lineage.engine import (
    METHOD,
    FamilyPlan,
    LineageSettings,
    ModelInput,
    plan_lineage,
    recover_lineage,
)
from heritage.lineage.evidence import architecture_key
from heritage.lineage.metrics import Scores, TruthModel, adjusted_rand_index, score
from heritage.lineage.types import Direction, Relation

__all__ = [
    "METHOD",
    "Direction",
    "FamilyPlan",
    "LineageSettings",
    "ModelInput",
    "Relation",
    "Scores",
    "TruthModel",
    "adjusted_rand_index",
    "architecture_key",
    "plan_lineage",
    "recover_lineage",
    "score",
]
