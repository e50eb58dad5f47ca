from __future__ import annotations

import json
import math
import shutil
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from heritage.formats import DTYPES, open_checkpoint
from heritage.formats.safetensors_reader import INDEX_NAME
from tests.hub.emulator import HubEmulator

TOKEN = "hf_TESTtokenSECRET0123456789"


@pytest.fixture
def hub(small_zoo: Path) -> Iterator[HubEmulator]:
    emu = HubEmulator(small_zoo, token=TOKEN).start()
    try:
        yield emu
    finally:
        emu.stop()


def _header(tensors: list[tuple[str, str, list[int]]]) -> tuple[bytes, int]:
    """(length prefix + padded header, data bytes) for tensors laid out in the given order."""
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dtype, shape in tensors:
        n = math.prod(shape) * DTYPES[dtype].itemsize
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw, offset


def sparse_file(path: Path, tensors: list[tuple[str, str, list[int]]]) -> int:
    """A safetensors file with a valid header and a sparse (all-zero) body; returns its size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    head, nbytes = _header(tensors)
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(len(head) + nbytes)
    return len(head) + nbytes


def sparse_safetensors(path: Path, rows: int = 1024, cols: int = 1_000_000) -> int:
    """A multi-GB (4 GB by default) safetensors file of one sparse F32 matrix."""
    return sparse_file(path, [("big.weight", "F32", [rows, cols])])


def sparse_llm(folder: Path, layers: int = 32, hidden: int = 4096, shards: int = 3) -> int:
    """A sharded, sparse BF16 model shaped like a 7B Llama (13 GB by default); returns bytes."""
    tensors = [("model.embed_tokens.weight", "BF16", [32000, hidden])]
    for i in range(layers):
        p = f"model.layers.{i}."
        tensors += [
            (p + "input_layernorm.weight", "BF16", [hidden]),
            *((p + f"self_attn.{x}_proj.weight", "BF16", [hidden, hidden]) for x in "qkvo"),
            (p + "mlp.gate_proj.weight", "BF16", [hidden * 11 // 4, hidden]),
            (p + "mlp.up_proj.weight", "BF16", [hidden * 11 // 4, hidden]),
            (p + "mlp.down_proj.weight", "BF16", [hidden, hidden * 11 // 4]),
        ]
    tensors += [
        ("model.norm.weight", "BF16", [hidden]),
        ("lm_head.weight", "BF16", [32000, hidden]),
    ]
    groups = [tensors[k::shards] for k in range(shards)]
    return _write_shards(folder, groups, sparse_file)


def _write_shards(folder: Path, groups: list, write) -> int:
    names = [f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors" for k in range(len(groups))]
    total = sum(write(folder / name, group) for name, group in zip(names, groups, strict=True))
    weight_map = {t[0]: name for name, group in zip(names, groups, strict=True) for t in group}
    (folder / INDEX_NAME).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return total


def reshard(src: Path, dest: Path, shards: int) -> None:
    """Copy a safetensors model folder with its tensors split over ``shards`` files."""
    dest.mkdir(parents=True)
    for f in src.iterdir():
        if f.suffix != ".safetensors" and f.name != INDEX_NAME and f.is_file():
            shutil.copy(f, dest / f.name)
    with open_checkpoint(src) as ckpt:
        raw = {}
        for t in ckpt.tensors:
            assert t.start is not None and t.end is not None
            raw[t.name] = ckpt.sources[t.file].read(t.start, t.end - t.start)
        listing = [(t.name, t.dtype, list(t.shape)) for t in ckpt.tensors]
    groups = [
        listing[k * len(listing) // shards : (k + 1) * len(listing) // shards]
        for k in range(shards)
    ]

    def write(path: Path, group: list) -> int:
        head, _ = _header(group)
        path.write_bytes(head + b"".join(raw[name] for name, _, _ in group))
        return path.stat().st_size

    _write_shards(dest, groups, write)


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


SINGLE = "bytebard/tinyllama-a-instruct-lora"
SHARDED = "northwind/tinyllama-a"


@pytest.fixture(scope="session")
def shard_root(small_zoo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zoo model served whole, in 2 shards and in 3 shards (as ``shards/one|two|three``)."""
    root = tmp_path_factory.mktemp("shards")
    (root / "shards").mkdir()
    shutil.copytree(small_zoo / SINGLE, root / "shards" / "one")
    reshard(small_zoo / SINGLE, root / "shards" / "two", 2)
    reshard(small_zoo / SINGLE, root / "shards" / "three", 3)
    return root


@pytest.fixture
def shard_hub(shard_root: Path) -> Iterator[HubEmulator]:
    emu = HubEmulator(shard_root).start()
    try:
        yield emu
    finally:
        emu.stop()
