"""Prefect flow ``publish-site``: publish the static catalog site from the DuckDB index.

Thin wrapper around :func:`heritage.publish.publish`. The index flows call it at their
end, either as a subflow or through their ``publish_hook`` option with
``flows.publish_site:publish_hook`` (the site folder then comes from ``HERITAGE_SITE_DIR``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from heritage.publish import DEFAULT_DB, DEFAULT_OUT, publish


@flow(name="publish-site")
def publish_site(
    db: str = DEFAULT_DB,
    out: str = DEFAULT_OUT,
    include_private: bool = False,
    templates: str | None = None,
) -> dict[str, Any]:
    """Render the index ``db`` into the site folder ``out`` (replaced atomically).

    Private and gated models are left out unless ``include_private``. Templates in the
    folder ``templates`` replace the package's of the same file name. Returns the
    publish report as a dict (counts, seconds, seconds per step).
    """
    report = publish(
        Path(db),
        Path(out),
        include_private=include_private,
        templates=Path(templates) if templates else None,
    )
    get_run_logger().info("%s", report.summary_line())
    return report.to_dict()


def publish_hook(db: str, run_report: dict[str, Any] | None = None) -> dict[str, Any]:
    """``publish_hook`` for the index flows: ``flows.publish_site:publish_hook``.

    Publishes to ``$HERITAGE_SITE_DIR`` (default ``build/site``); private models only when
    ``HERITAGE_SITE_INCLUDE_PRIVATE=1``. Calls the plain function, not the flow, so it
    works inside a task as well as outside Prefect.
    """
    out = os.environ.get("HERITAGE_SITE_DIR", DEFAULT_OUT)
    include_private = os.environ.get("HERITAGE_SITE_INCLUDE_PRIVATE", "") in ("1", "true", "yes")
    return publish(Path(db), Path(out), include_private=include_private).to_dict()


if __name__ == "__main__":
    publish_site()
