"""Shared fixtures: one small zoo per source version, built once and cached on disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from heritage.zoo.cache import cached_zoo


@pytest.fixture(scope="session")
def small_zoo() -> Path:
    """Folder of the small seed-0 zoo (built on first use, then reused across sessions)."""
    return cached_zoo("small", 0, root=Path(__file__).resolve().parents[2] / ".cache")
