"""One index run's bookkeeping, the same for every source (a local folder, the Hub).

The lock that keeps two runs off one index file, the clock the tables use, the run's
identity and report, the diff of its edges against the previous index, and the row it
adds to the ``runs`` table.
"""

from __future__ import annotations

import contextlib
import fcntl
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import polars as pl

from heritage.errors import IndexBusy
from heritage.index.frames import to_timestamp

__all__ = [
    "EdgeChanges",
    "RunInfo",
    "RunReport",
    "RunStatus",
    "diff_edges",
    "index_lock",
    "new_run_id",
    "runs_row",
    "utcnow",
]


def utcnow() -> datetime:
    """Naive UTC now, at microsecond precision (what a TIMESTAMP column holds)."""
    return datetime.now(UTC).replace(tzinfo=None)


def new_run_id() -> str:
    return uuid.uuid4().hex


@contextlib.contextmanager
def index_lock(db: Path | str) -> Iterator[None]:
    """Hold ``<db>.lock`` for a run, so two runs never interleave on one index file.

    The lock is an ``flock``: a killed run releases it with its process.
    """
    db = Path(db)
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexBusy(f"{db}: another run is writing this index") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass
class RunInfo:
    """Identity of one run, for the ``runs`` table: its id, start, the flow (or plain
    command) that ran it, and what it read (folders, or a Hub endpoint)."""

    run_id: str
    started_at: datetime
    flow: str = "index-local"
    source: str = ""


class RunStatus(StrEnum):
    OK = "ok"
    PARTIAL = "partial"  # some models failed, others were read
    FAILED = "failed"  # every model seen failed


@dataclass
class EdgeChanges:
    """Lineage edges (parent, child) added, removed or changed since the previous index."""

    added: list[tuple[str, str, str]] = field(default_factory=list)  # + relation
    removed: list[tuple[str, str, str]] = field(default_factory=list)
    changed: list[tuple[str, str, str]] = field(default_factory=list)  # new relation

    @property
    def count(self) -> int:
        return len(self.added) + len(self.removed) + len(self.changed)


