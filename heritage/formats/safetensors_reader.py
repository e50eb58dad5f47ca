"""Safetensors files, single or sharded, read through byte-range sources.

The header is parsed and validated completely before any tensor data is touched, so a
corrupt or hostile file is refused with a precise reason instead of failing half-way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from heritage.errors import BadCheckpoint
from heritage.formats.checkpoint import RowSample, SourcedCheckpoint, TensorInfo, check_shape
from heritage.formats.dtypes import DTYPES, to_float32
from heritage.formats.source import (
    ByteSource,
    LocalFileSource,
    ReadBudget,
    ReadStats,
)

MAX_HEADER_BYTES = 100 * 1024 * 1024
# First read: enough for the length prefix and the header of most models in one request.
HEADER_PROBE_BYTES = 64 * 1024
INDEX_NAME = "model.safetensors.index.json"


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        self.key = key


def parse_header(source: ByteSource, file: str) -> tuple[list[TensorInfo], dict[str, str]]:
    """Validate a safetensors header and list its tensors with absolute byte ranges.

    Checks every rule of the format: header size and bounds, a JSON object without
    duplicate keys, known dtypes, valid shapes, and data offsets that agree with
    dtype × shape and tile the data section exactly (no overlaps, holes or shortfall).
    """
    name = source.name
    if source.size == 0:
        raise BadCheckpoint(name, "empty file")
    if source.size < 8:
        raise BadCheckpoint(
            name, f"file is {source.size} bytes, too short for a safetensors header"
        )
    # a source that already holds the file's first bytes (an HTTP probe) says how many
    probe = source.read(0, min(source.size, getattr(source, "probe_bytes", HEADER_PROBE_BYTES)))
    n = int.from_bytes(probe[:8], "little")
    if n > MAX_HEADER_BYTES:
        raise BadCheckpoint(name, f"header length {n} bytes exceeds the 100 MB limit")
    if 8 + n > source.size:
        raise BadCheckpoint(
            name, f"header length {n} bytes runs past end of file ({source.size} bytes)"
        )
    raw = (
        probe[8 : 8 + n]
        if 8 + n <= len(probe)
        else probe[8:] + source.read(len(probe), 8 + n - len(probe))
    )
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_reject_duplicates)
    except _DuplicateKey as exc:
        raise BadCheckpoint(name, f"header has duplicate key {exc.key!r}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadCheckpoint(name, f"header is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise BadCheckpoint(name, f"header is not a JSON object but {type(header).__name__}")

    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise BadCheckpoint(name, "__metadata__ must map strings to strings")

    data_start = 8 + n
    data_len = source.size - data_start
    tensors: list[TensorInfo] = []
    for tname, entry in header.items():
        if not isinstance(entry, dict):
            raise BadCheckpoint(name, f"tensor {tname!r} entry is not an object")
        dtype = entry.get("dtype")
        if dtype not in DTYPES:
            raise BadCheckpoint(name, f"tensor {tname!r} has unknown dtype {dtype!r}")
        shape = check_shape(name, tname, entry.get("shape"))
        offsets = entry.get("data_offsets")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise BadCheckpoint(name, f"tensor {tname!r} has invalid data_offsets {offsets!r}")
        begin, end = offsets
        expected = math.prod(shape) * DTYPES[dtype].itemsize
        if end - begin != expected:
            raise BadCheckpoint(
                name,
                f"tensor {tname!r} offsets span {end - begin} bytes but {dtype} × {list(shape)} "
                f"needs {expected}",
            )
        tensors.append(TensorInfo(tname, dtype, shape, file, data_start + begin, data_start + end))

    position = data_start
    for t in sorted(tensors, key=lambda t: (t.start, t.end)):
        assert t.start is not None and t.end is not None
        if t.start < position:
            raise BadCheckpoint(name, f"tensor {t.name!r} overlaps the previous tensor's bytes")
        if t.start > position:
            raise BadCheckpoint(
                name, f"hole of {t.start - position} bytes before tensor {t.name!r}"
            )
        position = t.end
    needed = position - data_start
    if needed > data_len:
        raise BadCheckpoint(
            name,
            f"data section is {data_len} bytes but the header needs {needed} (truncated file?)",
        )
    if needed < data_len:
        raise BadCheckpoint(
            name, f"{data_len - needed} bytes after the last tensor are not described by the header"
        )
    tensors.sort(key=lambda t: t.name)
    return tensors, metadata


class SafetensorsCheckpoint(SourcedCheckpoint):
    """One or more safetensors files that together hold a model."""

    def __init__(
        self,
        location: Path,
        sources: dict[str, ByteSource],
        fmt: str,
        config: dict[str, Any] | None = None,
        *,
        read_budget: ReadBudget | Mapping[str, ReadBudget] | None = None,
        extra: ReadStats | None = None,
    ) -> None:
        """``sources`` maps each file name to its byte source, in file order.

        ``read_budget`` bounds the range requests of each batched row read (None: each
        source merges near ranges its own way), for all files or per file name (files
        with equal budgets share one plan; a file left out gets ``ReadBudget()``);
        ``extra`` counts reads made for this checkpoint outside its weight files, such as
        a shard index fetched over HTTP.
        """
        tensors: list[TensorInfo] = []
        metadata: dict[str, str] = {}
        seen: dict[str, str] = {}
        for file, source in sources.items():
            listed, meta = parse_header(source, file)
            metadata.update(meta)
            for t in listed:
                if t.name in seen:
                    raise BadCheckpoint(
                        source.name, f"tensor {t.name!r} also appears in {seen[t.name]}"
                    )
                seen[t.name] = file
            tensors.extend(listed)
        tensors.sort(key=lambda t: t.name)
        self._use_sources(sources, read_budget, extra)
        super().__init__(
            location=location,
            format=fmt,
            files=[_base(location) / f for f in sources],
            tensors=tensors,
            config=config,
            header_metadata=metadata,
        )

    def read(self, name: str) -> np.ndarray:
        t = self.info(name)
        assert t.start is not None and t.end is not None
        raw = self._sources[t.file].read(t.start, t.end - t.start)
        return to_float32(raw, t.dtype).reshape(t.shape)

    def _read_rows_many(self, plan: dict[str, RowSample]) -> dict[str, np.ndarray]:
        def row_start(name: str, r: int) -> int:
            t = self.info(name)
            assert t.start is not None
            return t.start + r * math.prod(t.row_shape) * DTYPES[t.dtype].itemsize

        return self._read_plain_rows(plan, row_start)


def _base(location: Path) -> Path:
    return location if location.is_dir() else location.parent


def shard_files(index_path: Path) -> list[str]:
    """The shard file names an index names, each checked to stay inside its folder."""
    try:
        index = json.loads(
            index_path.read_text(encoding="utf-8"), object_pairs_hook=_reject_duplicates
        )
    except _DuplicateKey as exc:
        raise BadCheckpoint(index_path, f"shard index has duplicate key {exc.key!r}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadCheckpoint(
            index_path, f"shard index is not valid JSON ({exc.__class__.__name__})"
        ) from None
    except OSError as exc:
        raise BadCheckpoint(index_path, f"cannot read shard index: {exc.strerror}") from None
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise BadCheckpoint(index_path, "shard index has no weight_map object")
    folder = index_path.parent.resolve()
    files: list[str] = []
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str) or not shard:
            raise BadCheckpoint(index_path, f"weight_map entry for {tensor!r} is not a file name")
        pure = PurePosixPath(shard)
        if pure.is_absolute() or ".." in pure.parts or "\\" in shard:
            raise BadCheckpoint(index_path, f"shard {shard!r} escapes the model folder")
        target = (folder / pure).resolve()
        if not target.is_relative_to(folder):
            raise BadCheckpoint(index_path, f"shard {shard!r} escapes the model folder")
        if not target.is_file():
            raise BadCheckpoint(index_path, f"shard {shard!r} named by the index is missing")
        if shard not in files:
            files.append(shard)
    return files


def open_sharded(
    folder: Path, index_path: Path, config: dict[str, Any] | None
) -> SafetensorsCheckpoint:
    files = shard_files(index_path)
    weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    ckpt = SafetensorsCheckpoint(
        folder, {f: LocalFileSource(folder / f) for f in files}, "safetensors-sharded", config
    )
    for tensor, shard in weight_map.items():
        t = ckpt._by_name.get(tensor)
        if t is None or t.file != shard:
            ckpt.close()
            raise BadCheckpoint(index_path, f"tensor {tensor!r} is not in shard {shard!r}")
    return ckpt
