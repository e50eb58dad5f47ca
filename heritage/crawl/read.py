"""Reading one model: hash its files, summarise and fingerprint it.

This is the body of the mapped fingerprint task. A bad checkpoint is an expected outcome
(a ``failed`` result with the one-line ``PATH: reason``); any other exception (an I/O
error, say) propagates so the task can be retried.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from heritage.crawl.plan import FileState, WorkItem
from heritage.fingerprint import Fingerprint, FingerprintSettings, fingerprint
from heritage.formats import CheckpointError, open_checkpoint
from heritage.formats.checkpoint import SourcedCheckpoint
from heritage.summary import ModelSummary, file_sha256, summarize


@dataclass
class ReadResult:
    """What reading (or re-hashing) one model produced."""

    model_id: str
    outcome: str  # "read" (fingerprinted), "same" (rehash confirmed the content) or "failed"
    files: list[FileState] = field(default_factory=list)
    summary: ModelSummary | None = None
    fingerprint: Fingerprint | None = None
    error: str | None = None
    bytes_read: int = 0  # checkpoint bytes read for the fingerprint (headers and samples)
    bytes_hashed: int = 0  # bytes streamed through sha256
    seconds: float = 0.0


def one_line(path: str, exc: BaseException) -> str:
    """``PATH: reason`` on one line, for errors that are not CheckpointErrors."""
    text = " ".join(str(exc).split()) or exc.__class__.__name__
    if isinstance(exc, CheckpointError):
        return text
    return f"{path}: {exc.__class__.__name__}: {text}"


def failed(item: WorkItem, exc: BaseException) -> ReadResult:
    """The result of a model whose read raised ``exc`` (after any retries)."""
    return ReadResult(item.model_id, "failed", list(item.files), error=one_line(item.path, exc))


def _file_path(item: WorkItem, name: str) -> Path:
    # a loose file's name is its own, or a sibling's (the parts of a split GGUF)
    return Path(item.path) / name if item.kind == "folder" else Path(item.path).with_name(name)


def _hash(item: WorkItem, files: list[FileState]) -> tuple[list[FileState], int]:
    """Fill in missing sha256s; returns the files and the bytes hashed."""
    out, hashed = [], 0
    for f in files:
        if f.sha256 is None:
            f = replace(f, sha256=file_sha256(_file_path(item, f.name)))
            hashed += f.bytes
        out.append(f)
    return out, hashed


def _checkpoint_bytes_read(ckpt, files: list[FileState]) -> int:
    # Local pickles are loaded through torch's mmap, whose reads cannot be counted (no
    # byte sources): count them whole.
    if isinstance(ckpt, SourcedCheckpoint) and ckpt.sources:
        return ckpt.bytes_read
    return sum(f.bytes for f in files)


def _relative_name(item: WorkItem, path: Path) -> str:
    if item.kind != "folder":
        return path.name
    try:
        return path.relative_to(item.path).as_posix()
    except ValueError:  # a reader resolved a symlink: fall back to the file name
        return path.name


def _current_files(item: WorkItem, paths: list[Path]) -> list[FileState]:
    """Stat the files the reader opened; keep a trusted sha256 when size and mtime match."""
    known = {f.name: f for f in item.files}
    out = []
    for p in paths:
        name = _relative_name(item, p)
        st = os.stat(p)
        old = known.get(name)
        sha = old.sha256 if old and (old.bytes, old.mtime) == (st.st_size, st.st_mtime) else None
        out.append(FileState(name, st.st_size, st.st_mtime, sha))
    return sorted(out, key=lambda f: f.name)


def read_model(item: WorkItem, settings: FingerprintSettings | None = None) -> ReadResult:
    """Hash, summarise and fingerprint one model; or, for a rehash, just confirm its hashes."""
    start = time.perf_counter()
    hashed = 0
    try:
        if item.rehash:
            files, hashed = _hash(item, list(item.files))
            previous = dict(item.previous_sha256)
            if all(previous.get(f.name) == f.sha256 for f in files):
                return ReadResult(
                    item.model_id,
                    "same",
                    files,
                    bytes_hashed=hashed,
                    seconds=time.perf_counter() - start,
                )
            # content changed: hashes computed for changed mtimes are still valid
            item = replace(item, files=tuple(files))
        with open_checkpoint(item.path) as ckpt:
            files = _current_files(item, list(ckpt.files))
            summary = summarize(ckpt, hash_files=False)
            fp = fingerprint(ckpt, settings)
            bytes_read = _checkpoint_bytes_read(ckpt, files)
        files, more = _hash(item, files)
    except CheckpointError as exc:
        return ReadResult(
            item.model_id,
            "failed",
            list(item.files),
            error=one_line(item.path, exc),
            bytes_hashed=hashed,
            seconds=time.perf_counter() - start,
        )
    return ReadResult(
        item.model_id,
        "read",
        files,
        summary=summary,
        fingerprint=fp,
        bytes_read=bytes_read,
        bytes_hashed=hashed + more,
        seconds=time.perf_counter() - start,
    )
