"""Model summary: sizes, layer count, file hashes and the structural hash.

The structural hash is the one place that decides when two checkpoints share an
architecture: it covers sorted (name, shape) pairs only, so it is stable across dtype
re-saves and shard layouts.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from heritage.formats.checkpoint import Checkpoint, SourcedCheckpoint, TensorInfo
from heritage.formats.source import ByteSource

# Transformer blocks appear as layers.N, h.N, blocks.N, layer.N or block.N in tensor names.
_LAYER_RE = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)\.")
HASH_CHUNK = 1 << 20


def structure_hash(tensors: Iterable[TensorInfo]) -> str:
    """sha256 over the sorted (name, shape) list, independent of dtype and sharding."""
    h = hashlib.sha256()
    for name, shape in sorted((t.name, t.shape) for t in tensors):
        h.update(f"{name}\t{','.join(map(str, shape))}\n".encode())
    return h.hexdigest()


def count_layers(names: Iterable[str]) -> int:
    """Distinct block indices found in tensor names (0 when the model has no blocks)."""
    indices = {m.group(1) for n in names for m in [_LAYER_RE.search(n)] if m}
    return len(indices)


def file_sha256(path: Path) -> str:
    """sha256 of a file, streamed so memory stays flat for multi-GB weights."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def source_sha256(source: ByteSource) -> str:
    """sha256 of a file read through its byte source (local or remote), a chunk at a time."""
    h = hashlib.sha256()
    for offset in range(0, source.size, HASH_CHUNK):
        h.update(source.read(offset, min(HASH_CHUNK, source.size - offset)))
    return h.hexdigest()


@dataclass
class FileSummary:
    name: str
    bytes: int
    sha256: str | None


@dataclass
class ModelSummary:
    location: str
    format: str
    n_params: int
    n_tensors: int
    n_layers: int
    dtypes: list[str]
    bytes: int
    structure_hash: str
    files: list[FileSummary] = field(default_factory=list)
    config: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _file_summaries(ckpt: Checkpoint, hash_files: bool) -> list[FileSummary]:
    """Name, size and (optionally) hash of each weight file: through the checkpoint's byte
    sources where it has them (local or over HTTP), else from the files on disk (a legacy
    pickle loaded whole)."""
    sources = ckpt.sources if isinstance(ckpt, SourcedCheckpoint) else {}
    if sources:
        return [
            FileSummary(name, src.size, source_sha256(src) if hash_files else None)
            for name, src in sources.items()
        ]
    return [
        FileSummary(p.name, p.stat().st_size, file_sha256(p) if hash_files else None)
        for p in ckpt.files
    ]


def summarize(ckpt: Checkpoint, hash_files: bool = True) -> ModelSummary:
    """Summarise a checkpoint from its listing, local or remote; file hashes are optional
    (they read every byte)."""
    files = _file_summaries(ckpt, hash_files)
    return ModelSummary(
        location=str(ckpt.location),
        format=ckpt.format,
        n_params=sum(t.n_params for t in ckpt.tensors),
        n_tensors=len(ckpt.tensors),
        n_layers=count_layers(t.name for t in ckpt.tensors),
        dtypes=sorted({t.dtype for t in ckpt.tensors}),
        bytes=sum(f.bytes for f in files),
        structure_hash=structure_hash(ckpt.tensors),
        files=files,
        config=ckpt.config,
    )
