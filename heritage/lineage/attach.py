"""Attach: a new model joins a large family as a leaf, without planning the family again.

Planning a family of tens of thousands of members again for one new fine-tune takes
minutes: its spanning tree, root posterior and sibling test run over every member. In a
family larger than ``PARENT_MODEL_MAX`` the engine's parents are the spanning tree's,
folded by the sibling test, and a new model that the spanning tree would join as a leaf
changes nothing else in it. Such a model is placed on its own:

1. Its nearest kin in the family (ranked for the whole group once, by
   ``incremental.find_touched``) are measured exactly, on evidence laid out over them,
   the new model and the tree paths between them.
2. It is a *leaf* when no member would rather join it: for every candidate, the new
   model is no nearer to it than the longest edge on the candidate's tree path to the
   new model's nearest member (the spanning tree's cycle rule), and no copy or merge
   child sits nearer to it than to its own source.
3. Its parent is its nearest tree member, moved up to that member's parent when the
   fitted sibling test says it is that member's sibling (as ``tree.regraft`` does).
4. A leaf's direction probability is the root posterior's mass off that leaf; in a
   family of hundreds of members the posterior barely moves when one more leaf joins,
   so the new edge states what the family's other tree leaves state: the median
   confidence of the edges into the parent's leaf children (of every tree leaf when
   the parent has none), and ``uncertain`` when most of those are.

Anything else plans the family again (``None``): a lower-precision or exact copy, a fit
as a merge of its candidates, a model some member would rather join, or a family whose
members changed. The family keeps its root and every other edge as it was; its id is
the hash of its new member ids, as a full run gives.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise
from typing import NamedTuple

import networkx as nx
import numpy as np

from heritage.lineage.direction import PARENT_MODEL_MAX, Scorer, load_scorer
from heritage.lineage.engine import LineageSettings, ModelInput, tree_edge
from heritage.lineage.evidence import Evidence, evidence_layout, evidence_vectors
from heritage.lineage.kinship import family_id, kin_confidence
from heritage.lineage.merges import find_merges, find_sparse_merges
from heritage.lineage.neighbours import PairDistances, all_pairs, pair_distances
from heritage.lineage.precision import precision_bits
from heritage.lineage.tree import regraft_features
from heritage.lineage.types import Direction, Relation

__all__ = ["ATTACH_CANDIDATES", "ATTACH_MIN", "attach_leaves"]

ATTACH_MIN = PARENT_MODEL_MAX + 1  # smaller families choose parents jointly: plan again
ATTACH_CANDIDATES = 32  # nearest kin measured exactly per new model
_MAX_LOCAL = 256  # candidates, paths and new models measured together, at most
_TREE = (Relation.FINETUNE, Relation.ADAPTER)


def _tree_parent(graph: nx.DiGraph, node: str) -> str | None:
    for p in graph.predecessors(node):
        if graph.edges[p, node]["relation"] in _TREE:
            return str(p)
    return None


def _is_tree_node(graph: nx.DiGraph, node: str) -> bool:
    return all(graph.edges[p, node]["relation"] in _TREE for p in graph.predecessors(node))


def _path(graph: nx.DiGraph, a: str, b: str) -> list[str]:
    """The tree path from ``a`` to ``b`` (both tree nodes): up to their lowest common
    ancestor and down."""
    up_a = [a]
    while (p := _tree_parent(graph, up_a[-1])) is not None:
        up_a.append(p)
    seen = {v: k for k, v in enumerate(up_a)}
    up_b = [b]
    while up_b[-1] not in seen:
        p = _tree_parent(graph, up_b[-1])
        if p is None:
            return []  # not one tree
        up_b.append(p)
    return up_a[: seen[up_b[-1]] + 1] + up_b[-2::-1]


def _like_leaves(graph: nx.DiGraph, parent: str) -> tuple[float, Direction] | None:
    """The median confidence and majority direction of tree edges into leaves: the
    parent's leaf children, else every tree leaf of the family."""

    def leaf_edges(parents: list[str]) -> list[dict]:
        return [
            graph.edges[p, c]
            for p in parents
            for c in graph.successors(p)
            if graph.edges[p, c]["relation"] in _TREE and graph.out_degree(c) == 0
        ]

    edges = leaf_edges([parent]) or leaf_edges(list(graph.nodes))
    if not edges:
        return None
    conf = float(np.median([e["confidence"] for e in edges]))
    unsure = sum(e.get("direction") == Direction.UNCERTAIN for e in edges)
    return conf, Direction.UNCERTAIN if 2 * unsure > len(edges) else Direction.INFERRED


