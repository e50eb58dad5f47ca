"""One error hierarchy, and exit statuses chosen in one place."""

from __future__ import annotations

import inspect

import pytest

import heritage.errors as errors
from heritage.cli import main
from heritage.errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    BadCheckpoint,
    DiscoveryError,
    GatedRepo,
    HeritageError,
    HttpError,
    IndexBusy,
    UsageError,
    exit_code,
)


def test_every_error_is_a_heritage_error() -> None:
    classes = [
        c for _, c in inspect.getmembers(errors, inspect.isclass) if c.__module__ == errors.__name__
    ]
    assert len(classes) >= 12
    assert all(issubclass(c, HeritageError) for c in classes)


def test_exit_codes() -> None:
    assert exit_code(UsageError("x")) == exit_code(DiscoveryError("x")) == EXIT_USAGE == 2
    assert exit_code(BadCheckpoint("f", "bad")) == exit_code(IndexBusy("db")) == EXIT_ERROR == 1
    assert exit_code(KeyboardInterrupt()) == EXIT_INTERRUPTED == 130


def test_http_errors_carry_url_and_status() -> None:
    exc = GatedRepo("https://hub/resolve/x", "gated or private: HTTP 401 on HEAD", 401)
    assert isinstance(exc, HttpError) and exc.status == 401 and exc.url == "https://hub/resolve/x"
    assert str(exc) == "https://hub/resolve/x: gated or private: HTTP 401 on HEAD"


def test_cli_maps_a_missing_root_to_a_usage_error(tmp_path, capsys) -> None:
    missing = tmp_path / "nowhere"
    code = main(["index", str(missing), "--db", str(tmp_path / "x.duckdb"), "--no-prefect"])
    assert code == EXIT_USAGE
    assert capsys.readouterr().err == f"heritage: error: {missing}: no such file or folder\n"


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_cli_refuses_no_workers(tmp_path, capsys, workers: str) -> None:
    code = main(["index", str(tmp_path), "--db", str(tmp_path / "x.duckdb"), "--workers", workers])
    assert code == EXIT_USAGE
    assert "--workers must be at least 1" in capsys.readouterr().err
