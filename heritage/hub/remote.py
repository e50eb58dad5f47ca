"""Opening a Hub repo's safetensors weights through HTTP range sources.

``weight_files`` picks what to read from a repo's file list; ``open_remote`` builds a
:class:`SafetensorsCheckpoint` whose sources are :class:`HttpRangeSource` objects, so
only headers and the fingerprint's sampled rows are fetched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from heritage.formats.errors import BadCheckpoint
from heritage.formats.safetensors_reader import INDEX_NAME, SafetensorsCheckpoint
from heritage.hub.http_source import HttpRangeSource

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


def resolve_url(endpoint: str, repo: str, revision: str, file: str) -> str:
    return f"{endpoint.rstrip('/')}/{repo}/resolve/{quote(revision, safe='')}/{quote(file)}"


def weight_files(files: list[str]) -> tuple[str, list[str]]:
    """(kind, files): ``sharded`` [index], ``single`` [root .safetensors…], ``pickle`` or ``none``."""
    root = [f for f in files if "/" not in f]
    if INDEX_NAME in root:
        return "sharded", [INDEX_NAME]
    st = sorted(f for f in root if f.endswith(".safetensors"))
    if "model.safetensors" in st:
        return "single", ["model.safetensors"]
    if st:
        return "single", st
    if any(f.endswith(PICKLE_SUFFIXES) for f in root):
        return "pickle", []
    return "none", []


def _shards(index_url: str, raw: bytes, files: list[str]) -> tuple[list[str], dict[str, str]]:
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
    for tensor, shard in weight_map.items():
        pure = PurePosixPath(shard) if isinstance(shard, str) and shard else None
        if pure is None or pure.is_absolute() or ".." in pure.parts or "\\" in shard:
            raise BadCheckpoint(index_url, f"bad shard name for {tensor!r}: {shard!r}")
        if shard not in files:
            raise BadCheckpoint(index_url, f"shard {shard!r} named by the index is missing")
        if shard not in shards:
            shards.append(shard)
    return shards, weight_map


def open_remote(
    endpoint: str,
    repo: str,
    revision: str,
    files: list[str],
    *,
    session: Any = None,
    headers: Mapping[str, str] | None = None,
    config: dict[str, Any] | None = None,
    **source_options: Any,
) -> SafetensorsCheckpoint:
    """A checkpoint over the repo's safetensors weights at ``revision`` (a commit sha)."""
    kind, picked = weight_files(files)
    location = Path(repo)

    def source(name: str) -> HttpRangeSource:
        url = resolve_url(endpoint, repo, revision, name)
        return HttpRangeSource(url, session, headers, **source_options)

    if kind == "single":
        return SafetensorsCheckpoint(
            location, {f: source(f) for f in picked}, "safetensors", config
        )
    if kind == "sharded":
        index_src = source(INDEX_NAME)
        raw = index_src.read(0, index_src.size)
        shards, weight_map = _shards(index_src.url, raw, files)
        ckpt = SafetensorsCheckpoint(
            location, {f: source(f) for f in shards}, "safetensors-sharded", config
        )
        ckpt._sources[INDEX_NAME + "#"] = index_src  # count its bytes in the model's stats
        for tensor, shard in weight_map.items():
            t = ckpt._by_name.get(tensor)
            if t is None or t.file != shard:
                raise BadCheckpoint(index_src.url, f"tensor {tensor!r} is not in shard {shard!r}")
        return ckpt
    raise BadCheckpoint(repo, f"no safetensors weights to read ({kind})")
