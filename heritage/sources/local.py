"""Find the models under local folders, without reading any weights.

What counts as one model:

* a **model folder** — a folder in Hugging Face layout: it holds a weights index
  (``model.safetensors.index.json``, ``pytorch_model.bin.index.json``), weights under
  Hugging Face names (``model.safetensors``, ``model-00001-of-00002.safetensors``,
  ``pytorch_model.bin``, ...), a PEFT adapter (``adapter_config.json`` beside
  ``adapter_model.safetensors`` or ``adapter_model.bin``), or ``config.json`` / a model
  card next to exactly one weight file. Its sub-folders are not searched. A folder with ``config.json`` but no weights is a
  model (that will fail to read) only when nothing below it is a model;
* a **loose file** — any other ``.safetensors``, ``.pt``, ``.pth``, ``.bin`` or ``.ckpt``;
* a **GGUF file** — every ``.gguf`` file is a model of its own, in a model folder too
  (a repo often holds several quantizations); a split GGUF
  (``NAME-00001-of-0000N.gguf``) is one model, named by its first part.

Model ids are the location relative to the crawl root (posix), prefixed with the root's
folder name when several roots are crawled; a root that is itself a model is named by its
folder name. Hidden entries, non-model files, broken symlinks, symlink loops and
unreadable files or folders are skipped, each with a reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from heritage.errors import DiscoveryError
from heritage.formats import WEIGHT_SUFFIXES
from heritage.formats.gguf_reader import SPLIT_NAME
from heritage.formats.open import HF_WEIGHT, INDEX_NAMES
from heritage.formats.peft import is_adapter_folder

GGUF_SUFFIX = ".gguf"

CARD_NAME = "README.md"
CONFIG_NAME = "config.json"


@dataclass(frozen=True)
class FoundModel:
    """One model found on disk: where it is and the id it gets in the index."""

    model_id: str
    location: str  # posix path relative to the crawl root
    path: Path  # absolute path of the model folder or loose file
    kind: str  # "folder" or "file"

    @property
    def card_path(self) -> Path | None:
        return self.path / CARD_NAME if self.kind == "folder" else None


@dataclass(frozen=True)
class Skipped:
    """Something under a root that is not indexed, and why."""

    path: str
    reason: str
    severity: str = "info"  # "debug" (hidden), "info" (not a model) or "warning"


@dataclass
class Discovery:
    """The result of a walk: models in id order, and what was skipped."""

    roots: list[Path]
    models: list[FoundModel] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


def is_weight_file(name: str) -> bool:
    """Whether a file name has a checkpoint suffix."""
    return name.endswith(WEIGHT_SUFFIXES)


def is_gguf(name: str) -> bool:
    return name.endswith(GGUF_SUFFIX)


def _gguf_part(name: str) -> str | None:
    """For a later part of a split GGUF, the name of its first part (the model)."""
    m = SPLIT_NAME.match(name)
    if m is None or int(m.group("part")) == 1:
        return None
    return f"{m.group('stem')}-00001-of-{m.group('count')}.gguf"


def _has_card(folder: Path) -> bool:
    """A README.md that opens a YAML front matter (only its first line is read)."""
    try:
        with open(folder / CARD_NAME, "rb") as fh:
            return fh.readline(16).strip().lstrip(b"\xef\xbb\xbf") == b"---"
    except OSError:
        return False


def _readable(path: Path) -> str | None:
    """None when the file can be opened for reading, else the reason it cannot."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        return f"unreadable: {exc.strerror or exc}"
    os.close(fd)
    return None


def classify_folder(folder: Path, files: Sequence[str]) -> str:
    """``model`` (one model folder), ``loose`` (each weight file is a model) or ``maybe``.

    ``maybe`` is a folder with config.json and no weights: a model only when nothing
    below it is one.
    """
    names = set(files)
    weights = [n for n in files if is_weight_file(n) and not is_gguf(n)]
    if names.intersection(INDEX_NAMES) or any(HF_WEIGHT.match(n) for n in weights):
        return "model"
    if is_adapter_folder(names):
        return "model"
    if len(weights) == 1 and (CONFIG_NAME in names or (CARD_NAME in names and _has_card(folder))):
        return "model"
    if not weights and CONFIG_NAME in names:
        return "maybe"
    return "loose"


