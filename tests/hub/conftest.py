from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.hub.emulator import HubEmulator

TOKEN = "hf_TESTtokenSECRET0123456789"


@pytest.fixture
def hub(small_zoo: Path) -> Iterator[HubEmulator]:
    emu = HubEmulator(small_zoo, token=TOKEN).start()
    try:
        yield emu
    finally:
        emu.stop()


def sparse_safetensors(path: Path, rows: int = 64, cols: int = 1_000_000) -> int:
    """A >200 MB safetensors file with a valid header and a sparse (all-zero) body."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nbytes = rows * cols * 4
    header = {
        "__metadata__": {"format": "pt"},
        "big.weight": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [0, nbytes]},
    }
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        fh.truncate(8 + len(raw) + nbytes)
    return 8 + len(raw) + nbytes


@pytest.fixture
def big_hub(tmp_path: Path) -> Iterator[tuple[HubEmulator, int]]:
    size = sparse_safetensors(tmp_path / "zoo" / "bigco" / "sparse-llm" / "model.safetensors")
    (tmp_path / "zoo" / "bigco" / "sparse-llm" / "README.md").write_text(
        "---\nlicense: mit\n---\n# sparse\n"
    )
    emu = HubEmulator(tmp_path / "zoo").start()
    try:
        yield emu, size
    finally:
        emu.stop()
