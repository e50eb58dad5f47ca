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
from heritage.lineage.evidence import rounding_step

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
    # a block (a numbered layer) where matrices changed while some of its matrices, or
    # all of its norms and biases, were left exactly as they were
    partial_block: bool = False

    @property
    def adapter(self) -> bool:
        """A merged adapter: its change is low-rank, or it changed some of a block's
        matrices and left the others untouched (a LoRA of a rank above the sampled rows
        is full-rank there, but still changes only the modules it targets)."""
        return self.low_rank or self.partial_block


def _rank(d: np.ndarray) -> int:
    s2 = np.linalg.svd(d, compute_uv=False) ** 2
    total = float(s2.sum())
    if total == 0:
        return 0
    left = total - np.cumsum(s2)
    return int(np.argmax(left <= _ENERGY_LEFT * total) + 1)


def _block(name: str) -> str | None:
    """The numbered layer a tensor belongs to (``model.layers.3.``), if any."""
    parts = name.split(".")
    for k, part in enumerate(parts[:-1]):
        if part.isdigit():
            return ".".join(parts[: k + 1])
    return None


def step_rank(a: Fingerprint, b: Fingerprint) -> StepRank:
    """How low the rank of ``b - a`` is, matrix by matrix (ranks stop at the first
    full-rank one), and whether it changed only some of a block's matrices.

    Fine-tunes leave whole tensors untouched too, but outside the blocks: a head the
    loss never reaches, a pooler, embedding rows of tokens the data lacks (real-dev's
    fine-tunes do); inside a block, training moves every matrix and the norms.
    """
    rank = changed = matrices = 0
    low = True
    # block -> (is a matrix, changed) of its tensors
    moved: dict[str, set[tuple[bool, bool]]] = {}
    for name in sorted(a.tensors):
        ta, tb = a.tensors[name], b.tensors.get(name)
        if tb is None or ta.values.shape != tb.values.shape:
            continue
        if not (ta.is_float and tb.is_float) or not np.array_equal(ta.rows, tb.rows):
            continue
        d = tb.values.astype(np.float64) - ta.values.astype(np.float64)
        if not np.isfinite(d).all():
            continue
        step = rounding_step(ta.dtype, tb.dtype) * np.abs(ta.values.astype(np.float64))
        differs = bool((np.abs(d) > step).any())
        block = _block(name)
        if block is not None:
            moved.setdefault(block, set()).add((len(ta.shape) >= 2, differs))
        if len(ta.shape) < 2 or min(ta.values.shape) < _MIN_SIDE:
            continue
        matrices += 1
        if not differs:
            continue
        changed += 1
        if low:
            r = _rank(d)
            rank = max(rank, r)
            low = 2 * r <= min(d.shape)
    partial = any(_partial(v) for v in moved.values())
    return StepRank(low and changed > 0, rank, changed, matrices, partial)


def _partial(block: set[tuple[bool, bool]]) -> bool:
    """A block whose matrices moved while some of its matrices, or all of its vectors
    (norms, biases), stayed as they were. Training moves every matrix and the norms; a
    single bias can stay (an attention key bias gets no gradient), all of them cannot."""
    if (True, True) not in block:
        return False
    return (True, False) in block or ((False, False) in block and (False, True) not in block)