@dataclass
class RunReport:
    """What a run did: the ``runs`` row plus the lists a person wants to read."""

    run_id: str
    db: str = ""
    n_seen: int = 0
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (model_id, error)
    removed: list[str] = field(default_factory=list)
    edges: EdgeChanges = field(default_factory=EdgeChanges)
    n_skipped: int = 0
    bytes_read: int = 0
    bytes_hashed: int = 0
    n_ok: int = 0
    n_edges: int = 0
    n_families: int = 0
    n_replanned: int = 0  # models whose family lineage planned again
    status: str = RunStatus.OK
    seconds: float = 0.0

    def settle_status(self) -> None:
        """ok, partial (some models failed) or failed (every model seen failed)."""
        if not self.failed:
            self.status = RunStatus.OK
        elif self.n_seen > len(self.failed):
            self.status = RunStatus.PARTIAL
        else:
            self.status = RunStatus.FAILED

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (the flow's return value)."""
        return {
            "run_id": self.run_id,
            "db": self.db,
            "status": str(self.status),
            "n_seen": self.n_seen,
            "n_ok": self.n_ok,
            "added": self.added,
            "changed": self.changed,
            "n_unchanged": len(self.unchanged),
            "failed": [{"model_id": m, "error": e} for m, e in self.failed],
            "removed": self.removed,
            "edges_added": [list(e) for e in self.edges.added],
            "edges_removed": [list(e) for e in self.edges.removed],
            "edges_changed": [list(e) for e in self.edges.changed],
            "n_edges": self.n_edges,
            "n_families": self.n_families,
            "n_replanned": self.n_replanned,
            "n_skipped": self.n_skipped,
            "bytes_read": self.bytes_read,
            "bytes_hashed": self.bytes_hashed,
            "seconds": round(self.seconds, 3),
        }

    def summary_line(self) -> str:
        return (
            f"{self.n_seen} models: {len(self.added)} added, {len(self.changed)} changed, "
            f"{len(self.unchanged)} unchanged, {len(self.failed)} failed, "
            f"{len(self.removed)} removed; {self.edges.count} edges changed "
            f"({self.n_edges} edges, {self.n_families} families, "
            f"{self.n_replanned} models' families planned again); "
            f"{self.bytes_read:,} checkpoint bytes read, {self.bytes_hashed:,} hashed"
        )

    def to_markdown(self) -> str:
        """The run artifact: counts, then added, changed and failed models and edge changes."""
        lines = [
            f"# Index run `{self.run_id}`: {self.status}",
            "",
            f"Index: `{self.db}`",
            "",
            "| seen | added | changed | unchanged | failed | removed | edges changed "
            "| bytes read | bytes hashed |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {self.n_seen} | {len(self.added)} | {len(self.changed)} | "
            f"{len(self.unchanged)} | {len(self.failed)} | {len(self.removed)} | "
            f"{self.edges.count} | {self.bytes_read:,} | {self.bytes_hashed:,} |",
        ]

        def section(title: str, items: list[str]) -> None:
            if items:
                lines.extend(["", f"## {title}", ""])
                lines.extend(f"- {_md(i)}" for i in items)

        section("Added", [f"`{m}`" for m in self.added])
        section("Changed", [f"`{m}`" for m in self.changed])
        section("Failed", [f"`{m}`: {e}" for m, e in self.failed])
        section("Removed", [f"`{m}`" for m in self.removed])
        section("Edges added", [f"`{p}` → `{c}` ({r})" for p, c, r in self.edges.added])
        section("Edges removed", [f"`{p}` → `{c}` ({r})" for p, c, r in self.edges.removed])
        section("Edges changed", [f"`{p}` → `{c}` (now {r})" for p, c, r in self.edges.changed])
        return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("\n", " ").replace("|", "\\|")


def _edge_key(row: Mapping[str, Any]) -> tuple[str, str]:
    return (row["parent_id"], row["child_id"])


def diff_edges(old: pl.DataFrame, new: pl.DataFrame) -> EdgeChanges:
    """Edges added, removed, or whose relation, direction, confidence or weight changed."""
    a = {_edge_key(r): r for r in old.iter_rows(named=True)}
    b = {_edge_key(r): r for r in new.iter_rows(named=True)}
    changes = EdgeChanges()
    for k in sorted(b.keys() - a.keys()):
        changes.added.append((*k, b[k]["relation"]))
    for k in sorted(a.keys() - b.keys()):
        changes.removed.append((*k, a[k]["relation"]))
    for k in sorted(a.keys() & b.keys()):
        x, y = a[k], b[k]
        same = (
            x["relation"] == y["relation"]
            and x["direction"] == y["direction"]
            and _close(x["confidence"], y["confidence"])
            and _close(x["weight"], y["weight"])
            and x.get("verified") == y.get("verified")
        )
        if not same:
            changes.changed.append((*k, y["relation"]))
    return changes


def _close(x: float | None, y: float | None) -> bool:
    if x is None or y is None:
        return x is y
    return abs(x - y) <= 1e-9


def runs_row(run: RunInfo, report: RunReport, finished: datetime) -> dict[str, Any]:
    """The run's row of the ``runs`` table, from its identity and report."""
    return {
        "run_id": run.run_id,
        "flow": run.flow,
        "started_at": to_timestamp(run.started_at),
        "finished_at": finished,
        "source": run.source,
        "n_seen": report.n_seen,
        "n_added": len(report.added),
        "n_changed": len(report.changed),
        "n_unchanged": len(report.unchanged),
        "n_failed": len(report.failed),
        "n_edges_changed": report.edges.count,
        "bytes_read": report.bytes_read,
        "errors": [e for _, e in report.failed],
        "status": str(report.status),
    }
