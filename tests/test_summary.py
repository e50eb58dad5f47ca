from __future__ import annotations

import hashlib
import json

import torch
from safetensors.torch import save_file

from heritage.formats import TensorInfo, open_checkpoint
from heritage.summary import count_layers, structure_hash, summarize


def _state():
    g = torch.Generator().manual_seed(0)
    return {
        "model.embed_tokens.weight": torch.randn(16, 8, generator=g),
        **{
            f"model.layers.{i}.mlp.up_proj.weight": torch.randn(12, 8, generator=g)
            for i in range(3)
        },
        "model.norm.weight": torch.ones(8),
    }


def test_summary_counts_and_hashes(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file(_state(), path)
    with open_checkpoint(path) as ckpt:
        s = summarize(ckpt)
    assert (s.n_params, s.n_tensors, s.n_layers) == (16 * 8 + 3 * 12 * 8 + 8, 5, 3)
    assert s.dtypes == ["F32"]
    assert s.bytes == path.stat().st_size
    assert s.files[0].sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_structure_hash_stable_across_dtype_and_sharding(tmp_path):
    state = _state()
    save_file(state, tmp_path / "f32.safetensors")
    save_file({k: v.to(torch.bfloat16) for k, v in state.items()}, tmp_path / "bf16.safetensors")
    folder = tmp_path / "sharded"
    folder.mkdir()
    names = sorted(state)
    save_file({k: state[k] for k in names[:2]}, folder / "a.safetensors")
    save_file({k: state[k] for k in names[2:]}, folder / "b.safetensors")
    weight_map = {k: "a.safetensors" if k in names[:2] else "b.safetensors" for k in names}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    torch.save(state, tmp_path / "m.pt")
    hashes = set()
    for loc in ["f32.safetensors", "bf16.safetensors", "sharded", "m.pt"]:
        with open_checkpoint(tmp_path / loc) as ckpt:
            hashes.add(summarize(ckpt, hash_files=False).structure_hash)
    assert len(hashes) == 1


def test_structure_hash_changes_with_shape_or_name():
    base = [TensorInfo("a", "F32", (2, 3), "f"), TensorInfo("b", "F32", (3,), "f")]
    assert structure_hash(base) == structure_hash(list(reversed(base)))
    assert structure_hash(base) != structure_hash([TensorInfo("a", "F32", (3, 2), "f"), base[1]])
    assert structure_hash(base) != structure_hash([TensorInfo("c", "F32", (2, 3), "f"), base[1]])


def test_count_layers_naming_schemes():
    assert count_layers(["model.layers.0.q", "model.layers.11.q", "model.layers.0.k"]) == 2
    assert count_layers(["transformer.h.0.attn", "transformer.h.1.attn"]) == 2
    assert count_layers(["blocks.3.w", "vit.encoder.layer.0.w", "vit.encoder.layer.1.w"]) == 3
    assert count_layers(["fc1.weight", "head.weight"]) == 0


class _MemorySource:
    """A file that exists only in memory (as a remote file does for the reader)."""

    def __init__(self, name: str, data: bytes) -> None:
        from heritage.formats.source import ReadStats

        self.name, self.size, self.stats, self._data = name, len(data), ReadStats(), data

    def read(self, offset: int, length: int) -> bytes:
        self.stats.add(length)
        return self._data[offset : offset + length]

    def read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        return [self.read(o, n) for o, n in ranges]


def test_summary_from_byte_sources_without_files_on_disk(tmp_path):
    """Sizes and hashes come from the byte sources, so a remote checkpoint summarises
    like a local one (the Hub crawl relies on it)."""
    from pathlib import Path

    from heritage.formats.safetensors_reader import SafetensorsCheckpoint

    path = tmp_path / "m.safetensors"
    save_file(_state(), path)
    data = path.read_bytes()
    with open_checkpoint(path) as ckpt:
        local = summarize(ckpt)
    source = _MemorySource("remote/m.safetensors", data)
    remote = SafetensorsCheckpoint(Path("nowhere/x"), {"m.safetensors": source}, "safetensors")
    s = summarize(remote)
    assert [(f.name, f.bytes, f.sha256) for f in s.files] == [
        ("m.safetensors", len(data), hashlib.sha256(data).hexdigest())
    ]
    assert (s.n_params, s.n_tensors, s.n_layers, s.structure_hash) == (
        local.n_params,
        local.n_tensors,
        local.n_layers,
        local.structure_hash,
    )
    unhashed = summarize(remote, hash_files=False)
    assert unhashed.files[0].sha256 is None and unhashed.bytes == len(data)
