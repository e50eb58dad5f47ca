"""Lineage engine: plain functions over fingerprints (numpy), no I/O."""

from heritage.lineage.engine import (
    METHOD,
    FamilyJob,
    FamilyPlan,
    LineageSettings,
    ModelInput,
    family_jobs,
    family_lineage,
    merge_families,
    plan_lineage,
    recover_lineage,
)
from heritage.lineage.evidence import architecture_key
from heritage.lineage.metrics import Scores, TruthModel, adjusted_rand_index, score
from heritage.lineage.types import Direction, Relation

__all__ = [
    "METHOD",
    "Direction",
    "FamilyJob",
    "FamilyPlan",
    "LineageSettings",
    "ModelInput",
    "Relation",
    "Scores",
    "TruthModel",
    "adjusted_rand_index",
    "architecture_key",
    "family_jobs",
    "family_lineage",
    "merge_families",
    "plan_lineage",
    "recover_lineage",
    "score",
]
