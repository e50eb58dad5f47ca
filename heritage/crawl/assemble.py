"""Building the new index from a plan, the read results and the previous index.

Rows of unchanged models, and their fingerprints, are copied from the previous index (an
unchanged model keeps its ``indexed_at``), so a run over an unchanged folder writes the
same tables. Lineage is then planned again, from the *stored* fingerprints, for the
families the run touched (a member added, changed or removed, or a new model kin to a
member: heritage.lineage.incremental); every other family keeps its rows exactly. A
family is planned on its own members only, so this gives what planning every model
again gives.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import networkx as nx
import polars as pl

from heritage.crawl.plan import META_PATHS, META_ROOTS, Entry, FileState, Plan
from heritage.crawl.read import ReadResult
from heritage.index import (
    IndexData,
    StoredPrints,
    combined_sha256,
    edges_frame,
    families_frame,
    family_ids,
    fingerprints_frame,
    fingerprints_from_frame,
    model_row,
    models_frame,
    table_frame,
    tensors_frame,
    to_timestamp,
)
from heritage.index.frames import ORDER_BY
from heritage.index.prints import PrintReader
from heritage.lineage import (
    METHOD,
    FamilyJob,
    ModelInput,
    family_jobs,
    family_lineage,
    merge_families,
    recover_lineage,
)
from heritage.lineage.incremental import ModelPool, StoredModel, plan_update
from heritage.lineage.types import Direction, Relation
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


@dataclass
class RunInfo:
    """Identity of one run, for the ``runs`` table."""

    run_id: str
    started_at: datetime
    flow: str = FLOW_NAME
    source: str = ""


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
    status: str = "ok"
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (the flow's return value)."""
        return {
            "run_id": self.run_id,
            "db": self.db,
            "status": self.status,
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


def utcnow() -> datetime:
    """Naive UTC now, at microsecond precision (what a TIMESTAMP column holds)."""
    return datetime.now(UTC).replace(tzinfo=None)


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


def _copy_rows(frame: pl.DataFrame, renames: Mapping[str, str]) -> pl.DataFrame:
    """Rows of the previous models in ``renames`` (old id -> new id), under their new ids."""
    if not renames or frame.is_empty():
        return frame.clear()
    kept = frame.filter(pl.col("model_id").is_in(list(renames)))
    return kept.with_columns(pl.col("model_id").replace_strict(renames, return_dtype=pl.String))


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


def lineage_graph(models: pl.DataFrame, fps: pl.DataFrame, tensors: pl.DataFrame) -> nx.DiGraph:
    """Recover lineage over every ok model from stored fingerprint rows and created_at."""
    pool = model_pool(models, fps, tensors)
    return recover_lineage(pool.get(pool.ids))


def _epoch(when: datetime | None) -> float | None:
    return when.replace(tzinfo=UTC).timestamp() if when else None


def model_pool(
    models: pl.DataFrame,
    fps: pl.DataFrame,
    tensors: pl.DataFrame,
    stored: PrintReader | None = None,
) -> ModelPool:
    """Every ok model with its fingerprint and creation time, as lineage takes them: the
    models whose rows are in ``fps`` in memory, those whose rows stay in an index file
    (read through ``stored``) read from it only when a step needs them."""
    ok = set(models.filter(pl.col("status") == "ok")["model_id"].to_list())
    fps = fps.filter(pl.col("model_id").is_in(list(ok)))
    here = fps["model_id"].unique().to_list()
    prints = fingerprints_from_frame(fps, tensors.filter(pl.col("model_id").is_in(here)))
    created = dict(zip(models["model_id"], models["created_at"], strict=True))
    inputs = [ModelInput(mid, fp, _epoch(created.get(mid))) for mid, fp in prints.items()]
    if stored is None:
        return ModelPool(inputs)
    architectures = stored.architectures()
    stubs = [
        StoredModel(mid, architectures[mid], _epoch(created.get(mid)))
        for mid in sorted(ok.intersection(stored.stored.ids) - set(prints))
    ]
    return ModelPool(inputs, stubs, stored.fingerprints, stored.samples)


@dataclass
class LineageWork:
    """The lineage a run has to do: one job per family to plan again, and what stays."""

    jobs: list[FamilyJob]
    kept_family: dict[str, str]  # model -> family id, for the families kept as they were
    replanned: int  # models in the jobs
    # large families whose new members were attached as leaves (heritage.lineage.attach)
    attached: list[nx.DiGraph] = field(default_factory=list)


def lineage_work(
    models: pl.DataFrame,
    fps: pl.DataFrame,
    tensors: pl.DataFrame,
    previous: IndexData,
    changed: Collection[str],
    everything: bool = False,
    stored: StoredPrints | None = None,
) -> LineageWork:
    """The families a change touches (heritage.lineage.incremental), as jobs for
    ``family_lineage``; all of them with ``everything`` (a full run), or when the
    previous index has no lineage or was made by another engine. Fingerprints in
    ``stored`` are read from their file only for the families planned again (and,
    a chunk at a time, for the kin search)."""
    placed = previous.models.filter(pl.col("family_id").is_not_null())
    family = dict(zip(placed["model_id"], placed["family_id"], strict=True))
    methods = set(previous.edges["method"].drop_nulls().to_list())
    with contextlib.ExitStack() as stack:
        reader = None if stored is None else stack.enter_context(PrintReader(stored))
        pool = model_pool(models, fps, tensors, reader)
        if everything or not family or (methods and methods != {METHOD}):
            return LineageWork(family_jobs(pool.get(pool.ids)), {}, len(pool.ids))
        plan = plan_update(family, lambda f: family_graph(previous, f), pool, changed)
        kept = set(pool.ids) - plan.touched.models
        jobs = family_jobs(pool.get(sorted(plan.replan)))
    return LineageWork(jobs, {m: family[m] for m in kept}, len(plan.replan), plan.attached)


def family_graph(previous: IndexData, family_id: str) -> nx.DiGraph:
    """One family's part of the lineage graph, as the index stores it: its members
    (each with the family's confidence, the least of its members'), its root's
    confidence, and the edges into its members."""
    row = previous.families.filter(pl.col("family_id") == family_id).row(0, named=True)
    members = previous.models.filter(pl.col("family_id") == family_id)["model_id"].to_list()
    graph = nx.DiGraph(method=METHOD)
    for m in members:
        graph.add_node(
            m,
            family=family_id,
            architecture=row["architecture"],
            family_confidence=row["confidence"],
        )
    if row["root_model_id"] in graph and row["root_confidence"] is not None:
        graph.nodes[row["root_model_id"]]["root_confidence"] = row["root_confidence"]
    edges = previous.edges.filter(pl.col("child_id").is_in(members))
    for e in edges.iter_rows(named=True):
        attrs = {k: e[k] for k in ("confidence", "distance", "method")}
        attrs["relation"] = Relation(e["relation"])
        attrs["direction"] = Direction(e["direction"])
        for key in ("weight", "verified"):
            if e[key] is not None:
                attrs[key] = e[key]
        graph.add_edge(e["parent_id"], e["child_id"], **attrs)
    return graph


def relate_work(
    models: pl.DataFrame, previous: IndexData, work: LineageWork, graphs: Iterable[nx.DiGraph]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Models (with family_id), edges and families: the planned families' graphs (in job
    order) beside the kept families' rows, copied as they were."""
    graph = merge_families([*graphs, *work.attached])
    kept = list(work.kept_family)
    models, edges, fam = _frames(models, graph, work.kept_family)
    old_edges = previous.edges.filter(
        pl.col("child_id").is_in(kept) & pl.col("parent_id").is_in(kept)
    )
    old_fams = previous.families.filter(
        pl.col("family_id").is_in(sorted(set(work.kept_family.values())))
    )
    edges = pl.concat([old_edges.select(edges.columns).cast(edges.schema), edges])
    fam = pl.concat([old_fams.select(fam.columns).cast(fam.schema), fam])
    return models, edges, fam


def _frames(
    models: pl.DataFrame, graph: nx.DiGraph, kept_family: Mapping[str, str]
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    families = {**kept_family, **family_ids(graph)}
    models = models.with_columns(
        pl.col("model_id")
        .replace_strict(families, default=None, return_dtype=pl.String)
        .alias("family_id")
    )
    return models, edges_frame(graph), families_frame(graph)


def _sorted(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    keys = [k.split()[0] for k in ORDER_BY[table].split(",")]
    return frame.sort([k.strip() for k in keys], nulls_last=False) if frame.height else frame


@dataclass
class Draft:
    """The tables of a run before lineage: models, fingerprints and tensors."""

    plan: Plan
    run: RunInfo
    report: RunReport
    models: pl.DataFrame
    fingerprints: pl.DataFrame
    tensors: pl.DataFrame
    # fingerprint rows of kept models left in the previous index file (read_index with
    # fingerprints=False): copied file to file on write, read by family for lineage
    stored_prints: StoredPrints | None = None


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
    keep = {**renames, **other_ids}
    schema = models_frame([]).schema
    models = pl.concat([models_frame(rows), others.select(list(schema)).cast(schema)])
    fps = pl.concat([_copy_rows(previous.fingerprints, keep), fingerprints_frame(fresh)])
    tensors = pl.concat([_copy_rows(previous.tensors, keep), tensors_frame(fresh)])
    stored = None if previous.stored_prints is None else previous.stored_prints.renamed(keep)
    return Draft(plan, run, report, models, fps, tensors, stored)


def draft_lineage_work(draft: Draft, previous: IndexData) -> LineageWork:
    """The family jobs of a run (its added and changed models, and removed ones)."""
    report = draft.report
    return lineage_work(
        draft.models,
        draft.fingerprints,
        draft.tensors,
        previous,
        [*report.added, *report.changed],
        everything=draft.plan.full,
        stored=draft.stored_prints,
    )


def add_lineage(
    draft: Draft,
    previous: IndexData,
    work: LineageWork | None = None,
    graphs: Iterable[nx.DiGraph] | None = None,
) -> tuple[IndexData, RunReport]:
    """Plan lineage for the families the run touched, diff its edges with the previous
    index, and append the runs row. ``work`` and ``graphs`` (``family_lineage`` of each
    job, in job order) let a caller run the family jobs elsewhere, as the flow does."""
    report = draft.report
    work = work or draft_lineage_work(draft, previous)
    if graphs is None:
        graphs = [family_lineage(job) for job in work.jobs]
    models, edges, fam = relate_work(draft.models, previous, work, graphs)
    report.n_replanned = work.replanned
    report.edges = diff_edges(previous.edges, edges)
    report.n_ok = models.filter(pl.col("status") == "ok").height
    report.n_edges = edges.height
    report.n_families = fam.height
    ok_seen = report.n_seen - len(report.failed)
    report.status = "ok" if not report.failed else ("partial" if ok_seen else "failed")
    run = draft.run
    finished = utcnow()
    run_row = {
        "run_id": run.run_id,
        "flow": run.flow,
        "started_at": to_timestamp(run.started_at),
        "finished_at": finished,
        "source": run.source or ", ".join(str(r) for r in draft.plan.roots),
        "n_seen": report.n_seen,
        "n_added": len(report.added),
        "n_changed": len(report.changed),
        "n_unchanged": len(report.unchanged),
        "n_failed": len(report.failed),
        "n_edges_changed": report.edges.count,
        "bytes_read": report.bytes_read,
        "errors": [e for _, e in report.failed],
        "status": report.status,
    }
    runs = pl.concat([previous.runs, table_frame("runs", [run_row])])
    meta = {k: v for k, v in previous.meta.items() if k != "written_at"}
    meta[META_ROOTS] = json.dumps([str(r) for r in draft.plan.roots])
    meta[META_PATHS] = json.dumps(
        {e.model_id: str(e.found.path) for e in draft.plan.entries}, sort_keys=True
    )
    data = IndexData(
        models=_sorted("models", models),
        tensors=_sorted("tensors", draft.tensors),
        fingerprints=_sorted("fingerprints", draft.fingerprints),
        families=_sorted("families", fam),
        edges=_sorted("edges", edges),
        runs=runs,
        meta=meta,
        stored_prints=draft.stored_prints,
    )
    report.seconds = (finished - to_timestamp(run.started_at)).total_seconds()
    return data, report


def assemble(
    plan: Plan,
    results: Mapping[str, ReadResult],
    previous: IndexData,
    run: RunInfo,
    n_skipped: int = 0,
) -> tuple[IndexData, RunReport]:
    """The complete new index and the run's report (tables, then lineage and the runs row)."""
    return add_lineage(build_tables(plan, results, previous, run, n_skipped), previous)
