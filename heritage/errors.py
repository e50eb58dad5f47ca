"""Every error ``heritage`` raises on purpose, in one hierarchy, and the exit code of each.

A caller catches :class:`HeritageError` for "a problem heritage explained" and lets anything
else surface as a bug. Each class carries what a user needs to act (the file, the URL and
HTTP status, the index path), and ``str(exc)`` is one line naming it.

    HeritageError
    ├── UsageError            a bad command line: paths, names, sizes, options    (exit 2)
    │   └── DiscoveryError    a root to index that is missing, not a model, or given twice
    ├── CheckpointError       a checkpoint that cannot be read: names the file
    │   ├── BadCheckpoint     corrupt, truncated, inconsistent, not a checkpoint
    │   ├── UnsafePickle      a pickle needing arbitrary globals, refused
    │   ├── NotReadRemotely   weights not read over HTTP (a legacy pickle too large)
    │   └── HttpError         a remote file that could not be read: URL and status
    │       ├── GatedRepo     401/403, or the Hub's ``X-Error-Code: GatedRepo``
    │       └── NotFound      404: the repo, revision or file does not exist
    ├── IndexBusy             another run is writing the same index file
    ├── IndexVersionError     not an index this code can read (newer or foreign)
    ├── PublishError          the site cannot be published to the requested folder
    └── UploadError           an upload into the lake refused or failed

:func:`exit_code` is the one place exit statuses are chosen.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "BadCheckpoint",
    "CheckpointError",
    "DiscoveryError",
    "GatedRepo",
    "HeritageError",
    "HttpError",
    "IndexBusy",
    "IndexVersionError",
    "NotFound",
    "NotReadRemotely",
    "PublishError",
    "UnsafePickle",
    "UploadError",
    "UsageError",
    "exit_code",
]

EXIT_OK = 0
EXIT_ERROR = 1  # heritage explained the problem (a file, the index, the network)
EXIT_USAGE = 2  # the command line asked for something impossible (as argparse does)
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports SIGINT


class HeritageError(Exception):
    """A problem ``heritage`` detected and explained in one line."""


class UsageError(HeritageError):
    """A bad command line (paths, names, sizes, options)."""


class DiscoveryError(UsageError):
    """A folder or file given to index that cannot be: missing, not a model, given twice."""


class CheckpointError(HeritageError):
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


class NotReadRemotely(CheckpointError):
    """Weights that are not read over HTTP (a legacy pickle over the download limit)."""


class HttpError(CheckpointError):
    """A remote file that could not be read: the URL, the reason and the HTTP status if any."""

    def __init__(self, url: str, reason: str, status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(url, reason)


class GatedRepo(HttpError):
    """The Hub refused the file: a gated or private repo and no token with access."""


class NotFound(HttpError):
    """HTTP 404: the repo, the revision or the file does not exist."""


class IndexBusy(HeritageError):
    """Another run is writing the same index file."""


class IndexVersionError(HeritageError):
    """The file is not an index this code can read (newer schema, or not an index)."""


class PublishError(HeritageError):
    """The site cannot be published to the requested folder."""


class UploadError(HeritageError):
    """An upload refused: bad name, format or size, name taken, or a bad copy."""


def exit_code(exc: BaseException) -> int:
    """The exit status for a run that ended with ``exc``."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, UsageError):
        return EXIT_USAGE
    return EXIT_ERROR