class _Walker:
    def __init__(self, on_folder: Callable[[int, int], None] | None) -> None:
        self.found: list[tuple[str, Path, str]] = []  # (location, path, kind)
        self.skipped: list[Skipped] = []
        self.seen: dict[str, str] = {}  # real folder path -> path it was first walked as
        self.on_folder = on_folder
        self.n_folders = 0
        # symlinked folders are walked after real ones, so a real path wins over an alias
        self.deferred: list[tuple[Path, str, frozenset[str], str]] = []

    def skip(self, path: Path, reason: str, severity: str = "info") -> None:
        self.skipped.append(Skipped(str(path), reason, severity))

    def walk(self, folder: Path, rel: str, ancestors: frozenset[str], name: str) -> bool:
        """Walk one folder; returns whether any model was found in or below it."""
        real = os.path.realpath(folder)
        if real in ancestors:
            self.skip(folder, f"symlink loop (points back to {real})", "warning")
            return False
        if real in self.seen:
            self.skip(folder, f"already searched as {self.seen[real]}", "info")
            return False
        self.seen[real] = str(folder)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            self.skip(folder, f"cannot list folder: {exc.strerror or exc}", "warning")
            return False
        self.n_folders += 1
        files: list[str] = []
        dirs: list[str] = []
        for e in entries:
            path = folder / e.name
            if e.name.startswith("."):
                self.skip(path, "hidden", "debug")
                continue
            try:
                if e.is_dir():
                    dirs.append(e.name)
                elif e.is_file():
                    files.append(e.name)
                elif e.is_symlink():
                    self.skip(path, "broken symlink", "warning")
                else:
                    self.skip(path, "not a regular file or folder")
            except OSError as exc:
                self.skip(path, f"cannot stat: {exc.strerror or exc}", "warning")
        kind = classify_folder(folder, files)
        here = rel or name
        any_model = self._ggufs(folder, rel, [n for n in files if is_gguf(n)])
        if kind == "model":
            self.found.append((here, folder, "folder"))
            self._progress()
            return True
        if kind == "loose":
            for n in files:
                path = folder / n
                if is_gguf(n):
                    continue
                if not is_weight_file(n):
                    self.skip(path, "not a model file")
                    continue
                any_model = self._file_model(folder, rel, n) or any_model
        else:
            for n in files:
                if n != CONFIG_NAME and not is_gguf(n):
                    self.skip(folder / n, "not a model file")
        self._progress()
        below = ancestors | {real}
        for d in dirs:
            child = (folder / d, f"{rel}/{d}" if rel else d, below, d)
            if (folder / d).is_symlink():
                self.deferred.append(child)
            elif self.walk(*child):
                any_model = True
        if kind == "maybe" and not any_model:
            self.found.append((here, folder, "folder"))
            return True
        if kind == "maybe":
            self.skip(folder / CONFIG_NAME, "config.json of a folder that holds other models")
        return any_model

    def _ggufs(self, folder: Path, rel: str, names: list[str]) -> bool:
        """Each GGUF file (a split GGUF's first part) found as a model of its own."""
        found = False
        for n in names:
            path = folder / n
            first = _gguf_part(n)
            if first is not None:
                self.skip(path, f"part of the split GGUF {first}")
                continue
            found = self._file_model(folder, rel, n) or found
        return found

    def _file_model(self, folder: Path, rel: str, name: str) -> bool:
        """Find one weight file as a model of its own, unless it cannot be read."""
        path = folder / name
        reason = _readable(path)
        if reason:
            self.skip(path, reason, "warning")
            return False
        self.found.append((f"{rel}/{name}" if rel else name, path, "file"))
        return True

    def _progress(self) -> None:
        if self.on_folder:
            self.on_folder(self.n_folders, len(self.found))


def check_roots(roots: Sequence[Path]) -> list[str]:
    """Model-id prefix per root ('' for a single root); raises DiscoveryError on unusable roots.

    Roots must exist, be a folder or a weight file, not repeat or nest, and (when several)
    have distinct folder names, since those prefix the model ids.
    """
    roots = [Path(os.path.abspath(r)) for r in roots]
    for r in roots:
        if not r.exists():
            raise DiscoveryError(f"{r}: no such file or folder")
        if not (r.is_dir() or r.is_file()):
            raise DiscoveryError(f"{r}: not a file or folder")
        if r.is_file() and not is_weight_file(r.name):
            raise DiscoveryError(f"{r}: not a model file ({', '.join(WEIGHT_SUFFIXES)})")
    reals = [Path(os.path.realpath(r)) for r in roots]
    for i, a in enumerate(reals):
        for j, b in enumerate(reals):
            if i < j and a == b:
                raise DiscoveryError(f"{roots[j]}: given twice (same as {roots[i]})")
            if i != j and b != a and a in b.parents:
                raise DiscoveryError(f"{roots[j]}: inside another root {roots[i]}")
    if len(roots) == 1:
        return [""]
    names = [r.name for r in roots]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise DiscoveryError(
                f"{roots[i]}: same folder name as {roots[names.index(n)]}; "
                "model ids would clash (index them into separate files)"
            )
    return names


def discover(
    roots: Sequence[str | Path], on_folder: Callable[[int, int], None] | None = None
) -> Discovery:
    """Walk ``roots`` and list every model, in model-id order.

    ``on_folder(folders_searched, models_found)`` is called as the walk goes, for progress.
    Raises :class:`DiscoveryError` for unusable roots; problems below a root are skipped.
    """
    abs_roots = [Path(os.path.abspath(r)) for r in roots]
    if not abs_roots:
        raise DiscoveryError("no path to index")
    prefixes = check_roots(abs_roots)
    walker = _Walker(on_folder)
    result = Discovery(roots=abs_roots)
    by_id: dict[str, FoundModel] = {}
    for root, prefix in zip(abs_roots, prefixes, strict=True):
        start = len(walker.found)
        if root.is_file():
            reason = _readable(root)
            if reason:
                walker.skip(root, reason, "warning")
            else:
                walker.found.append((root.name, root, "file"))
        else:
            walker.walk(root, "", frozenset(), root.name)
            while walker.deferred:
                walker.walk(*walker.deferred.pop(0))
        for location, path, kind in walker.found[start:]:
            is_root = path == root
            model_id = f"{prefix}/{location}" if prefix and not is_root else location
            if model_id in by_id:
                walker.skip(path, f"model id {model_id!r} already taken by {by_id[model_id].path}")
                continue
            by_id[model_id] = FoundModel(model_id, location, path, kind)
    result.models = [by_id[k] for k in sorted(by_id)]
    result.skipped = walker.skipped
    return result
