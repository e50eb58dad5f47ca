from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub.utils import get_session

from heritage.fingerprint import fingerprint
from heritage.formats import open_checkpoint
from heritage.hub.http_source import HttpRangeSource, HttpSourceError, redact, reset_wait
from heritage.hub.remote import open_remote, resolve_url, weight_files
from heritage.index import fingerprint_rows
from tests.hub.conftest import TOKEN
from tests.hub.emulator import HubEmulator

SINGLE = "bytebard/tinyllama-a-instruct-lora"
SHARDED = "northwind/tinyllama-a"


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
    ranges = [(0, 8), (5000, 10), (100, 50), (len(data) - 4, 4)]
    assert src.read_ranges(ranges) == [data[o : o + n] for o, n in ranges]
    # HEAD + one read + one coalesced span (all within 1 MB)
    assert src.stats.requests == 3
    with pytest.raises(HttpSourceError, match="past end"):
        src.read(len(data) - 1, 2)


def test_fingerprint_over_http_equals_local(hub: HubEmulator, small_zoo: Path) -> None:
    for repo in (SINGLE, SHARDED):
        files = hub.files(repo)
        remote = open_remote(hub.url, repo, "main", files, session=get_session(), headers={})
        local = open_checkpoint(small_zoo / repo)
        assert _rows(remote) == _rows(local)
        assert [t.name for t in remote.tensors] == [t.name for t in local.tensors]


def test_single_file_model_needs_at_most_four_resolver_requests(hub: HubEmulator) -> None:
    files = hub.files(SINGLE)
    hub.reset_counters()
    ckpt = open_remote(hub.url, SINGLE, "main", files, session=get_session(), headers={})
    fingerprint(ckpt)
    assert hub.counters.per_repo_requests[SINGLE] <= 4
    assert ckpt.requests == hub.counters.per_repo_requests[SINGLE]


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
    src = _source(hub, SINGLE, "model.safetensors")
    with pytest.raises(HttpSourceError, match="whole file") as err:
        src.read(0, 16)
    assert SINGLE in str(err.value)


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
    assert size > 200 * 1024 * 1024
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
