"""Incremental planning through the plain pipeline (same functions the flow wires)."""

from __future__ import annotations

import shutil

import pytest

import heritage.crawl.read as read_mod
import heritage.lineage.incremental as incremental
from heritage.crawl import run_index
from heritage.errors import IndexBusy
from heritage.index import PrintReader
from heritage.index.runs import index_lock

from .helpers import SOME_MODELS, assert_same_index, copy_models, models_by_id


def _boom(*args, **kwargs):
    raise AssertionError("weights were read")


def test_card_edit_updates_metadata_without_reading(small_zoo, tmp_path, monkeypatch):
    root = copy_models(small_zoo, tmp_path / "m", SOME_MODELS[3:5])
    db = tmp_path / "i.duckdb"
    run_index([root], db)
    card = root / "alice/mlp-a-instruct/README.md"
    card.write_text("---\nname: renamed\nbase_model: [x/y, z/w]\n---\nNew text.\n")
    monkeypatch.setattr(read_mod, "open_checkpoint", _boom)  # reads forbidden from here on
    monkeypatch.setattr(read_mod, "file_sha256", _boom)
    report = run_index([root], db)
    assert report.bytes_read == 0 and len(report.unchanged) == 2
    row = models_by_id(db)["alice/mlp-a-instruct"]
    assert (row["name"], row["description"]) == ("renamed", "New text.")
    assert row["declared_base_models"] == ["x/y", "z/w"]


def test_full_rerun_reads_everything_but_changes_nothing(small_zoo, tmp_path):
    root = copy_models(small_zoo, tmp_path / "m", SOME_MODELS[:4])
    db = tmp_path / "i.duckdb"
    run_index([root], db)
    before = tmp_path / "before.duckdb"
    shutil.copy(db, before)
    report = run_index([root], db, full=True)
    assert report.bytes_read > 0 and len(report.unchanged) == 4
    assert_same_index(before, db)


def test_second_root_prefixes_ids_and_reuses_fingerprints(small_zoo, tmp_path, monkeypatch):
    a = copy_models(small_zoo, tmp_path / "a", SOME_MODELS[3:5])
    b = copy_models(small_zoo, tmp_path / "b", SOME_MODELS[5:6])
    db = tmp_path / "i.duckdb"
    run_index([a], db)
    # b's model is new to db, so it is read; a's models are found by path and reused
    report = run_index([a, b], db)
    assert report.added == ["b/longrun/mlp-a-continued-step75"]
    assert sorted(report.unchanged) == ["a/alice/mlp-a-instruct", "a/northwind/mlp-a"]
    assert report.removed == []
    monkeypatch.setattr(read_mod, "open_checkpoint", _boom)
    monkeypatch.setattr(read_mod, "file_sha256", _boom)
    again = run_index([a, b], db)
    assert again.bytes_read == 0 and len(again.unchanged) == 3


def test_one_run_at_a_time(tmp_path):
    db = tmp_path / "i.duckdb"
    with index_lock(db), pytest.raises(IndexBusy, match="another run"):
        run_index([tmp_path], db)


def test_listing_errors_fail_the_model_only(small_zoo, tmp_path):
    root = copy_models(small_zoo, tmp_path / "m", SOME_MODELS[:2])
    config = root / "alice/tinyllama-a-instruct/config.json"
    config.write_text("{not json")
    shard_index = root / "northwind/tinyllama-a/model.safetensors.index.json"
    shard_index.write_text('{"weight_map": {"w": "../escape.safetensors"}}')
    report = run_index([root], tmp_path / "i.duckdb")
    errors = dict(report.failed)
    assert errors["alice/tinyllama-a-instruct"] == (
        f"{config}: config.json is not valid JSON (JSONDecodeError)"
    )
    assert errors["northwind/tinyllama-a"].startswith(f"{shard_index}: shard '../escape")
    assert report.status == "failed" and report.bytes_read == 0


def test_a_new_model_replans_only_its_family_and_matches_a_clean_run(small_zoo, tmp_path):
    """Lineage plans again only the family a new model joins; the result is what a
    clean run over the same folder gives, table for table."""
    mlp = ["northwind/mlp-a", "alice/mlp-a-instruct"]
    other = ["lumenlabs/mlp-b", "alice/mlp-b-domain"]  # same architecture, another family
    root = copy_models(small_zoo, tmp_path / "m", [*mlp, *other])
    db = tmp_path / "i.duckdb"
    run_index([root], db)
    copy_models(small_zoo, root, ["longrun/mlp-a-continued-step75"])
    report = run_index([root], db)
    assert report.added == ["longrun/mlp-a-continued-step75"]
    assert report.n_replanned == 3  # mlp-a's family and its new member, not mlp-b's
    clean = tmp_path / "clean.duckdb"
    run_index([root], clean)
    assert_same_index(db, clean, ignore_indexed_at=True)


def test_an_incremental_run_reads_stored_fingerprints_by_family(small_zoo, tmp_path, monkeypatch):
    """Kept fingerprints stay in the index file: the kin search reads their sampled
    values a chunk at a time, and only the family the new model joins is read whole."""
    mlp_a = ["northwind/mlp-a", "alice/mlp-a-instruct"]
    mlp_b = ["lumenlabs/mlp-b", "alice/mlp-b-domain"]
    root = copy_models(small_zoo, tmp_path / "m", [*mlp_a, *mlp_b])
    db = tmp_path / "i.duckdb"
    run_index([root], db)
    whole: list[list[str]] = []
    sampled: list[list[str]] = []
    fingerprints, samples = PrintReader.fingerprints, PrintReader.samples

    def read_whole(self, ids):
        whole.append(list(ids))
        return fingerprints(self, ids)

    def read_samples(self, ids, wanted):
        sampled.append(list(ids))
        return samples(self, ids, wanted)

    monkeypatch.setattr(PrintReader, "fingerprints", read_whole)
    monkeypatch.setattr(PrintReader, "samples", read_samples)
    monkeypatch.setattr(incremental, "SAMPLE_BUDGET", 1)  # one model per chunk
    copy_models(small_zoo, root, ["longrun/mlp-a-continued-step75"])
    report = run_index([root], db)
    assert report.added == ["longrun/mlp-a-continued-step75"]
    assert sorted(m for ids in sampled for m in ids) == sorted([*mlp_a, *mlp_b])
    assert max(len(ids) for ids in sampled) == 1
    assert sorted(m for ids in whole for m in ids) == sorted(mlp_a)
