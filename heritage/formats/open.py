"""``open_checkpoint``: one entry point for every checkpoint layout we read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from heritage.errors import BadCheckpoint
from heritage.formats import peft
from heritage.formats.checkpoint import Checkpoint, read_json_object
from heritage.formats.gguf_reader import GGUFCheckpoint, split_files
from heritage.formats.pickle_reader import PICKLE_SUFFIXES, PickleCheckpoint
from heritage.formats.safetensors_reader import (
    INDEX_NAME,
    SafetensorsCheckpoint,
    open_sharded,
    shard_files,
)
from heritage.formats.source import LocalFileSource

WEIGHT_SUFFIXES = (".safetensors", *PICKLE_SUFFIXES, ".gguf")
PICKLE_INDEX_NAME = "pytorch_model.bin.index.json"
INDEX_NAMES = (INDEX_NAME, PICKLE_INDEX_NAME)
# a model's whole weights under Hugging Face names (one file or numbered shards)
HF_WEIGHT = re.compile(r"^(?:model|pytorch_model)(?:-\d+-of-\d+)?\.(?:safetensors|bin)$")


def full_weights(names: list[str] | set[str]) -> bool:
    """Whether a folder listing holds whole weights under Hugging Face names."""
    return any(n in INDEX_NAMES or HF_WEIGHT.match(n) for n in names)


def adapter_file(folder: Path) -> Path | None:
    """The weights of a PEFT adapter folder (heritage.formats.peft), unless the folder
    holds whole weights under Hugging Face names too (those are the model then)."""
    found = peft.adapter_weights(folder)
    if found is None:
        return None
    try:
        names = [p.name for p in folder.iterdir()]
    except OSError:
        return found
    return None if full_weights(names) else found


def read_config(folder: Path) -> dict[str, Any] | None:
    """A Hugging Face folder's config.json, kept as metadata (None when absent); a PEFT
    adapter folder's adapter_config.json."""
    if adapter_file(folder) is not None:
        return peft.read_adapter_config(folder)
    path = folder / "config.json"
    return read_json_object(path) if path.is_file() else None


# Quantization configs written beside config.json: AutoGPTQ and GPTQModel's, AutoAWQ's.
QUANT_CONFIG_NAMES = ("quantize_config.json", "quant_config.json")


def read_quantization(folder: Path, config: dict[str, Any] | None) -> dict[str, Any] | None:
    """A model folder's quantization settings: quantize_config.json or quant_config.json,
    overlaid by config.json's ``quantization_config`` (None when there are none)."""
    found: dict[str, Any] = {}
    for name in QUANT_CONFIG_NAMES:
        path = folder / name
        if not path.is_file():
            continue
        found.update(read_json_object(path))
        break
    inline = config.get("quantization_config") if config else None
    if isinstance(inline, dict):
        found.update(inline)
    return found or None


def weight_files(folder: Path) -> tuple[str, list[Path]]:
    """Which files of a model folder hold its weights, and in which layout.

    Follows what Hugging Face loaders prefer: a safetensors index, then
    ``model.safetensors``, then other safetensors files, then torch pickles. A PEFT
    adapter folder's weights are its adapter file (layout ``peft``).
    """
    adapter = adapter_file(folder)
    if adapter is not None:
        return "peft", [adapter]
    index = folder / INDEX_NAME
    if index.is_file():
        return "safetensors-sharded", [folder / f for f in shard_files(index)]
    if (folder / "model.safetensors").is_file():
        return "safetensors", [folder / "model.safetensors"]
    st = sorted(p for p in folder.glob("*.safetensors") if p.is_file())
    if st:
        return "safetensors", st
    pindex = folder / PICKLE_INDEX_NAME
    if pindex.is_file():
        return "pickle", [folder / f for f in shard_files(pindex)]
    if (folder / "pytorch_model.bin").is_file():
        return "pickle", [folder / "pytorch_model.bin"]
    pickles = sorted(p for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    if pickles:
        return "pickle", pickles
    raise BadCheckpoint(folder, "no weight files found (.safetensors, .bin, .pt, .pth)")


def open_checkpoint(location: str | Path) -> Checkpoint:
    """Open a checkpoint file or a Hugging Face model folder for lazy float32 reads.

    Raises :class:`~heritage.formats.errors.CheckpointError` naming the file and the
    problem for anything that is not a valid, safe checkpoint.
    """
    path = Path(location)
    if path.is_dir():
        config = read_config(path)
        layout, files = weight_files(path)
        if layout == "peft":
            return _open_adapter(path, files[0], config)
        if layout == "safetensors-sharded":
            quant = read_quantization(path, config)
            return open_sharded(path, path / INDEX_NAME, config, quant)
        if layout == "safetensors":
            quant = read_quantization(path, config)
            return _open_safetensors(path, files, "safetensors", config, quant)
        return PickleCheckpoint(path, files, config)
    if not path.exists():
        raise BadCheckpoint(path, "no such file or folder")
    if not path.is_file():
        raise BadCheckpoint(path, "not a regular file")
    if path.suffix == ".safetensors":
        return _open_safetensors(path, [path], "safetensors", None)
    if path.name.endswith(".safetensors.index.json"):
        config = read_config(path.parent)
        return open_sharded(path.parent, path, config, read_quantization(path.parent, config))
    if path.suffix in PICKLE_SUFFIXES:
        return PickleCheckpoint(path, [path], None)
    if path.suffix == ".gguf":
        return _open_gguf(path)
    raise BadCheckpoint(
        path, f"not a checkpoint: unsupported file type {path.suffix or '(none)'!r}"
    )


def _open_adapter(folder: Path, weights: Path, config: dict[str, Any] | None) -> Checkpoint:
    """A PEFT adapter folder: format ``peft-lora`` for a LoRA (its tensors sampled where
    its base's are), else its weights as they are, adapter_config.json as the config."""
    if weights.suffix == ".safetensors":
        ckpt: Checkpoint = _open_safetensors(folder, [weights], "safetensors", config)
    else:
        ckpt = PickleCheckpoint(folder, [weights], config)
    if not peft.is_lora(config):
        return ckpt
    try:
        lora = peft.parse_config(config or {}, folder / peft.ADAPTER_CONFIG)
        layout = peft.lora_layout(lora, ((t.name, t.shape) for t in ckpt.tensors), weights)
    except BaseException:
        ckpt.close()
        raise
    ckpt.format = peft.FORMAT
    ckpt.sample_like = layout.sample_like()
    return ckpt


def _open_safetensors(
    location: Path,
    files: list[Path],
    fmt: str,
    config: dict[str, Any] | None,
    quantization: dict[str, Any] | None = None,
) -> SafetensorsCheckpoint:
    sources = {}
    try:
        for f in files:
            sources[f.name] = LocalFileSource(f)
        return SafetensorsCheckpoint(location, sources, fmt, config, quantization=quantization)
    except Exception:
        for s in sources.values():
            s.close()
        raise


def _open_gguf(path: Path) -> GGUFCheckpoint:
    sources: dict[str, LocalFileSource] = {}
    try:
        for f in split_files(path):
            sources[f.name] = LocalFileSource(f)
        return GGUFCheckpoint(path, dict(sources))
    except Exception:
        for s in sources.values():
            s.close()
        raise
