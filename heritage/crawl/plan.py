"""Incremental planning: decide, from file sizes and times alone, which models to read.

For each model found, its weight files are listed and ``stat``-ed (no weight byte is
read) and compared with what the previous run stored in ``models.files``:

* same file names, sizes and mtimes → **reuse**: the stored row and fingerprint are kept,
  nothing is read (the stored sha256 is trusted);
* same names and sizes, some mtime changed → **rehash**: those files are hashed again;
  if every sha256 is unchanged only the mtimes are updated, else the model is re-read;
* anything else, or no previous row → **read**: hash and fingerprint the model.

A model that failed before is reused the same way (its error kept) while its files do
not change. Card and config.json are small and re-read on every run, so metadata edits
show up without touching the weights.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import polars as pl

from heritage.formats import CheckpointError, peft, weight_files
from heritage.formats.gguf_reader import split_files
from heritage.formats.open import adapter_file, read_config
from heritage.index import IndexData
from heritage.sources import Discovery, FoundModel, read_card

META_ROOTS = "local_roots"  # meta key: JSON list of the absolute crawl roots
META_PATHS = "local_paths"  # meta key: JSON object model_id -> absolute path


@dataclass(frozen=True)
class FileState:
    """One weight file as the index records it (``models.files``)."""

    name: str  # posix path relative to the model folder (the file name for a loose file)
    bytes: int
    mtime: float
    sha256: str | None = None

    def as_row(self) -> dict[str, Any]:
        return {"name": self.name, "bytes": self.bytes, "sha256": self.sha256, "mtime": self.mtime}


@dataclass
class ModelMeta:
    """Metadata read on every run: cheap, and allowed to change without new weights."""

    name: str
    description: str | None = None
    base_models: list[str] = field(default_factory=list)
    card: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class WorkItem:
    """What a fingerprint task receives: small and picklable (it may go to a Dask worker)."""

    model_id: str
    location: str
    path: str
    kind: str  # "folder" or "file"
    files: tuple[FileState, ...]  # current sizes/mtimes; sha256 kept where still trusted
    rehash: bool = False  # only confirm hashes; read the model only if one changed
    previous_sha256: tuple[tuple[str, str | None], ...] = ()


@dataclass
class Entry:
    """One found model and what the run will do with it."""

    found: FoundModel
    meta: ModelMeta
    files: list[FileState]
    action: str  # "reuse", "rehash", "read" or "fail"
    previous: dict[str, Any] | None = None  # previous models-table row
    error: str | None = None  # for "fail": why the model cannot even be listed

    @property
    def model_id(self) -> str:
        return self.found.model_id

    def work_item(self) -> WorkItem:
        prev = self.previous or {}
        return WorkItem(
            model_id=self.model_id,
            location=self.found.location,
            path=str(self.found.path),
            kind=self.found.kind,
            files=tuple(self.files),
            rehash=self.action == "rehash",
            previous_sha256=tuple((f["name"], f["sha256"]) for f in prev.get("files") or []),
        )


@dataclass
class Plan:
    """Every found model with its action, plus previous models no longer found."""

    roots: list[Path]
    entries: list[Entry]
    removed: list[str]
    full: bool = False  # every model read again, and every family planned again

    def work(self) -> list[WorkItem]:
        """Models that need a task (read or rehash), in id order."""
        return [e.work_item() for e in self.entries if e.action in ("read", "rehash")]


def read_meta(found: FoundModel) -> tuple[ModelMeta, str | None]:
    """Card and config.json of a model; an unreadable config.json is the model's error.

    A PEFT adapter's config is its adapter_config.json, and the base model it names
    (``base_model_name_or_path``) is a declared base beside the card's."""
    meta = ModelMeta(name=found.location)
    error = None
    card_path = found.card_path
    if card_path is not None and card_path.is_file():
        card = read_card(card_path)
        meta.name = card.name or found.location
        meta.description = card.description
        meta.base_models = card.base_models
        meta.card = card.metadata or None
        meta.problems = [f"{card_path}: {p}" for p in card.problems]
    if found.kind == "folder":
        try:
            meta.config = read_config(found.path)
        except CheckpointError as exc:
            error = str(exc)
        base = peft.declared_base(meta.config) if adapter_file(found.path) else None
        if base and base.lower() not in {b.lower() for b in meta.base_models}:
            meta.base_models = [*meta.base_models, base]
    return meta, error


