"""The mapped fingerprint tasks on an existing Dask cluster give the same index."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.index_local import index_local

from .helpers import SOME_MODELS, assert_same_index, copy_models

distributed = pytest.importorskip("distributed")


def test_dask_cluster_gives_the_same_index_as_threads(small_zoo: Path, tmp_path: Path):
    root = copy_models(small_zoo, tmp_path / "m", SOME_MODELS[:5])
    (root / "broken.safetensors").write_bytes(b"\x00" * 8)
    threads = tmp_path / "threads.duckdb"
    index_local(paths=[str(root)], db=str(threads), workers=2)
    dask_db = tmp_path / "dask.duckdb"
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        report = index_local(
            paths=[str(root)], db=str(dask_db), dask_address=cluster.scheduler_address
        )
    assert report["n_ok"] == 5 and [f["model_id"] for f in report["failed"]] == [
        "broken.safetensors"
    ]
    assert_same_index(threads, dask_db, ignore_indexed_at=True)
