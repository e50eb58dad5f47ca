from __future__ import annotations

from pathlib import Path

import pytest
from huggingface_hub.utils import get_session

from heritage.errors import GatedRepo, HttpError, NotFound
from heritage.fingerprint import fingerprint
from heritage.formats import BadCheckpoint, open_checkpoint
from heritage.formats.safetensors_reader import INDEX_NAME
from heritage.hub.http_source import (
    CDN_HEADER_PROBE_BYTES,
    HttpRangeSource,
    redact,
    reset_wait,
)
from heritage.hub.remote import (
    CDN_MAX_REQUESTS,
    MAX_EXTRA_BYTES,
    open_remote,
    request_budget,
    request_counts,
    resolve_url,
    resolver_reads,
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


def _cdn_paths(hub: HubEmulator) -> list[str]:
    return [p for _, p, _ in hub.counters.log if p.startswith("/cdn/")]


def test_ranges_match_local_bytes(hub: HubEmulator, small_zoo: Path) -> None:
    """Without redirects (a proxy, a mirror): every read goes to the resolve URL."""
    hub.cdn = False
    data = _local(small_zoo, SINGLE, "model.safetensors")
    src = _source(hub, SINGLE, "model.safetensors")
    assert src.size == len(data) and not src.via_cdn
    assert src.read(10, 100) == data[10:110]
    ranges = [(0, 8), (5000, 10), (100, 50), (len(data) - 4, 4), (len(data) - 9000, 8)]
    assert src.read_ranges(ranges) == [data[o : o + n] for o, n in ranges]
    # the size and the first 64 KB come from one ranged GET (no HEAD); reads inside those
    # bytes cost nothing; the two ranges near the end share one request
    assert [(m, r) for m, p, r in hub.counters.log] == [
        ("GET", "bytes=0-65535"),
        ("GET", f"bytes={len(data) - 9000}-{len(data) - 1}"),
    ]
    assert src.stats.requests == src.stats.resolver_requests == 2
    assert src.stats.cdn_requests == 0
    assert src.stats.bytes_read == 65536 + 9000
    with pytest.raises(HttpError, match="past end"):
        src.read(len(data) - 1, 2)


def test_ranges_through_the_cdn(hub: HubEmulator, small_zoo: Path) -> None:
    """One resolver request (its 302 is read, not followed), then every range from the CDN."""
    data = _local(small_zoo, SINGLE, "model.safetensors")
    url = resolve_url(hub.url, SINGLE, "main", "model.safetensors")
    src = HttpRangeSource(url, get_session(), {"authorization": f"Bearer {TOKEN}"})
    assert src.via_cdn and src.size == len(data) == src.linked_size
    assert src.commit == hub.sha(SINGLE) and src.linked_etag and len(src.linked_etag) == 64
    assert src.read(10, 100) == data[10:110]  # inside the probe: no request
    ranges = [(len(data) - 4, 4), (len(data) - 9000, 8), (30000, 10)]
    assert src.read_ranges(ranges) == [data[o : o + n] for o, n in ranges]
    log = hub.counters.log
    resolve = f"/{SINGLE}/resolve/main/model.safetensors"
    assert [(p == resolve, r) for _, p, r in log] == [
        (True, "bytes=0-65535"),  # answered 302: Location and X-Linked-Size
        (False, "bytes=0-16383"),  # a smaller probe from the CDN
        (False, "bytes=30000-30009"),
        (False, f"bytes={len(data) - 9000}-{len(data) - 1}"),
    ]
    assert all(m == "GET" for m, _, _ in log) and len(_cdn_paths(hub)) == 3
    assert (src.stats.resolver_requests, src.stats.cdn_requests) == (1, 3)
    assert hub.counters.resolver_requests == 1 and hub.counters.cdn_requests == 3
    assert src.stats.bytes_read == 16384 + 10 + 9000 == hub.counters.per_repo_bytes[SINGLE]
    # the token went to the resolver only, never to the CDN
    assert hub.counters.auth[0] == (resolve, f"Bearer {TOKEN}")
    assert all(auth == "" for path, auth in hub.counters.auth[1:])


@pytest.mark.parametrize("cdn", [True, False])
def test_fingerprint_over_http_equals_local(hub: HubEmulator, small_zoo: Path, cdn: bool) -> None:
    hub.cdn = cdn
    for repo in (SINGLE, SHARDED):
        files = hub.files(repo)
        remote = open_remote(hub.url, repo, "main", files, session=get_session(), headers={})
        local = open_checkpoint(small_zoo / repo)
        assert _rows(remote) == _rows(local)
        assert [t.name for t in remote.tensors] == [t.name for t in local.tensors]
        assert all(s.via_cdn == cdn for s in remote.sources.values())
        assert bool(_cdn_paths(hub)) == cdn


@pytest.mark.parametrize(
    ("repo", "n_files", "budget"), [("one", 1, 4), ("two", 2, 6), ("three", 3, 8)]
)
@pytest.mark.parametrize("cdn", [True, False], ids=["cdn", "direct"])
def test_request_budget_per_model(
    shard_hub: HubEmulator, shard_root: Path, repo: str, n_files: int, budget: int, cdn: bool
) -> None:
    """At most 4 resolver requests for a single-file model and 2 per further shard.

    Redirected to the CDN, a model takes one resolver request per weight file (plus its
    shard index) whatever its size; served directly, it stays within the request budget.
    """
    shard_hub.cdn = cdn
    repo = f"shards/{repo}"
    assert request_budget(n_files) == budget
    files = shard_hub.files(repo)
    ckpt = open_remote(shard_hub.url, repo, "main", files, session=get_session(), headers={})
    assert len(ckpt.sources) == n_files
    rows = _rows(ckpt)
    resolver, cdn_requests = request_counts(ckpt)
    served = shard_hub.counters.resolver(repo)
    assert resolver == resolver_reads(ckpt) == served <= budget
    assert cdn_requests == shard_hub.counters.cdn(repo) == shard_hub.counters.cdn_requests
    if cdn:
        assert served == n_files + (n_files > 1)  # each file once, and the shard index
        assert cdn_requests >= n_files  # every header was read from the CDN
    else:
        assert cdn_requests == 0
    assert ckpt.requests == ckpt.reads == resolver + cdn_requests
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


@pytest.mark.parametrize("cdn", [True, False], ids=["cdn", "direct"])
def test_retries_do_not_spend_the_budget(
    shard_hub: HubEmulator, shard_root: Path, cdn: bool
) -> None:
    shard_hub.cdn = cdn
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
    assert ckpt.requests == shard_hub.counters.requests > ckpt.reads
    assert request_counts(ckpt) == (
        shard_hub.counters.resolver_requests,
        shard_hub.counters.cdn_requests,
    )
    assert resolver_reads(ckpt) == shard_hub.counters.resolver(repo) <= request_budget(3)
    if cdn:
        assert resolver_reads(ckpt) == 4


def test_mixed_redirected_and_direct_files(shard_hub: HubEmulator, shard_root: Path) -> None:
    """One shard on the CDN, two served by the resolver: each read its own way."""
    shard_hub.cdn_suffixes = ("-00001-of-00003.safetensors",)
    repo = "shards/three"
    ckpt = open_remote(
        shard_hub.url, repo, "main", shard_hub.files(repo), session=get_session(), headers={}
    )
    assert [s.via_cdn for s in ckpt.sources.values()] == [True, False, False]
    assert isinstance(ckpt.read_budget, dict)
    assert _rows(ckpt) == _rows(open_checkpoint(shard_root / repo))
    assert shard_hub.counters.resolver(repo) == resolver_reads(ckpt) <= request_budget(3)
    assert shard_hub.counters.cdn(repo) == request_counts(ckpt)[1] > 0


def test_everything_redirected_and_renamed_repo(shard_hub: HubEmulator, shard_root: Path) -> None:
    """The shard index redirected too, and a renamed repo's resolver redirect followed."""
    shard_hub.cdn_suffixes = ("",)  # every file, the index included, goes to the CDN
    shard_hub.moved["shards/old-name"] = "shards/two"
    files = shard_hub.files("shards/two")
    token = {"authorization": f"Bearer {TOKEN}"}
    ckpt = open_remote(
        shard_hub.url, "shards/old-name", "main", files, session=get_session(), headers=token
    )
    assert _rows(ckpt) == _rows(open_checkpoint(shard_root / "shards/two"))
    # each of 3 files: a 307 from the old name, then a 302 from the new one
    assert request_counts(ckpt)[0] == shard_hub.counters.resolver("shards/two") == 6
    for path, auth in shard_hub.counters.auth:
        assert auth == ("" if path.startswith("/cdn/") else f"Bearer {TOKEN}"), path


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


@pytest.mark.parametrize("cdn", [True, False], ids=["cdn", "direct"])
@pytest.mark.parametrize("status", [429, 500])
def test_faults_are_retried(hub: HubEmulator, small_zoo: Path, status: int, cdn: bool) -> None:
    hub.cdn = cdn
    hub.faults.every_nth = 5
    hub.faults.status = status
    hub.faults.drop_once_per_repo = True
    for repo in (SINGLE, SHARDED):
        files = hub.files(repo)
        remote = open_remote(
            hub.url, repo, "main", files, session=get_session(), headers={}, sleep=lambda s: None
        )
        assert _rows(remote) == _rows(open_checkpoint(small_zoo / repo))
    assert hub.dropped == {SINGLE, SHARDED}
    assert bool(_cdn_paths(hub)) == cdn


@pytest.mark.parametrize("status", [403, 410])
def test_expired_cdn_url_is_resolved_again(hub: HubEmulator, small_zoo: Path, status: int) -> None:
    """A signed URL that expires mid-read is resolved again; the fingerprint is the same."""
    hub.faults.cdn_expire_after_requests = 3
    hub.faults.cdn_expired_status = status
    for repo in (SINGLE, SHARDED):
        files = hub.files(repo)
        token = {"authorization": f"Bearer {TOKEN}"}
        ckpt = open_remote(hub.url, repo, "main", files, session=get_session(), headers=token)
        assert _rows(ckpt) == _rows(open_checkpoint(small_zoo / repo))
        again = sum(s.stats.reresolves for s in ckpt.sources.values())
        assert again > 0
        n_files = len(ckpt.sources) + (repo == SHARDED)  # and the shard index
        assert request_counts(ckpt)[0] == hub.counters.resolver(repo) == n_files + again
        heads = [p for m, p, _ in hub.counters.log if m == "HEAD" and repo in p]
        assert len(heads) == again  # each re-resolve is one HEAD to the resolver
    assert hub.counters.expired > 0
    assert not any(auth for path, auth in hub.counters.auth if path.startswith("/cdn/"))


def test_cdn_urls_expiring_by_time(hub: HubEmulator, small_zoo: Path) -> None:
    files = hub.files(SHARDED)
    ckpt = open_remote(hub.url, SHARDED, "main", files, session=get_session(), headers={})
    hub.expire_cdn_urls()  # an hour passes between the headers and the rows
    assert _rows(ckpt) == _rows(open_checkpoint(small_zoo / SHARDED))
    # reads in flight together find the URL expired; one of them resolves it again
    assert [s.stats.reresolves for s in ckpt.sources.values()] == [1, 1]
    retried = sum(s.stats.cdn_retries for s in ckpt.sources.values())
    assert hub.counters.expired == retried >= 2


def test_cdn_refusing_a_fresh_url_fails_cleanly(hub: HubEmulator) -> None:
    """Re-resolved once; a fresh signed URL refused again is an error without secrets."""
    url = resolve_url(hub.url, SINGLE, "main", "model.safetensors")
    src = HttpRangeSource(url, get_session(), {"authorization": f"Bearer {TOKEN}"})
    hub.faults.cdn_expire_after_requests = 1  # every URL works for one request only
    hub.expire_cdn_urls()
    hub.reset_counters()
    hub.faults.cdn_expire_after_seconds = 1e-9  # and now none works at all
    with pytest.raises(HttpError, match="refused a freshly resolved URL") as err:
        src.read(src.size - 10, 10)
    text = str(err.value)
    assert url in text and "/cdn/" not in text and TOKEN not in text
    assert src.stats.reresolves == 1 and hub.counters.resolver_requests == 1
    assert hub.counters.cdn_requests == 2  # the expired URL and the fresh one


def test_cdn_full_body_reply_is_refused_without_the_signed_url(hub: HubEmulator) -> None:
    hub.faults.full_body_repos.add(SINGLE)
    with pytest.raises(HttpError, match="whole file") as err:
        _source(hub, SINGLE, "model.safetensors")
    assert SINGLE in str(err.value) and "/cdn/" not in str(err.value)
    assert _cdn_paths(hub)  # the 200 came from the CDN


@pytest.mark.parametrize("cdn", [True, False], ids=["cdn", "direct"])
def test_full_body_reply_is_refused(hub: HubEmulator, cdn: bool) -> None:
    hub.cdn = cdn
    hub.faults.full_body_repos.add(SINGLE)
    with pytest.raises(HttpError, match="whole file") as err:
        _source(hub, SINGLE, "model.safetensors")  # the first read, which gives the size
    assert SINGLE in str(err.value)
    src = _source(hub, SINGLE, "model.safetensors", size=1000)  # size known: no probe
    with pytest.raises(HttpError, match="whole file"):
        src.read(0, 16)
    assert src.via_cdn == cdn


@pytest.mark.parametrize("cdn", [True, False], ids=["cdn", "direct"])
def test_gated_repo_needs_token(hub: HubEmulator, cdn: bool) -> None:
    hub.cdn = cdn
    hub.faults.gated_repos.add(SINGLE)
    url = resolve_url(hub.url, SINGLE, "main", "model.safetensors")
    with pytest.raises(GatedRepo, match="gated") as err:
        HttpRangeSource(url, get_session(), {"authorization": "Bearer hf_wrongTOKEN123"})
    assert "hf_wrongTOKEN123" not in str(err.value)
    assert err.value.status == 401 and err.value.url == url
    assert not _cdn_paths(hub)  # refused by the resolver: no CDN location handed out
    src = HttpRangeSource(url, get_session(), {"authorization": f"Bearer {TOKEN}"})
    assert src.read(0, 8) and src.via_cdn == cdn


@pytest.mark.parametrize("cdn", [True, False], ids=["cdn", "direct"])
def test_missing_file_is_a_clear_error(hub: HubEmulator, cdn: bool) -> None:
    hub.cdn = cdn
    with pytest.raises(NotFound, match="not found") as err:
        _source(hub, SINGLE, "nope.safetensors")
    assert err.value.status == 404 and "EntryNotFound" in str(err.value)


def test_rate_limit_waits_are_bounded(hub: HubEmulator) -> None:
    assert reset_wait({"ratelimit": '"resolvers";r=0;t=17'}, 1.0) == 17
    assert reset_wait({"retry-after": "3"}, 1.0) == 3
    assert reset_wait({}, 1.5) == 1.5
    hub.faults.every_nth = 1
    waits: list[float] = []
    url = resolve_url(hub.url, SINGLE, "main", "model.safetensors")
    with pytest.raises(HttpError, match="after 3 attempts"):
        HttpRangeSource(url, get_session(), {}, retries=2, sleep=waits.append)
    assert len(waits) == 2 and all(w <= 60 for w in waits)


def test_redact() -> None:
    text = f"GET failed with Authorization: Bearer {TOKEN}"
    assert TOKEN not in redact(text)
    assert TOKEN not in redact(f"token {TOKEN}", {"Authorization": f"Bearer {TOKEN}"})


@pytest.mark.parametrize("cdn", [True, False], ids=["cdn", "direct"])
def test_large_sparse_file_reads_only_header_and_samples(big_hub, cdn: bool) -> None:
    hub, size = big_hub
    hub.cdn = cdn
    repo = "bigco/sparse-llm"
    assert size > 2 * 1024**3
    ckpt = open_remote(hub.url, repo, "main", hub.files(repo), session=get_session(), headers={})
    fp = fingerprint(ckpt)
    assert fp is not None
    served = hub.counters.per_repo_bytes[repo]
    assert served < 2 * 1024 * 1024
    assert served < size / 100
    assert ckpt.bytes_read == served
    resolver, cdn_requests = request_counts(ckpt)
    assert resolver == hub.counters.resolver(repo) and cdn_requests == hub.counters.cdn(repo)
    if cdn:  # one resolver request; 32 rows, each its own CDN request, and the header
        assert (resolver, cdn_requests) == (1, 33)


def test_weight_files() -> None:
    assert weight_files(["README.md", "model.safetensors", "a/x.safetensors"]) == (
        "single",
        ["model.safetensors"],
    )
    assert weight_files(["model.safetensors.index.json", "model-1.safetensors"])[0] == "sharded"
    assert weight_files(["adapter_model.safetensors"]) == ("single", ["adapter_model.safetensors"])
    assert weight_files(["pytorch_model.bin", "x.pt"]) == ("pickle", ["pytorch_model.bin"])
    assert weight_files(["README.md"]) == ("none", [])


def _fingerprint_llm(emu: HubEmulator, repo: str = "bigco/llm"):
    """Fingerprint a sparse LLM through the emulator: (repo, checkpoint, BF16 sample
    bytes the fingerprint needs, bytes the emulator served)."""
    ckpt = open_remote(emu.url, repo, "main", emu.files(repo), session=get_session(), headers={})
    fp = fingerprint(ckpt)
    needed = sum(t.values.size for t in fp.tensors.values()) * 2  # BF16 samples
    return repo, ckpt, needed, emu.counters.per_repo_bytes[repo]


def test_large_sharded_model_keeps_to_the_byte_cap(tmp_path: Path) -> None:
    """Served directly, rows megabytes apart are not merged to save requests: bytes win."""
    size = sparse_llm(tmp_path / "bigco" / "llm", layers=6, shards=3)
    assert size > 2 * 1024**3
    emu = HubEmulator(tmp_path, cdn=False).start()
    try:
        repo, ckpt, needed, served = _fingerprint_llm(emu)
        assert served < 2 * 1024 * 1024 and served < size / 100
        overhead = len(raw_index(tmp_path / repo)) + 3 * 64 * 1024  # index + header reads
        assert served - needed - overhead <= MAX_EXTRA_BYTES
        assert ckpt.bytes_read == served
    finally:
        emu.stop()


def test_7b_model_through_the_cdn(tmp_path: Path) -> None:
    """A 13 GB 3-shard model shaped like a 7B Llama: 4 resolver requests, under 2 MB."""
    size = sparse_llm(tmp_path / "bigco" / "llm")
    emu = HubEmulator(tmp_path).start()
    try:
        repo, ckpt, needed, served = _fingerprint_llm(emu)
        assert served == ckpt.bytes_read
        assert served < 2 * 1024 * 1024 and served < size / 100
        # the samples, the index, three header probes, and nothing merged in between
        assert served <= needed + len(raw_index(tmp_path / repo)) + 3 * CDN_HEADER_PROBE_BYTES
        resolver, cdn_requests = request_counts(ckpt)
        assert resolver == emu.counters.resolver(repo) == emu.counters.resolver_requests == 4
        assert cdn_requests == emu.counters.cdn(repo) <= CDN_MAX_REQUESTS
    finally:
        emu.stop()
