"""Fixtures for the site tests: test indexes (hand-made, hostile, synthetic) and a browser."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest
from playwright.sync_api import Browser

from heritage.index import IndexData, model_row, models_frame, table_frame, write_index
from heritage.publish import publish
from heritage.publish.browser import CHROMIUM, CHROMIUM_ARGS
from heritage.publish.synthetic import synthetic_index
from tests.index.sample import sample_index

SCREENSHOTS = Path(__file__).resolve().parents[2] / "build" / "screenshots"

EVIL_NAME = "<script>alert(1)</script>"
EVIL_ID = "evil/<script>alert(1)</script>"
EVIL_DESCRIPTION = (
    'Try <img src=x onerror="alert(2)"> and [click me](javascript:alert(3)) or '
    "[data](data:text/html;base64,PHNjcmlwdD4=) but [the docs](https://example.org/a?b=1&c=2)."
)
EVIL_CARD = {
    "license": "<script>alert(4)</script>",
    "tags": ["<b>bold</b>", "ok"],
    "base_model": '"><svg onload=alert(5)>',
}
PRIVATE_NAME = "secret-org/private-model-zzq"
GATED_NAME = "secret-org/gated-model-zzq"


def hostile_index() -> IndexData:
    """The hand-made sample index plus a hostile model, a private one and a gated one."""
    data = sample_index()
    extra = [
        model_row(
            EVIL_ID,
            name=EVIL_NAME,
            source="hub",
            location='evil/x"><script>alert(6)</script>',
            revision="main",
            format="safetensors",
            n_params=1234,
            n_tensors=2,
            n_layers=1,
            dtypes=["F32"],
            family_id="fam-1",
            description=EVIL_DESCRIPTION,
            declared_base_models=["<i>org/model-a</i>"],
            created_at=datetime(2024, 5, 1),
            indexed_at=datetime(2025, 1, 3),
            status="ok",
            card=EVIL_CARD,
        ),
        model_row(
            "secret/private",
            name=PRIVATE_NAME,
            source="hub",
            location=PRIVATE_NAME,
            family_id="fam-1",
            n_params=999,
            status="ok",
            private=True,
        ),
        model_row(
            "secret/gated",
            name=GATED_NAME,
            source="hub",
            location=GATED_NAME,
            family_id="fam-1",
            n_params=998,
            status="ok",
            gated=True,
        ),
    ]
    edges = table_frame(
        "edges",
        [
            {"parent_id": "a", "child_id": EVIL_ID, "relation": "finetune", "confidence": 0.66},
            {"parent_id": "b", "child_id": "secret/private", "relation": "finetune"},
            {"parent_id": "secret/gated", "child_id": "d", "relation": "adapter"},
        ],
    ).with_columns(direction=pl.lit("inferred"))
    data.models = pl.concat([data.models, models_frame(extra)])
    data.edges = pl.concat([data.edges, edges])
    return data


@pytest.fixture(scope="session")
def hostile_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("db") / "lineage.duckdb"
    write_index(db, hostile_index())
    return db


@pytest.fixture(scope="session")
def site(hostile_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The hostile sample index published once, read by many tests."""
    out = tmp_path_factory.mktemp("pub") / "site"
    publish(hostile_db, out)
    return out


@pytest.fixture(scope="session")
def big_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic index of 600 models with a 260-model family (tree split into pages)."""
    db = tmp_path_factory.mktemp("bigdb") / "lineage.duckdb"
    write_index(db, synthetic_index(600, seed=3, tensors_per_model=4, big_family=260))
    out = tmp_path_factory.mktemp("bigpub") / "site"
    publish(db, out)
    return out


@pytest.fixture()
def fresh_site(hostile_db: Path, tmp_path: Path) -> Path:
    """A private copy of the published site for tests that change it."""
    out = tmp_path / "site"
    publish(hostile_db, out)
    return out


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium driven by Playwright; fails (never skips) when it is missing."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} not found: install it with `apt-get install -y chromium` "
            "(the browser tests never download a browser)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """build/screenshots/, emptied once per test session."""
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
