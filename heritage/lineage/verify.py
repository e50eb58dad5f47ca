"""Verified rounding: is a lower-precision model exactly its source, rounded?

A GGUF export or a half-precision copy stores its source's weights rounded by a
deterministic rule: Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1 round each block of 32 weights on a
grid set by the block's scale, F16 and BF16 round each weight. Rounding the candidate
source's sampled weights the same way (the ``gguf`` package's quantizers, which follow
llama.cpp's reference code) and comparing with the copy's values proves the relation
when every whole block sampled agrees.

When they differ, a block-quantized copy may still be an honest one (llama.cpp can
choose scales with an importance matrix), but no rounding of that type moves a weight by
more than one step of its block's grid, ``2 * absmax / (2^bits - 1)``: a block beyond
that makes the copy *unfaithful* to the nearest source, the case of weights changed
during quantization. Half-precision copies are never called unfaithful (other pipelines,
an int8 round trip say, store their rounding in F16 or BF16 too). Types whose blocks are
wider than a fingerprint's column window (the K types) or that round against a codebook
(the IQ types) cannot be checked.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
from gguf.constants import GGMLQuantizationType
from gguf.quants import dequantize, quantize

from heritage.fingerprint import Fingerprint, TensorPrint
from heritage.formats.dtypes import BLOCK_TYPES

__all__ = ["BLOCK_BITS", "REQUANTIZABLE", "Verdict", "checkable", "verdict"]

# block types whose rounding is deterministic, and the bits of their grid (llama.cpp)
BLOCK_BITS = {"Q4_0": 4, "Q4_1": 4, "Q5_0": 5, "Q5_1": 5, "Q8_0": 8}
REQUANTIZABLE = ("F16", "BF16", *BLOCK_BITS)
# tensors compared, at most (by name): thousands of exactly equal roundings already prove
# the relation, and a large model's every tensor would cost seconds
VERIFY_TENSORS = 16


class Verdict(StrEnum):
    VERIFIED = "verified"  # rounding the source reproduces the copy exactly
    UNFAITHFUL = "unfaithful"  # some block lies further from the source than rounding can
    UNKNOWN = "unknown"  # neither: nothing comparable, or rounded another way


def checkable(fp: Fingerprint) -> bool:
    """Whether any sampled tensor of ``fp`` is stored in a type ``verdict`` can redo."""
    return any(t.dtype in REQUANTIZABLE and t.values.size for t in fp.tensors.values())


def _round(values: np.ndarray, dtype: str) -> np.ndarray:
    with np.errstate(all="ignore"):
        if dtype == "F16":
            return values.astype(np.float16).astype(np.float32)
        qtype = GGMLQuantizationType[dtype]
        return dequantize(quantize(values, qtype), qtype).astype(np.float32).reshape(values.shape)


def _whole_blocks(t: TensorPrint) -> slice | None:
    """The columns of ``t``'s sampled window that cover whole blocks of its type."""
    block = BLOCK_TYPES[t.dtype].block if t.dtype in BLOCK_TYPES else 1
    lo, hi = t.cols
    first, last = -(-lo // block) * block, hi // block * block
    return slice(first - lo, last - lo) if last > first else None


def _beyond_a_step(copy: np.ndarray, source: np.ndarray, dtype: str) -> bool:
    """Whether some weight of a block moved more than one step of its block's grid."""
    block = BLOCK_TYPES[dtype].block
    c, s = copy.reshape(-1, block), source.reshape(-1, block)
    step = 2 * np.abs(s).max(axis=1, keepdims=True) / (2 ** BLOCK_BITS[dtype] - 1)
    with np.errstate(invalid="ignore"):
        return bool(np.any(np.abs(c - s) > step * (1 + 1e-6)))


def verdict(copy: Fingerprint, source: Fingerprint) -> Verdict:
    """Whether ``copy`` is ``source`` rounded the way ``copy`` is stored, over every whole
    block of every tensor both sampled alike (see the module's doc)."""
    compared, exact, tensors = 0, True, 0
    for name in sorted(copy.tensors):
        t, s = copy.tensors[name], source.tensors.get(name)
        if tensors == VERIFY_TENSORS:
            break
        if t.dtype not in REQUANTIZABLE or s is None or s.dtype == t.dtype:
            continue
        if s.values.shape != t.values.shape or s.cols != t.cols:
            continue
        if not np.array_equal(s.rows, t.rows):
            continue
        cols = _whole_blocks(t)
        if cols is None:
            continue
        mine, theirs = t.values[:, cols], s.values[:, cols]
        compared += mine.size
        tensors += 1
        if np.array_equal(_round(theirs, t.dtype), mine, equal_nan=True):
            continue
        exact = False
        if t.dtype in BLOCK_BITS and _beyond_a_step(mine, theirs, t.dtype):
            return Verdict.UNFAITHFUL
    return Verdict.VERIFIED if compared and exact else Verdict.UNKNOWN
