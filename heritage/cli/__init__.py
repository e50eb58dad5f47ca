"""The ``heritage`` command line: one module per subcommand, each with ``register(sub)``
adding its parser and a ``run(args) -> int``; work happens in the package.

Errors reach :func:`main` as :class:`heritage.errors.HeritageError` (or ``OSError``), are
printed in one line, and :func:`heritage.errors.exit_code` picks the exit status.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from heritage import __version__
from heritage.cli import add, hub, index, inspect, publish, zoo
from heritage.cli.options import print_error
from heritage.errors import HeritageError, exit_code

__all__ = ["COMMANDS", "build_parser", "main"]

# in the order ``heritage --help`` lists them
COMMANDS = (inspect, index, add, hub, publish, zoo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heritage",
        description="Recover the family tree of ML models from their weights alone.",
    )
    parser.add_argument("--version", action="version", version=f"heritage {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Offline machines cannot reach Prefect's telemetry endpoint; opt in explicitly instead.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HeritageError as exc:
        print_error(exc)
        return exit_code(exc)
    except OSError as exc:  # e.g. the index cannot be written
        where = f"{exc.filename}: " if exc.filename else ""
        print_error(f"{where}{exc.strerror or exc}")
        return exit_code(exc)
    except KeyboardInterrupt as exc:
        print("heritage: interrupted", file=sys.stderr)
        return exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
