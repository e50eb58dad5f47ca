"""``heritage index``: find, fingerprint and relate every model under folders."""

from __future__ import annotations

import argparse
import sys

from heritage.cli.options import add_json, print_json
from heritage.cli.runs import add_run_options, preflight, print_report, run_index_flow

NAME = "index"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="find, fingerprint and relate every model under folders (incremental)",
        description="Find every model under PATHs, fingerprint what changed since the last "
        "run, recompute lineage and write the DuckDB index. Models that cannot be read are "
        "recorded as failed and reported; the exit status is still 0.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="folder or checkpoint file")
    add_run_options(p)
    p.add_argument(
        "--full",
        action="store_true",
        help="re-read every model, changed or not, and plan every family's lineage again",
    )
    p.add_argument(
        "--publish-hook",
        metavar="MODULE:FUNCTION",
        help="call FUNCTION(db_path, report) after the index is written",
    )
    add_json(p, "the run report")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Index every model under PATHs; failed models are reported, not fatal (exit 0)."""
    preflight(args.paths, args.db)
    report = run_index_flow(args, args.paths)
    if args.json:
        print_json(report)
    else:
        print_report(report, sys.stdout)
    return 0
