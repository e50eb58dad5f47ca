from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub.utils import get_session

from heritage.fingerprint import fingerprint
from heritage.formats import BadCheckpoint, open_checkpoint
from heritage.formats.safetensors_reader import INDEX_NAME
from heritage.hub.http_source import HttpRangeSource, HttpSourceError, redact, reset_wait
from heritage.hub.remote import (
    MAX_EXTRA_BYTES,
    open_remote,
    request_budget,
    resolve_url,
    weight_files,
)
from heritage.index import fingerprint_rows
from tests.hub.conftest import SHARDED, SINGLE, TOKEN, sparse_llm
from tests.hub.emulator import HubEmulator


def _source(hub: HubEmulator, repo: str, file: str, **kw) -> HttpRangeSource:
    url = resolve_url(hub.url, repo, "main", file)
    return HttpRangeSource(url, get_session(), {}, sleep=lambda s: None, **kw)


def _rows(ckpt) -> list[dict]:
    return fingerprint_rows("m", fingerprint(ckpt))


def _local(small_zoo: Path, repo: str, file: str) -> bytes:
    return (small_zoo / repo / file).read_bytes()


def test_ranges_match_local_bytes(hub: HubEmulator, small_zoo: Path) -> None:
    data = _local(small_zoo, SINGLE, "model.safetensors")
    src = _source(hub, SINGLE, "model.safetensors")
    assert src.size == len(data)
    assert src.read(10, 100) == data[10:110]
    ranges = [(0, 8), (5000, 10), (100, 50), (len(data) - 4, 4), (len(data) - 9000, 8)]
    assert src.read_ranges(ranges) == [data[o : o + n] for o, n in ranges]
    # the size and the first 64 KB come from one ranged GET (no HEAD); reads inside those
    # bytes cost nothing; the two ranges near the end share one request
    assert [(m, r) for m, p, r in hub.counters.log] == [
        ("GET", "bytes=0-65535"),
        ("GET", f"bytes={len(data) - 9000}-{len(data) - 1}"),
    ]
    assert src.stats.requests == 2
    assert src.stats.bytes_read == 65536 + 9000
    with pytest.raises(HttpSourceError, match="past end"):
        src.read(len(data) - 1, 2)


def test_fingerprint_over_http_equals_local(hub: HubEmulator, small_zoo: Path) -> None:
    for repo in (SINGLE, SHARDED):
        files = hub.files(repo)
        remote = open_remote(hub.url, repo, "main", files, session=get_session(), headers={})
        local = open_checkpoint(small_zoo / repo)
        assert _rows(remote) == _rows(local)
        assert [t.name for t in remote.tensors] == [t.name for t in local.tensors]


@pytest.mark.parametrize(
    ("repo", "n_files", "budget"), [("one", 1, 4), ("two", 2, 6), ("three", 3, 8)]
)
def test_request_budget_per_model(
    shard_hub: HubEmulator, shard_root: Path, repo: str, n_files: int, budget: int
) -> None:
    """At most 4 resolver requests for a single-file model and 2 per further shard."""
    repo = f"shards/{repo}"
    assert request_budget(n_files) == budget
    files = shard_hub.files(repo)
    ckpt = open_remote(shard_hub.url, repo, "main", files, session=get_session(), headers={})
    assert len(ckpt.sources) == n_files
    rows = _rows(ckpt)
    served = shard_hub.counters.per_repo_requests[repo]
    assert served <= budget
    assert ckpt.requests == ckpt.reads == served
    assert ckpt.bytes_read == shard_hub.counters.per_repo_bytes[repo]
    log = shard_hub.counters.log
    assert all(method == "GET" for method, _, _ in log)  # no HEAD: sizes come from Content-Range
    if n_files > 1:
        index_gets = [p for _, p, _ in log if p.endswith(INDEX_NAME)]
        assert len(index_gets) == 1  # the shard index is one request
    # never more than the weights themselves, and the same fingerprint as the local files
    weights = sum((shard_root / repo / f).stat().st_size for f in ckpt.sources)
    assert ckpt.bytes_read - (len(raw_index(shard_root / repo)) if n_files > 1 else 0) <= weights
    assert rows == _rows(open_checkpoint(shard_root / repo))


def raw_index(folder: Path) -> bytes:
    return (folder / INDEX_NAME).read_bytes()


def test_retries_do_not_spend_the_budget(shard_hub: HubEmulator, shard_root: Path) -> None:
    shard_hub.faults.every_nth = 3
    shard_hub.faults.status = 500
    repo = "shards/three"
    ckpt = open_remote(
        shard_hub.url,
        repo,
        "main",
        shard_hub.files(repo),
        session=get_session(),
        headers={},
        sleep=lambda s: None,
    )
    assert _rows(ckpt) == _rows(open_checkpoint(shard_root / repo))
    assert ckpt.requests == shard_hub.counters.requests > request_budget(3)
    assert ckpt.reads == shard_hub.counters.per_repo_requests[repo] <= request_budget(3)


def test_empty_remote_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "org" / "empty").mkdir(parents=True)
    (tmp_path / "org" / "empty" / "model.safetensors").write_bytes(b"")
    emu = HubEmulator(tmp_path).start()
    try:
        with pytest.raises(BadCheckpoint, match="empty file") as err:
            open_remote(emu.url, "org/empty", "main", emu.files("org/empty"), headers={})
        assert "org/empty" in str(err.value)
    finally:
        emu.stop()


