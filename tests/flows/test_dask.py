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


def test_family_lineage_on_one_or_two_dask_workers_gives_the_same_edges(
    small_zoo: Path, tmp_path: Path
):
    """Lineage runs as one task per family on the cluster; graphs merge in job order,
    so the number of workers never changes the index."""
    root = copy_models(small_zoo, tmp_path / "m", SOME_MODELS)
    dbs = {}
    for n in (1, 2):
        dbs[n] = tmp_path / f"dask{n}.duckdb"
        with distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster:
            report = index_local(
                paths=[str(root)], db=str(dbs[n]), dask_address=cluster.scheduler_address
            )
        assert report["n_families"] >= 3 and report["n_replanned"] == report["n_ok"]
    assert_same_index(dbs[1], dbs[2], ignore_indexed_at=True)
