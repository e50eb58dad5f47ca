"""Progress reporting for a crawl, decoupled from who draws it.

The pipeline (plain or Prefect flow) calls :func:`current` and reports into whatever the
caller installed with :func:`reporting`; by default nothing is drawn. The CLI installs a
rich progress bar when stdout is a terminal.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class CrawlProgress(Protocol):
    """What a crawl reports: the walk, one tick per model read, one per family planned."""

    def discovering(self, folders: int, models: int) -> None: ...

    def start_reading(self, total: int) -> None: ...

    def model_done(self, model_id: str) -> None: ...

    def start_lineage(self, families: int) -> None: ...

    def family_done(self, members: int) -> None: ...

    def close(self) -> None: ...


class NoProgress:
    """Reports nothing (the default, and what a non-terminal gets)."""

    def discovering(self, folders: int, models: int) -> None:
        pass

    def start_reading(self, total: int) -> None:
        pass

    def model_done(self, model_id: str) -> None:
        pass

    def start_lineage(self, families: int) -> None:
        pass

    def family_done(self, members: int) -> None:
        pass

    def close(self) -> None:
        pass


class RichProgress:
    """A spinner while searching folders, then bars over the models to fingerprint and
    the families to plan, each with the time left."""

    def __init__(self, console: Console | None = None) -> None:
        self._bar = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[last]}"),
            console=console,
            transient=False,
        )
        self._lock = threading.Lock()
        self._walk: int | None = None
        self._read: int | None = None
        self._plan: int | None = None
        self._started = False

    def _start(self) -> None:
        # started on the first report, so flow start-up time is not shown as walking time
        if not self._started:
            self._bar.start()
            self._started = True

    def discovering(self, folders: int, models: int) -> None:
        with self._lock:
            self._start()
            if self._walk is None:
                self._walk = self._bar.add_task("discovering", total=None, last="")
            self._bar.update(self._walk, completed=folders, last=f"{models} models found")

    def start_reading(self, total: int) -> None:
        with self._lock:
            self._start()
            if self._walk is not None:
                self._bar.update(self._walk, total=self._bar.tasks[self._walk].completed)
            self._read = self._bar.add_task("fingerprinting", total=total, last="")

    def model_done(self, model_id: str) -> None:
        with self._lock:
            if self._read is not None:
                self._bar.update(self._read, advance=1, last=model_id)

    def start_lineage(self, families: int) -> None:
        with self._lock:
            self._start()
            self._plan = self._bar.add_task("lineage", total=families, last="")

    def family_done(self, members: int) -> None:
        with self._lock:
            if self._plan is not None:
                self._bar.update(self._plan, advance=1, last=f"family of {members}")

    def close(self) -> None:
        if self._started:
            self._bar.stop()


_current: CrawlProgress = NoProgress()


def current() -> CrawlProgress:
    """The progress reporter installed for this process."""
    return _current


@contextlib.contextmanager
def reporting(progress: CrawlProgress) -> Iterator[CrawlProgress]:
    """Install ``progress`` for the duration of a crawl, then close it."""
    global _current
    before, _current = _current, progress
    try:
        yield progress
    finally:
        _current = before
        progress.close()