@pytest.mark.parametrize("status", [429, 500])
def test_faults_are_retried(hub: HubEmulator, small_zoo: Path, status: int) -> None:
    hub.faults.every_nth = 5
    hub.faults.status = status
    hub.faults.drop_once_per_repo = True
    for repo in (SINGLE, SHARDED):
        files = hub.files(repo)
        remote = open_remote(
            hub.url, repo, "main", files, session=get_session(), headers={}, sleep=lambda s: None
        )
        assert _rows(remote) == _rows(open_checkpoint(small_zoo / repo))


def test_cdn_redirects_are_followed(hub: HubEmulator, small_zoo: Path) -> None:
    hub.faults.redirect = True
    data = _local(small_zoo, SINGLE, "model.safetensors")
    src = _source(hub, SINGLE, "model.safetensors")
    assert src.size == len(data)
    assert src.read(100, 20) == data[100:120]
    assert any(p.startswith("/cdn/") for _, p, _ in hub.counters.log)


def test_full_body_reply_is_refused(hub: HubEmulator) -> None:
    hub.faults.full_body_repos.add(SINGLE)
    with pytest.raises(HttpSourceError, match="whole file") as err:
        _source(hub, SINGLE, "model.safetensors")  # the first read, which gives the size
    assert SINGLE in str(err.value)
    src = _source(hub, SINGLE, "model.safetensors", size=1000)  # size known: no probe
    with pytest.raises(HttpSourceError, match="whole file"):
        src.read(0, 16)


def test_gated_repo_needs_token(hub: HubEmulator) -> None:
    hub.faults.gated_repos.add(SINGLE)
    url = resolve_url(hub.url, SINGLE, "main", "model.safetensors")
    with pytest.raises(HttpSourceError, match="gated") as err:
        HttpRangeSource(url, get_session(), {"authorization": "Bearer hf_wrongTOKEN123"})
    assert "hf_wrongTOKEN123" not in str(err.value)
    src = HttpRangeSource(url, get_session(), {"authorization": f"Bearer {TOKEN}"})
    assert src.read(0, 8)


def test_missing_file_is_a_clear_error(hub: HubEmulator) -> None:
    with pytest.raises(HttpSourceError, match="not found"):
        _source(hub, SINGLE, "nope.safetensors")


def test_rate_limit_waits_are_bounded(hub: HubEmulator) -> None:
    assert reset_wait({"ratelimit": '"resolvers";r=0;t=17'}, 1.0) == 17
    assert reset_wait({"retry-after": "3"}, 1.0) == 3
    assert reset_wait({}, 1.5) == 1.5
    hub.faults.every_nth = 1
    waits: list[float] = []
    url = resolve_url(hub.url, SINGLE, "main", "model.safetensors")
    with pytest.raises(HttpSourceError, match="after 3 attempts"):
        HttpRangeSource(url, get_session(), {}, retries=2, sleep=waits.append)
    assert len(waits) == 2 and all(w <= 60 for w in waits)


def test_redact() -> None:
    text = f"GET failed with Authorization: Bearer {TOKEN}"
    assert TOKEN not in redact(text)
    assert TOKEN not in redact(f"token {TOKEN}", {"Authorization": f"Bearer {TOKEN}"})


def test_large_sparse_file_reads_only_header_and_samples(big_hub) -> None:
    hub, size = big_hub
    repo = "bigco/sparse-llm"
    assert size > 2 * 1024**3
    ckpt = open_remote(hub.url, repo, "main", hub.files(repo), session=get_session(), headers={})
    fp = fingerprint(ckpt)
    assert fp is not None
    served = hub.counters.per_repo_bytes[repo]
    assert served < 2 * 1024 * 1024
    assert served < size / 100
    assert ckpt.bytes_read == served


def test_weight_files() -> None:
    assert weight_files(["README.md", "model.safetensors", "a/x.safetensors"]) == (
        "single",
        ["model.safetensors"],
    )
    assert weight_files(["model.safetensors.index.json", "model-1.safetensors"])[0] == "sharded"
    assert weight_files(["adapter_model.safetensors"]) == ("single", ["adapter_model.safetensors"])
    assert weight_files(["pytorch_model.bin"]) == ("pickle", [])
    assert weight_files(["README.md"]) == ("none", [])


def test_large_sharded_model_keeps_to_the_byte_cap(tmp_path: Path) -> None:
    """Rows megabytes apart are not merged to save requests: the byte cap wins."""
    size = sparse_llm(tmp_path / "bigco" / "llm", layers=6, shards=3)
    assert size > 2 * 1024**3
    emu = HubEmulator(tmp_path).start()
    try:
        repo = "bigco/llm"
        ckpt = open_remote(
            emu.url, repo, "main", emu.files(repo), session=get_session(), headers={}
        )
        fp = fingerprint(ckpt)
        needed = sum(t.values.size for t in fp.tensors.values()) * 2  # BF16 samples
        served = emu.counters.per_repo_bytes[repo]
        assert served < 2 * 1024 * 1024 and served < size / 100
        overhead = len(raw_index(tmp_path / repo)) + 3 * 64 * 1024  # index + header reads
        assert served - needed - overhead <= MAX_EXTRA_BYTES
        assert ckpt.bytes_read == served
    finally:
        emu.stop()