def attach_leaves(
    family: nx.DiGraph,
    members: Sequence[ModelInput],
    new: Sequence[ModelInput],
    nearest: dict[str, Sequence[str]],
    settings: LineageSettings | None = None,
    scorer: Scorer | None = None,
) -> nx.DiGraph | None:
    """The family's graph with ``new`` attached as leaves, or None to plan it again.

    ``family`` is one family's part of a previous lineage graph (nodes with their
    attributes, every edge among them); ``members`` its models as they are now
    (unchanged); ``new`` the models to attach, kin to this family only; ``nearest``
    each new model's nearest kin in its architecture group, best first.
    """
    settings = settings or LineageSettings()
    scorer = scorer or load_scorer()
    if family.number_of_nodes() < ATTACH_MIN:
        return None
    graph = nx.DiGraph(family)
    inputs = {m.id: m for m in [*members, *new]}
    new_ids = {m.id for m in new}
    key = next(iter(family.nodes(data="architecture")))[1]
    pending = list(new)
    while pending:  # in content order; a model nearer another new one waits for it
        waiting = []
        for v in pending:
            placed = _attach_one(graph, inputs, v, nearest.get(v.id, ()), new_ids, settings, scorer)
            if placed is None:
                return None
            if placed is _WAIT:
                waiting.append(v)
                continue
            assert isinstance(placed, _Placement)
            graph.add_node(
                v.id,
                architecture=key,
                family_confidence=kin_confidence(
                    placed.cosine, settings.kin_cosine, placed.entries
                ),
                precision_bits=32,  # lower precisions are never attached
            )
            graph.add_edge(placed.parent, v.id, **placed.attrs)
        if len(waiting) == len(pending):
            return None  # new models nearer each other than the family: plan together
        pending = waiting
    fam = family_id(list(graph.nodes))
    for node in graph.nodes:
        graph.nodes[node]["family"] = fam
    return graph


class _Placement(NamedTuple):
    parent: str
    attrs: dict[str, object]  # the new edge's
    cosine: float  # with the nearest member, for the family confidence
    entries: int  # evidence entries it was measured on


_WAIT = object()  # nearer a new model not placed yet


def _attach_one(
    graph: nx.DiGraph,
    inputs: dict[str, ModelInput],
    v: ModelInput,
    nearest: Sequence[str],
    new_ids: set[str],
    settings: LineageSettings,
    scorer: Scorer,
) -> _Placement | object | None:
    if precision_bits(v.fingerprint) < 32:
        return None  # a lower-precision copy: the copies stage decides
    kin = [c for c in nearest if c in graph or c in new_ids][:ATTACH_CANDIDATES]
    cands = [c for c in kin if c in graph]
    waiting = [c for c in kin if c not in graph]  # new models not placed yet
    tree = [c for c in cands if _is_tree_node(graph, c)]
    if not tree:
        return None
    local = [v.id, *cands, *waiting]
    for c in cands:  # parents of candidates: paths, the sibling test, copy sources
        local += [str(p) for p in graph.predecessors(c)]
    local = list(dict.fromkeys(local))
    _, dist = _measure([inputs[m] for m in local])
    u = min(tree, key=lambda c: (dist(0, local.index(c)), local.index(c)))
    paths = {c: _path(graph, u, c) for c in tree if c != u}
    if any(not p for p in paths.values()):
        return None
    local = list(dict.fromkeys(local + [m for p in paths.values() for m in p]))
    if len(local) > _MAX_LOCAL:
        return None
    ev, dist = _measure([inputs[m] for m in local])
    at = {m: k for k, m in enumerate(local)}
    d_v = {c: dist(0, at[c]) for c in kin}
    if min(d_v.values()) == 0 or min(tree, key=lambda c: (d_v[c], at[c])) != u:
        return None  # an exact copy, or the nearest member moved with the layout
    if any(d_v[w] < d_v[u] for w in waiting):
        return _WAIT
    for c in cands:
        if c == u:
            continue
        if c in paths:  # the cycle rule: v would join c's path
            if d_v[c] < max(dist(at[a], at[b]) for a, b in pairwise(paths[c])):
                return None
        elif d_v[c] < min(dist(at[p], at[c]) for p in graph.predecessors(c)):
            return None  # a copy or merge child nearer v than its own source
    if _fits_as_merge(ev, dist, [at[c] for c in tree], settings):
        return None
    g = _tree_parent(graph, u)  # among ``local``: the candidates' parents are
    test = scorer.sibling_test
    sibling = g is not None and test is not None
    sibling = sibling and test.probability(regraft_features(at[g], at[u], 0, dist)) > 0.5
    parent = g if sibling and g is not None else u
    like = _like_leaves(graph, parent)
    if like is None:
        return None
    conf, direction = like
    attrs = tree_edge(
        inputs[parent].fingerprint, v.fingerprint, conf, dist(0, at[parent]), direction
    )
    x = ev.unit
    cos = float(x[0] @ x[at[u]] / max(np.linalg.norm(x[0]) * np.linalg.norm(x[at[u]]), 1e-12))
    return _Placement(parent, attrs, cos, x.shape[1])


def _measure(models: Sequence[ModelInput]) -> tuple[Evidence, PairDistances]:
    """Evidence laid out over ``models`` alone, and every distance among them."""
    fps = [m.fingerprint for m in models]
    ev = evidence_vectors(fps, evidence_layout(fps))
    pairs = all_pairs(len(fps))
    return ev, PairDistances(ev.unit, pairs, pair_distances(ev.unit, pairs))


def _fits_as_merge(
    ev: Evidence, dist: PairDistances, tree: list[int], settings: LineageSettings
) -> bool:
    """Whether the new model (local 0) fits as a merge of its tree candidates."""
    near = {0: sorted((dist(0, j), j) for j in tree)}
    core = [0, *tree]
    exact = [True] * ev.unit.shape[0]
    if find_sparse_merges(ev.raw, core, exact, dist, near, slices=ev.slices):
        return True
    merges = find_merges(ev.unit, core, near, settings.merge_candidates, settings.merge_residual)
    return any(m.child == 0 for m in merges)
