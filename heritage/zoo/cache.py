"""Build a zoo once per source version and reuse it (tests and demos share the result).

The cache lives in ``<repo>/.cache/zoo-<size>-seed<seed>`` (classic plan) or
``zoo-<size>-<plan>-seed<seed>`` (other plans) and counts as complete only when
its ``.complete`` marker holds the hash of the generator's source files, so editing the
generator regenerates it. A lock file serialises concurrent builders (e.g. pytest-xdist).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path

ZOO_SOURCE_DIR = Path(__file__).resolve().parent
MARKER = ".complete"


def default_cache_root() -> Path:
    """``<repo>/.cache``, or ``$HERITAGE_CACHE_DIR`` when set."""
    env = os.environ.get("HERITAGE_CACHE_DIR")
    return Path(env) if env else ZOO_SOURCE_DIR.parents[1] / ".cache"


def generator_hash() -> str:
    """Hash of every generator source file (name and content) that can change the output."""
    h = hashlib.sha256()
    for path in sorted(ZOO_SOURCE_DIR.glob("*.py")):
        if path.name in ("cache.py", "__main__.py"):
            continue
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def zoo_dir_name(size: str, seed: int, plan: str = "classic") -> str:
    """``zoo-<size>-seed<seed>`` for the classic plan, ``zoo-<size>-<plan>-seed<seed>`` else."""
    return f"zoo-{size}-seed{seed}" if plan == "classic" else f"zoo-{size}-{plan}-seed{seed}"


def cached_zoo(
    size: str = "small",
    seed: int = 0,
    root: Path | None = None,
    plan: str = "classic",
    on_model: Callable[[int, int], None] | None = None,
) -> Path:
    """Return the folder of a complete zoo for (size, seed, plan), building it if needed
    (``on_model(done, total)`` after each model built)."""
    from heritage.zoo.build import build_zoo

    root = Path(root) if root is not None else default_cache_root()
    root.mkdir(parents=True, exist_ok=True)
    name = zoo_dir_name(size, seed, plan)
    target = root / name
    want = generator_hash()
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = target / MARKER
        if marker.exists() and marker.read_text().strip() == want:
            return target
        tmp = root / f"{name}.building"
        if tmp.exists():
            shutil.rmtree(tmp)
        build_zoo(tmp, size=size, seed=seed, plan=plan, on_model=on_model)
        (tmp / MARKER).write_text(want + "\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    return target
