"""Packed quantized layers (GPTQ, AWQ, bitsandbytes): unpacking and dequantization in numpy.

Plain functions on arrays, no I/O: ``heritage.formats.packed_reader`` reads the bytes
behind the rows a fingerprint samples and decodes them here. Each format stores a linear
layer whose logical weight is ``W[out, in]`` (as ``nn.Linear`` holds it) like this:

GPTQ (AutoGPTQ, GPTQModel; 2, 3, 4 or 8 bits)
    ``qweight`` int32 [in * bits / 32, out]: each column is a little-endian bit stream of
    that output's ``in`` quantized values, value ``i`` in bits ``[i*bits, (i+1)*bits)``
    (3-bit values straddle words). ``qzeros`` int32 [groups, out * bits / 32]: each row a
    bit stream of the ``out`` zero points. ``scales`` float16 [groups, out]. ``g_idx``
    int32 [in]: the group of each input (``i // group_size`` unless quantized in
    activation order). ``W[o, i] = scales[g, o] * (q[i, o] - (z[g, o] + 1))`` with
    ``g = g_idx[i]``: the classic format stores each zero point minus one, GPTQModel's
    ``gptq_v2`` stores it as it is.
AWQ (AutoAWQ's GEMM layout; 4 bits)
    ``qweight`` int32 [in, out / 8]: each row a bit stream of its ``out`` values, except
    that word ``k`` holds outputs ``8k + AWQ_ORDER[j]`` in its slots ``j = 0..7``.
    ``qzeros`` int32 [groups, out / 8] is interleaved the same way, ``scales`` float16
    [groups, out]. ``W[o, i] = (q[i, o] - z[g, o]) * scales[g, o]``, ``g = i // group_size``.
bitsandbytes LLM.int8
    ``weight`` int8 [out, in] and ``SCB`` float32 [out], each row's absmax:
    ``W[o, i] = q[o, i] * SCB[o] / 127`` (the division a multiplication by float32
    ``1 / 127``, as bitsandbytes does it).
bitsandbytes 4-bit (nf4, fp4)
    ``weight`` uint8 [(out * in + 1) // 2, 1]: the flattened weight two values a byte, the
    first in the high nibble. ``absmax`` float32, one per block of ``blocksize`` values,
    and ``quant_map``, the 16 values a nibble stands for: ``W.flat[k] = quant_map[nibble]
    * absmax[k // blocksize]``. Double quantization stores ``absmax`` as uint8 too:
    ``absmax[b] = nested_quant_map[qabsmax[b]] * nested_absmax[b // nested_blocksize] +
    offset``. Shape, block size, type and the nested fields are a JSON object stored as
    a uint8 tensor (``weight.quant_state.bitsandbytes__nf4``).

The arithmetic is float32 throughout, in the order written above, so a value decoded
from a sampled row equals the one decoded from the whole layer, bit for bit.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "AWQ_ORDER",
    "AWQ_REVERSE_ORDER",
    "GPTQ_BITS",
    "AWQSpec",
    "Bnb4Spec",
    "GPTQSpec",
    "Int8Spec",
    "NestedAbsmax",
    "QuantSettings",
    "awq_positions",
    "bnb4_absmax",
    "dequantize_4bit",
    "dequantize_awq",
    "dequantize_gptq",
    "dequantize_int8",
    "int8_values",
    "nibbles",
    "parse_quant_state",
    "quant_settings",
    "scaled",
    "stream_values",
    "stream_words",
]

GPTQ_BITS = (2, 3, 4, 8)
AWQ_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)  # slot j of an AWQ word holds output 8k + AWQ_ORDER[j]
AWQ_REVERSE_ORDER = (0, 4, 1, 5, 2, 6, 3, 7)  # output 8k + j sits in slot AWQ_REVERSE_ORDER[j]
_INV_127 = np.float32(1 / 127)  # LLM.int8 dequantizes multiplying by this, not dividing


# ------------------------------------------------------------------ settings and specs


@dataclass(frozen=True)
class QuantSettings:
    """A model's quantization settings, from config.json's ``quantization_config``,
    AutoGPTQ's quantize_config.json or AutoAWQ's quant_config.json (None: not said)."""

    method: str | None = None  # "gptq", "awq", "bitsandbytes", ... (lower case)
    bits: int | None = None
    group_size: int | None = None  # -1: one group over all inputs
    sym: bool | None = None
    desc_act: bool | None = None
    checkpoint_format: str | None = None  # GPTQ: "gptq" (zero points minus one) or "gptq_v2"
    version: str | None = None  # AWQ kernel layout: "gemm", "gemv", ...


def quant_settings(config: Mapping[str, Any] | None) -> QuantSettings:
    """Normalise a quantization config's keys (AutoAWQ's ``w_bit`` and ``q_group_size``
    included); values of the wrong type count as not said."""
    if not config:
        return QuantSettings()

    def pick(*keys: str, kind: type | tuple[type, ...]) -> Any:
        for k in keys:
            v = config.get(k)
            if isinstance(v, kind) and not (kind is int and isinstance(v, bool)):
                return v
        return None

    def lower(*keys: str) -> str | None:
        v = pick(*keys, kind=str)
        return v.lower() if v else None

    return QuantSettings(
        method=lower("quant_method"),
        bits=pick("bits", "w_bit", kind=int),
        group_size=pick("group_size", "q_group_size", kind=int),
        sym=pick("sym", kind=bool),
        desc_act=pick("desc_act", kind=bool),
        checkpoint_format=lower("checkpoint_format", "format"),
        version=lower("version"),
    )


@dataclass(frozen=True)
class GPTQSpec:
    out_features: int
    in_features: int
    bits: int
    group_size: int  # inputs per group when there is no g_idx
    zero_offset: int  # 1 for the classic format, 0 for gptq_v2
    sym: bool | None = None


@dataclass(frozen=True)
class AWQSpec:
    out_features: int
    in_features: int
    group_size: int
    bits: int = 4


@dataclass(frozen=True)
class Int8Spec:
    out_features: int
    in_features: int


@dataclass(frozen=True)
class NestedAbsmax:
    """Double quantization of a 4-bit layer's absmax: uint8 codes, blockwise."""

    blocksize: int
    offset: float
    dtype: str = "float32"


