from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from gguf import GGMLQuantizationType as Q
from huggingface_hub.utils import get_session
from safetensors.numpy import save_file

from heritage.crawl import run_index
from heritage.errors import NotReadRemotely
from heritage.fingerprint import fingerprint
from heritage.formats import open_checkpoint
from heritage.formats.gguf_reader import hf_name
from heritage.hub.crawl import run_hub
from heritage.hub.remote import (
    MAX_SUBFOLDERS,
    open_remote_pickle,
    request_budget,
    weight_files,
    weight_folders,
)
from heritage.hub.remote import (
    PICKLE_INDEX_NAME as PICKLE_INDEX,
)
from heritage.index import fingerprints_frame, read_index
from tests.formats.test_gguf import write_gguf
from tests.hub.conftest import TOKEN, reshard
from tests.hub.emulator import HubEmulator


def _readable_zoo(small_zoo: Path, dest: Path) -> set[str]:
    """Copy the repos the Hub crawl can fingerprint (safetensors, zip and legacy
    pickles alike: every repo of the zoo), to index the same set from disk."""
    picked = set()
    for folder in sorted(p for p in small_zoo.glob("*/*") if p.is_dir()):
        repo = f"{folder.parent.name}/{folder.name}"
        files = [str(f.relative_to(folder)) for f in folder.rglob("*") if f.is_file()]
        if weight_files(files)[1]:
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
    picked = _readable_zoo(small_zoo, root)
    db = root.parent / "local.duckdb"
    run_index([root], db, workers=4)
    return db, picked


@pytest.mark.parametrize("cdn", [True, False], ids=["cdn", "direct"])
def test_hub_crawl_matches_disk(hub: HubEmulator, local_db, tmp_path: Path, cdn: bool) -> None:
    hub.cdn = cdn
    local, picked = local_db
    db = tmp_path / "hub.duckdb"
    report = run_hub(db, endpoint=hub.url, token=False)
    assert set(report.read) == picked == set(hub.repos)  # pickle-only repos too
    assert not report.failed
    models = read_index(db).models
    assert set(models["source"]) == {"hub"}
    assert {"pytorch-zip", "pytorch-legacy"} <= set(models["format"])
    assert models.filter(models["status"] == "not_fingerprinted").is_empty()
    assert _edges(db) == _edges(local)
    assert _families(db) == _families(local)
    for row in models.filter(models["status"] == "ok").iter_rows(named=True):
        repo, n_files = row["location"], len(row["files"])
        cost = report.per_repo[repo]
        assert cost.bytes < 2 * 1024 * 1024, repo
        assert cost.bytes <= row["bytes"] + (2048 if n_files > 1 else 0), repo  # never twice
        assert cost.resolver == hub.counters.resolver(repo) <= request_budget(n_files), repo
        assert cost.cdn == hub.counters.cdn(repo), repo
        if cdn:  # one resolver request per weight file, and one for a shard index
            assert cost.resolver == n_files + (n_files > 1), repo
            assert cost.cdn > 0
        else:
            assert cost.cdn == 0
    assert report.resolver_requests == hub.counters.resolver_requests
    assert report.cdn_requests == hub.counters.cdn_requests
    assert report.requests == report.resolver_requests + report.cdn_requests
    assert not any(method == "HEAD" for method, _, _ in hub.counters.log)
    # second run: every sha unchanged, nothing fetched
    hub.reset_counters()
    again = run_hub(db, endpoint=hub.url, token=False)
    assert not again.read and len(again.unchanged) == len(hub.repos)
    assert hub.counters.resolver_requests == hub.counters.cdn_requests == 0
    assert _edges(db) == _edges(local)


@pytest.mark.parametrize("cdn", [True, False], ids=["cdn", "direct"])
@pytest.mark.parametrize("status", [429, 500])
def test_hub_crawl_under_faults(
    hub: HubEmulator, local_db, tmp_path: Path, status: int, cdn: bool, monkeypatch
) -> None:
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http.time, "sleep", lambda s: None)  # the API client's backoff
    hub.cdn = cdn
    local, picked = local_db
    hub.faults.every_nth = 5
    hub.faults.status = status
    hub.faults.drop_once_per_repo = True
    db = tmp_path / "hub.duckdb"
    report = run_hub(db, endpoint=hub.url, token=False, source_options={"sleep": lambda s: None})
    assert set(report.read) == picked and not report.failed
    assert len(read_index(db).models) == len(hub.repos)
    assert _edges(db) == _edges(local)
    assert _families(db) == _families(local)
    assert hub.dropped >= picked  # every fingerprinted repo saw one dropped connection
    assert (hub.counters.cdn_requests > 0) == cdn


