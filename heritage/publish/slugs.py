"""Safe, stable file names for model and family ids.

Ids come from strangers and contain slashes (``org/name``), dots, spaces or anything
else, so every page, JSON file and link uses :func:`slug` instead: a readable ASCII part
plus a short hash of the exact id. Two ids never share a slug in practice (the hash
separates ids that read the same, e.g. ``Org/A`` and ``org/a``), and the same id always
gets the same slug, so links stay valid across publishes.
"""

from __future__ import annotations

import hashlib
import re

_UNSAFE = re.compile(r"[^a-z0-9]+")
READABLE_LIMIT = 48  # characters of the readable part kept


def slug(identifier: str) -> str:
    """``org/Name v2`` -> ``org-name-v2-1a2b3c4d``: lowercase ASCII, digits and dashes only."""
    readable = _UNSAFE.sub("-", identifier.lower()).strip("-")[:READABLE_LIMIT].strip("-")
    digest = hashlib.sha256(identifier.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{readable}-{digest}" if readable else digest
