"""Write checkpoint fixtures byte by byte, so each validation rule can be broken on purpose."""

from __future__ import annotations

import json
import struct
from pathlib import Path


def raw_safetensors(
    path: Path,
    header: dict | list | str | bytes,
    data: bytes = b"",
    header_len: int | None = None,
) -> Path:
    """A safetensors file from a header (dict, or raw text/bytes) and a data section."""
    if isinstance(header, bytes):
        blob = header
    elif isinstance(header, str):
        blob = header.encode()
    else:
        blob = json.dumps(header).encode()
    n = len(blob) if header_len is None else header_len
    path.write_bytes(struct.pack("<Q", n) + blob + data)
    return path


def entry(dtype: str, shape: list[int], begin: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}
