"""``heritage publish``: the static catalog site from the index."""

from __future__ import annotations

import argparse
from pathlib import Path

from heritage.cli.options import add_db
from heritage.publish import DEFAULT_OUT

__all__ = ["NAME", "add_publish_arguments", "register", "run_publish"]

NAME = "publish"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help="publish the static catalog site from the index")
    add_publish_arguments(p)


def add_publish_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --db, --out, --include-private and --templates to a (sub)parser; sets
    func=run_publish."""
    add_db(parser, "the DuckDB index to publish")
    parser.add_argument(
        "--out",
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"folder to publish the site into, replaced atomically (default {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--include-private",
        action="store_true",
        help="also publish private and gated models (left out by default)",
    )
    parser.add_argument(
        "--templates",
        metavar="DIR",
        help="folder of Jinja templates that replace the packaged ones of the same file "
        "name (e.g. a copy of base.html); the others still come from the package",
    )
    parser.set_defaults(func=run_publish)


def run_publish(args: argparse.Namespace) -> int:
    """Publish the site and print one line. A missing index (FileNotFoundError), a folder
    that must not be replaced or a missing templates folder (PublishError) and an
    unreadable index (IndexVersionError) reach ``heritage.cli.main``, which prints them and
    chooses the exit status."""
    from heritage.publish import publish

    templates = Path(args.templates) if args.templates else None
    report = publish(
        Path(args.db), Path(args.out), include_private=args.include_private, templates=templates
    )
    print(report.summary_line())
    return 0
