"""``heritage publish``: the subcommand's arguments and what it runs."""

from __future__ import annotations

import argparse
import sys

DEFAULT_DB = "lineage.duckdb"
DEFAULT_OUT = "build/site"


def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --db, --out and --include-private to a (sub)parser; sets func=run_publish."""
    parser.add_argument(
        "--db", default=DEFAULT_DB, help=f"the DuckDB index to publish (default {DEFAULT_DB})"
    )
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"folder to publish the site into, replaced atomically (default {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--include-private",
        action="store_true",
        help="also publish private and gated models (left out by default)",
    )
    parser.set_defaults(func=run_publish)


def run_publish(args: argparse.Namespace) -> int:
    """Publish the site; one line on success, ``heritage: error: ...`` and 1 on failure."""
    from pathlib import Path

    from heritage.index import IndexVersionError
    from heritage.publish.build import PublishError, publish

    try:
        report = publish(Path(args.db), Path(args.out), include_private=args.include_private)
    except (FileNotFoundError, PublishError, IndexVersionError) as exc:
        print(f"heritage: error: {exc}", file=sys.stderr)
        return 1
    print(report.summary_line())
    return 0
