"""Test-side quantizers: float matrices packed as GPTQ, AWQ and bitsandbytes store them.

Written from the formats' definitions (AutoGPTQ's and AutoAWQ's packing, bitsandbytes'
quantize_4bit and LLM.int8), independently of ``heritage.formats.packed``, so the reader
is checked against a second implementation. Each quantizer returns the tensors a
checkpoint stores for one layer ``X`` (``X.qweight``, ...) and the dequantized weight
those tensors stand for, float32 [out, in].
"""

from __future__ import annotations

import json

import numpy as np

AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]
NF4 = [
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
]
# bitsandbytes' fp4 code, indexed by the nibble, divided by its largest magnitude
FP4 = [0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0]


def pack_stream(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack values along axis 0 as a little-endian bit stream of 32-bit words (value j in
    bits [j*bits, (j+1)*bits)), one stream per column; int32 [n * bits / 32, ...]."""
    v = np.asarray(values, dtype=np.uint64)
    n = v.shape[0]
    assert (n * bits) % 32 == 0
    words = np.zeros((n * bits // 32, *v.shape[1:]), dtype=np.uint64)
    for j in range(n):
        bit = j * bits
        w, shift = divmod(bit, 32)
        words[w] |= (v[j] << np.uint64(shift)) & np.uint64(0xFFFFFFFF)
        if shift + bits > 32:
            words[w + 1] |= v[j] >> np.uint64(32 - shift)
    return words.astype(np.uint32).view(np.int32)


def _minmax(x: np.ndarray, bits: int, sym: bool) -> tuple[np.ndarray, np.ndarray]:
    """Scale and integer zero point per row of ``x`` (GPTQ/AWQ min-max rule)."""
    maxq = 2**bits - 1
    xmin = np.minimum(x.min(axis=1), 0)
    xmax = np.maximum(x.max(axis=1), 0)
    if sym:
        xmax = np.maximum(np.abs(xmin), xmax)
        xmin = -xmax
    scale = (xmax - xmin) / maxq
    scale[scale == 0] = 1.0
    zero = np.full(x.shape[0], (maxq + 1) // 2) if sym else np.round(-xmin / scale)
    return scale, zero.astype(np.int64)


def gptq(
    w: np.ndarray,
    bits: int = 4,
    group_size: int = 64,
    *,
    sym: bool = False,
    act_order: bool = False,
    v2: bool = False,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``qweight``, ``qzeros``, ``scales`` (fp16) and ``g_idx`` of a GPTQ layer."""
    out, n_in = w.shape
    maxq = 2**bits - 1
    n_groups = -(-n_in // group_size)
    if act_order:  # groups over a permutation of the inputs, as desc_act makes them
        perm = np.random.default_rng(seed).permutation(n_in)
        g_idx = np.empty(n_in, np.int64)
        g_idx[perm] = np.arange(n_in) // group_size
    else:
        g_idx = np.arange(n_in) // group_size
    scales = np.zeros((n_groups, out), np.float16)
    zeros = np.zeros((n_groups, out), np.int64)
    for g in range(n_groups):
        s, z = _minmax(w[:, g_idx == g], bits, sym)
        scales[g] = s.astype(np.float16)
        zeros[g] = np.clip(z, 1, maxq)  # the classic format stores z - 1: keep it >= 0
    s32 = scales.astype(np.float32)[g_idx].T  # [out, in]
    z = zeros[g_idx].T
    q = np.clip(np.round(w / s32) + z, 0, maxq).astype(np.int64)
    deq = (q - z).astype(np.float32) * s32
    stored_zeros = zeros if v2 else zeros - 1
    tensors = {
        "qweight": pack_stream(q.T, bits),  # [in * bits / 32, out]
        "qzeros": pack_stream(stored_zeros.T, bits).T.copy(),  # [groups, out * bits / 32]
        "scales": scales,
        "g_idx": g_idx.astype(np.int32),
    }
    return tensors, deq


def awq(w: np.ndarray, group_size: int = 64) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``qweight``, ``qzeros`` and ``scales`` (fp16) of an AWQ GEMM layer (4 bits)."""
    out, n_in = w.shape
    n_groups = n_in // group_size
    scales = np.zeros((n_groups, out), np.float16)
    zeros = np.zeros((n_groups, out), np.int64)
    for g in range(n_groups):
        s, z = _minmax(w[:, g * group_size : (g + 1) * group_size], 4, False)
        scales[g], zeros[g] = s.astype(np.float16), np.clip(z, 0, 15)
    g_of = np.arange(n_in) // group_size
    s32, z = scales.astype(np.float32)[g_of].T, zeros[g_of].T
    q = np.clip(np.round(w / s32) + z, 0, 15).astype(np.int64)
    deq = (q - z).astype(np.float32) * s32

    return {"qweight": awq_pack(q.T), "qzeros": awq_pack(zeros), "scales": scales}, deq


def awq_pack(m: np.ndarray) -> np.ndarray:
    """4-bit values [rows, out] as AWQ words [rows, out / 8]: slot j of word k (bits
    4j..4j+3) holds output 8k + AWQ_ORDER[j]."""
    words = np.zeros((m.shape[0], m.shape[1] // 8), np.uint64)
    for k in range(m.shape[1] // 8):
        for j in range(8):
            words[:, k] |= m[:, 8 * k + AWQ_ORDER[j]].astype(np.uint64) << np.uint64(4 * j)
    return words.astype(np.uint32).view(np.int32)


def int8(w: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """LLM.int8's ``weight`` (int8) and ``SCB`` (per-row absmax, float32)."""
    scb = np.abs(w).max(axis=1).astype(np.float32)
    q = np.round(w * (127.0 / scb[:, None])).astype(np.int8)
    deq = (q.astype(np.float32) * scb[:, None]) * np.float32(1 / 127)  # bitsandbytes' order
    return {"weight": q, "SCB": scb}, deq


def bnb4(
    w: np.ndarray, quant_type: str = "nf4", blocksize: int = 64, nested: bool = False
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """bitsandbytes 4-bit: packed ``weight`` and the ``weight.*`` quant state tensors."""
    code = np.asarray(NF4 if quant_type == "nf4" else FP4, np.float32)
    code = code / np.abs(code).max()
    flat = w.astype(np.float32).ravel()
    n = flat.size
    n_blocks = -(-n // blocksize)
    padded = np.zeros(n_blocks * blocksize, np.float32)
    padded[:n] = flat
    absmax = np.abs(padded.reshape(n_blocks, blocksize)).max(axis=1).astype(np.float32)
    scaled = padded.reshape(n_blocks, blocksize) / absmax[:, None]
    idx = np.abs(scaled.reshape(-1, 1) - code[None, :]).argmin(axis=1)[:n]
    if n % 2:
        idx = np.concatenate([idx, [0]])
    packed = ((idx[0::2] << 4) | idx[1::2]).astype(np.uint8).reshape(-1, 1)
    state = {"quant_type": quant_type, "blocksize": blocksize, "dtype": "float16",
             "shape": list(w.shape)}  # fmt: skip
    tensors = {"weight": packed, "weight.quant_map": code}
    used = absmax
    if nested:  # double quantization: absmax - mean, blockwise uint8 codes over 256 blocks
        offset = np.float32(absmax.mean())
        centred = absmax - offset
        nested_code = np.linspace(-1, 1, 256).astype(np.float32)
        n2 = -(-n_blocks // 256)
        pad2 = np.zeros(n2 * 256, np.float32)
        pad2[:n_blocks] = centred
        nabs = np.abs(pad2.reshape(n2, 256)).max(axis=1).astype(np.float32)
        codes = np.abs((pad2.reshape(n2, 256) / nabs[:, None]).reshape(-1, 1) - nested_code)
        codes = codes.argmin(axis=1)[:n_blocks].astype(np.uint8)
        used = nested_code[codes] * nabs[np.arange(n_blocks) // 256] + offset
        tensors |= {"weight.absmax": codes, "weight.nested_absmax": nabs,
                    "weight.nested_quant_map": nested_code}  # fmt: skip
        state |= {"nested_blocksize": 256, "nested_dtype": "float32",
                  "nested_offset": float(offset)}  # fmt: skip
    else:
        tensors["weight.absmax"] = absmax
    deq = (code[idx[:n]] * used[np.arange(n) // blocksize]).reshape(w.shape)
    raw = np.frombuffer(json.dumps(state).encode(), dtype=np.uint8).copy()
    tensors[f"weight.quant_state.bitsandbytes__{quant_type}"] = raw
    return tensors, deq
