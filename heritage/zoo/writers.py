"""Write checkpoints the way they are published, byte-for-byte deterministically.

* safetensors via the ``safetensors`` library (optionally sharded with an HF index file);
* PyTorch pickles via ``torch.save`` (zip container), or via our own writer of the *legacy*
  (pre-1.6, non-zip) container: ``torch.save(..., _use_new_zipfile_serialization=False)``
  names storages by memory address, so its output differs from run to run. The writer below
  produces the same stream layout with stable storage keys ("0", "1", ...), and
  ``torch.load`` reads it like any legacy file.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import sys
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors.torch import save_file

from heritage.zoo.nets import Weights

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}

# Constants of torch's legacy serialisation format (torch/serialization.py).
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _prepared(w: Weights, dtype: str) -> dict[str, torch.Tensor]:
    """Own, contiguous storage per tensor in the published dtype (no shared memory)."""
    return {k: v.detach().to(DTYPES[dtype]).contiguous().clone() for k, v in w.items()}


def write_json(path: Path, obj: Any) -> None:
    """JSON with sorted keys and a trailing newline, so files are stable across runs."""
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _save_st(tensors: dict[str, torch.Tensor], path: Path) -> None:
    save_file(tensors, str(path), metadata={"format": "pt"})
    path.chmod(0o644)  # the library creates 0600 files; published files are world-readable


def save_safetensors(folder: Path, w: Weights, dtype: str, shards: int = 1) -> list[str]:
    """Save ``model.safetensors`` or ``model-0000i-of-0000n.safetensors`` + index; return names."""
    tensors = _prepared(w, dtype)
    if shards <= 1:
        _save_st(tensors, folder / "model.safetensors")
        return ["model.safetensors"]
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    # Greedy split in state-dict order, like transformers' max_shard_size splitting.
    groups: list[dict[str, torch.Tensor]] = [{} for _ in range(shards)]
    acc = 0
    for name, t in tensors.items():
        idx = min(shards - 1, acc * shards // total)
        groups[idx][name] = t
        acc += t.numel() * t.element_size()
    groups = [g for g in groups if g]
    names = [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    weight_map: dict[str, str] = {}
    for fname, group in zip(names, groups, strict=True):
        _save_st(group, folder / fname)
        weight_map.update(dict.fromkeys(group, fname))
    write_json(
        folder / "model.safetensors.index.json",
        {"metadata": {"total_size": total}, "weight_map": weight_map},
    )
    return [*names, "model.safetensors.index.json"]


class _LegacyPickler(pickle.Pickler):
    """Pickler emitting torch's legacy persistent ids with deterministic storage keys."""

    def __init__(self, f: io.BufferedIOBase, by_ptr: dict[int, torch.Tensor]) -> None:
        super().__init__(f, protocol=2)
        self._by_ptr = by_ptr
        self.keys: dict[int, str] = {}

    def persistent_id(self, obj: Any) -> tuple | None:
        if not isinstance(obj, torch.storage.TypedStorage):
            return None
        ptr = obj._untyped_storage.data_ptr()
        if ptr not in self._by_ptr:
            raise ValueError("legacy writer only supports tensors it prepared itself")
        key = self.keys.setdefault(ptr, str(len(self.keys)))
        storage_type = getattr(torch, obj._pickle_storage_type())
        return ("storage", storage_type, key, "cpu", obj._size(), None)


def _save_legacy(tensors: dict[str, torch.Tensor], path: Path) -> None:
    by_ptr = {t.untyped_storage().data_ptr(): t for t in tensors.values()}
    sys_info = {
        "protocol_version": _LEGACY_PROTOCOL,
        "little_endian": sys.byteorder == "little",
        "type_sizes": {"short": 2, "int": 4, "long": 4},
    }
    with open(path, "wb") as f:
        pickle.dump(_LEGACY_MAGIC, f, protocol=2)
        pickle.dump(_LEGACY_PROTOCOL, f, protocol=2)
        pickle.dump(sys_info, f, protocol=2)
        pickler = _LegacyPickler(f, by_ptr)
        pickler.dump(tensors)
        key_to_tensor = {key: by_ptr[ptr] for ptr, key in pickler.keys.items()}
        keys = sorted(key_to_tensor)
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            t = key_to_tensor[key]
            f.write(struct.pack("<q", t.numel()))
            f.write(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def save_pickle(path: Path, w: Weights, dtype: str, legacy: bool = False) -> None:
    """``torch.save`` a plain state_dict (zip container) or write the legacy container."""
    tensors = _prepared(w, dtype)
    if legacy:
        _save_legacy(tensors, path)
    else:
        torch.save(tensors, path)


def write_card(folder: Path, front_matter: dict[str, Any], title: str, body: str) -> None:
    """README.md model card with YAML front matter, as on the Hugging Face Hub."""
    front = yaml.safe_dump(front_matter, sort_keys=False, default_flow_style=False).strip()
    text = f"---\n{front}\n---\n\n# {title}\n\n{body.strip()}\n"
    (folder / "README.md").write_text(text, encoding="utf-8")
