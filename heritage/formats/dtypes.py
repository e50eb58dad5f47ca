"""Safetensors dtypes and their exact conversion to float32.

Fingerprints compare models saved in different precisions, so every dtype is turned
into float32 the same way: BF16 by a bit shift, 8-bit floats by a 256-entry table,
integers and booleans by value.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class DType:
    name: str
    itemsize: int
    storage: np.dtype  # how the raw bytes are viewed before conversion
    is_float: bool


def _f8_table(kind: type) -> np.ndarray:
    return np.arange(256, dtype=np.uint8).view(kind).astype(np.float32)


_F8_TABLES: dict[str, np.ndarray] = {
    "F8_E4M3": _f8_table(ml_dtypes.float8_e4m3fn),
    "F8_E5M2": _f8_table(ml_dtypes.float8_e5m2),
    "F8_E4M3FNUZ": _f8_table(ml_dtypes.float8_e4m3fnuz),
    "F8_E5M2FNUZ": _f8_table(ml_dtypes.float8_e5m2fnuz),
    "F8_E8M0": _f8_table(ml_dtypes.float8_e8m0fnu),
}

DTYPES: dict[str, DType] = {
    "F64": DType("F64", 8, np.dtype("<f8"), True),
    "F32": DType("F32", 4, np.dtype("<f4"), True),
    "F16": DType("F16", 2, np.dtype("<f2"), True),
    "BF16": DType("BF16", 2, np.dtype("<u2"), True),
    **{name: DType(name, 1, np.dtype("u1"), True) for name in _F8_TABLES},
    "C64": DType("C64", 8, np.dtype("<c8"), True),
    "I64": DType("I64", 8, np.dtype("<i8"), False),
    "I32": DType("I32", 4, np.dtype("<i4"), False),
    "I16": DType("I16", 2, np.dtype("<i2"), False),
    "I8": DType("I8", 1, np.dtype("i1"), False),
    "U64": DType("U64", 8, np.dtype("<u8"), False),
    "U32": DType("U32", 4, np.dtype("<u4"), False),
    "U16": DType("U16", 2, np.dtype("<u2"), False),
    "U8": DType("U8", 1, np.dtype("u1"), False),
    "BOOL": DType("BOOL", 1, np.dtype("u1"), False),
}


# GGUF's block-quantized types (Q4_0, Q4_K, IQ2_XS, ...): values come in blocks of
# ``block`` weights stored in ``type_size`` bytes, decoded by the gguf package's
# dequantizers. Checkpoints name them by their GGML names.
@dataclass(frozen=True)
class BlockType:
    name: str
    block: int  # weights per block
    type_size: int  # bytes per block


def _block_types() -> dict[str, BlockType]:
    from gguf.constants import GGML_QUANT_SIZES

    plain = {"F32", "F16", "BF16", "F64", "I8", "I16", "I32", "I64"}
    return {
        t.name: BlockType(t.name, block, size)
        for t, (block, size) in GGML_QUANT_SIZES.items()
        if t.name not in plain
    }


BLOCK_TYPES: dict[str, BlockType] = _block_types()

# Quantized linear layers packed into several safetensors tensors (GPTQ, AWQ,
# bitsandbytes; heritage.formats.packed): the logical weight's dtype names the method,
# mapped here to its bits per weight (scales and zero points not counted).
PACKED_TYPES: dict[str, int] = {
    "GPTQ_INT2": 2,
    "GPTQ_INT3": 3,
    "GPTQ_INT4": 4,
    "GPTQ_INT8": 8,
    "AWQ_INT4": 4,
    "BNB_INT8": 8,
    "BNB_NF4": 4,
    "BNB_FP4": 4,
}


def is_float_dtype(dtype: str) -> bool:
    """Whether a checkpoint dtype (safetensors, GGML or packed name) holds real-valued weights."""
    return dtype in BLOCK_TYPES or dtype in PACKED_TYPES or DTYPES[dtype].is_float


def storage_bytes(dtype: str, n_values: int) -> int:
    """Bytes ``n_values`` weights of ``dtype`` take (whole blocks for block types; the
    packed values alone for packed types)."""
    if dtype in BLOCK_TYPES:
        t = BLOCK_TYPES[dtype]
        return -(-n_values // t.block) * t.type_size
    if dtype in PACKED_TYPES:
        return -(-n_values * PACKED_TYPES[dtype] // 8)
    return n_values * DTYPES[dtype].itemsize


# torch dtype names (as in ``str(torch.float16)`` without the prefix) to safetensors names.
TORCH_TO_SAFETENSORS: dict[str, str] = {
    "float64": "F64",
    "double": "F64",
    "float32": "F32",
    "float": "F32",
    "float16": "F16",
    "half": "F16",
    "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ",
    "float8_e5m2fnuz": "F8_E5M2FNUZ",
    "float8_e8m0fnu": "F8_E8M0",
    "complex64": "C64",
    "int64": "I64",
    "long": "I64",
    "int32": "I32",
    "int": "I32",
    "int16": "I16",
    "short": "I16",
    "int8": "I8",
    "uint64": "U64",
    "uint32": "U32",
    "uint16": "U16",
    "uint8": "U8",
    "bool": "BOOL",
}


def to_float32(raw: bytes | memoryview | np.ndarray, dtype: str) -> np.ndarray:
    """Decode little-endian raw bytes of ``dtype`` into a flat float32 array, exactly.

    F64 and 64-bit integers are rounded to the nearest float32 (the only lossy cases);
    C64 keeps its real part.
    """
    spec = DTYPES[dtype]
    arr = np.frombuffer(raw, dtype=spec.storage) if not isinstance(raw, np.ndarray) else raw
    if dtype == "F32":
        return arr.astype(np.float32, copy=True)
    if dtype == "BF16":
        return (arr.astype(np.uint32) << 16).view(np.float32)
    if dtype in _F8_TABLES:
        return _F8_TABLES[dtype][arr]
    if dtype == "C64":
        return arr.real.astype(np.float32)
    # F64 beyond float32 range becomes ±inf, as torch does; NaNs (any payload) stay NaN
    with np.errstate(over="ignore", invalid="ignore"):
        return arr.astype(np.float32)
