"""Incremental lineage: recompute only the families a change touches.

A run that adds, changes or removes models does not need to revisit every family. A
family is *touched* when one of its members changed or was removed, or when a new or
changed model is kin to one of its members (its weights correlate above the engine's
kinship threshold, the test ``kinship`` links families with). Only the touched
families' members and the changed models are planned again; every other family keeps
its nodes, edges, confidences and id exactly as they were.

The kin search compares each changed model with every model of its architecture group,
one tensor at a time, on per-tensor standardised values (one pass over the group's
sampled rows, no pairwise work): linear in the group's size.

A touched family is planned on its own members, so its evidence is scaled on them
rather than on the whole group: its edges can differ in the last digits from a full
run's, never in untouched families.

A family larger than ``attach.ATTACH_MIN`` that only gains new models (none of its
members changed or removed, and the new models kin to no other family) is not planned
again: each new model that its spanning tree would join as a leaf is attached on its own
(``heritage.lineage.attach``), so one new fine-tune of a base with 100,000 derivatives
costs seconds, not minutes. The family keeps its root and every other edge.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import NamedTuple

import networkx as nx
import numpy as np

from heritage.lineage.attach import ATTACH_CANDIDATES, ATTACH_MIN, attach_leaves
from heritage.lineage.direction import Scorer
from heritage.lineage.engine import LineageSettings, ModelInput, content_key, recover_lineage
from heritage.lineage.evidence import architecture_key

__all__ = [
    "LineageUpdate",
    "Touched",
    "UpdatePlan",
    "find_touched",
    "kin_cosines",
    "kin_of",
    "plan_update",
    "update_lineage",
]


class Touched(NamedTuple):
    """What a change reaches: previous families to plan again, and the models to plan."""

    families: frozenset[str]  # previous family ids
    models: frozenset[str]  # current model ids: members of those families and the changed
    # previous families with a member changed or removed (the rest are reached by kin)
    direct: frozenset[str] = frozenset()
    reach: Mapping[str, frozenset[str]] = {}  # changed model -> previous families it is kin to
    nearest: Mapping[str, tuple[str, ...]] = {}  # changed model -> its nearest kin, best first


class LineageUpdate(NamedTuple):
    graph: nx.DiGraph
    touched: Touched
    planned: frozenset[str]  # the models planned again (the rest were kept or attached)


def _standardised(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(values.shape[0], -1).astype(np.float32)
    flat = flat - flat.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", flat, flat))
    return flat / np.where(norm > 0, norm, 1.0)[:, None]


def kin_cosines(group: Sequence[ModelInput], targets: Sequence[int]) -> np.ndarray:
    """(targets, group): how each target's weights correlate with every member's, the
    mean over shared tensors of the cosine of their centred sampled values (0 where no
    tensor is shared)."""
    n = len(group)
    total = np.zeros((len(targets), n))
    count = np.zeros((len(targets), n))
    if not targets:
        return total
    first = group[targets[0]].fingerprint
    for name in sorted(first.tensors):
        ref = first.tensors[name]
        if len(ref.shape) < 2 or not ref.is_float or ref.values.size == 0:
            continue
        same = np.array(
            [
                name in m.fingerprint.tensors
                and m.fingerprint.tensors[name].values.shape == ref.values.shape
                and np.array_equal(m.fingerprint.tensors[name].rows, ref.rows)
                for m in group
            ]
        )
        if not same[list(targets)].all():
            continue
        idx = np.flatnonzero(same)
        tvec = _standardised(np.stack([group[t].fingerprint.tensors[name].values for t in targets]))
        for start in range(0, len(idx), 8192):
            part = idx[start : start + 8192]
            block = _standardised(
                np.stack([group[i].fingerprint.tensors[name].values for i in part])
            )
            total[:, part] += tvec @ block.T
            count[:, part] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), 0.0)


def kin_of(
    group: Sequence[ModelInput], targets: Sequence[int], kin_cosine: float
) -> dict[int, set[int]]:
    """For each target (index into ``group``), the other members whose weights correlate
    with it above ``kin_cosine`` (``kin_cosines``)."""
    if not targets or len(group) < 2:
        return {t: set() for t in targets}
    cos = kin_cosines(group, targets)
    return {
        t: {int(i) for i in np.flatnonzero(cos[row] > kin_cosine) if i != t}
        for row, t in enumerate(targets)
    }


def find_touched(
    previous_family: Mapping[str, str],
    models: Sequence[ModelInput],
    changed: Collection[str],
    kin_cosine: float | None = None,
    nearest: int = 0,
) -> Touched:
    """The previous families a change reaches, and the current models to plan again.

    ``previous_family`` maps each previously placed model to its family id; ``changed``
    holds the ids of models added or whose weights changed (models missing from
    ``models`` count as removed). With ``nearest``, each changed model's ``nearest``
    kin, best first, come back too.
    """
    kin_cosine = LineageSettings().kin_cosine if kin_cosine is None else kin_cosine
    current = {m.id for m in models}
    changed = {c for c in changed if c in current} | (current - set(previous_family))
    families = {previous_family[m] for m in previous_family if m not in current}
    families |= {previous_family[m] for m in changed if m in previous_family}
    direct = set(families)
    reach: dict[str, frozenset[str]] = {}
    near: dict[str, tuple[str, ...]] = {}
    groups: dict[str, list[ModelInput]] = {}
    for m in sorted(models, key=lambda m: m.id):
        groups.setdefault(architecture_key(m.fingerprint), []).append(m)
    for group in groups.values():
        targets = [k for k, m in enumerate(group) if m.id in changed]
        if not targets:
            continue
        cos = kin_cosines(group, targets)
        for row, t in enumerate(targets):
            cos[row, t] = -np.inf
            kin = np.flatnonzero(cos[row] > kin_cosine)
            fams = {
                previous_family[group[i].id]
                for i in kin
                if group[i].id in previous_family and group[i].id not in changed
            }
            reach[group[t].id] = frozenset(fams)
            families |= fams
            if nearest:
                top = kin[np.argsort(-cos[row, kin], kind="stable")[:nearest]]
                near[group[t].id] = tuple(group[i].id for i in top)
    members = {m for m, f in previous_family.items() if f in families and m in current}
    return Touched(frozenset(families), frozenset(members | changed), direct, reach, near)


class UpdatePlan(NamedTuple):
    """What a change asks of lineage: families to plan again, and families whose new
    members were attached as leaves (``heritage.lineage.attach``)."""

    touched: Touched
    replan: frozenset[str]  # current model ids to plan again
    attached: list[nx.DiGraph]  # each attached family's graph, with its new members
    attached_families: frozenset[str]  # their previous family ids


def plan_update(
    previous_family: Mapping[str, str],
    family_graph: Callable[[str], nx.DiGraph],
    models: Sequence[ModelInput],
    changed: Collection[str],
    settings: LineageSettings | None = None,
    scorer: Scorer | None = None,
) -> UpdatePlan:
    """The families a change touches, new models attached as leaves to the large
    families only they reach (``attach_leaves``), and every other touched model to plan
    again. ``family_graph(id)`` gives a previous family's part of the lineage graph."""
    settings = settings or LineageSettings()
    touched = find_touched(
        previous_family, models, changed, settings.kin_cosine, nearest=ATTACH_CANDIDATES
    )
    size: dict[str, int] = {}
    for f in previous_family.values():
        size[f] = size.get(f, 0) + 1
    by_id = {m.id: m for m in models}
    joining: dict[str, list[str]] = {}
    for c, fams in touched.reach.items():
        for f in fams:
            joining.setdefault(f, []).append(c)
    attached, done, placed = [], set(), set()
    for f in sorted(touched.families):
        new = joining.get(f, [])
        if f in touched.direct or size[f] < ATTACH_MIN or not new:
            continue
        if any(c in previous_family or touched.reach[c] != {f} for c in new):
            continue
        members = [by_id[m] for m, g in previous_family.items() if g == f]
        order = sorted((by_id[c] for c in new), key=lambda m: (content_key(m.fingerprint), m.id))
        graph = attach_leaves(family_graph(f), members, order, touched.nearest, settings, scorer)
        if graph is not None:
            attached.append(graph)
            done.add(f)
            placed |= set(graph.nodes)
    return UpdatePlan(touched, touched.models - placed, attached, frozenset(done))


def update_lineage(
    previous: nx.DiGraph,
    models: Sequence[ModelInput],
    changed: Collection[str],
    settings: LineageSettings | None = None,
    scorer: Scorer | None = None,
) -> LineageUpdate:
    """The lineage graph after a change, planning only the families it touches.

    ``previous`` is the graph ``recover_lineage`` (or this function) returned for the
    previous set of models; ``models`` is the whole current set.
    """
    settings = settings or LineageSettings()
    family = {str(n): d["family"] for n, d in previous.nodes(data=True) if d.get("family")}

    def family_graph(f: str) -> nx.DiGraph:
        return previous.subgraph([m for m, g in family.items() if g == f])

    plan = plan_update(family, family_graph, models, changed, settings, scorer)
    current = {m.id for m in models}
    keep = [n for n in previous.nodes if n in current and n not in plan.touched.models]
    graph = nx.DiGraph(previous.subgraph(keep))
    graph.graph.update(previous.graph)
    fresh = recover_lineage([m for m in models if m.id in plan.replan], settings, scorer)
    for g in [*plan.attached, fresh]:
        graph.add_nodes_from(g.nodes(data=True))
        graph.add_edges_from(g.edges(data=True))
    return LineageUpdate(graph, plan.touched, plan.replan)