def list_files(found: FoundModel) -> list[FileState]:
    """The model's weight files with size and mtime (raises CheckpointError)."""
    if found.kind == "folder":
        _layout, paths = weight_files(found.path)
    elif found.path.suffix == ".gguf":
        paths = split_files(found.path)
    else:
        paths = [found.path]
    states = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError as exc:
            raise _stat_error(p, exc) from None
        name = p.relative_to(found.path).as_posix() if found.kind == "folder" else p.name
        states.append(FileState(name, st.st_size, st.st_mtime))
    return sorted(states, key=lambda f: f.name)


def _stat_error(path: Path, exc: OSError) -> CheckpointError:
    return CheckpointError(path, f"cannot stat: {exc.strerror or exc}")


def previous_paths(previous: IndexData) -> dict[str, str]:
    """model_id -> absolute path recorded by the previous run (empty if none)."""
    raw = previous.meta.get(META_PATHS)
    if not raw:
        return {}
    try:
        paths = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in paths.items()} if isinstance(paths, dict) else {}


def previous_roots(previous: IndexData) -> list[str]:
    """The crawl roots recorded by the previous run."""
    raw = previous.meta.get(META_ROOTS)
    try:
        roots = json.loads(raw) if raw else []
    except json.JSONDecodeError:
        return []
    return [str(r) for r in roots] if isinstance(roots, list) else []


def _decide(files: list[FileState], prev: dict[str, Any] | None) -> tuple[str, list[FileState]]:
    if prev is None or prev.get("status") not in ("ok", "failed"):
        return "read", files
    old = {f["name"]: f for f in prev.get("files") or []}
    if [f.name for f in files] != [f["name"] for f in prev.get("files") or []]:
        return "read", files
    if any(f.bytes != old[f.name]["bytes"] for f in files):
        return "read", files
    trusted = [
        replace(f, sha256=old[f.name]["sha256"]) if f.mtime == old[f.name]["mtime"] else f
        for f in files
    ]
    if all(f.mtime == old[f.name]["mtime"] for f in files):
        return "reuse", trusted
    if prev["status"] == "failed" or any(old[f.name]["sha256"] is None for f in files):
        return "read", files
    return "rehash", trusted


def _format_changed(found: FoundModel, meta: ModelMeta, prev: dict[str, Any]) -> bool:
    """A LoRA adapter folder stored under another format (by a heritage that read it as
    plain safetensors): read again, its tensors are sampled where its base's are."""
    if prev.get("status") != "ok" or found.kind != "folder":
        return False
    lora = peft.is_lora(meta.config) and adapter_file(found.path) is not None
    return lora != (prev.get("format") == peft.FORMAT)


def plan_run(discovery: Discovery, previous: IndexData, full: bool = False) -> Plan:
    """Match found models with the previous index (by absolute path) and pick actions.

    ``full`` re-reads every model whatever the previous run stored.
    """
    by_path: dict[str, dict[str, Any]] = {}
    paths = previous_paths(previous)
    for row in previous.models.iter_rows(named=True):
        if row.get("source") != "local":
            continue
        key = paths.get(row["model_id"])
        if key is not None:
            by_path[key] = row
    entries = []
    for found in discovery.models:
        prev = by_path.get(str(found.path))
        meta, error = read_meta(found)
        if error is None:
            try:
                files = list_files(found)
            except CheckpointError as exc:
                files, error = [], str(exc)
        else:
            files = []
        if error is not None:
            entries.append(Entry(found, meta, files, "fail", prev, error))
            continue
        action, files = ("read", files) if full else _decide(files, prev)
        if action != "read" and prev is not None and _format_changed(found, meta, prev):
            action = "read"
        entries.append(Entry(found, meta, files, action, prev))
    kept = {e.previous["model_id"] for e in entries if e.previous is not None}
    local = previous.models.filter(pl.col("source") == "local")["model_id"].to_list()
    removed = sorted(m for m in local if m not in kept)
    return Plan(roots=list(discovery.roots), entries=entries, removed=removed, full=full)
