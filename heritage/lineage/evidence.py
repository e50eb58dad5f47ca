"""Alignment: turn fingerprints of one architecture into comparable vectors.

Tensors are matched by name and row shape; tensors whose first axis differs (a resized
vocabulary) are compared on the sampled rows they share. Only trained matrices count as
evidence of kinship: integer buffers, vectors (norm weights near 1, biases) and anything
identical in every model of the group carry no information about who descends from whom.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from heritage.fingerprint import Fingerprint, TensorPrint


def architecture_key(fp: Fingerprint) -> str:
    """Models with equal keys can be compared: same tensor names and row shapes."""
    return architecture_key_of((name, t.shape) for name, t in fp.tensors.items())


ARCHITECTURE_KEY_CHARS = 16  # hex digits of the hash kept


def architecture_key_of(shapes: Iterable[tuple[str, Sequence[int]]]) -> str:
    """``architecture_key`` from a fingerprint's (tensor name, shape) pairs alone: the
    sha256 of one line "name, tab, row shape (comma-separated), tab, number of axes"
    per tensor, by name (``index.prints`` computes the same inside DuckDB)."""
    h = hashlib.sha256()
    for name, shape in sorted(shapes):
        row_shape = ",".join(map(str, tuple(shape)[1:]))
        h.update(f"{name}\t{row_shape}\t{len(shape)}\n".encode())
    return h.hexdigest()[:ARCHITECTURE_KEY_CHARS]


@dataclass
class Evidence:
    """Per-model vectors over the aligned evidence entries of one architecture group.

    ``raw`` holds the sampled values (float32, as sampled) in original units; ``unit`` the same
    entries centred and scaled per tensor so every tensor weighs the same and a model's
    vector has norm about one.
    """

    tensors: list[str]
    slices: list[slice]  # where each tensor's entries sit in the vectors
    raw: np.ndarray  # (n_models, n_entries)
    unit: np.ndarray  # (n_models, n_entries)
    scales: np.ndarray  # per-tensor scale used for ``unit``

    @property
    def n_entries(self) -> int:
        return self.raw.shape[1]


def _shared_rows(prints: Sequence[TensorPrint]) -> np.ndarray:
    common = prints[0].rows
    for p in prints[1:]:
        common = np.intersect1d(common, p.rows, assume_unique=True)
    return common


def _take_rows(p: TensorPrint, rows: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(p.rows, rows)
    return p.values[idx]


@dataclass(frozen=True)
class EvidenceLayout:
    """Which entries of an architecture group's fingerprints are evidence, and their
    scales: fixed for the whole group, so vectors built for any subset of its models
    (one family at a time) equal the rows the whole group's vectors would have."""

    tensors: tuple[str, ...]
    rows: tuple[np.ndarray, ...]  # the shared sampled rows of each tensor
    slices: tuple[slice, ...]  # where each tensor's entries sit in the vectors
    scales: np.ndarray  # per-tensor scale used for ``unit``

    @property
    def n_entries(self) -> int:
        return self.slices[-1].stop if self.slices else 0


def evidence_layout(fps: Sequence[Fingerprint], min_shared: float = 0.5) -> EvidenceLayout:
    """The evidence entries and per-tensor scales of a group, one tensor of one model
    at a time (memory linear in the number of models, not in models x entries)."""
    tensors: list[str] = []
    rows_used: list[np.ndarray] = []
    scales: list[float] = []
    for name in sorted(fps[0].tensors):
        prints = [fp.tensors[name] for fp in fps]
        first = prints[0]
        if len(first.shape) < 2 or not all(p.is_float for p in prints):
            continue
        rows = _shared_rows(prints)
        if rows.size == 0 or rows.size < min_shared * min(len(p.rows) for p in prints):
            continue
        ref = _block_row(first, rows)
        # what storing ``ref`` in a model's dtype may change it by, plus a floor for
        # values near zero
        room = np.abs(ref) + 1e-6 * float(np.abs(ref).max(initial=0.0))
        stds = np.empty(len(prints))
        varies = len(prints) == 1
        for start, block in _blocks(prints, rows):
            if not varies:
                part = prints[start:][: len(block)]
                step = np.array([rounding_step(p.dtype, first.dtype) for p in part])
                varies = bool((np.abs(block - ref) > step[:, None] * room[None, :]).any())
            stds[start : start + len(block)] = (block - block.mean(axis=1, keepdims=True)).std(
                axis=1
            )
        if not varies:
            # identical everywhere, up to the rounding of lower-precision copies (a fixed
            # buffer such as an STFT basis, or an untrained layer): no evidence of kinship
            continue
        scale = float(np.median(stds))
        tensors.append(name)
        rows_used.append(rows)
        scales.append(scale if scale > 0 else 1.0)
    slices, start = [], 0
    for name, rows in zip(tensors, rows_used, strict=True):
        width = rows.size * int(np.prod(fps[0].tensors[name].values.shape[1:]))
        slices.append(slice(start, start + width))
        start += width
    return EvidenceLayout(tuple(tensors), tuple(rows_used), tuple(slices), np.asarray(scales))


