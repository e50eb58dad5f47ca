from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from heritage.crawl import run_index
from heritage.hub.crawl import run_hub
from heritage.hub.remote import weight_files
from heritage.index import read_index
from tests.hub.conftest import TOKEN
from tests.hub.emulator import HubEmulator


def _safetensors_zoo(small_zoo: Path, dest: Path) -> set[str]:
    """Copy the repos the Hub crawl can fingerprint, to index the same set from disk."""
    picked = set()
    for folder in sorted(p for p in small_zoo.glob("*/*") if p.is_dir()):
        repo = f"{folder.parent.name}/{folder.name}"
        files = [str(f.relative_to(folder)) for f in folder.rglob("*") if f.is_file()]
        if weight_files(files)[0] in ("single", "sharded"):
            shutil.copytree(folder, dest / repo)
            picked.add(repo)
    return picked


def _edges(db: Path) -> set[tuple[str, str]]:
    data = read_index(db)
    loc = dict(zip(data.models["model_id"], data.models["location"], strict=True))
    return {
        (loc[p], loc[c])
        for p, c in zip(data.edges["parent_id"], data.edges["child_id"], strict=True)
    }


def _families(db: Path) -> set[frozenset[str]]:
    m = read_index(db).models.filter(read_index(db).models["status"] == "ok")
    fam: dict[str, set[str]] = {}
    for loc, f in zip(m["location"], m["family_id"], strict=True):
        fam.setdefault(f, set()).add(loc)
    return {frozenset(v) for v in fam.values()}


@pytest.fixture(scope="module")
def local_db(small_zoo: Path, tmp_path_factory) -> tuple[Path, set[str]]:
    """The same repos indexed from disk (built once for the module; tests only read it)."""
    root = tmp_path_factory.mktemp("stzoo")
    picked = _safetensors_zoo(small_zoo, root)
    db = root.parent / "local.duckdb"
    run_index([root], db, workers=4)
    return db, picked


def test_hub_crawl_matches_disk(hub: HubEmulator, local_db, tmp_path: Path) -> None:
    local, picked = local_db
    db = tmp_path / "hub.duckdb"
    report = run_hub(db, endpoint=hub.url, token=False)
    assert set(report.read) == picked
    assert not report.failed
    models = read_index(db).models
    assert set(models["source"]) == {"hub"}
    nf = set(models.filter(models["status"] == "not_fingerprinted")["location"])
    assert nf == set(hub.repos) - picked
    assert _edges(db) == _edges(local)
    assert _families(db) == _families(local)
    for repo, (nbytes, _nreq) in report.per_repo.items():
        assert nbytes < 2 * 1024 * 1024, repo
    # second run: every sha unchanged, nothing fetched
    hub.reset_counters()
    again = run_hub(db, endpoint=hub.url, token=False)
    assert not again.read and len(again.unchanged) == len(hub.repos)
    assert all("/resolve/" not in path for _, path, _ in hub.counters.log)
    assert _edges(db) == _edges(local)


@pytest.mark.parametrize("status", [429, 500])
def test_hub_crawl_under_faults(
    hub: HubEmulator, local_db, tmp_path: Path, status: int, monkeypatch
) -> None:
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http.time, "sleep", lambda s: None)  # the API client's backoff
    local, picked = local_db
    hub.faults.every_nth = 5
    hub.faults.status = status
    hub.faults.drop_once_per_repo = True
    db = tmp_path / "hub.duckdb"
    report = run_hub(db, endpoint=hub.url, token=False, source_options={"sleep": lambda s: None})
    assert set(report.read) == picked and not report.failed
    assert len(read_index(db).models) == len(hub.repos)
    assert _edges(db) == _edges(local)
    assert hub.dropped >= picked  # every fingerprinted repo saw one dropped connection


def test_hub_models_merge_with_local_ones(hub: HubEmulator, local_db, tmp_path: Path) -> None:
    local, picked = local_db
    db = tmp_path / "merged.duckdb"
    shutil.copy(local, db)
    n_local = len(read_index(db).models)
    run_hub(db, endpoint=hub.url, token=False, repos=["bytebard/tinyllama-a-instruct-lora"])
    models = read_index(db).models
    assert len(models) == n_local + 1
    assert sorted(set(models["source"])) == ["hub", "local"]
    hub_row = models.filter(models["source"] == "hub").row(0, named=True)
    assert hub_row["revision"] == hub.sha("bytebard/tinyllama-a-instruct-lora")
    assert hub_row["declared_base_models"] and hub_row["created_at"] is not None
    assert hub_row["family_id"] is not None


def test_gated_and_full_body_repos_fail_alone(
    hub: HubEmulator, tmp_path: Path, monkeypatch
) -> None:
    gated, full = "bytebard/tinyllama-a-instruct-lora", "northwind/tinyllama-a"
    hub.faults.gated_repos.add(gated)
    hub.faults.full_body_repos.add(full)
    db = tmp_path / "hub.duckdb"
    # a token is sent (not the one the emulator accepts) and must never be stored
    wrong = "hf_NOTtheRIGHTtoken987654321"
    report = run_hub(db, endpoint=hub.url, token=wrong)
    errors = dict(report.failed)
    assert set(errors) == {gated, full}
    assert errors[gated].startswith("gated:")
    assert "whole file" in errors[full] and full in errors[full]
    models = read_index(db).models
    assert len(models) == len(hub.repos)
    row = models.filter(models["location"] == gated).row(0, named=True)
    assert row["gated"] and row["status"] == "failed"
    raw = db.read_bytes()
    assert wrong.encode() not in raw and TOKEN.encode() not in raw


def test_gated_repo_with_token_is_read(hub: HubEmulator, tmp_path: Path) -> None:
    gated = "bytebard/tinyllama-a-instruct-lora"
    hub.faults.gated_repos.add(gated)
    db = tmp_path / "hub.duckdb"
    report = run_hub(db, endpoint=hub.url, token=TOKEN, repos=[gated])
    assert report.read == [gated]
    assert TOKEN.encode() not in db.read_bytes()
