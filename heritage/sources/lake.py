"""The lake: a local folder that ``heritage add`` uploads models into.

An upload becomes a model folder ``<lake>/<name>/`` holding the weight file (under its
own file name) and a ``README.md`` card carrying the name and description, so the normal
crawl indexes it like any other model. The copy is made into a hidden temporary folder,
its sha256 is checked against the source's, and only then is it renamed into place: a
failed or interrupted upload never leaves a half-copied model in the lake.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from heritage.errors import UploadError
from heritage.formats import CheckpointError, open_checkpoint
from heritage.sources.local import CARD_NAME, is_weight_file
from heritage.summary import file_sha256

DEFAULT_MAX_BYTES = 5 * 10**9  # 5 GB
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)?$")
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_CHUNK = 1 << 20


@dataclass
class Upload:
    """Where an upload landed and what it holds."""

    name: str
    folder: Path
    file: Path
    bytes: int
    sha256: str


def parse_size(text: str) -> int:
    """``5GB``, ``500 MB``, ``2GiB`` or a byte count, as bytes (decimal units are 1000-based)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    unit = m.group(2).upper() if m else ""
    if not m or unit not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 5GB, 500MB or a byte count)")
    return int(float(m.group(1)) * _UNITS[unit])


def check_name(name: str) -> str:
    """Names are ``model`` or ``org/model`` of letters, digits, ``.``, ``_`` and ``-``."""
    if not _NAME.fullmatch(name) or any(part in (".", "..") for part in name.split("/")):
        raise UploadError(
            f"invalid name {name!r}: use 'model' or 'org/model' with letters, digits, . _ -"
        )
    return name


def _copy_hashing(src: Path, dst: Path) -> str:
    """Copy ``src`` to ``dst`` (fsynced), returning the sha256 of the bytes read."""
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        while chunk := fin.read(_CHUNK):
            h.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest()


def _card(name: str, description: str | None) -> str:
    front = {"name": name}
    if description:
        front["description"] = " ".join(description.split())
    body = yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
    return f"---\n{body}---\n\n# {name}\n\n{front.get('description', '')}\n"


def add_to_lake(
    file: Path | str,
    name: str,
    lake: Path | str,
    description: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    taken: set[str] | frozenset[str] = frozenset(),
) -> Upload:
    """Check ``file`` and copy it into ``lake`` as model ``name``; returns where it went.

    Refuses (UploadError, or CheckpointError for an unreadable checkpoint) a bad name, a
    name already in the lake or in ``taken`` (names already indexed), a file that is not a
    checkpoint, one over ``max_bytes``, and a copy whose sha256 differs from the source.
    """
    src = Path(file)
    check_name(name)
    if name in taken:
        raise UploadError(f"name {name!r} already exists in the index")
    lake = Path(lake)
    target = lake / name
    if target.exists() or target.is_symlink():
        raise UploadError(f"name {name!r} already exists in the lake ({target})")
    if "/" in name:
        org = lake / name.split("/")[0]
        if (
            org.is_file()
            or (org / CARD_NAME).exists()
            or (org.is_dir() and any(is_weight_file(p.name) for p in org.iterdir()))
        ):
            raise UploadError(f"name {name!r}: {org} is a model, not an organisation folder")
    if not src.is_file():
        raise UploadError(f"{src}: not a file")
    if not is_weight_file(src.name):
        raise UploadError(
            f"{src}: unsupported format {src.suffix or '(none)'!r} "
            "(expected .safetensors, .pt, .pth, .bin or .ckpt)"
        )
    size = src.stat().st_size
    if size > max_bytes:
        raise UploadError(f"{src}: {size:,} bytes is over the {max_bytes:,} byte upload limit")
    with open_checkpoint(src) as ckpt:  # header / pickle checks only, no weights read
        if not ckpt.tensors:
            raise CheckpointError(src, "not a checkpoint: it holds no tensors")
    lake.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(lake).free
    if size > free:
        raise UploadError(f"{lake}: {free:,} bytes free, the upload needs {size:,}")
    tmp = lake / f".upload-{os.getpid()}-{name.replace('/', '--')}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        copy = tmp / src.name
        source_sha = _copy_hashing(src, copy)
        copy_sha = file_sha256(copy)
        if copy_sha != source_sha:
            raise UploadError(f"{copy}: sha256 of the copy differs from {src}; upload discarded")
        (tmp / CARD_NAME).write_text(_card(name, description), encoding="utf-8")
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            raise UploadError(f"name {name!r} already exists in the lake ({target})")
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return Upload(name, target, target / src.name, size, copy_sha)