@dataclass(frozen=True)
class Bnb4Spec:
    out_features: int
    in_features: int
    quant_type: str  # "nf4" or "fp4"
    blocksize: int
    dtype: str  # the dtype the layer was quantized from ("float16", "bfloat16", ...)
    nested: NestedAbsmax | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.out_features, self.in_features)

    @property
    def n_values(self) -> int:
        return self.out_features * self.in_features

    @property
    def n_blocks(self) -> int:
        return -(-self.n_values // self.blocksize)


def parse_quant_state(raw: bytes, quant_type: str) -> Bnb4Spec:
    """A bitsandbytes 4-bit layer's packed quant state (JSON bytes) as a spec.

    Raises ``ValueError`` with the reason when the JSON is not a valid quant state of a
    2-D weight of ``quant_type``.
    """
    try:
        state = json.loads(bytes(raw).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"quant state is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(state, dict):
        raise ValueError("quant state is not a JSON object")

    def positive(key: str) -> int:
        v = state.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ValueError(f"quant state {key} {v!r} is not a positive integer")
        return v

    if state.get("quant_type") != quant_type:
        raise ValueError(
            f"quant state says quant_type {state.get('quant_type')!r}, its name {quant_type!r}"
        )
    shape = state.get("shape")
    if (
        not isinstance(shape, list)
        or len(shape) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)
    ):
        raise ValueError(f"quant state shape {shape!r} is not that of a 2-D weight")
    nested = None
    if "nested_blocksize" in state or "nested_offset" in state:
        offset = state.get("nested_offset")
        if not isinstance(offset, int | float) or isinstance(offset, bool):
            raise ValueError(f"quant state nested_offset {offset!r} is not a number")
        nested = NestedAbsmax(
            positive("nested_blocksize"), float(offset), str(state.get("nested_dtype", "float32"))
        )
    return Bnb4Spec(
        out_features=shape[0],
        in_features=shape[1],
        quant_type=quant_type,
        blocksize=positive("blocksize"),
        dtype=str(state.get("dtype", "")),
        nested=nested,
    )


# ------------------------------------------------------------------ bit streams


def stream_words(positions: np.ndarray, bits: int) -> np.ndarray:
    """Sorted indices of the 32-bit words that hold the values at ``positions`` of a
    little-endian stream of ``bits``-bit values."""
    p = np.asarray(positions, dtype=np.int64) * bits
    return np.unique(np.concatenate([p // 32, (p + bits - 1) // 32]))


def stream_values(
    words: np.ndarray, index: np.ndarray, positions: np.ndarray, bits: int, axis: int = 0
) -> np.ndarray:
    """The values at ``positions`` of bit streams laid along ``axis`` of ``words``.

    ``words`` (int32 or uint32) holds the streams' words numbered ``index`` (sorted)
    along ``axis``; every word ``stream_words(positions, bits)`` names must be among them.
    Returns int64 values with ``positions`` along ``axis``.
    """
    w = np.moveaxis(np.asarray(words).astype(np.int64) & 0xFFFFFFFF, axis, 0).astype(np.uint64)
    index = np.asarray(index, dtype=np.int64)
    p = np.asarray(positions, dtype=np.int64) * bits
    first, shift = p // 32, p % 32
    at = np.searchsorted(index, first)
    if at.size and (at.max() >= index.size or not np.array_equal(index[at], first)):
        raise ValueError("a stream word the positions need was not given")
    spans = shift + bits > 32
    nxt = np.minimum(at + 1, max(index.size - 1, 0))
    if spans.any() and not np.array_equal(index[nxt[spans]], first[spans] + 1):
        raise ValueError("a stream word the positions need was not given")
    extra = (1,) * (w.ndim - 1)
    lo = w[at]
    hi = np.where(spans.reshape(-1, *extra), w[nxt], np.uint64(0))
    both = lo | (hi << np.uint64(32))
    values = (both >> shift.astype(np.uint64).reshape(-1, *extra)) & np.uint64((1 << bits) - 1)
    return np.moveaxis(values.astype(np.int64), 0, axis)


def awq_positions(outputs: np.ndarray) -> np.ndarray:
    """Where each output's value sits in an AWQ row's stream (4-bit values, interleaved)."""
    o = np.asarray(outputs, dtype=np.int64)
    return o // 8 * 8 + np.asarray(AWQ_REVERSE_ORDER, dtype=np.int64)[o % 8]


def nibbles(data: np.ndarray, index: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """The 4-bit values at ``positions`` of a bitsandbytes packed weight, given its bytes
    numbered ``index`` (sorted); value ``k`` is the high nibble of byte ``k // 2`` when
    ``k`` is even, the low one when odd."""
    k = np.asarray(positions, dtype=np.int64)
    at = np.searchsorted(np.asarray(index, dtype=np.int64), k // 2)
    if at.size and (at.max() >= len(index) or not np.array_equal(index[at], k // 2)):
        raise ValueError("a byte the positions need was not given")
    b = np.asarray(data, dtype=np.uint8)[at]
    return np.where(k % 2 == 0, b >> 4, b & 0x0F).astype(np.int64)


# ------------------------------------------------------------------ arithmetic


def scaled(q: np.ndarray, zeros: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """``(q - zeros) * scales`` in float32 (the integer difference is exact)."""
    return (np.asarray(q) - np.asarray(zeros)).astype(np.float32) * np.asarray(
        scales, dtype=np.float32
    )


def int8_values(q: np.ndarray, scb: np.ndarray) -> np.ndarray:
    """LLM.int8 rows: ``q * SCB / 127`` in float32 as bitsandbytes computes it, ``(q *
    SCB) * float32(1 / 127)``, with ``scb`` broadcast over each row."""
    return (np.asarray(q).astype(np.float32) * np.asarray(scb, dtype=np.float32)) * _INV_127


def bnb4_absmax(
    codes: np.ndarray, nested_absmax: np.ndarray, nested_map: np.ndarray, offset: float
) -> np.ndarray:
    """Double-quantized absmax: ``nested_map[codes] * nested_absmax + offset`` in float32
    (``nested_absmax`` already one per code)."""
    table = np.asarray(nested_map, dtype=np.float32)
    return table[np.asarray(codes, dtype=np.int64)] * np.asarray(
        nested_absmax, dtype=np.float32
    ) + np.float32(offset)


# ------------------------------------------------------------------ whole layers


def dequantize_gptq(
    qweight: np.ndarray,
    qzeros: np.ndarray,
    scales: np.ndarray,
    g_idx: np.ndarray | None,
    bits: int,
    *,
    group_size: int | None = None,
    v2: bool = False,
) -> np.ndarray:
    """A whole GPTQ layer as float32 ``[out, in]`` (``g_idx`` None: ``i // group_size``)."""
    n_in = qweight.shape[0] * 32 // bits
    out = scales.shape[1]
    q = stream_values(qweight, np.arange(qweight.shape[0]), np.arange(n_in), bits, axis=0)
    z = stream_values(qzeros, np.arange(qzeros.shape[1]), np.arange(out), bits, axis=1)
    g = (
        np.asarray(g_idx, dtype=np.int64)
        if g_idx is not None
        else np.arange(n_in) // (group_size or n_in)
    )
    return scaled(q, z[g] + (0 if v2 else 1), np.asarray(scales, dtype=np.float32)[g]).T.copy()


def dequantize_awq(
    qweight: np.ndarray, qzeros: np.ndarray, scales: np.ndarray, group_size: int
) -> np.ndarray:
    """A whole AWQ (GEMM) layer as float32 ``[out, in]``."""
    out = scales.shape[1]
    pos = awq_positions(np.arange(out))
    q = stream_values(qweight, np.arange(qweight.shape[1]), pos, 4, axis=1)
    z = stream_values(qzeros, np.arange(qzeros.shape[1]), pos, 4, axis=1)
    g = np.arange(qweight.shape[0]) // group_size
    return scaled(q, z[g], np.asarray(scales, dtype=np.float32)[g]).T.copy()


def dequantize_int8(weight: np.ndarray, scb: np.ndarray) -> np.ndarray:
    """A whole LLM.int8 layer as float32 ``[out, in]``."""
    return int8_values(weight, np.asarray(scb).reshape(-1, 1))


def dequantize_4bit(
    packed: np.ndarray,
    absmax: np.ndarray,
    quant_map: np.ndarray,
    spec: Bnb4Spec,
    nested_absmax: np.ndarray | None = None,
    nested_map: np.ndarray | None = None,
) -> np.ndarray:
    """A whole bitsandbytes 4-bit layer as float32 ``[out, in]``."""
    data = np.asarray(packed).reshape(-1).view(np.uint8)
    k = np.arange(spec.n_values)
    blocks = k // spec.blocksize
    if spec.nested is not None:
        assert nested_absmax is not None and nested_map is not None
        b = np.arange(spec.n_blocks)
        absmax = bnb4_absmax(
            absmax,
            np.asarray(nested_absmax)[b // spec.nested.blocksize],
            nested_map,
            spec.nested.offset,
        )
    table = np.asarray(quant_map, dtype=np.float32)
    values = table[nibbles(data, np.arange(data.size), k)] * np.asarray(absmax, np.float32)[blocks]
    return values.reshape(spec.out_features, spec.in_features)