def test_crawl_keeps_the_token_off_the_cdn_and_out_of_logs(
    hub: HubEmulator, local_db, tmp_path: Path, caplog
) -> None:
    """A gated repo read with a token while signed URLs keep expiring: the token goes to
    the resolver (re-resolves included) and nowhere else, not to the logs either."""
    import logging

    caplog.set_level(logging.DEBUG)
    gated = "bytebard/tinyllama-a-instruct-lora"
    hub.faults.gated_repos.add(gated)
    hub.faults.cdn_expire_after_requests = 6
    db = tmp_path / "hub.duckdb"
    report = run_hub(db, endpoint=hub.url, token=TOKEN, author="bytebard")
    assert gated in report.read and not report.failed
    assert hub.counters.expired > 0
    heads = [p for m, p, _ in hub.counters.log if m == "HEAD" and gated in p]
    assert heads  # re-resolved, with the token: the repo is gated
    auth = hub.counters.auth
    assert any(path.startswith("/cdn/") for path, _ in auth)
    for path, value in auth:
        if path.startswith("/cdn/"):
            assert value == "", path
        elif gated in path:
            assert value == f"Bearer {TOKEN}", path
    assert TOKEN not in caplog.text and TOKEN.encode() not in db.read_bytes()
    # the same weights as from disk
    fps = read_index(db).fingerprints
    with open_checkpoint(hub.repos[gated]) as ckpt:
        local = fingerprints_frame({f"hub:{gated}": fingerprint(ckpt)})
    assert fps.filter(fps["model_id"] == f"hub:{gated}").sort("tensor").equals(local.sort("tensor"))


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
    assert "gated or private: HTTP 401" in errors[gated] and gated in errors[gated]
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


def test_weights_in_subfolders_are_models_of_their_own(small_zoo: Path, tmp_path: Path) -> None:
    """An adapter and a sharded copy in subfolders are read too, recorded with their paths."""
    root = tmp_path / "zoo"
    repo = root / "org" / "x"
    shutil.copytree(small_zoo / "bytebard/tinyllama-a-instruct-lora", repo)
    (repo / "adapter").mkdir()
    shutil.copy(
        small_zoo / "northwind/vit-tiny-a/model.safetensors",
        repo / "adapter" / "adapter_model.safetensors",
    )
    reshard(small_zoo / "alice/tinyllama-a-instruct", repo / "ckpt" / "v2", 2)
    (repo / "ckpt" / "v2" / "README.md").unlink()
    emu = HubEmulator(root).start()
    try:
        db = tmp_path / "hub.duckdb"
        report = run_hub(db, endpoint=emu.url, token=False)
        assert sorted(report.read) == ["org/x", "org/x/adapter", "org/x/ckpt/v2"]
        models = {r["model_id"]: r for r in read_index(db).models.iter_rows(named=True)}
        assert set(models) == {"hub:org/x", "hub:org/x/adapter", "hub:org/x/ckpt/v2"}
        adapter, v2 = models["hub:org/x/adapter"], models["hub:org/x/ckpt/v2"]
        assert [f["name"] for f in adapter["files"]] == ["adapter/adapter_model.safetensors"]
        assert [f["name"] for f in v2["files"]] == [
            "ckpt/v2/model-00001-of-00002.safetensors",
            "ckpt/v2/model-00002-of-00002.safetensors",
        ]
        assert (adapter["name"], adapter["location"]) == ("org/x/adapter", "org/x/adapter")
        assert adapter["revision"] == models["hub:org/x"]["revision"] == emu.sha("org/x")
        assert models["hub:org/x"]["declared_base_models"] and not adapter["declared_base_models"]
        assert v2["format"] == "safetensors-sharded" and v2["status"] == "ok"
        # each model keeps to its own request budget
        assert report.per_repo["org/x"].resolver == 1 + 1 + 3  # 1 file, 1 file, 2 shards + index
        # the same weights as read from disk
        fps = read_index(db).fingerprints
        with open_checkpoint(repo / "adapter") as ckpt:
            local = fingerprints_frame({"hub:org/x/adapter": fingerprint(ckpt)})
        ours = fps.filter(fps["model_id"] == "hub:org/x/adapter")
        assert ours.sort("tensor").equals(local.sort("tensor"))

        first = read_index(db).runs.row(-1, named=True)
        assert first["flow"] == "index-hub-plain" and first["n_seen"] == 3
        assert (first["n_added"], first["n_changed"], first["n_unchanged"]) == (3, 0, 0)
        assert first["n_edges_changed"] == report.n_edges_changed == report.n_edges

        # unchanged commit: nothing fetched, the subfolder models stay
        emu.reset_counters()
        again = run_hub(db, endpoint=emu.url, token=False)
        assert again.unchanged == ["org/x"] and not again.read
        assert emu.counters.resolver_requests == emu.counters.cdn_requests == 0
        assert len(read_index(db).models) == 3
        second = read_index(db).runs.row(-1, named=True)
        assert (second["n_added"], second["n_changed"], second["n_unchanged"]) == (0, 0, 3)
        assert second["n_edges_changed"] == 0

        # the adapter is deleted in a new commit: its model leaves the index, and the runs
        # row counts the run as a local run's would, under the caller's flow name
        shutil.rmtree(repo / "adapter")
        third = run_hub(db, endpoint=emu.url, token=False, flow="my-hub-flow")
        assert sorted(third.read) == ["org/x", "org/x/ckpt/v2"]
        assert third.run is not None and third.run.removed == ["hub:org/x/adapter"]
        assert sorted(third.run.changed) == ["hub:org/x", "hub:org/x/ckpt/v2"]
        last = read_index(db).runs.row(-1, named=True)
        assert (last["n_seen"], last["n_added"], last["n_changed"]) == (2, 0, 2)
        assert (last["flow"], last["source"], last["status"]) == ("my-hub-flow", emu.url, "ok")
        assert last["bytes_read"] == third.bytes_read > 0
        # the adapter (another architecture) had no edge: the pair keeps its one edge
        assert last["n_edges_changed"] == third.run.edges.count == 0 and third.n_edges == 1
        assert set(read_index(db).models["model_id"]) == {"hub:org/x", "hub:org/x/ckpt/v2"}
    finally:
        emu.stop()


