"""Alignment: turn fingerprints of one architecture into comparable vectors.

Tensors are matched by name and row shape; tensors whose first axis differs (a resized
vocabulary) are compared on the sampled rows they share. Only trained matrices count as
evidence of kinship: integer buffers, vectors (norm weights near 1, biases) and anything
identical in every model of the group carry no information about who descends from whom.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from heritage.fingerprint import Fingerprint, TensorPrint


def architecture_key(fp: Fingerprint) -> str:
    """Models with equal keys can be compared: same tensor names and row shapes."""
    h = hashlib.sha256()
    for name in sorted(fp.tensors):
        t = fp.tensors[name]
        h.update(f"{name}\t{','.join(map(str, t.row_shape))}\t{len(t.shape)}\n".encode())
    return h.hexdigest()[:16]


@dataclass
class Evidence:
    """Per-model vectors over the aligned evidence entries of one architecture group.

    ``raw`` holds the sampled values (float64) in original units; ``unit`` the same
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


def build_evidence(fps: Sequence[Fingerprint], min_shared: float = 0.5) -> Evidence:
    """Align the fingerprints of one architecture group into evidence vectors."""
    names = sorted(fps[0].tensors)
    blocks_raw: list[np.ndarray] = []
    used: list[str] = []
    for name in names:
        prints = [fp.tensors[name] for fp in fps]
        first = prints[0]
        if len(first.shape) < 2 or not all(p.is_float for p in prints):
            continue
        rows = _shared_rows(prints)
        if rows.size == 0 or rows.size < min_shared * min(len(p.rows) for p in prints):
            continue
        block = np.stack([_take_rows(p, rows).ravel() for p in prints]).astype(np.float64)
        if not np.isfinite(block).all():
            block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
        if len(fps) > 1 and np.all(block == block[0]):
            continue  # identical everywhere (a buffer, or an untrained copy): no evidence
        blocks_raw.append(block)
        used.append(name)
    if not blocks_raw:
        empty = np.zeros((len(fps), 0))
        return Evidence([], [], empty, empty, np.zeros(0))
    slices, start = [], 0
    for b in blocks_raw:
        slices.append(slice(start, start + b.shape[1]))
        start += b.shape[1]
    raw = np.concatenate(blocks_raw, axis=1)
    unit = np.empty_like(raw)
    scales = np.empty(len(blocks_raw))
    for i, (b, sl) in enumerate(zip(blocks_raw, slices, strict=True)):
        centred = b - b.mean(axis=1, keepdims=True)
        scale = float(np.median(centred.std(axis=1)))
        scales[i] = scale if scale > 0 else 1.0
        unit[:, sl] = centred / (scales[i] * np.sqrt(b.shape[1] * len(blocks_raw)))
    return Evidence(used, slices, raw, unit, scales)
