"""From a run's draft to the new index, the same for local folders and the Hub.

A crawl reads what changed and makes a :class:`Draft`: the models, fingerprints and
tensors tables (fresh rows for what it read, rows copied from the previous index for the
rest) and a report of what happened to each model. :func:`add_lineage` then plans lineage
again, from the *stored* fingerprints, for the families the run touched (a member added,
changed or removed, or a new model kin to a member: heritage.lineage.incremental); every
other family keeps its rows exactly. A family is planned on its own members only, so this
gives what planning every model again gives. Last come the edge diff against the
previous index, the ``runs`` row and the index meta.

PEFT LoRA adapters (format ``peft-lora``) take no part in families: each is attached to
its base (heritage.lineage.peft) and joins its family, or stays unattached in a family
of its own. An adapter is placed again only when it, its config, or a model its shapes
fit was added, changed or removed; the others keep their edge, and follow their base
into whatever family it is in now.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import networkx as nx
import polars as pl

from heritage.errors import BadCheckpoint
from heritage.fingerprint import Fingerprint
from heritage.formats import peft
from heritage.index.frames import (
    ORDER_BY,
    IndexData,
    StoredPrints,
    edges_frame,
    families_frame,
    family_ids,
    fingerprints_frame,
    fingerprints_from_frame,
    models_frame,
    table_frame,
    tensors_frame,
    to_timestamp,
)
from heritage.index.prints import PrintReader
from heritage.index.runs import RunInfo, RunReport, diff_edges, runs_row, utcnow
from heritage.lineage import (
    METHOD,
    FamilyJob,
    ModelInput,
    family_jobs,
    family_lineage,
    merge_families,
)
from heritage.lineage.engine import adapter_graph
from heritage.lineage.evidence import architecture_key_of
from heritage.lineage.incremental import ModelPool, StoredModel, plan_update
from heritage.lineage.peft import AdapterInput, Basis, Placement, attach_adapters
from heritage.lineage.types import Direction, Relation

__all__ = [
    "Draft",
    "LineageProgress",
    "LineageWork",
    "add_lineage",
    "adapter_work",
    "copy_rows",
    "draft_lineage_work",
    "family_graph",
    "lineage_work",
    "make_draft",
    "model_pool",
    "plan_jobs",
    "relate_work",
]


@dataclass
class Draft:
    """The tables of a run before lineage (models, fingerprints, tensors), its report so
    far, and the index meta entries it sets."""

    run: RunInfo
    report: RunReport
    models: pl.DataFrame
    fingerprints: pl.DataFrame
    tensors: pl.DataFrame
    # fingerprint rows of kept models left in the previous index file (read_index with
    # fingerprints=False): copied file to file on write, read by family for lineage
    stored_prints: StoredPrints | None = None
    full: bool = False  # plan every family again, not only the touched ones
    meta: dict[str, str] = field(default_factory=dict)


def copy_rows(frame: pl.DataFrame, renames: Mapping[str, str]) -> pl.DataFrame:
    """Rows of the previous models in ``renames`` (old id -> new id), under their new ids."""
    if not renames or frame.is_empty():
        return frame.clear()
    kept = frame.filter(pl.col("model_id").is_in(list(renames)))
    return kept.with_columns(pl.col("model_id").replace_strict(renames, return_dtype=pl.String))


def make_draft(
    run: RunInfo,
    report: RunReport,
    rows: Sequence[Mapping[str, Any]],
    fresh: Mapping[str, Fingerprint],
    previous: IndexData,
    carried: pl.DataFrame,
    keep: Mapping[str, str],
    *,
    full: bool = False,
    meta: Mapping[str, str] | None = None,
) -> Draft:
    """A run's draft: its model ``rows`` beside the previous index's ``carried`` model
    rows (kept as they are); the ``fresh`` fingerprints it read beside the stored ones of
    the previous models in ``keep`` (old id -> id now)."""
    schema = models_frame([]).schema
    models = pl.concat([models_frame(rows), carried.select(list(schema)).cast(schema)])
    fps = pl.concat([copy_rows(previous.fingerprints, keep), fingerprints_frame(fresh)])
    tensors = pl.concat([copy_rows(previous.tensors, keep), tensors_frame(fresh)])
    stored = None if previous.stored_prints is None else previous.stored_prints.renamed(keep)
    return Draft(run, report, models, fps, tensors, stored, full, dict(meta or {}))


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
    # every PEFT adapter's base (heritage.lineage.peft), placed again or kept
    adapters: list[Placement] = field(default_factory=list)

    def adapter_counts(self) -> dict[str, int]:
        """Adapters attached, verified, placed again and left unattached, for the logs."""
        return {
            "attached": sum(p.attached for p in self.adapters),
            "verified": sum(p.verified for p in self.adapters),
            "placed": sum(p.basis != Basis.KEPT for p in self.adapters),
            "unattached": sum(not p.attached for p in self.adapters),
        }


def _adapters(frame: pl.DataFrame) -> pl.Expr:
    """Rows of PEFT LoRA adapters (they take no part in families)."""
    return (pl.col("format") == peft.FORMAT).fill_null(False)


def _shapes(
    tensors: pl.DataFrame, ids: Collection[str], names: Collection[str] | None = None
) -> dict[str, dict[str, tuple[int, ...]]]:
    """model -> tensor name -> shape, from a tensors table (``names`` only, if given)."""
    frame = tensors.filter(pl.col("model_id").is_in(list(ids)))
    if names is not None:
        frame = frame.filter(pl.col("name").is_in(list(names)))
    out: dict[str, dict[str, tuple[int, ...]]] = {}
    for mid, name, shape in frame.select("model_id", "name", "shape").iter_rows():
        out.setdefault(mid, {})[name] = tuple(shape or ())
    return out


def adapter_work(
    models: pl.DataFrame,
    tensors: pl.DataFrame,
    pool: ModelPool,
    load: Callable[[Sequence[str]], Mapping[str, Fingerprint]],
    previous: IndexData,
    changed: Collection[str],
    everything: bool = False,
) -> list[Placement]:
    """Each ok adapter's placement: placed again (heritage.lineage.peft) when
    ``everything``, or when it is new, changed or has a new config, or when a model its
    shapes fit (``pool``, the full models; shapes from ``tensors``) was added, changed
    or removed; else kept as the previous index has it (its edge, or none). Only the
    fingerprints of the adapters placed again (``load``) and of their candidates are
    loaded."""
    ok = models.filter(_adapters(models) & (pl.col("status") == "ok"))
    ids = sorted(ok["model_id"].to_list())
    if not ids:
        return []
    configs = dict(zip(ok["model_id"], ok["config"], strict=True))
    own = _shapes(tensors, ids)
    layouts: dict[str, peft.LoraLayout] = {}
    for a in ids:
        with contextlib.suppress(BadCheckpoint):  # not a LoRA after all: no base fits it
            layouts[a] = peft.layout_of(configs[a], own.get(a, {}).items(), a)
    names = {n for lay in layouts.values() for n in (*lay.base_shapes(), *lay.saved_shapes())}
    full = pool.ids
    shapes = _shapes(tensors, full, names)
    fit = {a: [m for m in full if lay.fits(shapes.get(m, {}))] for a, lay in layouts.items()}

    before = previous.models
    prev_ok = set(before.filter(pl.col("status") == "ok")["model_id"].to_list())
    was = before.filter(_adapters(before) & (pl.col("status") == "ok"))
    prev_config = dict(zip(was["model_id"], was["config"], strict=True))
    fresh = set(changed) | (set(full) - prev_ok)
    gone = sorted(prev_ok - set(full) - set(prev_config))
    gone_shapes = _shapes(previous.tensors, gone, names)

    def replace(a: str) -> bool:
        if everything or a in fresh or a not in prev_config or configs[a] != prev_config[a]:
            return True
        lay = layouts.get(a)
        if lay is None:
            return False
        return any(m in fresh for m in fit[a]) or any(
            lay.fits(gone_shapes[m]) for m in gone if m in gone_shapes
        )

    again = [a for a in ids if replace(a)]
    placements: list[Placement] = []
    prints = load([a for a in again if a in layouts]) if again else {}
    inputs = [AdapterInput(a, fp, layouts[a]) for a, fp in sorted(prints.items())]
    if inputs:
        wanted = sorted({m for i in inputs for m in fit[i.id]})
        placements += attach_adapters(inputs, [(m.id, m.fingerprint) for m in pool.get(wanted)])
    for a in again:
        if a not in layouts:
            architecture = architecture_key_of(own.get(a, {}).items())
            placements.append(Placement(a, None, Basis.NO_FIT, 0.0, architecture))
    kept = [a for a in ids if a not in again]
    edges = previous.edges.filter(pl.col("child_id").is_in(kept))
    parent = {r["child_id"]: r for r in edges.iter_rows(named=True)}
    for a in kept:
        lay, row = layouts.get(a), parent.get(a)
        common = {
            "adapter": a,
            "basis": Basis.KEPT,
            "architecture": architecture_key_of(own.get(a, {}).items()),
            "candidates": len(fit.get(a, [])),
            "rank": max((m.rank for m in lay.modules), default=0) if lay else 0,
        }
        if row is None:
            placements.append(Placement(base=None, confidence=0.0, **common))
        else:
            placements.append(
                Placement(
                    base=row["parent_id"],
                    confidence=row["confidence"],
                    distance=row["distance"],
                    verified=bool(row["verified"]),
                    **common,
                )
            )
    return sorted(placements, key=lambda p: p.adapter)


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
    placed = previous.models.filter(pl.col("family_id").is_not_null() & ~_adapters(previous.models))
    family = dict(zip(placed["model_id"], placed["family_id"], strict=True))
    methods = set(previous.edges["method"].drop_nulls().to_list())
    core = models.filter(~_adapters(models))
    with contextlib.ExitStack() as stack:
        reader = None if stored is None else stack.enter_context(PrintReader(stored))
        pool = model_pool(core, fps, tensors, reader)
        whole = everything or not family or bool(methods and methods != {METHOD})

        def load(ids: Sequence[str]) -> dict[str, Fingerprint]:
            here = fps.filter(pl.col("model_id").is_in(list(ids)))
            prints = fingerprints_from_frame(here, tensors.filter(pl.col("model_id").is_in(ids)))
            rest = [i for i in ids if i not in prints]
            if rest and reader is not None:
                prints.update(reader.fingerprints(rest))
            return prints

        adapters = adapter_work(models, tensors, pool, load, previous, changed, whole)
        if whole:
            jobs = family_jobs(pool.get(pool.ids))
            return LineageWork(jobs, {}, len(pool.ids), adapters=adapters)
        plan = plan_update(family, lambda f: family_graph(previous, f), pool, changed)
        kept = set(pool.ids) - plan.touched.models
        jobs = family_jobs(pool.get(sorted(plan.replan)))
    return LineageWork(
        jobs, {m: family[m] for m in kept}, len(plan.replan), plan.attached, adapters
    )


def family_graph(previous: IndexData, family_id: str) -> nx.DiGraph:
    """One family's part of the lineage graph, as the index stores it: its members
    (each with the family's confidence, the least of its members'), its root's
    confidence, and the edges into its members."""
    row = previous.families.filter(pl.col("family_id") == family_id).row(0, named=True)
    members = previous.models.filter(
        (pl.col("family_id") == family_id) & ~_adapters(previous.models)
    )["model_id"].to_list()
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
    order) beside the kept families' rows, copied as they were, and the adapters placed
    on their bases (each family's n_models counts its adapters)."""
    graph = merge_families([*graphs, *work.attached])
    kept = list(work.kept_family)
    families = {**work.kept_family, **family_ids(graph)}
    placed = adapter_graph(work.adapters, families)
    families.update(family_ids(placed))
    models = models.with_columns(
        pl.col("model_id")
        .replace_strict(families, default=None, return_dtype=pl.String)
        .alias("family_id")
    )
    edges, fam = edges_frame(graph), families_frame(graph)
    # adapters left unattached: a family of their own each (bases carry no attributes here)
    alone = placed.subgraph(
        [n for n, d in placed.nodes(data=True) if "adapter_basis" in d and not placed.in_degree(n)]
    )
    old_edges = previous.edges.filter(
        pl.col("child_id").is_in(kept) & pl.col("parent_id").is_in(kept)
    )
    old_fams = previous.families.filter(
        pl.col("family_id").is_in(sorted(set(work.kept_family.values())))
    )
    edges = pl.concat(
        [old_edges.select(edges.columns).cast(edges.schema), edges, edges_frame(placed)]
    )
    fam = pl.concat([old_fams.select(fam.columns).cast(fam.schema), fam, families_frame(alone)])
    sizes = (
        models.filter(pl.col("family_id").is_not_null())
        .group_by("family_id")
        .agg(pl.len().alias("n_models"))
    )
    fam = (
        fam.drop("n_models")
        .join(sizes, on="family_id", how="left")
        .select(fam.columns)
        .cast(fam.schema)
    )
    return models, edges, fam


