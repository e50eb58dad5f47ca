"""What ``heritage index`` and ``heritage add`` share: the run options, the checks made
before a run starts, the run itself (Prefect flow, or plain when Prefect cannot start),
and the report printed after it."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from heritage.cli.options import add_db, human_bytes, print_warning
from heritage.errors import UsageError

if TYPE_CHECKING:
    from heritage.crawl.progress import CrawlProgress

__all__ = ["add_run_options", "preflight", "print_report", "run_index_flow"]


def add_run_options(p: argparse.ArgumentParser) -> None:
    """--db, --workers, --dask-address, --no-progress and --no-prefect."""
    add_db(p)
    p.add_argument(
        "--workers", type=int, default=4, help="fingerprint tasks run at once (default 4)"
    )
    p.add_argument(
        "--dask-address",
        metavar="tcp://HOST:PORT",
        help="run the fingerprint tasks on this existing Dask cluster",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-prefect",
        action="store_true",
        help="run the same steps without Prefect (no flow run, no artifacts)",
    )


class _QuietTaskLogs(logging.Filter):
    """Drop Prefect's per-task "Finished in state Completed()" lines (and, under a progress
    bar, the per-model "fingerprinting" lines the bar already shows)."""

    def __init__(self, bar: bool) -> None:
        super().__init__()
        self.prefixes = ("Finished in state Completed",) + (
            ("fingerprinting ", "rehashing ") if bar else ()
        )

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def _progress(args: argparse.Namespace) -> CrawlProgress:
    from heritage.crawl.progress import NoProgress, RichProgress

    if args.no_progress or not sys.stdout.isatty():
        return NoProgress()
    return RichProgress()


def preflight(paths: Sequence[str], db: str) -> None:
    """Fail fast, before any flow starts, on unusable roots or an unreadable index."""
    from heritage.index import connect_readonly
    from heritage.sources import check_roots

    check_roots([Path(p) for p in paths])  # DiscoveryError is a UsageError
    if Path(db).exists():
        connect_readonly(db).close()  # raises IndexVersionError for a newer/foreign file


def run_index_flow(args: argparse.Namespace, paths: Sequence[str]) -> dict[str, Any]:
    """Run the index flow (or the plain pipeline with --no-prefect, or when Prefect cannot
    start); the report as a dict."""
    from heritage.crawl.orchestration import orchestration_problem
    from heritage.crawl.progress import RichProgress, reporting

    if args.workers < 1:
        raise UsageError("--workers must be at least 1")
    if args.no_prefect and args.dask_address:
        raise UsageError("--dask-address needs Prefect; drop --no-prefect")
    plain = args.no_prefect
    if not plain:
        problem = orchestration_problem()
        if problem is not None:
            if args.dask_address:
                raise UsageError(f"--dask-address needs Prefect, which cannot start ({problem})")
            print_warning(f"Prefect cannot start ({problem}); indexing without it (same index)")
            plain = True
    options = {
        "workers": args.workers,
        "full": getattr(args, "full", False),
        "publish_hook": getattr(args, "publish_hook", None),
    }
    progress = _progress(args)
    with reporting(progress):
        if plain:
            from heritage.crawl import run_index

            if not logging.getLogger().handlers:
                logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
            return run_index(paths, args.db, **options).to_dict()
        from flows.index_local import index_local

        quiet = _QuietTaskLogs(bar=isinstance(progress, RichProgress))
        task_logger = logging.getLogger("prefect.task_runs")
        task_logger.addFilter(quiet)
        try:
            return index_local(
                paths=list(paths), db=args.db, dask_address=args.dask_address, **options
            )
        finally:
            task_logger.removeFilter(quiet)


def print_report(report: dict[str, Any], out: TextIO) -> None:
    """The run in four lines (models, lineage, bytes, index) plus one per failed model."""
    print(
        f"{report['n_seen']} models: {len(report['added'])} added, "
        f"{len(report['changed'])} changed, {report['n_unchanged']} unchanged, "
        f"{len(report['failed'])} failed, {len(report['removed'])} removed",
        file=out,
    )
    n_changed = (
        len(report["edges_added"]) + len(report["edges_removed"]) + len(report["edges_changed"])
    )
    print(
        f"lineage: {report['n_edges']} edges in {report['n_families']} families "
        f"({n_changed} changed)",
        file=out,
    )
    print(
        f"read {human_bytes(report['bytes_read'])} of checkpoints, hashed "
        f"{human_bytes(report['bytes_hashed'])}, in {report['seconds']:.1f} s",
        file=out,
    )
    for f in report["failed"]:
        print(f"failed: {f['error']}", file=out)
    print(f"index: {report['db']}", file=out)
