"""Adapters: a LoRA merged into the weights changes each target matrix by a low-rank B·A.

On the sampled rows the difference between parent and child is then a matrix of rank at
most r in every changed tensor, and tensors outside the target modules do not change at
all; a full fine-tune changes every trained matrix at full rank. The rank is a property
of the difference, so it says nothing about which end is the parent.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from heritage.fingerprint import Fingerprint

__all__ = ["StepRank", "step_rank"]

# share of the difference's energy allowed outside its leading singular directions:
# float32 rounding of a merged update leaves ~1e-7 of it; training leaves far more
_ENERGY_LEFT = 1e-6


# a sampled matrix narrower than this cannot tell a low-rank update from a full one (a
# 10-class head changes at rank 10 under any training), so it is not judged
_MIN_SIDE = 16


class StepRank(NamedTuple):
    """Rank of a parent -> child difference on the sampled rows."""

    low_rank: bool  # every changed matrix well below full rank
    rank: int  # the largest rank among changed matrices (0: nothing changed)
    changed: int  # matrices that changed
    matrices: int  # matrices compared


def _rank(d: np.ndarray) -> int:
    s2 = np.linalg.svd(d, compute_uv=False) ** 2
    total = float(s2.sum())
    if total == 0:
        return 0
    left = total - np.cumsum(s2)
    return int(np.argmax(left <= _ENERGY_LEFT * total) + 1)


def step_rank(a: Fingerprint, b: Fingerprint) -> StepRank:
    """How low the rank of ``b - a`` is, matrix by matrix (stops at the first full-rank one)."""
    rank = changed = matrices = 0
    for name in sorted(a.tensors):
        ta, tb = a.tensors[name], b.tensors.get(name)
        if tb is None or ta.values.ndim != 2 or ta.values.shape != tb.values.shape:
            continue
        if not (ta.is_float and tb.is_float) or min(ta.values.shape) < _MIN_SIDE:
            continue
        if not np.array_equal(ta.rows, tb.rows):
            continue
        matrices += 1
        d = tb.values.astype(np.float64) - ta.values.astype(np.float64)
        if not np.isfinite(d).all():
            continue
        if not d.any():
            continue
        changed += 1
        r = _rank(d)
        rank = max(rank, r)
        if 2 * r > min(d.shape):
            return StepRank(False, rank, changed, matrices)
    return StepRank(changed > 0, rank, changed, matrices)
