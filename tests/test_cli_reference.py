"""docs/cli.md is what the parser prints, and every subcommand is documented in it."""

from __future__ import annotations

from pathlib import Path

from heritage.cli import COMMANDS
from heritage.cli.reference import cli_reference

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def test_cli_reference_matches_the_parser() -> None:
    assert DOC.read_text() == cli_reference(), "docs/cli.md is stale: run `make docs`"


def test_every_subcommand_and_option_is_in_the_reference() -> None:
    text = cli_reference()
    for command in COMMANDS:
        assert f"## heritage {command.NAME}\n" in text
    for option in ("--db", "--json", "--dask-address", "--no-prefect", "--full", "--plan"):
        assert option in text
