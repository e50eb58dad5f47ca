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
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import NamedTuple

import networkx as nx
import numpy as np

from heritage.lineage.direction import Scorer
from heritage.lineage.engine import LineageSettings, ModelInput, recover_lineage
from heritage.lineage.evidence import architecture_key

__all__ = ["LineageUpdate", "Touched", "find_touched", "kin_of", "update_lineage"]


class Touched(NamedTuple):
    """What a change reaches: previous families to plan again, and the models to plan."""

    families: frozenset[str]  # previous family ids
    models: frozenset[str]  # current model ids: members of those families and the changed


class LineageUpdate(NamedTuple):
    graph: nx.DiGraph
    touched: Touched


def _standardised(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(values.shape[0], -1).astype(np.float32)
    flat = flat - flat.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", flat, flat))
    return flat / np.where(norm > 0, norm, 1.0)[:, None]


def kin_of(
    group: Sequence[ModelInput], targets: Sequence[int], kin_cosine: float
) -> dict[int, set[int]]:
    """For each target (index into ``group``), the other members whose weights correlate
    with it above ``kin_cosine``: the mean over shared tensors of the cosine of their
    centred sampled values."""
    out: dict[int, set[int]] = {t: set() for t in targets}
    if not targets or len(group) < 2:
        return out
    n = len(group)
    total = np.zeros((len(targets), n))
    count = np.zeros((len(targets), n))
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
        for start in range(0, len(idx), 8192):
            part = idx[start : start + 8192]
            block = _standardised(
                np.stack([group[i].fingerprint.tensors[name].values for i in part])
            )
            tvec = _standardised(
                np.stack([group[t].fingerprint.tensors[name].values for t in targets])
            )
            total[:, part] += tvec @ block.T
            count[:, part] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    for row, t in enumerate(targets):
        hits = np.flatnonzero(cos[row] > kin_cosine)
        out[t] = {int(i) for i in hits if i != t}
    return out


def find_touched(
    previous_family: Mapping[str, str],
    models: Sequence[ModelInput],
    changed: Collection[str],
    kin_cosine: float | None = None,
) -> Touched:
    """The previous families a change reaches, and the current models to plan again.

    ``previous_family`` maps each previously placed model to its family id; ``changed``
    holds the ids of models added or whose weights changed (models missing from
    ``models`` count as removed).
    """
    kin_cosine = LineageSettings().kin_cosine if kin_cosine is None else kin_cosine
    current = {m.id for m in models}
    changed = {c for c in changed if c in current} | (current - set(previous_family))
    families = {previous_family[m] for m in previous_family if m not in current}
    families |= {previous_family[m] for m in changed if m in previous_family}
    groups: dict[str, list[ModelInput]] = {}
    for m in sorted(models, key=lambda m: m.id):
        groups.setdefault(architecture_key(m.fingerprint), []).append(m)
    for group in groups.values():
        targets = [k for k, m in enumerate(group) if m.id in changed]
        for kin in kin_of(group, targets, kin_cosine).values():
            families |= {
                previous_family[group[i].id]
                for i in kin
                if group[i].id in previous_family and group[i].id not in changed
            }
    members = {m for m, f in previous_family.items() if f in families and m in current}
    return Touched(frozenset(families), frozenset(members | changed))


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
    touched = find_touched(family, models, changed, settings.kin_cosine)
    current = {m.id for m in models}
    keep = [n for n in previous.nodes if n in current and n not in touched.models]
    graph = nx.DiGraph(previous.subgraph(keep))
    graph.graph.update(previous.graph)
    fresh = recover_lineage([m for m in models if m.id in touched.models], settings, scorer)
    graph.add_nodes_from(fresh.nodes(data=True))
    graph.add_edges_from(fresh.edges(data=True))
    return LineageUpdate(graph, touched)
