"""Whether Prefect's API can be reached, so a run never fails for the orchestrator's sake.

A flow run without a Prefect server starts a temporary one, which can take long on a
busy machine. ``ensure_startup_timeout`` gives it ``STARTUP_TIMEOUT_SECONDS`` unless the
user chose otherwise (``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS``), and
``orchestration_problem`` connects before the run: when that fails, the caller runs the
same pipeline without Prefect (``heritage.crawl.run_index``), which writes the same index.
"""

from __future__ import annotations

import os

__all__ = ["STARTUP_TIMEOUT_SECONDS", "ensure_startup_timeout", "orchestration_problem"]

STARTUP_TIMEOUT_SECONDS = 120  # Prefect's own default (20 s) is too short on a busy machine
_TIMEOUT_VAR = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"


def ensure_startup_timeout() -> None:
    """Give Prefect's temporary server ``STARTUP_TIMEOUT_SECONDS`` to start, unless the
    environment already sets a timeout."""
    os.environ.setdefault(_TIMEOUT_VAR, str(STARTUP_TIMEOUT_SECONDS))


def orchestration_problem() -> str | None:
    """None when Prefect's API answers (starting the temporary server if there is no
    configured one); otherwise why not, in one line."""
    ensure_startup_timeout()
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            failure = client.api_healthcheck()
    except Exception as exc:  # Prefect raises RuntimeError, httpx errors, OSError ...
        failure = exc
    if failure is None:
        return None
    text = " ".join(str(failure).split())
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(failure).__name__}: {text}" if text else type(failure).__name__
