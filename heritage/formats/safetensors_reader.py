"""Safetensors files, single or sharded, read through byte-range sources.

The header is parsed and validated completely before any tensor data is touched, so a
corrupt or hostile file is refused with a precise reason instead of failing half-way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from heritage.errors import BadCheckpoint
from heritage.formats.checkpoint import RowSample, SourcedCheckpoint, TensorInfo, check_shape
from heritage.formats.dtypes import DTYPES, to_float32
from heritage.formats.packed import quant_settings
from heritage.formats.packed_reader import find_layers, layer_read
from heritage.formats.source import (
    ByteSource,
    LocalFileSource,
    ReadBudget,
    ReadStats,
    read_planned,
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
        quantization: Mapping[str, Any] | None = None,
    ) -> None:
        """``sources`` maps each file name to its byte source, in file order.

        ``read_budget`` bounds the range requests of each batched row read (None: each
        source merges near ranges its own way), for all files or per file name (files
        with equal budgets share one plan; a file left out gets ``ReadBudget()``);
        ``extra`` counts reads made for this checkpoint outside its weight files, such as
        a shard index fetched over HTTP.

        Quantized layers (GPTQ, AWQ, bitsandbytes) are listed as their logical weights,
        ``X.weight`` [out, in] with a dtype naming the method (``packed_reader``), in place
        of the tensors that store them; ``stored`` keeps every tensor the headers list.
        ``quantization`` is the model's quantization config (default: config.json's
        ``quantization_config``); where it says nothing the layouts' shapes decide.
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
        self._use_sources(sources, read_budget, extra)
        self.stored = {t.name: t for t in tensors}
        if quantization is None and config is not None:
            quantization = config.get("quantization_config")
        settings = quant_settings(quantization if isinstance(quantization, Mapping) else None)
        layers, used = find_layers(tensors, settings, self._where, self._read_small)
        self._packed = {layer.name: layer for layer in layers}
        tensors = [t for t in tensors if t.name not in used] + [x.info() for x in layers]
        tensors.sort(key=lambda t: t.name)
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
        if name in self._packed:
            return super().read(name)
        assert t.start is not None and t.end is not None
        raw = self._sources[t.file].read(t.start, t.end - t.start)
        return to_float32(raw, t.dtype).reshape(t.shape)

    def _read_rows_many(self, plan: dict[str, RowSample]) -> dict[str, np.ndarray]:
        def row_start(name: str, r: int) -> int:
            t = self.info(name)
            assert t.start is not None
            return t.start + r * math.prod(t.row_shape) * DTYPES[t.dtype].itemsize

        plain = {n: s for n, s in plan.items() if n not in self._packed}
        reads = {
            n: layer_read(self._packed[n], s, self._where)
            for n, s in plan.items()
            if n in self._packed
        }
        wanted: dict[str, list[tuple[Hashable, int, int]]] = {}
        self._plain_ranges(plain, row_start, wanted)
        grids = {n: r.grids for n, r in reads.items()}
        got = self._read_grids(grids, wanted)
        out = self._plain_values(plain, got.pop(None, {}))
        more = {n: r.more(got[n]) for n, r in reads.items()}
        if any(more.values()):
            for n, values in self._read_grids(more, {}).items():
                if n is not None:
                    got[n].update(values)
        for n, r in reads.items():
            out[n] = r.values(got[n])
        return out

    def _read_grids(
        self,
        grids: Mapping[str, Mapping[str, Any]],
        wanted: dict[str, list[tuple[Hashable, int, int]]],
    ) -> dict[Any, dict[Any, Any]]:
        """One budgeted batch: the plain ranges in ``wanted`` and every grid of every
        packed layer. Returns the grids' values per layer and role, and under ``None``
        the raw bytes of the plain ranges."""
        for n, roles in grids.items():
            for role, grid in roles.items():
                for off, length in grid.ranges():
                    wanted.setdefault(grid.t.file, []).append(((n, role), off, length))
        raw = self._gather(wanted)
        got: dict[Any, dict[Any, Any]] = {n: {} for n in grids}
        for n, roles in grids.items():
            for role, grid in roles.items():
                got[n][role] = grid.decode(b"".join(raw.pop((n, role), [])))
        got[None] = raw
        return got

    def _where(self, t: TensorInfo) -> str:
        """The name of the file holding ``t``, for error messages."""
        return self._sources[t.file].name

    def _read_small(self, tensors: Sequence[TensorInfo]) -> list[bytes]:
        """Whole small tensors in one batch (sources merge near ones their own way)."""
        ranges: dict[str, list[tuple[int, int]]] = {}
        for t in tensors:
            assert t.start is not None and t.end is not None
            ranges.setdefault(t.file, []).append((t.start, t.end - t.start))
        got = {f: iter(blobs) for f, blobs in read_planned(self._sources, ranges).items()}
        return [next(got[t.file]) for t in tensors]


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
    folder: Path,
    index_path: Path,
    config: dict[str, Any] | None,
    quantization: Mapping[str, Any] | None = None,
) -> SafetensorsCheckpoint:
    files = shard_files(index_path)
    weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
    sources = {f: LocalFileSource(folder / f) for f in files}
    ckpt = SafetensorsCheckpoint(
        folder, sources, "safetensors-sharded", config, quantization=quantization
    )
    for tensor, shard in weight_map.items():
        t = ckpt.stored.get(tensor)
        if t is None or t.file != shard:
            ckpt.close()
            raise BadCheckpoint(index_path, f"tensor {tensor!r} is not in shard {shard!r}")
    return ckpt
