"""The index-local flow: first run, no-change rerun, touched and changed files, failures."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from prefect.artifacts import Artifact

import heritage.crawl.read as read_mod
from flows.index_local import index_local
from heritage.index import read_index

from .helpers import SOME_MODELS, assert_same_index, copy_models, last_run, models_by_id, ok_ids


def _forbid_reads(monkeypatch: pytest.MonkeyPatch, hashing: bool = False) -> None:
    """Make any checkpoint open (and, unless ``hashing``, any file hash) fail the test."""

    def no_open(*args, **kwargs):
        raise AssertionError("open_checkpoint called on an unchanged model")

    def no_hash(*args, **kwargs):
        raise AssertionError("file_sha256 called on an unchanged model")

    monkeypatch.setattr(read_mod, "open_checkpoint", no_open)
    if not hashing:
        monkeypatch.setattr(read_mod, "file_sha256", no_hash)


@pytest.fixture(scope="module")
def indexed(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory, prefect_harness: str):
    """SOME_MODELS copied and indexed once by the flow: (root, db, report)."""
    root = copy_models(small_zoo, tmp_path_factory.mktemp("models"))
    db = root.parent / "first.duckdb"
    report = index_local(paths=[str(root)], db=str(db), workers=2)
    return root, db, report


def test_first_run_indexes_every_model(indexed):
    root, db, report = indexed
    assert report["status"] == "ok" and not report["failed"]
    assert sorted(report["added"]) == sorted(SOME_MODELS)
    assert ok_ids(db) == set(SOME_MODELS)
    rows = models_by_id(db)
    llama = rows["alice/tinyllama-a-instruct"]
    assert llama["source"] == "local" and llama["location"] == "alice/tinyllama-a-instruct"
    assert llama["declared_base_models"] == ["northwind/tinyllama-a"]
    assert llama["created_at"] is None and llama["description"]
    assert [f["name"] for f in rows["quantfolk/tinyllama-a-bf16"]["files"]] == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    assert all(f["sha256"] and f["mtime"] for r in rows.values() for f in r["files"])
    data = read_index(db)
    assert data.edges.height > 0 and data.families.height == 3
    run = last_run(db)
    assert run["n_added"] == len(SOME_MODELS) and run["bytes_read"] > 0
    assert run["flow"] == "index-local" and run["status"] == "ok"
    artifact = Artifact.get("index-local-run")
    assert artifact is not None and "Added" in str(artifact.data)


def test_rerun_on_unchanged_folder_reads_nothing(indexed, tmp_path, monkeypatch):
    root, db, _ = indexed
    before = tmp_path / "before.duckdb"
    shutil.copy(db, before)
    _forbid_reads(monkeypatch)
    report = index_local(paths=[str(root)], db=str(db), workers=2)
    assert report["n_unchanged"] == len(SOME_MODELS) and report["bytes_read"] == 0
    assert report["bytes_hashed"] == 0 and not report["edges_added"]
    assert_same_index(before, db)  # indexed_at included: unchanged rows keep theirs
    runs = read_index(db).runs
    assert runs.height == read_index(before).runs.height + 1
    assert last_run(db)["bytes_read"] == 0 and last_run(db)["n_unchanged"] == len(SOME_MODELS)


def test_touched_file_is_rehashed_not_refingerprinted(small_zoo, tmp_path, monkeypatch):
    root = copy_models(small_zoo, tmp_path / "m", SOME_MODELS[:3])
    db = tmp_path / "i.duckdb"
    index_local(paths=[str(root)], db=str(db), workers=1)
    before = models_by_id(db)
    weights = root / "alice/tinyllama-a-instruct/model.safetensors"
    os.utime(weights, (1_000_000_000, 1_000_000_000))
    _forbid_reads(monkeypatch, hashing=True)
    report = index_local(paths=[str(root)], db=str(db), workers=1)
    assert report["n_unchanged"] == 3 and report["bytes_read"] == 0
    assert report["bytes_hashed"] == weights.stat().st_size  # only the touched file
    after = models_by_id(db)
    row = after["alice/tinyllama-a-instruct"]
    assert row["files"][0]["mtime"] == 1_000_000_000
    assert row["indexed_at"] == before["alice/tinyllama-a-instruct"]["indexed_at"]
    assert row["sha256"] == before["alice/tinyllama-a-instruct"]["sha256"]


def test_changed_weights_are_read_again(small_zoo, tmp_path):
    root = copy_models(small_zoo, tmp_path / "m", SOME_MODELS[:3])
    db = tmp_path / "i.duckdb"
    index_local(paths=[str(root)], db=str(db), workers=1)
    before = models_by_id(db)
    # same size, other content: the instruct model's weights replaced by a sibling's
    target = root / "alice/tinyllama-a-instruct/model.safetensors"
    shutil.copy(small_zoo / "longrun/tinyllama-a-continued-step50/model.safetensors", target)
    report = index_local(paths=[str(root)], db=str(db), workers=1)
    assert report["changed"] == ["alice/tinyllama-a-instruct"]
    assert report["n_unchanged"] == 2 and report["bytes_read"] > 0
    row = models_by_id(db)["alice/tinyllama-a-instruct"]
    assert row["sha256"] != before["alice/tinyllama-a-instruct"]["sha256"]
    assert row["indexed_at"] > before["alice/tinyllama-a-instruct"]["indexed_at"]


def test_bad_model_fails_alone_and_the_run_goes_on(small_zoo, tmp_path, monkeypatch):
    root = copy_models(small_zoo, tmp_path / "m", SOME_MODELS[:6])
    bad = root / "alice/tinyllama-a-instruct/model.safetensors"
    with open(bad, "r+b") as fh:
        fh.truncate(1000)
    (root / "junk.pt").write_bytes(b"this is not a pickle")
    db = tmp_path / "i.duckdb"
    report = index_local(paths=[str(root)], db=str(db), workers=2)
    assert report["status"] == "partial"
    rows = models_by_id(db)
    assert {m for m, r in rows.items() if r["status"] == "ok"} == set(SOME_MODELS[:6]) - {
        "alice/tinyllama-a-instruct"
    }
    failed = rows["alice/tinyllama-a-instruct"]
    assert failed["status"] == "failed"
    assert failed["error"] == (
        f"{bad}: header length 2136 bytes runs past end of file (1000 bytes)"
    )
    junk = rows["junk.pt"]
    assert junk["status"] == "failed" and junk["error"].startswith(f"{root / 'junk.pt'}: ")
    assert all("\n" not in r["error"] for r in rows.values() if r["error"])
    run = last_run(db)
    assert run["n_failed"] == 2 and sorted(run["errors"]) == sorted(
        [failed["error"], junk["error"]]
    )
    table = Artifact.get("index-local-failures")
    assert table is not None and "junk.pt" in str(table.data)
    # unchanged bad files are not read again either
    _forbid_reads(monkeypatch)
    again = index_local(paths=[str(root)], db=str(db), workers=2)
    assert again["bytes_read"] == 0 and len(again["failed"]) == 2


def test_removed_model_leaves_the_index(small_zoo, tmp_path):
    root = copy_models(small_zoo, tmp_path / "m", SOME_MODELS[3:6])
    db = tmp_path / "i.duckdb"
    index_local(paths=[str(root)], db=str(db), workers=1)
    shutil.rmtree(root / "alice/mlp-a-instruct")
    report = index_local(paths=[str(root)], db=str(db), workers=1)
    assert report["removed"] == ["alice/mlp-a-instruct"]
    data = read_index(db)
    assert "alice/mlp-a-instruct" not in data.models["model_id"].to_list()
    assert "alice/mlp-a-instruct" not in data.fingerprints["model_id"].to_list()


def test_publish_hook_gets_db_and_report(small_zoo, tmp_path):
    root = copy_models(small_zoo, tmp_path / "m", SOME_MODELS[3:4])
    db = tmp_path / "i.duckdb"
    calls.clear()
    index_local(paths=[str(root)], db=str(db), publish_hook=f"{__name__}:record_publish")
    assert calls == [(str(db), ["northwind/mlp-a"])]


calls: list = []


def record_publish(db: str, report: dict) -> None:
    calls.append((db, report["added"]))
