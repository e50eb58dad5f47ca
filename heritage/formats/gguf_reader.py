"""GGUF files (llama.cpp's format), single or split, read through byte-range sources.

The header (key/values, then tensor infos) is read in growing range reads and validated
whole before any tensor data is touched; metadata past ``MAX_METADATA_BYTES`` is refused.
Sampled rows are read as byte ranges too: for a block-quantized type only the blocks
that cover the sampled column window, decoded by the ``gguf`` package's dequantizers.

Tensors are listed under their Hugging Face names (``hf_name``) and in Hugging Face row
order: llama.cpp's converter permutes the rows of the query and key projections of
llama-style models for its rotary embedding, and ``hf_row`` undoes that, so a GGUF lines
up row for row with its safetensors relatives. ``general.base_model.*`` and
``general.source.*`` keys are kept as declared evidence in ``header_metadata``.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize

from heritage.errors import BadCheckpoint
from heritage.formats.checkpoint import RowSample, SourcedCheckpoint, TensorInfo
from heritage.formats.dtypes import BLOCK_TYPES, storage_bytes, to_float32
from heritage.formats.source import ByteSource, ReadBudget

__all__ = [
    "MAX_METADATA_BYTES",
    "GGUFCheckpoint",
    "GGUFHeader",
    "GGUFTensor",
    "gguf_name",
    "hf_name",
    "parse_gguf",
    "split_files",
]

MAGIC = b"GGUF"
MAX_METADATA_BYTES = 64 * 1024 * 1024  # key/values and tensor infos together
FIRST_READ = 256 * 1024  # the header of most files, tokenizer arrays included, in one read
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_STRING = 1 << 20  # no key, name or string value is longer than this
DEFAULT_ALIGNMENT = 32
KEPT_ARRAY = 64  # arrays longer than this (token lists) are counted, not kept
# GGUF types with a safetensors equivalent keep that name
PLAIN_TYPES = {
    GGMLQuantizationType.F32: "F32",
    GGMLQuantizationType.F16: "F16",
    GGMLQuantizationType.BF16: "BF16",
    GGMLQuantizationType.F64: "F64",
    GGMLQuantizationType.I8: "I8",
    GGMLQuantizationType.I16: "I16",
    GGMLQuantizationType.I32: "I32",
    GGMLQuantizationType.I64: "I64",
}
# metadata value types: struct format of the scalars (8 is a string, 9 an array)
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q"}
_SCALARS.update({11: "<q", 12: "<d"})
_STRING, _ARRAY = 8, 9
SPLIT_NAME = re.compile(r"^(?P<stem>.+)-(?P<part>\d{5})-of-(?P<count>\d{5})\.gguf$")


class _NeedMore(Exception):
    """The header runs past the bytes read so far."""


class _Cursor:
    def __init__(self, buf: bytes, file: str, limit: int) -> None:
        self.buf, self.pos, self.file, self.limit = buf, 0, file, limit

    def take(self, n: int) -> bytes:
        if self.pos + n > self.limit:
            raise BadCheckpoint(
                self.file, f"GGUF metadata runs past the {self.limit // 2**20} MB limit"
            )
        if self.pos + n > len(self.buf):
            raise _NeedMore
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.scalar("<Q")
        if n > MAX_STRING:
            raise BadCheckpoint(self.file, f"GGUF string of absurd length {n} at byte {self.pos}")
        try:
            return self.take(n).decode("utf-8")
        except UnicodeDecodeError:
            raise BadCheckpoint(self.file, f"GGUF string at byte {self.pos} is not UTF-8") from None

    def value(self, kind: int, depth: int = 0) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY and depth == 0:
            inner, count = self.scalar("<I"), self.scalar("<Q")
            if inner not in _SCALARS and inner != _STRING:
                raise BadCheckpoint(self.file, f"GGUF array of unknown value type {inner}")
            least = 8 if inner == _STRING else struct.calcsize(_SCALARS[inner])
            if count * least > self.limit:
                raise BadCheckpoint(self.file, f"GGUF array of absurd length {count}")
            if inner != _STRING:  # one slice, not one read per element
                size = struct.calcsize(_SCALARS[inner])
                raw = self.take(count * size)
                items = np.frombuffer(raw, dtype=np.dtype(_SCALARS[inner]))
                return items.tolist() if count <= KEPT_ARRAY else _Skipped(count)
            values = [self.string() for _ in range(count)]
            return values if count <= KEPT_ARRAY else _Skipped(count)
        raise BadCheckpoint(self.file, f"GGUF metadata value of unknown type {kind}")


@dataclass(frozen=True)
class _Skipped:
    """A long array (a tokenizer's vocabulary) left out of the metadata kept."""

    count: int


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor as a GGUF header lists it: GGML dims (innermost first) and type."""

    name: str
    dims: tuple[int, ...]
    type: GGMLQuantizationType
    start: int  # absolute byte offset in its file
    nbytes: int

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape in PyTorch order (outermost first)."""
        return tuple(reversed(self.dims))

    @property
    def dtype(self) -> str:
        return PLAIN_TYPES.get(self.type, self.type.name)


@dataclass(frozen=True)
class GGUFHeader:
    version: int
    metadata: dict[str, Any]
    tensors: list[GGUFTensor]
    alignment: int
    data_start: int


def parse_gguf(source: ByteSource, max_metadata: int = MAX_METADATA_BYTES) -> GGUFHeader:
    """Read and validate a GGUF header: magic, version, key/values, tensor infos, and
    that every tensor's data is aligned, of the size its type and dims need, and inside
    the file. Reads grow (x4) until the header is whole, up to ``max_metadata`` bytes."""
    name = source.name
    if source.size < 24:
        raise BadCheckpoint(name, f"file is {source.size} bytes, too short for a GGUF header")
    want = min(source.size, FIRST_READ)
    buf = source.read(0, want)
    if buf[:4] != MAGIC:
        raise BadCheckpoint(name, f"not a GGUF file (magic {buf[:4]!r}, expected b'GGUF')")
    while True:
        try:
            return _parse(buf, name, source.size, max_metadata)
        except _NeedMore:
            if len(buf) >= source.size:
                raise BadCheckpoint(
                    name, "GGUF header runs past end of file (truncated?)"
                ) from None
            more = min(source.size, max_metadata + 1, 4 * len(buf)) - len(buf)
            if more <= 0:
                raise BadCheckpoint(
                    name, f"GGUF metadata runs past the {max_metadata // 2**20} MB limit"
                ) from None
            buf += source.read(len(buf), more)


def _parse(buf: bytes, name: str, size: int, limit: int) -> GGUFHeader:
    cur = _Cursor(buf, name, limit)
    cur.take(4)
    version = cur.scalar("<I")
    if version not in (2, 3):
        raise BadCheckpoint(name, f"unsupported GGUF version {version} (2 and 3 are read)")
    n_tensors, n_kv = cur.scalar("<Q"), cur.scalar("<Q")
    if n_tensors > limit // 24 or n_kv > limit // 12:
        raise BadCheckpoint(name, f"GGUF header claims {n_tensors} tensors and {n_kv} keys")
    metadata: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string()
        metadata[key] = cur.value(cur.scalar("<I"))
    alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise BadCheckpoint(name, f"general.alignment {alignment!r} is not a power of two")
    infos = []
    for _ in range(n_tensors):
        tname = cur.string()
        n_dims = cur.scalar("<I")
        if not 1 <= n_dims <= MAX_DIMS:
            raise BadCheckpoint(name, f"tensor {tname!r} has {n_dims} dimensions")
        dims = tuple(cur.scalar("<Q") for _ in range(n_dims))
        kind, offset = cur.scalar("<I"), cur.scalar("<Q")
        infos.append((tname, dims, kind, offset))
    data_start = -(-cur.pos // alignment) * alignment
    tensors, seen = [], set()
    for tname, dims, kind, offset in infos:
        try:
            qtype = GGMLQuantizationType(kind)
        except ValueError:
            raise BadCheckpoint(name, f"tensor {tname!r} has unknown GGML type {kind}") from None
        if tname in seen:
            raise BadCheckpoint(name, f"tensor {tname!r} is listed twice")
        seen.add(tname)
        dtype = PLAIN_TYPES.get(qtype, qtype.name)
        if dtype in BLOCK_TYPES and dims[0] % BLOCK_TYPES[dtype].block:
            raise BadCheckpoint(
                name,
                f"tensor {tname!r}: rows of {dims[0]} are not whole {dtype} blocks "
                f"of {BLOCK_TYPES[dtype].block}",
            )
        if offset % alignment:
            raise BadCheckpoint(name, f"tensor {tname!r} data is not {alignment}-byte aligned")
        nbytes = storage_bytes(dtype, math.prod(dims))
        start = data_start + offset
        if start + nbytes > size:
            raise BadCheckpoint(
                name,
                f"tensor {tname!r} ends at byte {start + nbytes}, past end of file ({size} bytes)",
            )
        tensors.append(GGUFTensor(tname, dims, qtype, start, nbytes))
    return GGUFHeader(version, metadata, tensors, alignment, data_start)


# ------------------------------------------------------------------ names and row order

# GGUF name -> Hugging Face name, outside the repeated blocks
_TOP = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
# inside block N (model.layers.N.*), for llama, mistral, qwen2 and gemma
_BLOCK = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK_BY_ARCH = {
    "phi3": {**_BLOCK, "attn_qkv": "self_attn.qkv_proj", "ffn_up": "mlp.gate_up_proj"},
}
NAMED_ARCHITECTURES = ("llama", "mistral", "qwen2", "gemma", "phi3")
# llama.cpp permutes q/k rows for these (the others use NeoX-style rotary embeddings)
PERMUTED = ("llama", "mistral")
_BLOCK_NAME = re.compile(r"^blk\.(\d+)\.([a-z_0-9]+)\.(weight|bias)$")
_TOP_NAME = re.compile(r"^([a-z_0-9]+)\.(weight|bias)$")


def hf_name(name: str, arch: str) -> str:
    """A GGUF tensor's Hugging Face name for ``arch`` (itself when unknown)."""
    if arch not in NAMED_ARCHITECTURES:
        return name
    if m := _BLOCK_NAME.match(name):
        part = _BLOCK_BY_ARCH.get(arch, _BLOCK).get(m.group(2))
        return f"model.layers.{m.group(1)}.{part}.{m.group(3)}" if part else name
    if (m := _TOP_NAME.match(name)) and m.group(1) in _TOP:
        return f"{_TOP[m.group(1)]}.{m.group(2)}"
    return name


def gguf_name(name: str, arch: str) -> str | None:
    """A Hugging Face tensor name's GGUF name for ``arch`` (None when there is none):
    the inverse of ``hf_name``, as llama.cpp's converter names tensors."""
    block = _BLOCK_BY_ARCH.get(arch, _BLOCK)
    if arch not in NAMED_ARCHITECTURES:
        return None
    m = re.match(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$", name)
    if m:
        key = next((k for k, v in block.items() if v == m.group(2)), None)
        return f"blk.{m.group(1)}.{key}.{m.group(3)}" if key else None
    m = re.match(r"^(.+)\.(weight|bias)$", name)
    if m:
        key = next((k for k, v in _TOP.items() if v == m.group(1)), None)
        return f"{key}.{m.group(2)}" if key else None
    return None


def _row_map(t: GGUFTensor, arch: str, metadata: Mapping[str, Any]) -> Callable[[int], int]:
    """Hugging Face row -> GGUF row (the identity unless llama.cpp permuted the rows)."""
    m = _BLOCK_NAME.match(t.name)
    if arch not in PERMUTED or m is None or m.group(2) not in ("attn_q", "attn_k"):
        return lambda r: r
    heads = metadata.get(f"{arch}.attention.head_count")
    if m.group(2) == "attn_k":
        heads = metadata.get(f"{arch}.attention.head_count_kv", heads)
    n_rows = t.shape[0]
    if not isinstance(heads, int) or heads <= 0 or n_rows % (2 * heads):
        return lambda r: r
    head = n_rows // heads
    half = head // 2

    def to_gguf(r: int) -> int:  # rows (h, j, i) in HF are (h, i, j) in GGUF
        h, rem = divmod(r, head)
        j, i = divmod(rem, half)
        return h * head + 2 * i + j

    return to_gguf


# ------------------------------------------------------------------ the checkpoint


def split_files(path: Path) -> list[Path]:
    """A split GGUF's files in order (``NAME-00001-of-0000N.gguf``), or just ``path``."""
    m = SPLIT_NAME.match(path.name)
    if m is None:
        return [path]
    count = int(m.group("count"))
    files = [
        path.with_name(f"{m.group('stem')}-{k:05d}-of-{count:05d}.gguf")
        for k in range(1, count + 1)
    ]
    missing = [f.name for f in files if not f.is_file()]
    if missing:
        raise BadCheckpoint(path, f"split GGUF is missing {', '.join(missing[:3])}")
    return files


def _declared(metadata: Mapping[str, Any]) -> dict[str, str]:
    keep = ("general.base_model.", "general.source.", "general.name", "general.architecture")
    return {
        k: str(v)
        for k, v in metadata.items()
        if k.startswith(keep) and isinstance(v, str | int | float)
    }


class GGUFCheckpoint(SourcedCheckpoint):
    """One GGUF model: a file, or the files of a split GGUF, each with its own header."""

    def __init__(
        self,
        location: Path,
        sources: dict[str, ByteSource],
        *,
        read_budget: ReadBudget | Mapping[str, ReadBudget] | None = None,
        files: list[Path] | None = None,
    ) -> None:
        """``sources`` maps each file name (a split GGUF's in part order) to its bytes;
        ``read_budget`` bounds the range requests of each batched row read, as for
        ``SafetensorsCheckpoint``; ``files`` are their paths (by default beside
        ``location``, the first file)."""
        self._use_sources(sources, read_budget)
        tensors: list[TensorInfo] = []
        self._gguf: dict[str, tuple[GGUFTensor, Callable[[int], int]]] = {}
        metadata: dict[str, Any] = {}
        headers = {}
        for file, source in sources.items():
            headers[file] = parse_gguf(source)
            metadata.update(headers[file].metadata)
        arch = str(metadata.get("general.architecture", ""))
        for file, header in headers.items():
            for t in header.tensors:
                name = hf_name(t.name, arch)
                if name in self._gguf:
                    raise BadCheckpoint(sources[file].name, f"tensor {name!r} appears twice")
                self._gguf[name] = (t, _row_map(t, arch, metadata))
                tensors.append(
                    TensorInfo(name, t.dtype, t.shape, file, t.start, t.start + t.nbytes)
                )
        tensors.sort(key=lambda t: t.name)
        self.metadata = metadata
        super().__init__(
            location=location,
            format="gguf",
            files=files if files is not None else [location.with_name(f) for f in sources],
            tensors=tensors,
            config=None,
            header_metadata=_declared(metadata),
        )

    def _read_rows_many(self, plan: dict[str, RowSample]) -> dict[str, np.ndarray]:
        per_file: dict[str, list[tuple[str, int, int]]] = {}
        windows: dict[str, tuple[int, int, int]] = {}  # name -> (lo, hi, first value read)
        whole = {}  # 1-D block-typed tensors: blocks span rows, so read them whole
        for name, sample in plan.items():
            info = self.info(name)
            t, to_gguf = self._gguf[name]
            if len(info.shape) == 1 and t.dtype in BLOCK_TYPES:
                values = self.read_whole(name)
                whole[name] = values[np.asarray(sample.rows, dtype=np.int64)].reshape(-1, 1)
                continue
            width = math.prod(info.row_shape)
            lo, hi = sample.cols if sample.cols is not None else (0, width)
            block = BLOCK_TYPES[t.dtype].block if t.dtype in BLOCK_TYPES else 1
            first, last = lo // block * block, -(-hi // block) * block
            row_bytes = storage_bytes(t.dtype, width)
            skip = storage_bytes(t.dtype, first)
            n = storage_bytes(t.dtype, last - first) if hi > lo else 0
            windows[name] = (lo, hi, first)
            for r in sample.rows:
                offset = t.start + to_gguf(r) * row_bytes + skip
                per_file.setdefault(info.file, []).append((name, offset, n))
        raw = self._gather(per_file)
        out: dict[str, np.ndarray] = {}
        for name, values in whole.items():
            out[name] = values.reshape(-1) if plan[name].cols is None else values
        for name, (lo, hi, first) in windows.items():
            t, _ = self._gguf[name]
            n_rows = len(plan[name].rows)
            if hi <= lo or not n_rows:
                out[name] = np.zeros((n_rows, max(hi - lo, 0)), np.float32)
                continue
            values = _decode(b"".join(raw[name]), t).reshape(n_rows, -1)
            values = values[:, lo - first : hi - first]
            info = self.info(name)
            shape = info.row_shape if plan[name].cols is None else (hi - lo,)
            out[name] = np.ascontiguousarray(values).reshape((n_rows, *shape))
        return out

    def read_whole(self, name: str) -> np.ndarray:
        """A tensor's stored values, all of them, flat, in GGUF row order."""
        t, _ = self._gguf[name]
        return _decode(self._sources[self.info(name).file].read(t.start, t.nbytes), t)


def _decode(data: bytes, t: GGUFTensor) -> np.ndarray:
    """Stored bytes of a tensor (whole blocks for block types) as flat float32."""
    if t.dtype not in BLOCK_TYPES:
        return to_float32(data, t.dtype)
    blocks = np.frombuffer(data, dtype=np.uint8).reshape(-1, BLOCK_TYPES[t.dtype].type_size)
    with np.errstate(all="ignore"):  # hostile scales decode to inf/nan, quietly
        return dequantize(blocks, t.type).astype(np.float32).reshape(-1)
