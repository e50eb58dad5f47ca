"""How precisely a model's weights are stored, read from the values themselves.

A re-save in bf16/fp16 or an int8-style quantized copy carries less information than
its source, so the lower-precision model of a near-identical pair is the copy.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

from heritage.fingerprint import Fingerprint
from heritage.formats.dtypes import BLOCK_TYPES, PACKED_TYPES

_DTYPE_BITS = {"F64": 64, "F32": 32, "F16": 16, "BF16": 16}


def _fits(values: np.ndarray, kind: type) -> bool:
    v = values.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.array_equal(v.astype(kind).astype(np.float32), v, equal_nan=True))


def int8_grid_fraction(values: np.ndarray, tol: float = 0.15, max_rows: int = 4) -> float:
    """Share of sampled rows whose values sit on a grid of at most 255 levels.

    Per-row absmax int8 quantization stores q * s with |q| <= 127; dequantized and saved
    as float16 the multiples drift by at most 127 * 2**-11, inside ``tol``.
    """
    if values.ndim != 2 or values.shape[1] < 16:
        return 0.0
    # a grid of at most 255 levels repeats values in any long row; trained floats do not
    head = np.abs(values[0])
    if np.unique(head).size == head.size and head.size > 64:
        return 0.0
    hits = 0
    rows = values[:max_rows].astype(np.float64)
    for row in rows:
        levels = np.unique(np.abs(row[row != 0]))
        if levels.size < 2:
            continue
        # small levels carry the least storage rounding: estimate the step there, then
        # refine it by least squares over the whole row
        small = levels[levels <= 16 * levels[0]]
        gaps = np.diff(np.concatenate([[0.0], small]))
        step = float(np.min(gaps))
        if step <= 0:
            continue
        m = np.round(gaps / step)
        step = float(gaps @ m / (m @ m))
        for _ in range(2):
            q = np.round(row / step)
            if not q.any() or np.abs(q).max() > 130:
                break
            step = float(row @ q / (q @ q))
        else:
            q = np.round(row / step)
            if np.abs(q).max() <= 130 and np.abs(row / step - q).max() <= tol:
                hits += 1
    return hits / rows.shape[0]


def precision_bits(fp: Fingerprint) -> int:
    """Effective bits per weight: stored dtype, lowered when values sit on a coarser grid;
    for a model with block-quantized matrices, the bits per weight of those blocks
    (Q8_0 8, Q5_1 6, Q4_0 and Q4_K 4, ...); for packed layers (GPTQ, AWQ, bitsandbytes),
    their bits (GPTQ_INT4 4, BNB_INT8 8, ...)."""
    mats = [t for t in fp.tensors.values() if len(t.shape) >= 2 and t.is_float and t.values.size]
    if not mats:
        return 32
    blocks = [BLOCK_TYPES[t.dtype] for t in mats if t.dtype in BLOCK_TYPES]
    if blocks:  # a GGUF export: its quantized matrices say (llama.cpp keeps a few in F16)
        return max(b.type_size * 8 // b.block for b in blocks)
    packed = [PACKED_TYPES[t.dtype] for t in mats if t.dtype in PACKED_TYPES]
    if packed:  # GPTQ, AWQ or bitsandbytes: the packed layers say (embeddings stay float)
        return max(packed)
    stored = max(_DTYPE_BITS.get(t.dtype, 8) for t in mats)
    values = np.concatenate([t.values.ravel() for t in mats])
    bits = stored
    if bits > 16 and (_fits(values, np.float16) or _fits(values, ml_dtypes.bfloat16)):
        bits = 16
    grid = float(np.median([int8_grid_fraction(t.values) for t in mats[:5]]))
    if grid >= 0.9:
        bits = 8
    return bits