# mantissa bits of each float storage type (the rest: as float32)
_MANTISSA = {"F64": 52, "F32": 23, "F16": 10, "BF16": 7, "F8_E4M3": 3, "F8_E4M3FNUZ": 3}
_MANTISSA |= {"F8_E5M2": 2, "F8_E5M2FNUZ": 2}


def _half_ulp(dtype: str) -> float:
    """The largest relative change rounding a value to ``dtype`` can make."""
    return 2.0 ** -(_MANTISSA.get(dtype, 23) + 1)


def rounding_step(dtype_a: str, dtype_b: str) -> float:
    """The largest relative difference between two stored copies of one value, in
    ``dtype_a`` and ``dtype_b`` (each rounded to its own precision)."""
    return _half_ulp(dtype_a) + _half_ulp(dtype_b)


def _block_row(p: TensorPrint, rows: np.ndarray) -> np.ndarray:
    v = _take_rows(p, rows).ravel().astype(np.float64)
    if not np.isfinite(v).all():
        v = np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0)
    return v


def _blocks(
    prints: Sequence[TensorPrint], rows: np.ndarray, size: int = 2048
) -> Iterator[tuple[int, np.ndarray]]:
    """The prints' values on ``rows``, flattened, float64, in blocks of ``size`` models."""
    for start in range(0, len(prints), size):
        part = prints[start : start + size]
        if all(len(p.rows) == rows.size for p in part):  # they hold exactly ``rows``
            block = np.stack([p.values for p in part]).reshape(len(part), -1)
            block = block.astype(np.float64)
            if not np.isfinite(block).all():
                block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
        else:
            block = np.stack([_block_row(p, rows) for p in part])
        yield start, block


def evidence_vectors(
    fps: Sequence[Fingerprint],
    layout: EvidenceLayout,
    dtype: type = np.float64,
    raw: bool = True,
) -> Evidence:
    """Evidence vectors of ``fps`` (any models of the group ``layout`` was made for);
    with ``raw=False`` only ``unit`` is filled (``raw`` is then empty)."""
    n, width = len(fps), layout.n_entries
    raw_out = np.empty((n, width) if raw else (n, 0), np.float32)  # lossless: prints are float32
    unit = np.empty((n, width), dtype)
    count = len(layout.tensors)
    for name, rows, sl, scale in zip(
        layout.tensors, layout.rows, layout.slices, layout.scales, strict=True
    ):
        norm = scale * np.sqrt((sl.stop - sl.start) * count)
        for start, block in _blocks([fp.tensors[name] for fp in fps], rows):
            stop = start + len(block)
            if raw:
                raw_out[start:stop, sl] = block
            unit[start:stop, sl] = (block - block.mean(axis=1, keepdims=True)) / norm
    return Evidence(list(layout.tensors), list(layout.slices), raw_out, unit, layout.scales)


def build_evidence(fps: Sequence[Fingerprint], min_shared: float = 0.5) -> Evidence:
    """Align the fingerprints of one architecture group into evidence vectors."""
    return evidence_vectors(fps, evidence_layout(fps, min_shared))
