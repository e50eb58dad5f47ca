"""PyTorch zip checkpoints (``torch.save`` since 1.6) read by range, for remote files.

A zip-format checkpoint is range-readable: the central directory sits at the end of
the file, ``data.pkl`` is small, and each storage is one stored (uncompressed) entry. So
the directory is read from the tail, ``data.pkl`` is unpickled with a whitelist of the
globals a state dict needs (containers, ``_rebuild_tensor_v2`` and the typed storages;
nothing is imported or called outside it, any other global refuses the file as
``UnsafePickle``), and the sampled rows are read as byte ranges of their storages,
exactly as ``SafetensorsCheckpoint`` reads its tensors. Locally ``torch.load`` with
``weights_only`` does the same job (``pickle_reader``); names and values agree.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from heritage.errors import BadCheckpoint, UnsafePickle
from heritage.formats.checkpoint import RowSample, SourcedCheckpoint, TensorInfo
from heritage.formats.dtypes import DTYPES
from heritage.formats.source import ByteSource, ReadBudget, read_planned

__all__ = ["TorchZipCheckpoint", "read_directory"]

_EOCD = b"PK\x05\x06"
_EOCD64_LOCATOR = b"PK\x06\x07"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
TAIL_BYTES = 64 * 1024 + 22  # the end-of-directory record and the longest zip comment
MAX_DIRECTORY = 64 * 1024 * 1024
MAX_PICKLE = 64 * 1024 * 1024
_STORAGES = {
    "FloatStorage": "F32",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "DoubleStorage": "F64",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
}


@dataclass(frozen=True)
class Member:
    """One entry of a zip archive, as its central directory lists it."""

    name: str
    header: int  # offset of its local header
    method: int  # 0 stored, 8 deflated
    compressed: int
    size: int


def _u(data: bytes, at: int, fmt: str) -> int:
    return struct.unpack_from(fmt, data, at)[0]


def read_directory(source: ByteSource) -> dict[str, Member]:
    """Every member of a zip archive by name, read from the tail of the file (zip64 too)."""
    name = source.name
    tail_at = max(0, source.size - TAIL_BYTES)
    tail = source.read(tail_at, source.size - tail_at)
    end = tail.rfind(_EOCD)
    if end < 0 or len(tail) - end < 22:
        raise BadCheckpoint(name, "truncated or corrupt zip archive (no end of directory)")
    count, size, offset = (
        _u(tail, end + 10, "<H"),
        _u(tail, end + 12, "<I"),
        _u(tail, end + 16, "<I"),
    )
    if 0xFFFFFFFF in (size, offset) or count == 0xFFFF:
        loc = end - 20
        if loc < 0 or tail[loc : loc + 4] != _EOCD64_LOCATOR:
            raise BadCheckpoint(name, "corrupt zip64 archive (no directory locator)")
        record = source.read(_u(tail, loc + 8, "<Q"), 56)
        count, size, offset = _u(record, 32, "<Q"), _u(record, 40, "<Q"), _u(record, 48, "<Q")
    if size > MAX_DIRECTORY or offset + size > source.size:
        raise BadCheckpoint(name, f"zip directory of {size} bytes at {offset} is out of bounds")
    raw = source.read(offset, size)
    members: dict[str, Member] = {}
    at = 0
    for _ in range(count):
        if raw[at : at + 4] != _CENTRAL:
            raise BadCheckpoint(name, "corrupt zip directory entry")
        method = _u(raw, at + 10, "<H")
        comp, usize = _u(raw, at + 20, "<I"), _u(raw, at + 24, "<I")
        n, e, c = _u(raw, at + 28, "<H"), _u(raw, at + 30, "<H"), _u(raw, at + 32, "<H")
        header = _u(raw, at + 42, "<I")
        fname = raw[at + 46 : at + 46 + n].decode("utf-8", "replace")
        extra = raw[at + 46 + n : at + 46 + n + e]
        usize, comp, header = _zip64(extra, usize, comp, header)
        members[fname] = Member(fname, header, method, comp, usize)
        at += 46 + n + e + c
    return members


def _zip64(extra: bytes, usize: int, comp: int, header: int) -> tuple[int, int, int]:
    """Sizes and offset from a zip64 extra field, where the directory holds 0xFFFFFFFF."""
    at = 0
    while at + 4 <= len(extra):
        tag, n = _u(extra, at, "<H"), _u(extra, at + 2, "<H")
        if tag == 1:
            values = iter(struct.unpack_from(f"<{n // 8}Q", extra, at + 4))
            usize = next(values) if usize == 0xFFFFFFFF else usize
            comp = next(values) if comp == 0xFFFFFFFF else comp
            header = next(values) if header == 0xFFFFFFFF else header
            break
        at += 4 + n
    return usize, comp, header


def _data_offsets(
    source: ByteSource, members: list[Member], budget: ReadBudget | None = None
) -> dict[str, int]:
    """Where each member's data starts (after its local header, whose extra field torch
    pads to align storages): the 30 fixed bytes of each local header, in one batch (as one
    plan under ``budget``, when given)."""
    ranges = [(m.header, min(30, source.size - m.header)) for m in members]
    heads = read_planned({source.name: source}, {source.name: ranges}, budget)[source.name]
    out = {}
    for m, head in zip(members, heads, strict=True):
        if head[:4] != _LOCAL or len(head) < 30:
            raise BadCheckpoint(source.name, f"corrupt zip entry {m.name!r}")
        out[m.name] = m.header + 30 + _u(head, 26, "<H") + _u(head, 28, "<H")
    return out


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: str
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class _StorageType:
    def __init__(self, dtype: str) -> None:
        self.dtype = dtype


def _rebuild_tensor_v2(
    storage: _Storage, offset: int, size: Any, stride: Any, *_: Any
) -> _TensorRef:
    return _TensorRef(
        storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride)
    )


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


_ALLOWED: dict[str, Any] = {
    "collections.OrderedDict": OrderedDict,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    **{f"torch.{k}": _StorageType(v) for k, v in _STORAGES.items()},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, path: str) -> None:
        super().__init__(io.BytesIO(data))
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        key = f"{module}.{name}"
        if key not in _ALLOWED:
            raise UnsafePickle(self.path, [key])
        return _ALLOWED[key]

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise BadCheckpoint(self.path, f"unexpected persistent id {str(pid)[:60]!r}")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, _StorageType):
            raise BadCheckpoint(self.path, "storage of an unknown type")
        return _Storage(str(key), kind.dtype, int(numel))


def _flatten(obj: Any, prefix: str, out: dict[str, _TensorRef]) -> None:
    if isinstance(obj, _TensorRef):
        out[prefix or "tensor"] = obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), out)


def _contiguous_rows(ref: _TensorRef) -> bool:
    """Whether each first-axis slice is one contiguous run of the storage."""
    expected = 1
    for size, stride in zip(reversed(ref.shape[1:]), reversed(ref.stride[1:]), strict=True):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


class TorchZipCheckpoint(SourcedCheckpoint):
    """One or more zip-format torch checkpoints read through byte-range sources."""

    def __init__(
        self,
        location: Path,
        sources: dict[str, ByteSource],
        *,
        read_budget: ReadBudget | Mapping[str, ReadBudget] | None = None,
        files: list[Path] | None = None,
        header_budget: ReadBudget | None = None,
    ) -> None:
        """``sources`` maps file names to their bytes; ``read_budget`` bounds the range
        requests of each batched row read, ``header_budget`` those of the storages' local
        headers (as for ``SafetensorsCheckpoint``)."""
        self._use_sources(sources, read_budget)
        self._rows: dict[str, tuple[int, int]] = {}  # name -> (row 0's byte offset, row stride)
        infos: list[TensorInfo] = []
        for file, source in sources.items():
            for info, start, row_stride in self._listing(file, source, header_budget):
                if info.name in self._rows:
                    raise BadCheckpoint(source.name, f"tensor {info.name!r} appears twice")
                self._rows[info.name] = (start, row_stride)
                infos.append(info)
        infos.sort(key=lambda t: t.name)
        super().__init__(
            location=location,
            format="pytorch-zip",
            files=files if files is not None else [location.with_name(f) for f in sources],
            tensors=infos,
        )

    @staticmethod
    def _listing(
        file: str, source: ByteSource, budget: ReadBudget | None
    ) -> list[tuple[TensorInfo, int, int]]:
        name = source.name
        members = read_directory(source)
        pkl = [m for m in members.values() if m.name.endswith("data.pkl")]
        if not pkl:
            raise BadCheckpoint(name, "not a PyTorch checkpoint (no data.pkl in the archive)")
        if pkl[0].compressed > MAX_PICKLE:
            raise BadCheckpoint(name, f"data.pkl of {pkl[0].compressed} bytes is over the limit")
        prefix = pkl[0].name[: -len("data.pkl")]
        offsets = _data_offsets(source, pkl)
        raw = source.read(offsets[pkl[0].name], pkl[0].compressed)
        if pkl[0].method == 8:
            raw = zlib.decompress(raw, -15)
        elif pkl[0].method != 0:
            raise BadCheckpoint(name, f"data.pkl is compressed with method {pkl[0].method}")
        try:
            obj = _Unpickler(raw, name).load()
        except (UnsafePickle, BadCheckpoint):
            raise
        except EOFError:
            raise BadCheckpoint(name, "truncated pickle (unexpected end of file)") from None
        except Exception as exc:  # noqa: BLE001 - a corrupt pickle raises many kinds
            raise BadCheckpoint(name, f"corrupt pickle: {type(exc).__name__}") from None
        refs: dict[str, _TensorRef] = {}
        _flatten(obj, "", refs)
        if not refs:
            raise BadCheckpoint(name, "not a checkpoint: the pickle holds no tensors")
        wanted = sorted({f"{prefix}data/{r.storage.key}" for r in refs.values()})
        missing = [w for w in wanted if w not in members]
        if missing:
            raise BadCheckpoint(name, f"storage {missing[0]!r} is missing from the archive")
        stored = [members[w] for w in wanted]
        if any(m.method != 0 for m in stored):
            raise BadCheckpoint(name, "compressed storages cannot be read by range")
        starts = _data_offsets(source, stored, budget)
        out = []
        for tname, ref in refs.items():
            itemsize = DTYPES[ref.storage.dtype].itemsize
            member = members[f"{prefix}data/{ref.storage.key}"]
            if not _contiguous_rows(ref):
                raise BadCheckpoint(name, f"tensor {tname!r} is not stored row by row")
            shape = ref.shape if ref.shape else (1,)
            row_stride = (ref.stride[0] if ref.stride else 1) * itemsize
            start = starts[member.name] + ref.offset * itemsize
            last = start + (shape[0] - 1) * row_stride + math.prod(shape[1:]) * itemsize
            if shape[0] and last > starts[member.name] + member.size:
                raise BadCheckpoint(name, f"tensor {tname!r} runs past its storage")
            info = TensorInfo(tname, ref.storage.dtype, ref.shape, file, start, last)
            out.append((info, start, row_stride))
        return out

    def _read_rows_many(self, plan: dict[str, RowSample]) -> dict[str, np.ndarray]:
        def row_start(name: str, r: int) -> int:
            start, row_stride = self._rows[name]
            return start + r * row_stride

        return self._read_plain_rows(plan, row_start)
