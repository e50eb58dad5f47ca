"""Errors raised by the readers.

Every reader failure is a :class:`CheckpointError` carrying the file it concerns and a
reason a user can act on, so that a crawl can record it in one line and move on.
"""

from __future__ import annotations

from pathlib import Path


class CheckpointError(Exception):
    """A checkpoint that cannot be read: names the file and the problem."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class BadCheckpoint(CheckpointError):
    """The file is corrupt, truncated, inconsistent or not a checkpoint at all."""


class UnsafePickle(CheckpointError):
    """A pickle that would need arbitrary globals; it was refused, never executed."""

    def __init__(self, path: str | Path, globals_: list[str]) -> None:
        self.globals = sorted(set(globals_))
        names = ", ".join(self.globals) if self.globals else "unknown globals"
        super().__init__(path, f"unsafe pickle refused: it needs globals {names}")
