"""The static catalog site: pages, JSON API and lineage exports published from the index.

``publish(db, out)`` renders the index into a folder that works from ``file://`` or any
static host; ``heritage publish`` (heritage/cli/publish.py) runs it. The heavy imports
(Jinja, DuckDB) wait until something is published, so the command line stays quick to
start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

DEFAULT_DB = "lineage.duckdb"  # the index every command reads by default (heritage.cli.options)
DEFAULT_OUT = "build/site"

if TYPE_CHECKING:
    from heritage.publish.build import PublishError, PublishReport, publish

__all__ = [
    "DEFAULT_DB",
    "DEFAULT_OUT",
    "PublishError",
    "PublishReport",
    "publish",
]


def __getattr__(name: str) -> Any:
    if name in ("publish", "PublishReport", "PublishError"):
        from heritage.publish import build

        return getattr(build, name)
    raise AttributeError(f"module 'heritage.publish' has no attribute {name!r}")
