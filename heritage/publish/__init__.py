"""The static catalog site: pages, JSON API and lineage exports published from the index.

``publish(db, out)`` renders the index into a folder that works from ``file://`` or any
static host; ``add_publish_arguments`` / ``run_publish`` give the ``heritage publish``
subcommand. The heavy imports (Jinja, DuckDB) wait until something is published, so the
command line stays quick to start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heritage.publish.cli import DEFAULT_DB, DEFAULT_OUT, add_publish_arguments, run_publish

if TYPE_CHECKING:
    from heritage.publish.build import PublishError, PublishReport, publish

__all__ = [
    "DEFAULT_DB",
    "DEFAULT_OUT",
    "PublishError",
    "PublishReport",
    "add_publish_arguments",
    "publish",
    "run_publish",
]


def __getattr__(name: str) -> Any:
    if name in ("publish", "PublishReport", "PublishError"):
        from heritage.publish import build

        return getattr(build, name)
    raise AttributeError(f"module 'heritage.publish' has no attribute {name!r}")
