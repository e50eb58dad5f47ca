"""A local run's draft: the models, fingerprints and tensors tables from a plan, the read
results and the previous index.

Rows of unchanged models, and their fingerprints, are copied from the previous index (an
unchanged model keeps its ``indexed_at``), so a run over an unchanged folder writes the
same tables. Lineage, the edge diff and the runs row are then shared with the Hub crawl
(heritage.index.update).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

import polars as pl

from heritage.crawl.plan import META_PATHS, META_ROOTS, Entry, FileState, Plan
from heritage.crawl.read import ReadResult
from heritage.index import (
    IndexData,
    combined_sha256,
    model_row,
)
from heritage.index.runs import RunInfo, RunReport, utcnow
from heritage.index.update import Draft, make_draft
from heritage.summary import FileSummary

FLOW_NAME = "index-local"
_WEIGHT_FIELDS = (
    "format",
    "bytes",
    "sha256",
    "n_params",
    "n_tensors",
    "n_layers",
    "dtypes",
    "structure_hash",
    "status",
    "error",
    "indexed_at",
)


def _files_rows(files: list[FileState]) -> list[dict[str, Any]]:
    return [f.as_row() for f in files]


def _meta_fields(entry: Entry) -> dict[str, Any]:
    m = entry.meta
    return {
        "name": m.name,
        "source": "local",
        "location": entry.found.location,
        "revision": None,
        "description": m.description,
        "declared_base_models": list(m.base_models),
        "card": m.card,
        "config": m.config,
        "created_at": None,  # file times are not evidence of when a model was made
    }


def _row_for(
    entry: Entry, result: ReadResult | None, now: datetime
) -> tuple[dict[str, Any], str, str | None]:
    """(models row, what happened, error): ``added``, ``changed``, ``unchanged`` or ``failed``."""
    common = _meta_fields(entry)
    mid = entry.model_id
    prev = entry.previous
    kind = "added" if prev is None else "changed"
    if entry.action == "fail" or (result is not None and result.outcome == "failed"):
        error = entry.error if entry.action == "fail" else result.error  # type: ignore[union-attr]
        files = entry.files if result is None else result.files
        row = model_row(
            mid,
            **common,
            files=_files_rows(files),
            bytes=sum(f.bytes for f in files) if files else None,
            status="failed",
            error=error,
            indexed_at=now,
        )
        unchanged = prev is not None and prev.get("status") == "failed" and prev["error"] == error
        if unchanged:
            row["indexed_at"] = prev["indexed_at"]
        return row, "failed", error
    if entry.action == "reuse" or (result is not None and result.outcome == "same"):
        assert prev is not None
        files = entry.files if result is None else result.files
        row = model_row(mid, **common, files=_files_rows(files))
        row.update({k: prev[k] for k in _WEIGHT_FIELDS})
        return row, ("failed" if prev["status"] == "failed" else "unchanged"), prev.get("error")
    assert result is not None and result.summary is not None
    files = result.files
    row = model_row(
        mid,
        result.summary,
        **common,
        files=_files_rows(files),
        bytes=sum(f.bytes for f in files),
        sha256=combined_sha256(FileSummary(f.name, f.bytes, f.sha256) for f in files),
        status="ok",
        error=None,
        indexed_at=now,
    )
    if prev is not None and prev.get("status") == "ok" and prev.get("sha256") == row["sha256"]:
        kind = "unchanged"  # re-read (e.g. --full) but the content is the same
        row["indexed_at"] = prev["indexed_at"]
    return row, kind, None


def build_tables(
    plan: Plan,
    results: Mapping[str, ReadResult],
    previous: IndexData,
    run: RunInfo,
    n_skipped: int = 0,
) -> Draft:
    """Models, fingerprints and tensors tables: fresh rows for what was read, copies else."""
    now = utcnow()
    report = RunReport(run_id=run.run_id, n_seen=len(plan.entries), n_skipped=n_skipped)
    rows: list[dict[str, Any]] = []
    renames: dict[str, str] = {}  # previous id -> id now, for reused fingerprints
    fresh = {}
    for entry in plan.entries:
        result = results.get(entry.model_id)
        if entry.action in ("read", "rehash") and result is None:
            raise ValueError(f"no read result for model {entry.model_id!r}")
        row, kind, error = _row_for(entry, result, now)
        rows.append(row)
        if result is not None:
            report.bytes_read += result.bytes_read
            report.bytes_hashed += result.bytes_hashed
        if kind == "failed":
            report.failed.append((entry.model_id, error or ""))
        elif kind == "added":
            report.added.append(entry.model_id)
        elif kind == "changed":
            report.changed.append(entry.model_id)
        else:
            report.unchanged.append(entry.model_id)
        if row["status"] == "ok":
            if result is not None and result.outcome == "read":
                fresh[entry.model_id] = result.fingerprint
            else:
                renames[entry.previous["model_id"]] = entry.model_id  # type: ignore[index]
    report.removed = list(plan.removed)
    # models of other sources (a Hub crawl) are kept as they are
    others = previous.models.filter(pl.col("source") != "local")
    other_ids = {m: m for m in others["model_id"].to_list()}
    clash = sorted(set(other_ids) & {r["model_id"] for r in rows})
    if clash:
        raise ValueError(f"local model ids clash with models of other sources: {clash[:3]}")
    meta = {
        META_ROOTS: json.dumps([str(r) for r in plan.roots]),
        META_PATHS: json.dumps(
            {e.model_id: str(e.found.path) for e in plan.entries}, sort_keys=True
        ),
    }
    run = replace(run, source=run.source or ", ".join(str(r) for r in plan.roots))
    keep = {**renames, **other_ids}
    return make_draft(run, report, rows, fresh, previous, others, keep, full=plan.full, meta=meta)
