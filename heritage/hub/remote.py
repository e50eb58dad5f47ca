"""Opening a Hub repo's safetensors (and GGUF) weights through HTTP range sources.

``weight_files`` picks what to read from a repo's file list; ``open_remote`` builds a
:class:`SafetensorsCheckpoint` whose sources are :class:`HttpRangeSource` objects, so
only headers and the fingerprint's sampled rows are fetched. Each file's first request
resolves it: the Hub redirects weight files to its CDN, and then that one request is all
the file spends of the resolver rate limit; the header and the sampled rows are read from
the CDN location, merging only small gaps (bytes count there, not requests), several
requests in flight. A file the resolver serves itself (a shard index, a proxy without
redirects) is read within the resolver request budget instead: its first range read gives
its size and header, a shard index is one more read, and the sampled rows get whatever
requests are left.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from heritage.errors import BadCheckpoint, NotReadRemotely
from heritage.formats.checkpoint import Checkpoint
from heritage.formats.gguf_reader import SPLIT_NAME, GGUFCheckpoint
from heritage.formats.pickle_reader import ZIP_MAGIC, PickleCheckpoint
from heritage.formats.safetensors_reader import INDEX_NAME, SafetensorsCheckpoint
from heritage.formats.source import ByteSource, ReadBudget, WholeFileSource
from heritage.formats.torch_zip import TorchZipCheckpoint
from heritage.hub.http_source import HttpRangeSource, HttpStats

RemoteCheckpoint = SafetensorsCheckpoint | GGUFCheckpoint | TorchZipCheckpoint | PickleCheckpoint
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
PICKLE_INDEX_NAME = "pytorch_model.bin.index.json"
# a legacy (non-zip) torch pickle cannot be read by range: downloaded whole up to this
LEGACY_PICKLE_LIMIT = 512 * 1024 * 1024
# Resolver requests per model: the Hub's rate limit counts them, so a model gets four for
# its first weight file (header read, maybe the rest of a long header, two for rows) and
# two for each further shard (header read, rows); a shard index is paid from the same total.
FIRST_FILE_REQUESTS = 4
FURTHER_FILE_REQUESTS = 2
# Bytes outside the sampled rows that merging ranges may read, per model: on large files
# this wins over the request budget, keeping a fingerprint to a few MB however big the model.
MAX_EXTRA_BYTES = 1024 * 1024
# Rows read from a CDN location: its requests do not spend the Hub's rate limit, so gaps
# merge only when they are small (a page: about what a request's headers cost) ...
CDN_MERGE_GAP = 4 * 1024
# ... several requests are in flight at once (per model) ...
CDN_CONCURRENCY = 8
# ... and past this many requests per model the nearest rows merge, within a byte cap.
CDN_MAX_REQUESTS = 8192
CDN_MAX_EXTRA_BYTES = 256 * 1024
# Subfolders with safetensors weights read per repo (each is a model with its own budget);
# a repo of many training checkpoints would otherwise spend the rate limit on itself.
MAX_SUBFOLDERS = 8


def request_budget(n_files: int) -> int:
    """Resolver requests a model of ``n_files`` weight files may take, shard index included."""
    return FIRST_FILE_REQUESTS + FURTHER_FILE_REQUESTS * max(n_files - 1, 0)


def cdn_budget() -> ReadBudget:
    """How rows are read from CDN locations: fewest bytes, bounded requests and threads."""
    return ReadBudget(
        max_requests=CDN_MAX_REQUESTS,
        max_extra_bytes=CDN_MAX_EXTRA_BYTES,
        merge_gap=CDN_MERGE_GAP,
        concurrency=CDN_CONCURRENCY,
    )


def request_counts(ckpt: RemoteCheckpoint) -> tuple[int, int]:
    """(resolver requests, CDN requests) a remote checkpoint has sent, retries included."""
    stats = [*(s.stats for s in ckpt.sources.values()), ckpt.extra]
    resolver = sum(s.resolver_requests if isinstance(s, HttpStats) else s.requests for s in stats)
    return resolver, sum(s.cdn_requests for s in stats if isinstance(s, HttpStats))


def resolver_reads(ckpt: RemoteCheckpoint) -> int:
    """Resolver requests a remote checkpoint asked for (retries not counted)."""
    stats = [*(s.stats for s in ckpt.sources.values()), ckpt.extra]
    return sum(s.resolver_reads if isinstance(s, HttpStats) else s.reads for s in stats)


def _http_source(
    endpoint: str,
    repo: str,
    revision: str,
    path: str,
    session: Any,
    headers: Mapping[str, str] | None,
    options: Mapping[str, Any],
) -> HttpRangeSource:
    """A range source for one repo path, resolved through the Hub."""
    url = resolve_url(endpoint, repo, revision, path)
    return HttpRangeSource(url, session, headers, **options)


def resolve_url(endpoint: str, repo: str, revision: str, file: str) -> str:
    return f"{endpoint.rstrip('/')}/{repo}/resolve/{quote(revision, safe='')}/{quote(file)}"


def weight_files(files: list[str], folder: str = "") -> tuple[str, list[str]]:
    """(kind, paths) of the weights directly in ``folder`` ("" for the repo root).

    ``sharded`` [its index], ``single`` [``model.safetensors``, else every .safetensors],
    ``pickle`` [the shard index of sharded pickles, else ``pytorch_model.bin``, else every
    .bin/.pt-like file] or ``none``; paths are repo paths.
    """
    prefix = f"{folder}/" if folder else ""
    here = [f for f in files if f.startswith(prefix) and "/" not in f[len(prefix) :]]
    if prefix + INDEX_NAME in here:
        return "sharded", [prefix + INDEX_NAME]
    st = sorted(f for f in here if f.endswith(".safetensors"))
    if prefix + "model.safetensors" in st:
        return "single", [prefix + "model.safetensors"]
    if st:
        return "single", st
    pickles = sorted(f for f in here if f.endswith(PICKLE_SUFFIXES))
    if prefix + PICKLE_INDEX_NAME in here:
        return "pickle", [prefix + PICKLE_INDEX_NAME]  # open_remote_pickle reads the shards
    if prefix + "pytorch_model.bin" in pickles:
        return "pickle", [prefix + "pytorch_model.bin"]
    if pickles:
        return "pickle", pickles
    return "none", []


def weight_folders(files: list[str], limit: int = MAX_SUBFOLDERS) -> tuple[list[str], int]:
    """(subfolders holding safetensors weights, sorted and at most ``limit``; how many more).

    Every folder with .safetensors files directly in it is a model of its own (an adapter,
    a diffusers component, a training checkpoint), read like a repo root.
    """
    folders = sorted(
        {f.rsplit("/", 1)[0] for f in files if "/" in f and f.endswith(".safetensors")}
    )
    return folders[:limit], max(len(folders) - limit, 0)


def _shards(
    index_url: str, raw: bytes, files: list[str], folder: str = ""
) -> tuple[list[str], dict[str, str]]:
    """(shard repo paths in index order, weight_map to those paths) from a shard index."""
    prefix = f"{folder}/" if folder else ""
    try:
        index = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadCheckpoint(
            index_url, f"shard index is not valid JSON ({type(exc).__name__})"
        ) from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise BadCheckpoint(index_url, "shard index has no weight_map object")
    shards: list[str] = []
    paths: dict[str, str] = {}
    for tensor, shard in weight_map.items():
        pure = PurePosixPath(shard) if isinstance(shard, str) and shard else None
        if pure is None or pure.is_absolute() or ".." in pure.parts or "\\" in shard:
            raise BadCheckpoint(index_url, f"bad shard name for {tensor!r}: {shard!r}")
        path = prefix + shard
        if path not in files:
            raise BadCheckpoint(index_url, f"shard {shard!r} named by the index is missing")
        if path not in shards:
            shards.append(path)
        paths[tensor] = path
    return shards, paths


def open_remote(
    endpoint: str,
    repo: str,
    revision: str,
    files: list[str],
    *,
    session: Any = None,
    headers: Mapping[str, str] | None = None,
    config: dict[str, Any] | None = None,
    max_extra_bytes: int = MAX_EXTRA_BYTES,
    folder: str = "",
    **source_options: Any,
) -> SafetensorsCheckpoint:
    """A checkpoint over the safetensors weights in ``folder`` of the repo at ``revision``.

    ``revision`` should be a commit sha; ``folder`` is "" for the repo root. Files are
    named by their repo path. Files the resolver redirects to a CDN read their rows from
    there with :func:`cdn_budget`; rows of files it serves itself are budgeted so the
    whole model takes at most ``request_budget`` resolver requests (retries and
    re-resolves aside), unless that would over-read more than ``max_extra_bytes``.
    """
    kind, picked = weight_files(files, folder)
    location = Path(repo)

    def source(name: str) -> HttpRangeSource:
        return _http_source(endpoint, repo, revision, name, session, headers, source_options)

    if kind == "single":
        ckpt = SafetensorsCheckpoint(
            location, {f: source(f) for f in picked}, "safetensors", config
        )
    elif kind == "sharded":
        index_src = source(picked[0])  # small: its first range read is the whole file
        raw = index_src.read(0, index_src.size)
        shards, weight_map = _shards(index_src.url, raw, files, folder)
        ckpt = SafetensorsCheckpoint(
            location,
            {f: source(f) for f in shards},
            "safetensors-sharded",
            config,
            extra=index_src.stats,
        )
        _check_weight_map(ckpt, weight_map, index_src.url)
    else:
        where = f"{repo}/{folder}" if folder else repo
        raise BadCheckpoint(where, f"no safetensors weights to read ({kind})")
    _set_budget(ckpt, max_extra_bytes)
    return ckpt


def _check_weight_map(ckpt: Checkpoint, weight_map: dict[str, str], index_url: str) -> None:
    """Every tensor the shard index names is in the shard it names (as stored: a packed
    layer's qweight and scales, not the logical weight it is read as)."""
    stored = getattr(ckpt, "stored", None)
    tensors = stored.values() if stored is not None else ckpt.tensors
    files = {t.name: t.file for t in tensors}
    for tensor, shard in weight_map.items():
        if files.get(tensor) not in (shard, PurePosixPath(shard).name):
            raise BadCheckpoint(index_url, f"tensor {tensor!r} is not in shard {shard!r}")


def _set_budget(ckpt: RemoteCheckpoint, max_extra_bytes: int) -> None:
    """Rows from CDN locations read with ``cdn_budget``; rows the resolver serves with
    what is left of ``request_budget`` once the headers are read."""
    left = request_budget(len(ckpt.sources)) - resolver_reads(ckpt)
    direct = ReadBudget(max_requests=max(left, 0), max_extra_bytes=max_extra_bytes)
    on_cdn = {f for f, s in ckpt.sources.items() if getattr(s, "via_cdn", False)}
    if not on_cdn:
        ckpt.read_budget = direct
    elif len(on_cdn) == len(ckpt.sources):
        ckpt.read_budget = cdn_budget()
    else:  # some files redirected, some served by the resolver
        ckpt.read_budget = {f: cdn_budget() if f in on_cdn else direct for f in ckpt.sources}


def open_remote_pickle(
    endpoint: str,
    repo: str,
    revision: str,
    paths: list[str],
    *,
    session: Any = None,
    headers: Mapping[str, str] | None = None,
    max_extra_bytes: int = MAX_EXTRA_BYTES,
    legacy_limit: int = LEGACY_PICKLE_LIMIT,
    repo_files: list[str] | None = None,
    **source_options: Any,
) -> TorchZipCheckpoint | PickleCheckpoint:
    """Torch pickles of the repo at ``revision``: zip archives read by range (directory,
    ``data.pkl``, then the sampled rows of each storage, budgeted as ``open_remote``);
    legacy pickles downloaded whole up to ``legacy_limit`` bytes and loaded with
    ``torch.load(weights_only=True)``, larger ones refused with ``NotReadRemotely``.

    ``paths`` may be one ``pytorch_model.bin.index.json``: its shards (which must be
    among ``repo_files``, the repo's listing) are then read, and the index's bytes count
    with the checkpoint's."""
    index_src = weight_map = None
    if len(paths) == 1 and PurePosixPath(paths[0]).name == PICKLE_INDEX_NAME:
        index_src = _http_source(
            endpoint, repo, revision, paths[0], session, headers, source_options
        )
        folder = str(PurePosixPath(paths[0]).parent).removeprefix(".")
        raw = index_src.read(0, index_src.size)
        paths, weight_map = _shards(index_src.url, raw, repo_files or [], folder)
    ckpt = _open_pickles(
        endpoint,
        repo,
        revision,
        paths,
        session,
        headers,
        max_extra_bytes,
        legacy_limit,
        source_options,
    )
    if index_src is not None and weight_map is not None:
        ckpt.extra = index_src.stats
        _check_weight_map(ckpt, weight_map, index_src.url)
    return ckpt


def _open_pickles(
    endpoint: str,
    repo: str,
    revision: str,
    paths: list[str],
    session: Any,
    headers: Mapping[str, str] | None,
    max_extra_bytes: int,
    legacy_limit: int,
    source_options: dict[str, Any],
) -> TorchZipCheckpoint | PickleCheckpoint:
    sources = {
        p: _http_source(endpoint, repo, revision, p, session, headers, source_options)
        for p in paths
    }
    files = [Path(repo) / p for p in paths]
    if all(s.read(0, min(4, s.size)) == ZIP_MAGIC for s in sources.values()):
        header = ReadBudget(max_requests=1, max_extra_bytes=max_extra_bytes)
        # a small archive costs fewer requests, and no byte twice, read whole
        whole: dict[str, ByteSource] = {
            p: WholeFileSource(s) if s.size <= max_extra_bytes else s for p, s in sources.items()
        }
        ckpt = TorchZipCheckpoint(Path(repo) / paths[0], whole, files=files, header_budget=header)
        _set_budget(ckpt, max_extra_bytes)
        return ckpt
    big = [s for s in sources.values() if s.size > legacy_limit]
    if big:
        raise NotReadRemotely(
            big[0].name,
            f"legacy torch pickle of {big[0].size:,} bytes is over the "
            f"{legacy_limit // 2**20} MB download limit",
        )
    with tempfile.TemporaryDirectory(prefix="heritage-pickle-") as tmp:
        local = []
        for p, s in sources.items():
            path = Path(tmp) / Path(p).name
            path.write_bytes(s.read(0, s.size))
            local.append(path)
        return PickleCheckpoint(Path(repo), local, None, files=files, sources=sources)


def gguf_models(files: list[str]) -> list[list[str]]:
    """The GGUF models of a repo, each a list of repo paths: one .gguf file, or the parts
    of a split GGUF in order (a set missing parts is left out)."""
    present = set(files)
    out = []
    for f in sorted(files):
        if not f.endswith(".gguf"):
            continue
        head, _, name = f.rpartition("/")
        m = SPLIT_NAME.match(name)
        if m is None:
            out.append([f])
            continue
        if int(m.group("part")) != 1:
            continue
        count = int(m.group("count"))
        prefix = f"{head}/" if head else ""
        parts = [
            f"{prefix}{m.group('stem')}-{k:05d}-of-{count:05d}.gguf" for k in range(1, count + 1)
        ]
        if all(p in present for p in parts):
            out.append(parts)
    return out


def open_remote_gguf(
    endpoint: str,
    repo: str,
    revision: str,
    paths: list[str],
    *,
    session: Any = None,
    headers: Mapping[str, str] | None = None,
    max_extra_bytes: int = MAX_EXTRA_BYTES,
    **source_options: Any,
) -> GGUFCheckpoint:
    """A GGUF model of the repo at ``revision`` (``paths``: a file, or a split GGUF's
    parts), its header and sampled blocks read as ranges, budgeted as ``open_remote``."""
    sources = {
        p: _http_source(endpoint, repo, revision, p, session, headers, source_options)
        for p in paths
    }
    ckpt = GGUFCheckpoint(Path(repo) / paths[0], sources, files=[Path(repo) / p for p in paths])
    _set_budget(ckpt, max_extra_bytes)
    return ckpt
