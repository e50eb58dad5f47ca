"""Prefect flow ``index-hub``: list Hub repos, read headers and samples, merge into the index.

Thin wiring: one task calls :func:`heritage.hub.crawl.run_hub`, which reads each repo
through HTTP range requests, records failed repos (gated, refused replies) without
stopping, skips repos whose commit is already indexed, and writes the index atomically.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from heritage.hub.crawl import run_hub


@task(name="crawl-hub", cache_policy=NO_CACHE)
def crawl_hub(db: str, options: dict[str, Any]) -> dict[str, Any]:
    report = run_hub(db, **options)
    return {
        "db": report.db,
        "read": report.read,
        "unchanged": report.unchanged,
        "not_fingerprinted": report.not_fingerprinted,
        "failed": [list(f) for f in report.failed],
        "bytes_read": report.bytes_read,
        "requests": report.requests,
        "resolver_requests": report.resolver_requests,
        "cdn_requests": report.cdn_requests,
        "n_edges": report.n_edges,
        "n_families": report.n_families,
    }


@flow(name="index-hub", log_prints=False)
def index_hub(
    db: str = "lineage.duckdb",
    search: str | None = None,
    author: str | None = None,
    filter: Sequence[str] | None = None,
    sort: str | None = None,
    limit: int | None = 100,
    repos: Sequence[str] | None = None,
    revision: str | None = None,
    endpoint: str | None = None,
    full: bool = False,
) -> dict[str, Any]:
    """Index Hub repos into ``db`` (HF_TOKEN and HF_ENDPOINT are honoured)."""
    options = {
        "endpoint": endpoint,
        "search": search,
        "author": author,
        "filter": list(filter) if filter else None,
        "sort": sort,
        "limit": limit,
        "repos": list(repos) if repos else None,
        "revision": revision,
        "full": full,
        "flow": "index-hub",
    }
    result = crawl_hub(db, options)
    logger = get_run_logger()
    logger.info(
        "%d read, %d unchanged, %d not fingerprinted, %d failed; %d bytes in %d requests",
        len(result["read"]),
        len(result["unchanged"]),
        len(result["not_fingerprinted"]),
        len(result["failed"]),
        result["bytes_read"],
        result["requests"],
    )
    for repo, err in result["failed"]:
        logger.warning("failed %s: %s", repo, err)
    return result