class LineageProgress(Protocol):
    """What family planning reports (heritage.crawl.progress's bars take it)."""

    def start_lineage(self, families: int) -> None: ...

    def family_done(self, members: int) -> None: ...


def plan_jobs(
    jobs: Sequence[FamilyJob], progress: LineageProgress | None = None
) -> list[nx.DiGraph]:
    """``family_lineage`` of each job, in job order, with a tick per family planned."""
    if progress is not None and jobs:
        progress.start_lineage(len(jobs))
    graphs = []
    for job in jobs:
        graphs.append(family_lineage(job))
        if progress is not None:
            progress.family_done(len(job.models))
    return graphs


def _sorted(table: str, frame: pl.DataFrame) -> pl.DataFrame:
    keys = [k.split()[0] for k in ORDER_BY[table].split(",")]
    return frame.sort([k.strip() for k in keys], nulls_last=False) if frame.height else frame


def draft_lineage_work(draft: Draft, previous: IndexData) -> LineageWork:
    """The family jobs of a run (its added and changed models, and removed ones)."""
    report = draft.report
    return lineage_work(
        draft.models,
        draft.fingerprints,
        draft.tensors,
        previous,
        [*report.added, *report.changed],
        everything=draft.full,
        stored=draft.stored_prints,
    )


def add_lineage(
    draft: Draft,
    previous: IndexData,
    work: LineageWork | None = None,
    graphs: Iterable[nx.DiGraph] | None = None,
    progress: LineageProgress | None = None,
) -> tuple[IndexData, RunReport]:
    """The new index and the run's finished report: lineage planned again for the
    families the run touched, its edges diffed with the previous index, the runs row
    appended and the meta set. ``work`` and ``graphs`` (``family_lineage`` of each job,
    in job order) let a caller run the family jobs elsewhere, as the flow does."""
    report = draft.report
    work = work or draft_lineage_work(draft, previous)
    if graphs is None:
        graphs = plan_jobs(work.jobs, progress)
    models, edges, fam = relate_work(draft.models, previous, work, graphs)
    report.n_replanned = work.replanned
    report.edges = diff_edges(previous.edges, edges)
    report.n_ok = models.filter(pl.col("status") == "ok").height
    report.n_edges = edges.height
    report.n_families = fam.height
    report.settle_status()
    finished = utcnow()
    runs = pl.concat([previous.runs, table_frame("runs", [runs_row(draft.run, report, finished)])])
    meta = {k: v for k, v in previous.meta.items() if k != "written_at"}
    meta.update(draft.meta)
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
    report.seconds = (finished - to_timestamp(draft.run.started_at)).total_seconds()
    return data, report
