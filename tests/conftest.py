"""Session-wide test setup.

Prefect reads its settings when it is first imported, so its home, result storage and
server options are pointed at a temporary folder here, at import time, before any test
module imports prefect. Subprocesses started by tests inherit the same environment.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_PREFECT_TMP = Path(tempfile.mkdtemp(prefix="heritage-prefect-"))
atexit.register(shutil.rmtree, _PREFECT_TMP, True)
os.environ["PREFECT_HOME"] = str(_PREFECT_TMP / "home")
os.environ["PREFECT_LOCAL_STORAGE_PATH"] = str(_PREFECT_TMP / "storage")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "120"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "INFO")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def small_zoo() -> Path:
    """Folder of the small seed-0 zoo (built on first use, then reused across sessions)."""
    from heritage.zoo.cache import cached_zoo

    return cached_zoo("small", 0, root=REPO / ".cache")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[str]:
    """One temporary Prefect server and database for the whole session; yields its API URL.

    Not autouse: only tests that run flows ask for it (``tests/flows`` does, for all).
    """
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield PREFECT_API_URL.value()
