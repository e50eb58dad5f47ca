"""What every ``heritage`` subcommand shares: the index option and its default, ``--json``,
byte formatting, and the one way errors and warnings are printed."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from heritage.publish.fmt import human_bytes

__all__ = [
    "DEFAULT_DB",
    "add_db",
    "add_json",
    "human_bytes",
    "print_error",
    "print_json",
    "print_warning",
]

DEFAULT_DB = "lineage.duckdb"


def add_db(parser: argparse.ArgumentParser, what: str = "index file") -> None:
    """``--db FILE``, the DuckDB index, ``lineage.duckdb`` in the working folder by default."""
    parser.add_argument(
        "--db", default=DEFAULT_DB, metavar="FILE", help=f"{what} (default {DEFAULT_DB})"
    )


def add_json(parser: argparse.ArgumentParser, what: str = "the report") -> None:
    """``--json``: print machine-readable JSON on stdout instead of text."""
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON")


def print_json(data: Any, out: TextIO | None = None) -> None:
    """``data`` as indented JSON and a newline; values JSON lacks (times, paths) as text."""
    out = out or sys.stdout
    json.dump(data, out, indent=2, default=str)
    print(file=out)


def print_error(problem: BaseException | str) -> None:
    """``heritage: error: ...`` on stderr: the one line every failure is reported in."""
    print(f"heritage: error: {problem}", file=sys.stderr)


def print_warning(problem: str) -> None:
    """``heritage: warning: ...`` on stderr, for what the run works around."""
    print(f"heritage: warning: {problem}", file=sys.stderr)
