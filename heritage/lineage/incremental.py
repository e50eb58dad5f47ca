"""Incremental lineage: recompute only the families a change touches.

A run that adds, changes or removes models does not need to revisit every family. A
family is *touched* when one of its members changed or was removed, or when a new or
changed model is kin to one of its members (its weights correlate above the engine's
kinship threshold, the test ``kinship`` links families with). Only the touched
families' members and the changed models are planned again; every other family keeps
its nodes, edges, confidences and id exactly as they were.

The kin search compares each changed model with every model of its architecture group,
on per-tensor standardised values (one pass over the group's sampled rows, no pairwise
work): linear in the group's size. The models come from a ``ModelPool``: the changed
ones in memory, the rest loaded from storage when a step needs them (a chunk of the
group at a time for the kin search, one family at a time to attach leaves), so a
large index never holds every fingerprint at once.

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

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

import networkx as nx
import numpy as np

from heritage.fingerprint import Fingerprint
from heritage.lineage.attach import ATTACH_CANDIDATES, ATTACH_MIN, attach_leaves
from heritage.lineage.direction import Scorer
from heritage.lineage.engine import (
    LineageSettings,
    ModelInput,
    content_key,
    place_adapters,
    recover_lineage,
)
from heritage.lineage.evidence import architecture_key

__all__ = [
    "LineageUpdate",
    "Blocks",
    "ModelPool",
    "Sample",
    "StoredModel",
    "Touched",
    "UpdatePlan",
    "find_touched",
    "kin_cosines",
    "kin_of",
    "kin_samples",
    "plan_update",
    "sample_blocks",
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


# bytes of sampled values the kin search loads at once
SAMPLE_BUDGET = 64 * 2**20


class StoredModel(NamedTuple):
    """A model whose fingerprint stays in storage until a step needs it."""

    id: str
    architecture: str  # evidence.architecture_key of its fingerprint
    created_at: float | None = None


class Sample(NamedTuple):
    """How a tensor was sampled: models compare on it when these agree."""

    name: str
    rows: np.ndarray  # sampled row indices
    shape: tuple[int, ...]  # of the sampled values


# tensor name -> (positions of the models that have the sample, their values stacked)
Blocks = dict[str, tuple[np.ndarray, np.ndarray]]


def _same_sample(fp: Fingerprint, sample: Sample) -> bool:
    t = fp.tensors.get(sample.name)
    return t is not None and t.values.shape == sample.shape and np.array_equal(t.rows, sample.rows)


def sample_blocks(models: Sequence[ModelInput], samples: Sequence[Sample]) -> Blocks:
    """The values of ``samples`` in ``models``, stacked per tensor (``Blocks``)."""
    out = {}
    for s in samples:
        idx = [k for k, m in enumerate(models) if _same_sample(m.fingerprint, s)]
        if idx:
            values = np.stack([models[k].fingerprint.tensors[s.name].values for k in idx])
            out[s.name] = (np.asarray(idx), values)
    return out


class ModelPool:
    """The models a change is planned over: some in memory, the others (``stored``)
    read by id through ``load`` (whole fingerprints) or ``load_samples`` (a few tensors'
    sampled values, ``Blocks``) each time a step asks for them, never kept."""

    def __init__(
        self,
        models: Iterable[ModelInput] = (),
        stored: Iterable[StoredModel] = (),
        load: Callable[[Sequence[str]], Mapping[str, Fingerprint]] | None = None,
        load_samples: Callable[[Sequence[str], Sequence[Sample]], Blocks] | None = None,
    ) -> None:
        self._models = {m.id: m for m in models}
        self._stored = {s.id: s for s in stored if s.id not in self._models}
        if self._stored and load is None:
            raise ValueError("stored models need a load function")
        self._load = load
        self._load_samples = load_samples
        self._architecture = {s.id: s.architecture for s in self._stored.values()}
        self._architecture.update({m.id: architecture_key(m.fingerprint) for m in self})

    def __iter__(self) -> Iterator[ModelInput]:
        return iter(self._models.values())

    @property
    def ids(self) -> list[str]:
        """Every model's id, sorted."""
        return sorted(self._architecture)

    def architecture(self, model_id: str) -> str:
        return self._architecture[model_id]

    def get(self, ids: Sequence[str]) -> list[ModelInput]:
        """The models of ``ids``, in that order (stored ones loaded now)."""
        want = [i for i in ids if i not in self._models]
        prints = self._load(want) if want and self._load is not None else {}
        out = []
        for i in ids:
            if i in self._models:
                out.append(self._models[i])
            else:
                out.append(ModelInput(i, prints[i], self._stored[i].created_at))
        return out

    def sample_chunks(
        self, ids: Sequence[str], samples: Sequence[Sample]
    ) -> Iterator[tuple[int, Blocks]]:
        """The values of ``samples`` in the models of ``ids``, a chunk of at most
        ``SAMPLE_BUDGET`` bytes at a time: (chunk length, ``Blocks`` with positions
        within the chunk)."""
        per_model = 4 * sum(int(np.prod(s.shape)) for s in samples) or 1
        size = max(1, SAMPLE_BUDGET // per_model)
        for start in range(0, len(ids), size):
            chunk = ids[start : start + size]
            yield len(chunk), self._chunk_blocks(chunk, samples)

    def _chunk_blocks(self, chunk: Sequence[str], samples: Sequence[Sample]) -> Blocks:
        here = [k for k, i in enumerate(chunk) if i in self._models]
        there = [k for k, i in enumerate(chunk) if i not in self._models]
        parts = []
        if here:
            parts.append((here, sample_blocks([self._models[chunk[k]] for k in here], samples)))
        if there:
            ids = [chunk[k] for k in there]
            if self._load_samples is not None:
                parts.append((there, self._load_samples(ids, samples)))
            else:
                parts.append((there, sample_blocks(self.get(ids), samples)))
        if len(parts) == 1 and len(parts[0][0]) == len(chunk):
            return parts[0][1]  # positions within the chunk already
        out: Blocks = {}
        for s in samples:
            found = [
                (np.asarray(pos)[b[s.name][0]], b[s.name][1]) for pos, b in parts if s.name in b
            ]
            if found:
                out[s.name] = (
                    np.concatenate([p for p, _ in found]),
                    np.concatenate([v for _, v in found]),
                )
        return out


def _standardised(values: np.ndarray) -> np.ndarray:
    flat = values.reshape(values.shape[0], -1).astype(np.float32)
    flat = flat - flat.mean(axis=1, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->i", flat, flat))
    return flat / np.where(norm > 0, norm, 1.0)[:, None]


def kin_samples(targets: Sequence[ModelInput]) -> list[Sample]:
    """The trained matrices the kin search compares ``targets`` on: those every target
    has, sampled as in the first target, by name."""
    if not targets:
        return []
    first = targets[0].fingerprint
    out = []
    for name in sorted(first.tensors):
        ref = first.tensors[name]
        if len(ref.shape) < 2 or not ref.is_float or ref.values.size == 0:
            continue
        sample = Sample(name, ref.rows, ref.values.shape)
        if all(_same_sample(t.fingerprint, sample) for t in targets):
            out.append(sample)
    return out


def kin_cosines(targets: Sequence[ModelInput], members: Iterable[tuple[int, Blocks]]) -> np.ndarray:
    """(targets, members): how each target's weights correlate with every member's, the
    mean over shared tensors (``kin_samples``) of the cosine of their centred sampled
    values (0 where no tensor is shared). ``members`` comes in chunks of (length,
    ``Blocks``), as ``ModelPool.sample_chunks`` gives them; columns follow in order."""
    samples = kin_samples(targets)
    tvecs = {
        s.name: _standardised(np.stack([t.fingerprint.tensors[s.name].values for t in targets]))
        for s in samples
    }
    parts = []
    for size, blocks in members:
        total = np.zeros((len(targets), size))
        count = np.zeros((len(targets), size))
        for s in samples:
            if s.name not in blocks:
                continue
            idx, values = blocks[s.name]
            total[:, idx] += tvecs[s.name] @ _standardised(values).T
            count[:, idx] += 1
        with np.errstate(invalid="ignore", divide="ignore"):
            parts.append(np.where(count > 0, total / np.maximum(count, 1), 0.0))
    return np.concatenate(parts, axis=1) if parts else np.zeros((len(targets), 0))


def kin_of(
    group: Sequence[ModelInput], targets: Sequence[int], kin_cosine: float
) -> dict[int, set[int]]:
    """For each target (index into ``group``), the other members whose weights correlate
    with it above ``kin_cosine`` (``kin_cosines``)."""
    if not targets or len(group) < 2:
        return {t: set() for t in targets}
    chosen = [group[t] for t in targets]
    cos = kin_cosines(chosen, [(len(group), sample_blocks(group, kin_samples(chosen)))])
    return {
        t: {int(i) for i in np.flatnonzero(cos[row] > kin_cosine) if i != t}
        for row, t in enumerate(targets)
    }


def _pool(models: Sequence[ModelInput] | ModelPool) -> ModelPool:
    return models if isinstance(models, ModelPool) else ModelPool(models)


def find_touched(
    previous_family: Mapping[str, str],
    models: Sequence[ModelInput] | ModelPool,
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
    pool = _pool(models)
    current = set(pool.ids)
    changed = {c for c in changed if c in current} | (current - set(previous_family))
    families = {previous_family[m] for m in previous_family if m not in current}
    families |= {previous_family[m] for m in changed if m in previous_family}
    direct = set(families)
    reach: dict[str, frozenset[str]] = {}
    near: dict[str, tuple[str, ...]] = {}
    groups: dict[str, list[str]] = {}
    for m in pool.ids:
        groups.setdefault(pool.architecture(m), []).append(m)
    for group in groups.values():
        targets = [k for k, m in enumerate(group) if m in changed]
        if not targets:
            continue
        chosen = pool.get([group[t] for t in targets])
        cos = kin_cosines(chosen, pool.sample_chunks(group, kin_samples(chosen)))
        for row, t in enumerate(targets):
            cos[row, t] = -np.inf
            kin = np.flatnonzero(cos[row] > kin_cosine)
            fams = {
                previous_family[group[i]]
                for i in kin
                if group[i] in previous_family and group[i] not in changed
            }
            reach[group[t]] = frozenset(fams)
            families |= fams
            if nearest:
                top = kin[np.argsort(-cos[row, kin], kind="stable")[:nearest]]
                near[group[t]] = tuple(group[i] for i in top)
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
    models: Sequence[ModelInput] | ModelPool,
    changed: Collection[str],
    settings: LineageSettings | None = None,
    scorer: Scorer | None = None,
) -> UpdatePlan:
    """The families a change touches, new models attached as leaves to the large
    families only they reach (``attach_leaves``), and every other touched model to plan
    again. ``family_graph(id)`` gives a previous family's part of the lineage graph."""
    settings = settings or LineageSettings()
    pool = _pool(models)
    touched = find_touched(
        previous_family, pool, changed, settings.kin_cosine, nearest=ATTACH_CANDIDATES
    )
    size: dict[str, int] = {}
    for f in previous_family.values():
        size[f] = size.get(f, 0) + 1
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
        members = pool.get([m for m, g in previous_family.items() if g == f])
        order = sorted(pool.get(new), key=lambda m: (content_key(m.fingerprint), m.id))
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
    previous set of models; ``models`` is the whole current set. PEFT adapters (models
    with an ``adapter`` layout) are attached again, every one: they never touch a family.
    """
    settings = settings or LineageSettings()
    adapters = [m for m in models if m.adapter is not None]
    models = [m for m in models if m.adapter is None]
    was_adapter = {n for n, d in previous.nodes(data=True) if "adapter_basis" in d}
    previous = previous.subgraph([n for n in previous.nodes if n not in was_adapter])
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
    if adapters:
        place_adapters(graph, adapters, models)
    planned = plan.replan | {a.id for a in adapters}
    return LineageUpdate(graph, plan.touched, frozenset(planned))
