"""Lineage recovery: families, copies, merges, a spanning tree and its direction.

Everything here is a plain function of fingerprints (numpy arrays); no I/O. The stages,
one module each:

1. ``kinship``: group models by architecture, then into families of correlated weights;
2. ``copies``: exact duplicates collapse, lower-precision copies hang off their source;
3. ``merges``: a model that is an affine combination of two or three others;
4. ``tree``: the remaining models' minimum spanning tree (undirected);
5. ``direction``: a posterior over the tree's root from features whose weights were
   fitted on development zoos;
6. ``parents``: with the root chosen, each member's parent from a fitted pair model
   (maximum spanning arborescence), then the sibling test; each edge's confidence is
   fitted on development zoos from its direction probability (the posterior mass on its
   parent's side) and the pair model's support, and an edge the weights cannot orient
   is marked ``uncertain``;
7. ``adapters``: a tree edge whose change is low-rank, or that leaves some weight
   matrices untouched, is an adapter, not a fine-tune;
8. ``peft``: a PEFT LoRA adapter (a model given with its ``adapter`` layout) holds no
   full weights, so it takes no part in the steps above: it is attached to the base
   whose shapes it fits, verified by a merged copy when one is indexed, and joins that
   base's family (or stays in a family of its own, unattached, saying why).

Names never decide: models are processed in the order of their content (a hash of the
sampled weights), and ties fall to content order too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np

from heritage.fingerprint import Fingerprint
from heritage.formats.peft import LoraLayout
from heritage.lineage.adapters import step_rank
from heritage.lineage.copies import find_copies
from heritage.lineage.direction import (
    FamilyTree,
    Scorer,
    calibrate,
    direction_uncertain,
    edge_confidence,
    load_scorer,
    orient,
    progress_stats,
)
from heritage.lineage.evidence import (
    Evidence,
    architecture_key,
    evidence_layout,
    evidence_vectors,
)
from heritage.lineage.kinship import Family, family_id, find_families
from heritage.lineage.merges import FAR_PARENT_MAX, TensorGram, find_merges, find_sparse_merges
from heritage.lineage.neighbours import (
    PairDistances,
    all_pairs,
    ann_pairs,
    pair_distances,
    sketch,
)
from heritage.lineage.peft import AdapterInput, Placement, attach_adapters
from heritage.lineage.precision import precision_bits
from heritage.lineage.tree import TreeEdge, spanning_tree
from heritage.lineage.types import Direction, Relation

__all__ = [
    "METHOD",
    "FamilyJob",
    "FamilyPlan",
    "LineageSettings",
    "ModelInput",
    "adapter_graph",
    "content_key",
    "family_jobs",
    "family_lineage",
    "merge_families",
    "place_adapters",
    "plan_family",
    "plan_lineage",
    "recover_lineage",
    "tree_edge",
]

METHOD = "heritage-lineage/11"
UNCERTAIN_CAP = 0.6  # an edge whose direction the weights cannot tell is stated at most this


@dataclass(frozen=True)
class LineageSettings:
    """Settings of the engine (the direction model's weights live in ``scorer.json``)."""

    k_neighbours: int = 10
    dense_limit: int = 256  # groups up to this size compare all pairs exactly
    kin_cosine: float = 0.2  # independent initialisations correlate at ~0 +- 0.01
    quantized_tolerance: tuple[tuple[int, float], ...] = ((16, 0.01), (8, 0.05))
    merge_residual: float = 0.1  # residual of the fit / distance to the nearest parent
    merge_candidates: int = 6
    use_times: bool = True  # creation times vote on direction when the source has them


@dataclass
class ModelInput:
    """One model as lineage sees it: an id, its fingerprint, and optional evidence."""

    id: str
    fingerprint: Fingerprint
    created_at: float | None = None  # seconds since the epoch, if the source knows it
    adapter: LoraLayout | None = None  # a PEFT LoRA adapter's layout (heritage.formats.peft)


def content_key(fp: Fingerprint) -> str:
    """A hash of a fingerprint's sampled values: the order models are processed in."""
    h = hashlib.sha256()
    for name in sorted(fp.tensors):
        t = fp.tensors[name]
        h.update(name.encode() + b"\0" + np.ascontiguousarray(t.values, np.float32).tobytes())
    return h.hexdigest()


@dataclass
class FamilyPlan:
    """One family after copies and merges: what is left is ``tree``, to be oriented."""

    family: Family
    tree_nodes: list[int]  # indices into the group, content order
    tree: FamilyTree


def _centroid_offsets(x: np.ndarray, nodes: Sequence[int]) -> np.ndarray:
    idx = np.asarray(nodes)
    centre = np.zeros(x.shape[1])
    for k in range(0, len(idx), 256):
        centre += x[idx[k : k + 256]].sum(axis=0)
    centre /= len(idx)
    out = np.empty(len(idx))
    for k in range(0, len(idx), 256):
        d = x[idx[k : k + 256]] - centre
        out[k : k + 256] = np.sqrt(np.einsum("ij,ij->i", d, d))
    return out


def _local_distances(distances: PairDistances, nodes: list[int]) -> Callable[[int, int], float]:
    def dist(a: int, b: int) -> float:
        return distances(nodes[a], nodes[b])

    return dist


def _edge(graph: nx.DiGraph, ids: Sequence[str], p: int, c: int, **attrs: object) -> None:
    attrs["confidence"] = round(float(min(1.0, max(0.0, attrs["confidence"]))), 4)
    attrs["distance"] = round(float(attrs["distance"]), 6)
    attrs.setdefault("direction", Direction.INFERRED)
    graph.add_edge(ids[p], ids[c], method=METHOD, **attrs)


@dataclass
class FamilyJob:
    """One family to plan: its members and, for a large family, the pairs to measure.

    The unit of work ``family_lineage`` takes, self-contained (it can be shipped to
    another process): a family's lineage depends on its own members only.
    """

    key: str  # the architecture group
    family: Family  # members index ``models``
    models: list[ModelInput]  # the members, in content order
    pairs: np.ndarray | None = None  # (i < j) local pairs to measure; None: every pair


def family_jobs(
    models: Sequence[ModelInput], settings: LineageSettings | None = None
) -> list[FamilyJob]:
    """Group the models by architecture, then into families: one job per family, in
    content order (the order never depends on ids or input order)."""
    settings = settings or LineageSettings()
    ids = [m.id for m in models]
    if len(set(ids)) != len(ids):
        raise ValueError("model ids must be unique")
    keys = {m.id: content_key(m.fingerprint) for m in models}
    ordered = sorted(models, key=lambda m: (keys[m.id], m.id))
    groups: dict[str, list[ModelInput]] = {}
    for m in ordered:
        groups.setdefault(architecture_key(m.fingerprint), []).append(m)
    jobs: list[FamilyJob] = []
    for key in sorted(groups):
        jobs += _group_jobs(groups[key], key, settings)
    return jobs


def plan_lineage(
    models: Sequence[ModelInput],
    settings: LineageSettings | None = None,
    graph: nx.DiGraph | None = None,
) -> list[FamilyPlan]:
    """Families, copies and merges of every group, and each family's tree to orient.

    With ``graph``, nodes, copy edges and merge edges are added to it as they are found.
    """
    settings = settings or LineageSettings()
    return [plan_family(job, settings, graph) for job in family_jobs(models, settings)]


@dataclass
class _Context:
    """Models of one architecture group (or one family of a large group), in content
    order, with their evidence and measured distances (indices local to the context)."""

    fps: list[Fingerprint]
    ids: list[str]
    times: list[float | None]
    bits: list[int]
    ev: Evidence
    distances: PairDistances
    zero: list[tuple[int, int]]  # measured pairs at distance 0 (duplicate candidates)

    @staticmethod
    def build(
        models: Sequence[ModelInput],
        ev: Evidence,
        pairs: np.ndarray,
        dist: np.ndarray,
        settings: LineageSettings,
    ) -> _Context:
        return _Context(
            [m.fingerprint for m in models],
            [m.id for m in models],
            [m.created_at if settings.use_times else None for m in models],
            [precision_bits(m.fingerprint) for m in models],
            ev,
            PairDistances(ev.unit, pairs, dist),
            [(int(i), int(j)) for (i, j), d in zip(pairs, dist, strict=True) if d == 0],
        )


def _group_jobs(models: list[ModelInput], key: str, settings: LineageSettings) -> list[FamilyJob]:
    """Families of one architecture group, each a job to plan on its own.

    Kinship is measured on the group's evidence (every pair in a small group; each
    model's nearest sketches in a large one). Each family is then planned on evidence
    laid out and scaled on its own members only, so its edges never depend on models
    outside it: adding an unrelated model, or a whole family, changes nothing there, and
    an incremental run that plans only the touched families gives what a full run does.
    """
    fps = [m.fingerprint for m in models]
    ids = [m.id for m in models]
    layout = evidence_layout(fps)
    if len(models) <= settings.dense_limit:
        x = evidence_vectors(fps, layout, raw=False).unit
        pairs = all_pairs(len(models))
        dist = pair_distances(x, pairs)
    else:
        x = evidence_vectors(fps, layout, np.float32, raw=False).unit
        sk = sketch((x[k : k + 4096] for k in range(0, len(x), 4096)), x.shape[1])
        pairs, dist = ann_pairs(sk, x, settings.k_neighbours)
        del sk
    families = find_families(ids, x, pairs, dist, settings.kin_cosine)
    del x
    family_of = np.empty(len(models), dtype=np.int64)
    for f, fam in enumerate(families):
        family_of[list(fam.members)] = f
    pairs = pairs[family_of[pairs[:, 0]] == family_of[pairs[:, 1]]]
    by_family = np.split(
        pairs[np.argsort(family_of[pairs[:, 0]], kind="stable")],
        np.cumsum(np.bincount(family_of[pairs[:, 0]], minlength=len(families)))[:-1],
    )
    jobs = []
    for fam, fam_pairs in zip(families, by_family, strict=True):
        members = list(fam.members)
        local_pairs = None
        if len(members) > settings.dense_limit:
            local = np.full(len(models), -1, dtype=np.int64)
            local[members] = np.arange(len(members))
            local_pairs = np.sort(local[fam_pairs], axis=1)
        jobs.append(
            FamilyJob(
                key,
                Family(fam.id, tuple(range(len(members))), fam.confidence),
                [models[i] for i in members],
                local_pairs,
            )
        )
    return jobs


def plan_family(
    job: FamilyJob, settings: LineageSettings | None = None, graph: nx.DiGraph | None = None
) -> FamilyPlan:
    """Copies, merges and the tree to orient of one family, on its own evidence."""
    settings = settings or LineageSettings()
    fps = [m.fingerprint for m in job.models]
    # a large family's unit vectors in float32 (half the memory; its pairs are sparse)
    dtype = np.float64 if job.pairs is None else np.float32
    ev = evidence_vectors(fps, evidence_layout(fps), dtype)
    pairs = all_pairs(len(fps)) if job.pairs is None else job.pairs
    ctx = _Context.build(job.models, ev, pairs, pair_distances(ev.unit, pairs), settings)
    return _plan_family(ctx, job.family, job.key, settings, graph)


def _plan_family(
    ctx: _Context,
    fam: Family,
    key: str,
    settings: LineageSettings,
    graph: nx.DiGraph | None,
) -> FamilyPlan:
    fps, ids, times, bits, distances = ctx.fps, ctx.ids, ctx.times, ctx.bits, ctx.distances
    x = ctx.ev.unit
    if graph is not None:
        for i, conf in zip(fam.members, fam.confidence, strict=True):
            graph.add_node(
                ids[i],
                architecture=key,
                family=fam.id,
                family_confidence=conf,
                precision_bits=bits[i],
            )
    members = set(fam.members)
    fam_zero = [(i, j) for i, j in ctx.zero if i in members and j in members]
    copies = find_copies(
        fps, fam.members, fam_zero, distances, times, bits, settings.quantized_tolerance
    )
    exact = [b >= 32 for b in bits]
    near_all = distances.neighbour_lists(members)
    sparse = find_sparse_merges(
        ctx.ev.raw, copies.core, exact, distances, near_all, slices=ctx.ev.slices
    )
    sparse_children = {m.child for m in sparse}
    rest = [i for i in copies.core if i not in sparse_children]
    core = set(rest)
    near = {v: [(d, u) for d, u in near_all[v] if u in core] for v in core}
    gram = None
    if 3 <= len(rest) <= FAR_PARENT_MAX and ctx.ev.slices:
        gram = TensorGram.of(ctx.ev.raw, ctx.ev.slices, rest)
    merges = sparse + find_merges(
        x, rest, near, settings.merge_candidates, settings.merge_residual, gram
    )
    if graph is not None:
        for cp in copies.copies:
            checked = {} if cp.verified is None else {"verified": cp.verified}
            _edge(
                graph,
                ids,
                cp.source,
                cp.copy,
                relation=cp.relation,
                confidence=cp.confidence,
                distance=cp.distance,
                **checked,
            )
        for m in merges:
            conf = 0.5 + 0.5 * max(0.0, 1.0 - m.residual / settings.merge_residual)
            for p, w, d in zip(m.parents, m.weights, m.distances, strict=True):
                _edge(
                    graph,
                    ids,
                    p,
                    m.child,
                    relation=Relation.MERGE,
                    confidence=conf,
                    distance=d,
                    weight=round(w, 4),
                )
    merged = {m.child for m in merges}
    nodes = [i for i in copies.core if i not in merged]
    local = {v: k for k, v in enumerate(nodes)}
    edges = [TreeEdge(local[a], local[b], d) for a, b, d in spanning_tree(x, nodes, distances)]
    stats, kinds = progress_stats([fps[i] for i in nodes])
    tree = FamilyTree(
        ids=[ids[i] for i in nodes],
        edges=edges,
        stats=stats,
        kinds=kinds,
        centroid=_centroid_offsets(x, nodes),
        times=np.array([np.nan if times[i] is None else times[i] for i in nodes], float),
        dist=_local_distances(distances, nodes),
    )
    return FamilyPlan(fam, nodes, tree)


def family_lineage(
    job: FamilyJob, settings: LineageSettings | None = None, scorer: Scorer | None = None
) -> nx.DiGraph:
    """One family's part of the lineage graph (see ``recover_lineage``)."""
    scorer = scorer or load_scorer()
    graph = nx.DiGraph(method=METHOD)
    fps = {m.id: m.fingerprint for m in job.models}
    plan = plan_family(job, settings, graph)
    for _, _, data in graph.edges(data=True):  # copies and merges, from their fits
        mapping = scorer.relation_maps.get(str(data["relation"]))
        if mapping is not None and not data.get("verified"):  # proven edges stay at 1.0
            data["confidence"] = round(calibrate(data["confidence"], mapping), 4)
    tree = plan.tree
    result = orient(tree, scorer)
    timed = int(np.isfinite(tree.times).sum()) >= 2
    graph.nodes[tree.ids[result.root]]["root_confidence"] = round(result.root_probability, 4)
    for e in result.edges:
        parent, child = tree.ids[e.parent], tree.ids[e.child]
        uncertain = direction_uncertain(e, tree.n, timed, scorer)
        direction = Direction.UNCERTAIN if uncertain else Direction.INFERRED
        conf = edge_confidence(e, tree.n, timed, scorer)
        graph.add_edge(
            parent, child, **tree_edge(fps[parent], fps[child], conf, e.distance, direction)
        )
    return graph


def tree_edge(
    parent: Fingerprint,
    child: Fingerprint,
    confidence: float,
    distance: float,
    direction: Direction,
) -> dict[str, object]:
    """A tree edge's attributes: an adapter when the step looks like one (with its rank
    when that is low), else a fine-tune; stated at most ``UNCERTAIN_CAP`` when the
    weights cannot tell its direction."""
    if direction == Direction.UNCERTAIN:
        confidence = min(confidence, UNCERTAIN_CAP)
    rank = step_rank(parent, child)
    attrs: dict[str, object] = {
        "relation": Relation.ADAPTER if rank.adapter else Relation.FINETUNE,
        "confidence": round(float(confidence), 4),
        "distance": round(float(distance), 6),
        "direction": direction,
        "method": METHOD,
    }
    if rank.low_rank:
        attrs["rank"] = rank.rank
    return attrs


def merge_families(graphs: Iterable[nx.DiGraph]) -> nx.DiGraph:
    """The lineage graph of families planned apart, in the order given (job order)."""
    out = nx.DiGraph(method=METHOD)
    for g in graphs:
        out.add_nodes_from(g.nodes(data=True))
        out.add_edges_from(g.edges(data=True))
    return out


def adapter_graph(
    placements: Iterable[Placement],
    family_of: Mapping[str, str],
    architecture_of: Mapping[str, str] | None = None,
    bits: Mapping[str, int] | None = None,
) -> nx.DiGraph:
    """Adapter nodes and edges: an attached adapter joins its base's family
    (``family_of[base]``, with the base's architecture when ``architecture_of`` names
    it) under a ``adapter`` edge; an unattached one (or one whose base has no family) is
    a family of its own whose root it is not (root confidence 0). Nodes carry
    ``adapter_basis`` (heritage.lineage.peft.Basis) and ``adapter_candidates``; edges
    ``verified`` when a merged copy proves them, ``rank``, ``basis`` and ``merged``."""
    graph = nx.DiGraph(method=METHOD)
    architecture_of = architecture_of or {}
    for p in placements:
        node: dict[str, object] = {
            "adapter_basis": str(p.basis),
            "adapter_candidates": p.candidates,
        }
        if bits is not None and p.adapter in bits:
            node["precision_bits"] = bits[p.adapter]
        if p.base is not None and p.base in family_of:
            node["family"] = family_of[p.base]
            node["architecture"] = architecture_of.get(p.base, p.architecture)
            graph.add_node(p.adapter, **node)
            attrs: dict[str, object] = {
                "relation": Relation.ADAPTER,
                "confidence": p.confidence,
                "distance": p.distance,
                "direction": Direction.INFERRED,
                "method": METHOD,
                "rank": p.rank,
                "basis": str(p.basis),
            }
            if p.verified:
                attrs["verified"] = True
                attrs["merged"] = list(p.merged)
            graph.add_edge(p.base, p.adapter, **attrs)
        else:
            graph.add_node(
                p.adapter,
                **node,
                family=family_id([p.adapter]),
                architecture=p.architecture,
                family_confidence=1.0,
                root_confidence=0.0,
            )
    return graph


def place_adapters(
    graph: nx.DiGraph, adapters: Sequence[ModelInput], models: Sequence[ModelInput]
) -> list[Placement]:
    """Attach ``adapters`` to their bases among ``models`` (heritage.lineage.peft) and
    add their nodes and edges to ``graph``, the lineage graph of ``models``."""
    inputs = [AdapterInput(a.id, a.fingerprint, a.adapter) for a in adapters if a.adapter]
    placements = attach_adapters(inputs, [(m.id, m.fingerprint) for m in models])
    nodes = graph.nodes
    family_of = {str(n): d["family"] for n, d in nodes(data=True) if d.get("family")}
    architecture_of = {
        str(n): d["architecture"] for n, d in nodes(data=True) if "architecture" in d
    }
    bits = {a.id: precision_bits(a.fingerprint) for a in adapters}
    extra = adapter_graph(placements, family_of, architecture_of, bits)
    graph.add_nodes_from(extra.nodes(data=True))
    graph.add_edges_from(extra.edges(data=True))
    return placements


def recover_lineage(
    models: Sequence[ModelInput],
    settings: LineageSettings | None = None,
    scorer: Scorer | None = None,
    map_families: Callable[[list[FamilyJob]], Iterable[nx.DiGraph]] | None = None,
) -> nx.DiGraph:
    """Recover families and a typed, directed lineage graph from fingerprints.

    Nodes carry ``family``, ``family_confidence``, ``architecture``, ``precision_bits``
    and, on each family's root, ``root_confidence``. Edges carry ``relation`` (a
    ``Relation``), ``confidence`` in [0, 1], ``direction`` (``inferred`` or
    ``uncertain``), ``distance``, ``method``, ``weight`` on merges and ``rank`` on
    adapters. The result does not depend on the ids or the order of the inputs.

    Models given with an ``adapter`` layout (PEFT LoRA adapters) are attached to their
    base afterwards (``place_adapters``): they join its family under an ``adapter``
    edge, or stay unattached in a family of their own.

    ``map_families`` runs ``family_lineage`` over the jobs (for example as tasks on a
    cluster) and returns their graphs in job order; by default they run here, one by one.
    """
    settings = settings or LineageSettings()
    scorer = scorer or load_scorer()
    ids = [m.id for m in models]
    if len(set(ids)) != len(ids):
        raise ValueError("model ids must be unique")
    full = [m for m in models if m.adapter is None]
    adapters = [m for m in models if m.adapter is not None]
    jobs = family_jobs(full, settings)
    if map_families is None:
        graphs: Iterable[nx.DiGraph] = (family_lineage(j, settings, scorer) for j in jobs)
    else:
        graphs = map_families(jobs)
    graph = merge_families(graphs)
    if adapters:
        place_adapters(graph, adapters, full)
    return graph
