"""Weight fingerprints: a deterministic sample of every tensor plus its statistics.

One place decides which entries are sampled. Positions depend only on a tensor's name,
its row shape and its row count, so every model of an architecture samples the same
entries, and two models whose first axis differs (a resized vocabulary) share nearly
all sampled rows: rows are the first accepted values of a fixed pseudo-random stream,
so growing the axis only adds candidates, it never reshuffles the old ones.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from heritage.formats.checkpoint import Checkpoint, RowSample, TensorInfo
from heritage.formats.dtypes import DTYPES

# 32 rows x 128 columns = 4,096 float32 values (16 KB) per matrix: a 7B Llama (226 matrices)
# fits in 3.7 MB.
DEFAULT_ROWS = 32
DEFAULT_COLS = 128
_UNIVERSE_BITS = 20  # row stream covers [0, 2**20): vocabularies up to a million rows
_CHUNK = 1 << 16


@dataclass(frozen=True)
class FingerprintSettings:
    rows: int = DEFAULT_ROWS
    cols: int = DEFAULT_COLS

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise ValueError("fingerprint rows and cols must be positive")


@dataclass
class TensorPrint:
    """The sampled entries of one tensor, and statistics over them."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    rows: np.ndarray  # int64 row indices, sorted
    cols: tuple[int, int]  # window over the flattened row
    values: np.ndarray  # float32, (len(rows), cols[1] - cols[0])
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    @property
    def is_float(self) -> bool:
        return DTYPES[self.dtype].is_float


@dataclass
class Fingerprint:
    """What lineage needs of a model, small enough to keep in the index."""

    tensors: dict[str, TensorPrint]
    settings: FingerprintSettings = field(default_factory=FingerprintSettings)

    @property
    def nbytes(self) -> int:
        return sum(t.values.nbytes + t.rows.nbytes for t in self.tensors.values())

    @property
    def dtypes(self) -> list[str]:
        return sorted({t.dtype for t in self.tensors.values()})


def _seed(name: str, row_shape: tuple[int, ...]) -> int:
    key = f"{name}|{','.join(map(str, row_shape))}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def _permute(j: np.ndarray, seed: int, bits: int) -> np.ndarray:
    """A seeded bijection on [0, 2**bits): xorshift and odd multiplies, all invertible."""
    mask = np.uint64((1 << bits) - 1)
    half = np.uint64(bits // 2 or 1)
    x = (j.astype(np.uint64) ^ np.uint64(seed & int(mask))) & mask
    for k in range(3):
        mult = np.uint64(((seed >> (16 * k)) & 0xFFFF) * 2 + 0x9E37_79B1 | 1)
        x = (x * mult) & mask
        x ^= x >> half
    return x


# Tensors with at most this many times the sampled rows are cheap enough to read whole.
SMALL_TENSOR_FACTOR = 4


@lru_cache(maxsize=65536)
def _rows_cached(name: str, row_shape: tuple[int, ...], n_rows: int, k: int) -> tuple[int, ...]:
    if n_rows <= k * SMALL_TENSOR_FACTOR:
        return tuple(range(n_rows))
    bits = max(_UNIVERSE_BITS, (n_rows - 1).bit_length())
    seed = _seed(name, row_shape)
    picked: list[int] = []
    start = 0
    while len(picked) < k:
        stream = _permute(np.arange(start, start + _CHUNK, dtype=np.uint64), seed, bits)
        accepted = stream[stream < n_rows]
        picked.extend(int(v) for v in accepted[: k - len(picked)])
        start += _CHUNK
    return tuple(sorted(picked))


def sample_plan(t: TensorInfo, settings: FingerprintSettings) -> RowSample:
    """Which rows and which column window of a tensor the fingerprint reads."""
    shape = t.shape if t.shape else (1,)
    if len(shape) == 1:
        # a vector is one row; sample a window of its entries
        width = shape[0]
        rows: Iterable[int] = [0] if width else []
    else:
        width = math.prod(shape[1:])
        rows = _rows_cached(t.name, tuple(shape[1:]), shape[0], settings.rows)
    span = min(width, settings.cols)
    offset = _seed(t.name + "#cols", tuple(shape[1:])) % (width - span + 1) if width else 0
    return RowSample(list(rows), (offset, offset + span))


def fingerprint_nbytes(
    tensors: Iterable[TensorInfo], settings: FingerprintSettings | None = None
) -> int:
    """Bytes of sampled values a fingerprint of these tensors holds, known from the listing."""
    settings = settings or FingerprintSettings()
    total = 0
    for t in tensors:
        p = sample_plan(t, settings)
        total += (
            len(p.rows) * (p.cols[1] - p.cols[0]) * 4
            if len(t.shape) > 1
            else (p.cols[1] - p.cols[0]) * 4
        )
    return total


def tensor_stats(values: np.ndarray) -> dict[str, float]:
    """Mean, spread, shape and norm of a sample: cheap evidence kept beside the vectors."""
    v = values.astype(np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": 0.0, "std": 0.0, "kurtosis": 0.0, "rms": 0.0, "absmax": 0.0, "unique": 0.0}
    mean = float(v.mean())
    centred = v - mean
    var = float(np.mean(centred**2))
    kurt = float(np.mean(centred**4) / var**2 - 3.0) if var > 0 else 0.0
    return {
        "mean": mean,
        "std": math.sqrt(var),
        "kurtosis": kurt,
        "rms": float(np.sqrt(np.mean(v**2))),
        "absmax": float(np.abs(v).max()),
        "unique": float(np.unique(v).size / v.size),
    }


def fingerprint(ckpt: Checkpoint, settings: FingerprintSettings | None = None) -> Fingerprint:
    """Read the sampled entries of every tensor (one batched, coalesced read) and summarise."""
    settings = settings or FingerprintSettings()
    plans = {t.name: sample_plan(t, settings) for t in ckpt.tensors}
    shaped = {}
    for t in ckpt.tensors:
        p = plans[t.name]
        if len(t.shape) <= 1:
            # vectors: read their window as "rows" of a 1-D tensor, i.e. element indices
            shaped[t.name] = RowSample(list(range(*p.cols)) if t.shape else [0])
        else:
            shaped[t.name] = p
    data = ckpt.read_rows_many(shaped)
    tensors: dict[str, TensorPrint] = {}
    for t in ckpt.tensors:
        values = data[t.name]
        p = plans[t.name]
        values = values.reshape(1, -1) if len(t.shape) <= 1 else values
        tensors[t.name] = TensorPrint(
            name=t.name,
            dtype=t.dtype,
            shape=t.shape,
            rows=np.asarray(p.rows, dtype=np.int64),
            cols=p.cols,
            values=np.ascontiguousarray(values, dtype=np.float32),
            stats=tensor_stats(values),
        )
    return Fingerprint(tensors, settings)