def test_weight_folders() -> None:
    files = ["model.safetensors", "a/x.safetensors", "a/b/y.safetensors", "c/z.bin", "README.md"]
    assert weight_folders(files) == (["a", "a/b"], 0)
    assert weight_files(files, "a") == ("single", ["a/x.safetensors"])
    assert weight_files(files, "c") == ("pickle", ["c/z.bin"])
    assert weight_files(["pytorch_model.bin.index.json", "pytorch_model-1.bin"]) == (
        "pickle",
        ["pytorch_model.bin.index.json"],
    )
    many = [f"checkpoint-{k}/model.safetensors" for k in range(12)]
    folders, more = weight_folders(many)
    assert len(folders) == MAX_SUBFOLDERS and more == 12 - MAX_SUBFOLDERS


def test_each_gguf_file_is_a_model_read_by_ranges(tmp_path: Path) -> None:
    """A repo with safetensors weights and GGUF exports: every GGUF (a split set too) is a
    model of its own, read through the emulator in a few ranges, the same as from disk."""
    root = tmp_path / "zoo"
    repo = root / "org" / "base"
    repo.mkdir(parents=True)
    rng = np.random.default_rng(0)
    w = {
        f"blk.{i}.ffn_down.weight": rng.normal(0, 0.05, (1024, 1024)).astype(np.float32)
        for i in range(3)
    }
    save_file({hf_name(k, "qwen2"): v for k, v in w.items()}, str(repo / "model.safetensors"))
    write_gguf(repo / "base-Q8_0.gguf", {k: (v, Q.Q8_0) for k, v in w.items()})
    (repo / "gguf").mkdir()
    write_gguf(
        repo / "gguf" / "base-F16.gguf",
        {k: (v, Q.F16) for k, v in w.items()},
        split_max_tensors=2,
    )
    emu = HubEmulator(root).start()
    try:
        db = tmp_path / "hub.duckdb"
        report = run_hub(db, endpoint=emu.url, token=False)
        ids = {
            "hub:org/base",
            "hub:org/base/base-Q8_0.gguf",
            "hub:org/base/gguf/base-F16-00001-of-00002.gguf",
        }
        data = read_index(db)
        models = {r["model_id"]: r for r in data.models.iter_rows(named=True)}
        assert set(models) == ids and {m["status"] for m in models.values()} == {"ok"}
        split = models["hub:org/base/gguf/base-F16-00001-of-00002.gguf"]
        assert split["format"] == "gguf" and [f["name"] for f in split["files"]] == [
            "gguf/base-F16-00001-of-00002.gguf",
            "gguf/base-F16-00002-of-00002.gguf",
        ]
        # a resolver request and a few CDN ranges per file, not whole downloads
        assert report.per_repo["org/base"].resolver <= 4 * 4
        assert report.bytes_read < sum(f.stat().st_size for f in repo.rglob("*")) / 10
        with open_checkpoint(repo / "base-Q8_0.gguf") as ckpt:
            local = fingerprints_frame({"hub:org/base/base-Q8_0.gguf": fingerprint(ckpt)})
        fps = data.fingerprints
        ours = fps.filter(fps["model_id"] == "hub:org/base/base-Q8_0.gguf")
        assert ours.sort("tensor").equals(local.sort("tensor"))
        edges = set(zip(data.edges["parent_id"], data.edges["child_id"], strict=True))
        assert ("hub:org/base", "hub:org/base/base-Q8_0.gguf") in edges
    finally:
        emu.stop()


