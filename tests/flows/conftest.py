"""Every test here runs flows: start the session's Prefect test server for them."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _prefect(prefect_harness: str) -> str:
    return prefect_harness
