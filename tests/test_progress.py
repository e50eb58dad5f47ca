"""The crawl's progress reports: one tick per model read and per family planned."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from heritage.crawl import run_index
from heritage.crawl.progress import RichProgress, reporting


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    def discovering(self, folders: int, models: int) -> None:
        self.events.append(("discovering", models))

    def start_reading(self, total: int) -> None:
        self.events.append(("start_reading", total))

    def model_done(self, model_id: str) -> None:
        self.events.append(("model_done", model_id))

    def start_lineage(self, families: int) -> None:
        self.events.append(("start_lineage", families))

    def family_done(self, members: int) -> None:
        self.events.append(("family_done", members))

    def close(self) -> None:
        self.events.append(("close", None))


def test_plain_run_ticks_once_per_model_and_per_family(small_zoo: Path, tmp_path: Path) -> None:
    rec = Recorder()
    with reporting(rec):
        report = run_index([small_zoo], tmp_path / "i.duckdb", workers=2)
    kinds = [k for k, _ in rec.events]
    assert kinds.count("model_done") == report.n_seen
    (families,) = [n for k, n in rec.events if k == "start_lineage"]
    sizes = [n for k, n in rec.events if k == "family_done"]
    assert len(sizes) == families == report.n_families
    assert sum(sizes) == report.n_ok  # every ok model is planned in exactly one family
    assert kinds.index("start_lineage") > max(i for i, k in enumerate(kinds) if k == "model_done")


def test_rich_bars_show_models_and_families() -> None:
    out = io.StringIO()
    bars = RichProgress(Console(file=out, width=120, force_terminal=False))
    bars.start_reading(2)
    bars.model_done("a")
    bars.model_done("b")
    bars.start_lineage(3)
    for n in (4, 2, 1):
        bars.family_done(n)
    bars.close()
    text = out.getvalue()
    assert "lineage" in text and "3/3" in text and "2/2" in text
    assert "family of 1" in text