def test_pickles_over_http_zip_by_range_legacy_within_a_limit(tmp_path: Path) -> None:
    """A zip pickle is read by range; a legacy one is downloaded whole, and past the
    download limit it is left unread with the reason."""
    root = tmp_path / "zoo"
    g = torch.Generator().manual_seed(0)
    sd = {"w": torch.randn(4096, 256, generator=g), "b": torch.randn(256, generator=g)}
    (root / "org" / "zip").mkdir(parents=True)
    torch.save(sd, root / "org" / "zip" / "pytorch_model.bin")
    (root / "org" / "legacy").mkdir(parents=True)
    torch.save(sd, root / "org" / "legacy" / "model.pt", _use_new_zipfile_serialization=False)
    emu = HubEmulator(root).start()
    try:
        session = get_session()
        zipped = open_remote_pickle(
            emu.url, "org/zip", "main", ["pytorch_model.bin"], session=session, headers={}
        )
        local = open_checkpoint(root / "org" / "zip" / "pytorch_model.bin")
        assert fingerprints_frame({"m": fingerprint(zipped)}).equals(
            fingerprints_frame({"m": fingerprint(local)})
        )
        size = (root / "org" / "zip" / "pytorch_model.bin").stat().st_size
        assert zipped.format == "pytorch-zip" and zipped.bytes_read < size / 4
        legacy = open_remote_pickle(
            emu.url, "org/legacy", "main", ["model.pt"], session=session, headers={}
        )
        assert legacy.format == "pytorch-legacy" and len(legacy.tensors) == 2
        with pytest.raises(NotReadRemotely, match="over the 0 MB download limit"):
            open_remote_pickle(
                emu.url,
                "org/legacy",
                "main",
                ["model.pt"],
                session=session,
                headers={},
                legacy_limit=1000,
            )
    finally:
        emu.stop()


def _sharded_pickles(folder: Path, sd: dict, legacy: bool = False) -> None:
    """``sd`` saved as two torch pickle shards with a pytorch_model.bin.index.json."""
    folder.mkdir(parents=True)
    names = sorted(sd)
    shards = {"pytorch_model-00001-of-00002.bin": names[::2]}
    shards["pytorch_model-00002-of-00002.bin"] = names[1::2]
    weight_map = {}
    for shard, keys in shards.items():
        torch.save(
            {k: sd[k] for k in keys}, folder / shard, _use_new_zipfile_serialization=not legacy
        )
        weight_map.update({k: shard for k in keys})
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))


def test_sharded_pickles_over_http(tmp_path: Path) -> None:
    """Sharded torch pickles are read through their index: zip shards by range, legacy
    shards whole; the fingerprint is the one read from disk, and a crawl indexes them."""
    root = tmp_path / "zoo"
    g = torch.Generator().manual_seed(1)
    sd = {f"layers.{i}.w": torch.randn(2048, 128, generator=g) for i in range(4)}
    _sharded_pickles(root / "org" / "zip", sd)
    _sharded_pickles(root / "org" / "legacy", sd, legacy=True)
    bad = root / "org" / "bad"
    _sharded_pickles(bad, sd)
    index = json.loads((bad / "pytorch_model.bin.index.json").read_text())
    index["weight_map"]["layers.0.w"] = "pytorch_model-00002-of-00002.bin"
    (bad / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    emu = HubEmulator(root).start()
    try:
        session = get_session()
        with open_checkpoint(root / "org" / "zip") as ckpt:
            local = fingerprints_frame({"m": fingerprint(ckpt)})
        for repo, fmt in (("org/zip", "pytorch-zip"), ("org/legacy", "pytorch-legacy")):
            remote = open_remote_pickle(
                emu.url,
                repo,
                "main",
                ["pytorch_model.bin.index.json"],
                session=session,
                headers={},
                repo_files=emu.files(repo),
            )
            assert remote.format == fmt and len(remote.sources) == 2
            assert fingerprints_frame({"m": fingerprint(remote)}).equals(local)
            assert remote.extra.bytes_read == (root / repo / PICKLE_INDEX).stat().st_size
        size = sum(f.stat().st_size for f in (root / "org" / "zip").glob("*.bin"))
        db = tmp_path / "hub.duckdb"
        report = run_hub(db, endpoint=emu.url, token=False)
        assert sorted(report.read) == ["org/legacy", "org/zip"]
        assert report.per_repo["org/zip"].bytes < size / 4
        ((name, error),) = report.failed
        assert name == "org/bad" and "is not in shard" in error and "index.json" in error
        models = (
            read_index(db).models.filter(pl.col("model_id") == "hub:org/zip").row(0, named=True)
        )
        assert models["status"] == "ok" and models["format"] == "pytorch-zip"
    finally:
        emu.stop()
