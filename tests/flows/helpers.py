"""Copies of zoo models to index, and comparison of two index files."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

from heritage.index import read_index

# A few models of each architecture and format: sharded safetensors, safetensors, torch
# pickles (.pt, .bin, .pth), a quantized copy, a duplicate and a merge.
SOME_MODELS = (
    "northwind/tinyllama-a",
    "alice/tinyllama-a-instruct",
    "quantfolk/tinyllama-a-bf16",
    "northwind/mlp-a",
    "alice/mlp-a-instruct",
    "longrun/mlp-a-continued-step75",
    "northwind/vit-tiny-a",
    "alice/vit-tiny-a-instruct",
    "quantfolk/vit-tiny-a-instruct-int8",
)
# Tables that must not change when nothing on disk changed (runs grows by one row).
STABLE_TABLES = ("models", "tensors", "fingerprints", "families", "edges")


def copy_models(zoo: Path, dst: Path, locations=SOME_MODELS) -> Path:
    """Copy model folders (keeping their relative locations) into ``dst``."""
    for loc in locations:
        shutil.copytree(zoo / loc, dst / loc, symlinks=True)
    return dst


def assert_same_index(a: Path, b: Path, ignore_indexed_at: bool = False) -> None:
    """Table contents equal, except the runs table (and indexed_at when asked)."""
    x, y = read_index(a), read_index(b)
    for table in STABLE_TABLES:
        fx, fy = getattr(x, table), getattr(y, table)
        if table == "models" and ignore_indexed_at:
            fx, fy = fx.drop("indexed_at"), fy.drop("indexed_at")
        assert_frame_equal(fx, fy, check_exact=True)


def models_by_id(db: Path) -> dict[str, dict]:
    return {r["model_id"]: r for r in read_index(db).models.iter_rows(named=True)}


def last_run(db: Path) -> dict:
    runs = read_index(db).runs.sort("started_at")
    return runs.row(runs.height - 1, named=True)


def ok_ids(db: Path) -> set[str]:
    models = read_index(db).models
    return set(models.filter(pl.col("status") == "ok")["model_id"].to_list())
