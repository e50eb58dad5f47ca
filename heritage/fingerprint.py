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
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from heritage.formats.checkpoint import Checkpoint, RowSample, SampleLike, TensorInfo
from heritage.formats.dtypes import is_float_dtype

# 32 rows x 128 columns = 4,096 float32 values (16 KB) per matrix. Past 800,000 sampled values
# (large models: many matrices) every matrix gets fewer rows, so any model's sample is at
# most 3.1 MB as float32 and 1.5 MB read from bf16 weights: a 7B Llama samples 27 rows per
# matrix, a 70B one 10.
DEFAULT_ROWS = 32
DEFAULT_COLS = 128
DEFAULT_MAX_ENTRIES = 800_000
MIN_ROWS = 8
_UNIVERSE_BITS = 20  # row stream covers [0, 2**20): vocabularies up to a million rows
_CHUNK = 1 << 16


@dataclass(frozen=True)
class FingerprintSettings:
    rows: int = DEFAULT_ROWS
    cols: int = DEFAULT_COLS
    max_entries: int = DEFAULT_MAX_ENTRIES  # sampled values per model, at most (>= MIN_ROWS)

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1 or self.max_entries < 1:
            raise ValueError("fingerprint rows, cols and max_entries must be positive")

    def for_tensors(self, tensors: Iterable[TensorInfo]) -> FingerprintSettings:
        """These settings with as many rows per matrix as fit ``max_entries`` for this listing.

        Depends only on the listing, so every model of an architecture gets the same rows;
        fewer rows are a prefix of the same row stream, so they stay comparable with prints
        taken with more.
        """
        tensors = list(tensors)

        def fits(rows: int) -> bool:
            trial = replace(self, rows=rows)
            return sum(_plan_entries(t, trial) for t in tensors) <= self.max_entries

        if self.rows <= MIN_ROWS or fits(self.rows):
            return self
        lo, hi = MIN_ROWS, self.rows - 1  # the most rows that fit, by bisection
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        return replace(self, rows=lo)


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
        return is_float_dtype(self.dtype)


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


def aligned_plan(t: TensorInfo, settings: FingerprintSettings, like: SampleLike) -> RowSample:
    """Where to sample ``t`` so it lines up with another tensor's sample (``like``): a
    PEFT adapter's tensors on the base weights they change (heritage.formats.peft)."""
    other = sample_plan(TensorInfo(like.name, t.dtype, like.shape, t.file), settings)
    if like.part == "rows":  # every column of the other's rows
        return RowSample(other.rows, (0, math.prod(t.row_shape)))
    if like.part == "cols":  # every row, the other's column window
        return RowSample(range(t.n_rows), other.cols)
    return other


def _plan_entries(t: TensorInfo, settings: FingerprintSettings) -> int:
    """How many values ``sample_plan`` takes from a tensor, without drawing its rows."""
    shape = t.shape if t.shape else (1,)
    if len(shape) == 1:
        return min(shape[0], settings.cols)
    n_rows = shape[0] if shape[0] <= settings.rows * SMALL_TENSOR_FACTOR else settings.rows
    return n_rows * min(math.prod(shape[1:]), settings.cols)


def fingerprint_nbytes(
    tensors: Iterable[TensorInfo], settings: FingerprintSettings | None = None
) -> int:
    """Bytes of sampled values a fingerprint of these tensors holds, known from the listing."""
    tensors = list(tensors)
    settings = (settings or FingerprintSettings()).for_tensors(tensors)
    return sum(_plan_entries(t, settings) for t in tensors) * 4


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
    settings = (settings or FingerprintSettings()).for_tensors(ckpt.tensors)
    plans = {
        t.name: sample_plan(t, settings)
        if t.name not in ckpt.sample_like
        else aligned_plan(t, settings, ckpt.sample_like[t.name])
        for t in ckpt.tensors
    }
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
