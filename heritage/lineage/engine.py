"""Lineage recovery: families, duplicates, quantized copies, merges and a directed tree.

Everything here is a plain function of fingerprints (numpy arrays); no I/O. The steps:

1. group models by architecture (tensor names and row shapes);
2. inside a group, link each model to its nearest neighbours and call two models kin
   when their aligned weights correlate (independent initialisations do not);
3. inside a family, collapse exact duplicates, then attach lower-precision copies that
   sit within rounding distance of a source as quantized leaves;
4. detect merges: a model fitted almost exactly by a weighted average of two others;
5. for the rest, try the likeliest roots (ranked on a minimum spanning tree); each root
   fixes which way training-progress statistics (per-tensor RMS, kurtosis, spread,
   spectrum) move, every model takes as parent its nearest less-trained model, and the
   root whose tree moves the statistics (and creation times, when known) most
   consistently wins, unless its tree needs a model whose children leave it in
   opposite directions;
6. from that root, the tree is a minimum spanning arborescence over each model's nearest
   neighbours, an edge costing its distance plus a penalty for running against the
   progress order; a model lying between two of its children gives its place to one of
   them, a child stepping back towards its grandparent goes between the two, sweep
   siblings that look like a chain are split back, and a model about as close to its
   grandparent as to its parent is given to the grandparent.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from heritage.fingerprint import Fingerprint
from heritage.lineage.evidence import Evidence, architecture_key, build_evidence
from heritage.lineage.neighbours import all_pairs, candidate_pairs, pair_distances
from heritage.lineage.precision import precision_bits

METHOD = "heritage-lineage/4"


@dataclass(frozen=True)
class LineageSettings:
    """Thresholds of the engine; defaults are measured on the zoo (see README)."""

    k_neighbours: int = 10
    dense_limit: int = 256  # families up to this size compare all pairs exactly
    kin_cosine: float = 0.2  # independent initialisations correlate at ~0 +- 0.01
    quantized_tolerance: tuple[tuple[int, float], ...] = ((16, 0.01), (8, 0.05))
    merge_residual: float = 0.1  # residual of the two-parent fit / distance to nearer parent
    merge_candidates: int = 6
    use_times: bool = True  # creation times vote on direction when the source has them
    time_weight: float = 1.0  # share of the direction vote given to times when present
    sweep_cosine: float = 0.0  # a step that moves on in the previous step's direction...
    sweep_ratio: float = 1.0  # ...and is this much longer than it: a sibling, not a child
    # Fine-tune edges carry the precision measured for them on the zoo benchmarks, by how
    # sure the family is of its root (the only per-edge feature found to predict errors):
    # (root confidence above, edge confidence), first match wins. Measured on 876 edges of
    # eight zoos: 0.98 right above 0.9 (0.97 on the worst zoo), 0.84 below (0.62 worst).
    finetune_confidence: tuple[tuple[float, float], ...] = ((0.99, 0.95), (0.9, 0.9), (0.0, 0.8))
    spanning_weight: float = 0.2  # weight of the spanning tree's own root score
    fan_weight: float = 0.1  # weight of the same tree with sweep siblings split into a fan
    root_candidates: int = 16  # roots tried per family, best first by spanning-tree score
    order_penalty: float = 1.2  # arborescence: extra cost per unit of progress order reversed
    detour_ratio: float = 0.05  # a child nearly as close to its grandparent belongs to it
    pair_isosceles: float = 0.1  # a short step back to the same distance from the grandparent...
    pair_focus: float = 0.85  # ...with a change this much less focused than the family's: a twin
    opposed_cosine: float = -0.5  # two children of one parent never point opposite ways...
    opposed_weight: float = 0.1  # ...a root whose tree needs that loses this much per case
    sweep_line: float = 0.7  # a model in line with a sibling (cosine) is one of a sweep
    backstep_cosine: float = 0.7  # a child back towards the grandparent lies between them
    merge_sibling_weight: float = 0.2  # a root whose tree splits a merge's parents loses this
    merge_root_trials: int = 4  # final trees built per family for that (the chosen was <= 4th)
    merge_root_limit: int = 256  # larger families skip it (an arborescence each: seconds)


@dataclass
class ModelInput:
    """One model as lineage sees it: an id, its fingerprint, and optional evidence."""

    id: str
    fingerprint: Fingerprint
    created_at: float | None = None  # seconds since the epoch, if the source knows it


@dataclass
class _Family:
    members: list[int]  # indices into the group
    confidence: dict[int, float] = field(default_factory=dict)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, a: int) -> int:
        while self.parent[a] != a:
            self.parent[a] = self.parent[self.parent[a]]
            a = self.parent[a]
        return a

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def groups(self, items: Sequence[int]) -> list[list[int]]:
        out: dict[int, list[int]] = {}
        for i in items:
            out.setdefault(self.find(i), []).append(i)
        return sorted(out.values(), key=lambda g: g[0])


class _Distances:
    """Distances between evidence rows, each measured once (seeded with the known pairs)."""

    def __init__(self, x: np.ndarray, pairs: dict[tuple[int, int], float]) -> None:
        self.x = x
        self.known = dict(pairs)
        self.neighbours: dict[int, set[int]] = {}  # i -> every j measured against it
        for i, j in pairs:
            self.neighbours.setdefault(i, set()).add(j)
            self.neighbours.setdefault(j, set()).add(i)

    def __call__(self, i: int, j: int) -> float:
        if i == j:
            return 0.0
        key = (i, j) if i < j else (j, i)
        d = self.known.get(key)
        if d is None:
            d = float(np.linalg.norm(self.x[i] - self.x[j]))
            self.known[key] = d
            self.neighbours.setdefault(i, set()).add(j)
            self.neighbours.setdefault(j, set()).add(i)
        return d


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, x))))


def identical(a: Fingerprint, b: Fingerprint) -> bool:
    """Same sampled values in every tensor (float comparison after dtype conversion)."""
    if a.tensors.keys() != b.tensors.keys():
        return False
    for name, ta in a.tensors.items():
        tb = b.tensors[name]
        if ta.shape != tb.shape or not np.array_equal(ta.values, tb.values, equal_nan=True):
            return False
    return True


def recover_lineage(
    models: Sequence[ModelInput], settings: LineageSettings | None = None
) -> nx.DiGraph:
    """Recover families and a typed, directed lineage graph from fingerprints.

    Nodes carry ``family``, ``family_confidence``, ``architecture`` and ``precision_bits``;
    edges carry ``relation`` (finetune, adapter, merge, quantized, duplicate),
    ``confidence`` in [0, 1], ``distance``, ``method`` and, for merges, ``weight``.
    The result depends only on the inputs (ids, fingerprints, times), never on order.
    """
    settings = settings or LineageSettings()
    models = sorted(models, key=lambda m: m.id)
    ids = [m.id for m in models]
    if len(set(ids)) != len(ids):
        raise ValueError("model ids must be unique")
    graph = nx.DiGraph(method=METHOD)
    groups: dict[str, list[int]] = {}
    for i, m in enumerate(models):
        key = architecture_key(m.fingerprint)
        groups.setdefault(key, []).append(i)
        graph.add_node(m.id, architecture=key)
    for key in sorted(groups):
        _recover_group([models[i] for i in groups[key]], graph, settings)
    return graph


def _recover_group(models: list[ModelInput], graph: nx.DiGraph, settings: LineageSettings) -> None:
    fps = [m.fingerprint for m in models]
    ev = build_evidence(fps)
    n = len(models)
    x = ev.unit
    pairs = all_pairs(n) if n <= settings.dense_limit else candidate_pairs(x, settings.k_neighbours)
    dist = pair_distances(x, pairs)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    cos = np.zeros(len(pairs))
    ok = (norms[pairs[:, 0]] > 0) & (norms[pairs[:, 1]] > 0)
    a, b = norms[pairs[ok, 0]], norms[pairs[ok, 1]]
    cos[ok] = (a * a + b * b - dist[ok] ** 2) / (2 * a * b)
    # identical models have zero-norm evidence only when nothing trains; treat equal raw as kin
    same = dist == 0
    uf = _UnionFind(n)
    for (i, j), c, s in zip(pairs, cos, same, strict=True):
        if c > settings.kin_cosine or s:
            uf.union(int(i), int(j))
    best_cos = np.full(n, -1.0)
    for (i, j), c in zip(pairs, cos, strict=True):
        if uf.find(int(i)) == uf.find(int(j)):
            best_cos[i] = max(best_cos[i], c)
            best_cos[j] = max(best_cos[j], c)
    null_sd = 1.0 / math.sqrt(max(ev.n_entries, 1))
    problems: list[_TreeProblem] = []
    for members in uf.groups(range(n)):
        fam_id = (
            "fam-"
            + hashlib.sha256("\n".join(models[i].id for i in members).encode()).hexdigest()[:12]
        )
        for i in members:
            if len(members) == 1:
                conf = 1.0
            else:
                # how far the closest kin sits above what unrelated models show
                conf = _logistic((best_cos[i] - settings.kin_cosine) / (4 * null_sd + 1e-3))
            graph.nodes[models[i].id].update(family=fam_id, family_confidence=round(conf, 4))
        problem = _recover_family(models, members, ev, graph, settings)
        if problem is not None:
            problems.append(problem)
    _solve_trees(models, ev.unit, problems, graph, settings)


def _family_pairs(
    x: np.ndarray, members: list[int], settings: LineageSettings
) -> dict[tuple[int, int], float]:
    sub = x[members]
    local = (
        all_pairs(len(members))
        if len(members) <= settings.dense_limit
        else candidate_pairs(sub, settings.k_neighbours)
    )
    d = pair_distances(sub, local)
    return {(members[i], members[j]): float(v) for (i, j), v in zip(local, d, strict=True)}


def _neighbour_lists(pairs: dict[tuple[int, int], float]) -> dict[int, list[tuple[float, int]]]:
    """For each model, its measured neighbours sorted by distance (ties by index)."""
    near: dict[int, list[tuple[float, int]]] = {}
    for (i, j), d in pairs.items():
        near.setdefault(i, []).append((d, j))
        near.setdefault(j, []).append((d, i))
    for lst in near.values():
        lst.sort()
    return near


def _dist(pairs: dict[tuple[int, int], float], i: int, j: int) -> float | None:
    return pairs.get((i, j) if i < j else (j, i))


@dataclass
class _TreeProblem:
    """The fine-tune tree still to be found in one family, after copies and merges."""

    nodes: list[int]  # sorted indices into the group
    pairs: dict[tuple[int, int], float]
    spanning: nx.Graph
    stats: np.ndarray  # (nodes, statistics) training-progress statistics
    near: dict[int, list[tuple[float, int]]]  # measured neighbours among nodes, nearest first
    dist: _Distances
    co_merged: frozenset[frozenset[int]] = frozenset()  # pairs merged into another model
    focus: dict[tuple[int, int], float] = field(default_factory=dict)  # _delta_focus memo


def _recover_family(
    models: list[ModelInput],
    members: list[int],
    ev: Evidence,
    graph: nx.DiGraph,
    settings: LineageSettings,
) -> _TreeProblem | None:
    """Copies and merges of one family; returns the tree still to orient, if any."""
    x = ev.unit
    pairs = _family_pairs(x, members, settings)

    # 1. exact duplicates collapse onto one representative
    uf = _UnionFind(len(models))
    for (i, j), d in pairs.items():
        if d == 0.0 and identical(models[i].fingerprint, models[j].fingerprint):
            uf.union(i, j)
    reps: list[int] = []
    for cls in uf.groups(members):
        rep = _earliest(models, cls, settings) if len(cls) > 1 else cls[0]
        reps.append(rep)
        for other in cls:
            if other != rep:
                _edge(graph, models, rep, other, "duplicate", 1.0, 0.0)

    # 2. lower-precision copies within rounding distance of a source are quantized leaves
    bits = {i: precision_bits(models[i].fingerprint) for i in reps}
    tolerance = dict(settings.quantized_tolerance)
    quantized: set[int] = set()
    for c in sorted(reps, key=lambda i: bits[i]):
        tol = next((t for b, t in sorted(tolerance.items()) if bits[c] <= b), None)
        if tol is None:
            continue
        best = None
        for p in reps:
            if p == c or p in quantized or bits[p] <= bits[c]:
                continue
            d = _dist(pairs, p, c)
            if d is not None and d <= tol and (best is None or d < best[1]):
                best = (p, d)
        if best is not None:
            p, d = best
            conf = 0.5 + 0.5 * max(0.0, 1.0 - d / tol)
            _edge(graph, models, p, c, "quantized", conf, d)
            quantized.add(c)
    core = [i for i in reps if i not in quantized]

    # 3. merges: almost exactly a weighted average of two other core models
    merged = _find_merges(core, pairs, settings)
    for c, (p1, p2, alpha, ratio, d1, d2) in merged.items():
        conf = 0.5 + 0.5 * max(0.0, 1.0 - ratio / settings.merge_residual)
        _edge(graph, models, p1, c, "merge", conf, d1, weight=alpha)
        _edge(graph, models, p2, c, "merge", conf, d2, weight=1.0 - alpha)
    tree_nodes = sorted(i for i in core if i not in merged)

    # 4. the rest is a fine-tune tree, oriented once every family of the group is known
    if len(tree_nodes) == 1:
        graph.nodes[models[tree_nodes[0]].id]["root_confidence"] = 1.0
        return None
    stats = _progress_stats(models, tree_nodes)
    node_set = set(tree_nodes)
    near = {
        v: [(d, u) for d, u in lst if u in node_set]
        for v, lst in _neighbour_lists(pairs).items()
        if v in node_set
    }
    spanning = _spanning_tree(x, tree_nodes, pairs)
    co_merged = frozenset(frozenset((a, b)) for a, b, *_ in merged.values())
    return _TreeProblem(tree_nodes, pairs, spanning, stats, near, _Distances(x, pairs), co_merged)


def _solve_trees(
    models: list[ModelInput],
    x: np.ndarray,
    problems: list[_TreeProblem],
    graph: nx.DiGraph,
    settings: LineageSettings,
) -> None:
    """Root every family's tree, then orient it as a minimum spanning arborescence."""
    for prob in problems:
        trials = _root_trials(models, x, prob, settings)
        score, root, edges, second = _pick_root(models, prob, trials, settings)
        # consistency differences of a few percent are decisive
        root_conf = 1.0 if second is None else _logistic((score - second) / 0.02)
        graph.nodes[models[root].id]["root_confidence"] = round(root_conf, 4)
        for parent, child in sorted(edges):
            d = prob.dist(parent, child)
            conf = next(c for r, c in settings.finetune_confidence if root_conf >= r)
            _edge(graph, models, parent, child, "finetune", conf, d)


def _final_tree(
    models: list[ModelInput], prob: _TreeProblem, root: int, settings: LineageSettings
) -> list[tuple[int, int]]:
    """The family's fine-tune tree read from ``root``: arborescence, then the local rules."""
    candidates, cost = _order_cost(prob, root, settings)
    edges = _arborescence(prob.nodes, root, candidates, cost)
    edges = _lift_opposed(prob.dist, edges, cost, settings)
    edges = _unfold_backsteps(prob.dist, edges, settings)
    edges = _split_sweeps(prob.dist, edges, settings)
    edges = _skip_detours(prob.dist, edges, settings)
    return _split_twins(models, prob.dist, edges, settings, prob.co_merged, prob.focus)


def _unsplit_merges(prob: _TreeProblem, edges: list[tuple[int, int]]) -> int:
    """How many merges of two tree models combine models that are not siblings here."""
    parent = {c: p for p, c in edges}
    nodes = set(prob.nodes)
    count = 0
    for a, b in (tuple(pair) for pair in prob.co_merged):
        if a in nodes and b in nodes:
            count += parent.get(a) is None or parent.get(a) != parent.get(b)
    return count


def _chained_merges(prob: _TreeProblem, edges: list[tuple[int, int]]) -> bool:
    """Whether a merge's two parents are parent and child here (a sweep read backwards
    makes two merged siblings look like that)."""
    linked = {frozenset(e) for e in edges}
    return any(pair in linked for pair in prob.co_merged)


def _pick_root(
    models: list[ModelInput],
    prob: _TreeProblem,
    trials: list[tuple[float, int, list[tuple[int, int]]]],
    settings: LineageSettings,
) -> tuple[float, int, list[tuple[int, int]], float | None]:
    """The root, its final tree, its score and the runner-up's score.

    Merges combine runs from one base far more often than anything else, so a root
    whose final tree leaves a merge's two parents apart (not siblings) loses
    ``merge_sibling_weight`` per such merge. A penalty only lowers scores, so trials are
    re-scored best first while an unscored one could still win and the best-scored
    root's tree has two merged models as parent and child, at most
    ``merge_root_trials`` of them (each costs a final tree), in families of at most
    ``merge_root_limit`` models; the runner-up's score is the best of the others'
    penalised scores or, unscored, their upper bounds.
    """
    rescore = (
        bool(prob.co_merged)
        and settings.merge_sibling_weight > 0
        and len(prob.nodes) <= settings.merge_root_limit
    )
    base0, root0, _ = trials[0]
    edges0 = _final_tree(models, prob, root0, settings)
    penalty0 = settings.merge_sibling_weight * _unsplit_merges(prob, edges0) if rescore else 0.0
    scored = [(base0 - penalty0, root0, edges0)]
    # merged relatives further apart than parent and child: no other root mends that
    if rescore and _chained_merges(prob, edges0):
        for base, root, _ in trials[1 : settings.merge_root_trials]:
            if base <= max(s for s, *_ in scored):
                break
            edges = _final_tree(models, prob, root, settings)
            penalty = settings.merge_sibling_weight * _unsplit_merges(prob, edges)
            scored.append((base - penalty, root, edges))
    scored.sort(key=lambda t: (-t[0], t[1]))
    score, root, edges = scored[0]
    rest = [s for s, *_ in scored[1:]] + [t[0] for t in trials[len(scored) :]]
    return score, root, edges, (max(rest) if rest else None)


def _order_cost(
    prob: _TreeProblem, root: int, settings: LineageSettings
) -> tuple[dict[tuple[int, int], float], Callable[[int, int], float]]:
    """Candidate pairs and the cost of an edge u -> v for trees rooted at ``root``.

    An edge costs its distance plus, when it runs against the training-progress order
    learned for this root, a penalty growing with how far against it runs (in units of
    the family's median candidate distance).
    """
    pi = _progress_order(prob.stats, prob.nodes, root)
    pos = {v: k for k, v in enumerate(prob.nodes)}
    candidates: dict[tuple[int, int], float] = {}
    for v, near in prob.near.items():  # each node's nearest: n * k edges
        for d, u in near[: settings.k_neighbours]:
            candidates[(min(u, v), max(u, v))] = d
    for i, j, data in prob.spanning.edges(data=True):  # keeps the candidates connected
        candidates.setdefault((min(i, j), max(i, j)), data["distance"])
    scale = float(np.median(list(candidates.values()))) if candidates else 1.0

    def cost(u: int, v: int) -> float:
        behind = max(0.0, float(pi[pos[u]] - pi[pos[v]]))
        return prob.dist(u, v) + settings.order_penalty * scale * behind

    return candidates, cost


def _arborescence(
    nodes: list[int],
    root: int,
    candidates: dict[tuple[int, int], float],
    cost: Callable[[int, int], float],
) -> list[tuple[int, int]]:
    """Minimum spanning arborescence from ``root`` over the candidate pairs, edges costed
    by ``_order_cost``; no edge may enter the root."""
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    for i, j in sorted(candidates):
        for u, v in ((i, j), (j, i)):
            if v != root:
                g.add_edge(u, v, cost=cost(u, v))
    tree = nx.minimum_spanning_arborescence(g, attr="cost", preserve_attrs=False)
    return sorted(tree.edges())


def _earliest(models: list[ModelInput], cls: list[int], settings: LineageSettings) -> int:
    if settings.use_times:
        timed = [i for i in cls if models[i].created_at is not None]
        if timed:
            return min(timed, key=lambda i: (models[i].created_at, models[i].id))
    return cls[0]


def _edge(
    graph: nx.DiGraph,
    models: list[ModelInput],
    parent: int,
    child: int,
    relation: str,
    confidence: float,
    distance: float,
    weight: float | None = None,
) -> None:
    attrs = {
        "relation": relation,
        "confidence": round(float(min(1.0, max(0.0, confidence))), 4),
        "distance": round(float(distance), 6),
        "method": METHOD,
    }
    if weight is not None:
        attrs["weight"] = round(float(weight), 4)
    graph.add_edge(models[parent].id, models[child].id, **attrs)


def _find_merges(
    core: list[int],
    pairs: dict[tuple[int, int], float],
    settings: LineageSettings,
) -> dict[int, tuple[int, int, float, float, float, float]]:
    """Models that sit on the segment between two others: c = alpha * a + (1 - alpha) * b.

    The fit needs only the three pairwise distances (law of cosines), so it costs
    nothing per coordinate. A merge is accepted when its residual is a small fraction
    of the distance to the nearer parent; a checkpoint between its neighbours on one
    run is not, because training never moves in a straight line.
    """
    found: list[tuple[float, int, int, int, float, float, float]] = []
    core_set = set(core)
    lists = _neighbour_lists(pairs)
    for c in core:
        near = [(d, j) for d, j in lists.get(c, []) if j in core_set and d > 0]
        near = near[: settings.merge_candidates]
        best = None
        for ai in range(len(near)):
            for bi in range(ai + 1, len(near)):
                (da, a), (db, b) = near[ai], near[bi]
                dab = _dist(pairs, a, b)
                if not dab:
                    continue
                along = (db * db + dab * dab - da * da) / (2 * dab)  # from b towards a
                alpha = along / dab
                if not 0.02 <= alpha <= 0.98:
                    continue
                resid = math.sqrt(max(db * db - along * along, 0.0))
                ratio = resid / min(da, db)
                if ratio < settings.merge_residual and (best is None or ratio < best[0]):
                    best = (ratio, a, b, alpha, da, db)
        if best is not None:
            ratio, a, b, alpha, da, db = best
            found.append((ratio, c, a, b, alpha, da, db))
    merged: dict[int, tuple[int, int, float, float, float, float]] = {}
    for ratio, c, a, b, alpha, da, db in sorted(found):
        if c in merged or a in merged or b in merged:
            continue
        if any(c in (v[0], v[1]) for v in merged.values()):
            continue
        merged[c] = (a, b, alpha, ratio, da, db)
    return merged


def _spanning_tree(
    x: np.ndarray, nodes: list[int], pairs: dict[tuple[int, int], float]
) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(nodes)
    node_set = set(nodes)
    for (i, j), d in pairs.items():
        if i in node_set and j in node_set:
            g.add_edge(i, j, distance=d)
    comps = [sorted(c) for c in nx.connected_components(g)]
    if len(comps) > 1:  # sparse candidates left islands: bridge them by their closest pairs
        comps.sort()
        for a_i in range(len(comps)):
            for b_i in range(a_i + 1, len(comps)):
                a, b = comps[a_i], comps[b_i]
                d = np.sqrt(((x[a][:, None, :] - x[b][None, :, :]) ** 2).sum(-1))
                ia, ib = np.unravel_index(np.argmin(d), d.shape)
                g.add_edge(a[ia], b[ib], distance=float(d[ia, ib]))
    return nx.minimum_spanning_tree(g, weight="distance", algorithm="kruskal")


def _batch_stats(values: np.ndarray) -> np.ndarray:
    """Statistics that drift with training, for a stack of samples (models, rows, cols):
    scale, tails, spread, and for matrices the spectrum and row-norm spread."""
    # non-finite entries (a corrupt or overflowed checkpoint) must not break the spectrum
    v = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    n = v.shape[0]
    flat = v.reshape(n, -1)
    c = flat - flat.mean(axis=1, keepdims=True)
    c2 = c * c
    var = c2.mean(axis=1)
    safe = np.where(var > 0, var, 1.0)
    cols = [
        np.sqrt(np.einsum("ij,ij->i", flat, flat) / flat.shape[1]),
        np.where(var > 0, np.einsum("ij,ij->i", c2, c2) / c2.shape[1] / safe**2 - 3.0, 0.0),
        np.where(var > 0, np.abs(c).mean(axis=1) / np.sqrt(safe), 0.0),
    ]
    if v.ndim == 3 and v.shape[1] > 1 and v.shape[2] > 1:
        centred = c.reshape(v.shape)
        small = centred if v.shape[1] <= v.shape[2] else centred.transpose(0, 2, 1)
        # squared singular values are the eigenvalues of the smaller Gram matrix
        eig = np.clip(np.linalg.eigvalsh(small @ small.transpose(0, 2, 1)), 0.0, None)[:, ::-1]
        e = eig / np.maximum(eig.sum(axis=1, keepdims=True), 1e-30)
        rn = np.sqrt(np.einsum("ijk,ijk->ij", v, v))
        cols += [
            e[:, 0],
            -(e * np.log(e + 1e-30)).sum(axis=1),
            rn.std(axis=1) / np.maximum(rn.mean(axis=1), 1e-30),
        ]
    return np.stack(cols, axis=1)


def _progress_stats(models: list[ModelInput], nodes: list[int]) -> np.ndarray:
    """Per model: training-progress statistics of every float tensor all nodes share."""
    fps = [models[i].fingerprint for i in nodes]
    names = [
        n
        for n, t in sorted(fps[0].tensors.items())
        if t.is_float
        and t.values.size >= 8
        and all(n in fp.tensors and fp.tensors[n].values.shape == t.values.shape for fp in fps)
        and all(np.array_equal(fp.tensors[n].rows, t.rows) for fp in fps)
    ]
    if not names:
        return np.zeros((len(nodes), 0))
    blocks = [_batch_stats(np.stack([fp.tensors[n].values for fp in fps])) for n in names]
    return np.concatenate(blocks, axis=1)


def _subtree_spans(
    tree: nx.Graph, root: int
) -> tuple[list[tuple[int, int]], dict[int, int], dict[int, int]]:
    """Edges rooted at ``root`` plus DFS entry/exit times: r is below v iff tin[v] <= tin[r] < tout[v]."""
    tin: dict[int, int] = {}
    tout: dict[int, int] = {}
    edges: list[tuple[int, int]] = []
    clock = 0
    stack: list[tuple[int, int | None, bool]] = [(root, None, False)]
    while stack:
        v, parent, done = stack.pop()
        if done:
            tout[v] = clock
            continue
        tin[v] = clock
        clock += 1
        if parent is not None:
            edges.append((parent, v))
        stack.append((v, parent, True))
        for w in sorted(tree.neighbors(v), reverse=True):
            if w != parent:
                stack.append((w, v, False))
    return edges, tin, tout


def _root_scores(
    models: list[ModelInput],
    stats: np.ndarray,
    nodes: list[int],
    tree: nx.Graph,
    settings: LineageSettings,
) -> np.ndarray:
    """Score every node as the root of a spanning tree: consistency of outward change.

    Each statistic may rise or fall with training (weight decay, task, optimiser decide);
    what is asked is that it moves the same way along every edge, so the score of a root
    is the sum over statistics of |sum over edges of the sign of the change|. Ties can
    only come from chains, where nothing but times can tell the ends apart.
    """
    pos = {v: k for k, v in enumerate(nodes)}
    edges, tin, tout = _subtree_spans(tree, nodes[0])  # reference orientation
    if not edges:
        return np.zeros(len(nodes))
    e_from = np.array([pos[u] for u, _ in edges])
    e_to = np.array([pos[v] for _, v in edges])
    signs = np.sign(stats[e_to] - stats[e_from])  # (E, S)
    node_tin = np.array([tin[v] for v in nodes])
    lo = np.array([tin[v] for _, v in edges])
    hi = np.array([tout[v] for _, v in edges])
    below = (node_tin[:, None] >= lo[None, :]) & (node_tin[:, None] < hi[None, :])  # (R, E)
    orient = np.where(below, -1.0, 1.0)
    per_stat = orient @ signs if signs.size else np.zeros((len(nodes), 0))
    score = np.abs(per_stat).sum(axis=1) / max(per_stat.shape[1], 1)
    times = np.array(
        [np.nan if models[v].created_at is None else models[v].created_at for v in nodes]
    )
    if settings.use_times and np.isfinite(times).sum() >= 2:
        tsign = np.nan_to_num(np.sign(times[e_to] - times[e_from]))
        score = score + settings.time_weight * (orient @ tsign)
    return score


def _tree_consistency(
    models: list[ModelInput],
    stats: np.ndarray,
    nodes: list[int],
    edges: list[tuple[int, int]],
    settings: LineageSettings,
) -> float:
    """How consistently statistics (and creation times, when known) move parent -> child."""
    if not edges:
        return 0.0
    pos = {v: k for k, v in enumerate(nodes)}
    src = np.array([pos[u] for u, _ in edges])
    dst = np.array([pos[v] for _, v in edges])
    score = 0.0
    if stats.shape[1]:
        score = float(np.abs(np.sign(stats[dst] - stats[src]).sum(axis=0)).mean()) / len(edges)
    times = np.array(
        [np.nan if models[v].created_at is None else models[v].created_at for v in nodes]
    )
    if settings.use_times and np.isfinite(times).sum() >= 2:
        votes = np.nan_to_num(np.sign(times[dst] - times[src]))
        score += settings.time_weight * float(votes.sum()) / len(edges)
    return score


def _root_trials(
    models: list[ModelInput], x: np.ndarray, prob: _TreeProblem, settings: LineageSettings
) -> list[tuple[float, int, list[tuple[int, int]]]]:
    """The likeliest roots, best first, each with its progress tree and its score.

    A root fixes which way each statistic moves with training; the progress tree then
    follows from it, and the score is how consistently it moves them. A tree that is one
    path scores the same read from either end; read from the true root, its sweep
    siblings split into a fan whose edges move the statistics alike, so that tree's
    score is added with a small weight to break such ties. The spanning tree's own root
    score ranks the candidates, so large families try only the best ``root_candidates``.
    """
    stats, nodes = prob.stats, prob.nodes
    ranked = _root_scores(models, stats, nodes, prob.spanning, settings)
    candidates = [nodes[k] for k in np.argsort(-ranked, kind="stable")[: settings.root_candidates]]
    pos = {v: k for k, v in enumerate(nodes)}
    top = max(float(ranked.max()), 1e-12)
    trials = []
    for r in sorted(candidates):
        edges = _progress_tree(x, stats, nodes, prob.near, r)
        score = _tree_consistency(models, stats, nodes, edges, settings)
        if settings.fan_weight:
            fanned = _split_sweeps(prob.dist, edges, settings)
            score += settings.fan_weight * _tree_consistency(models, stats, nodes, fanned, settings)
        score += settings.spanning_weight * float(ranked[pos[r]]) / top
        if settings.opposed_weight:
            score -= settings.opposed_weight * len(_opposed_pairs(prob.dist, edges, settings))
        trials.append((score, r, edges))
    return sorted(trials, key=lambda t: (-t[0], t[1]))


def _lift_opposed(
    dist: _Distances,
    edges: list[tuple[int, int]],
    cost: Callable[[int, int], float],
    settings: LineageSettings,
) -> list[tuple[int, int]]:
    """A model whose children leave it in opposite directions lies between them, so one
    of those children is really its parent: lift the child cheapest under ``cost`` (the
    arborescence's) into its place (gp -> a -> p instead of gp -> p -> a) while that
    removes opposed pairs."""
    parent = {c: p for p, c in edges}
    count = len(_opposed_pairs(dist, edges, settings))
    for _ in range(len(edges)):
        best = None
        for p, a, b in _opposed_pairs(dist, sorted((p, c) for c, p in parent.items()), settings):
            gp = parent.get(p)
            if gp is None:
                continue
            for v in (a, b):
                delta = cost(gp, v) + cost(v, p) - cost(gp, p) - cost(p, v)
                if best is None or (delta, v) < best[:2]:
                    best = (delta, v, gp, p)
        if best is None:
            break
        _, a, gp, p = best
        trial = dict(parent)
        trial[a], trial[p] = gp, a
        new_edges = sorted((q, c) for c, q in trial.items())
        new_count = len(_opposed_pairs(dist, new_edges, settings))
        if new_count >= count:
            break
        parent, count = trial, new_count
    return sorted((p, c) for c, p in parent.items())


def _unfold_backsteps(
    dist: _Distances, edges: list[tuple[int, int]], settings: LineageSettings
) -> list[tuple[int, int]]:
    """A child that steps back towards its grandparent (cosine above ``backstep_cosine``
    between the two, seen from the parent) and stays nearer the parent lies between
    them: it goes between them, gp -> c -> p. Real steps from a parent never came back
    that way on the zoos (cosine at most 0.48); a late checkpoint of one run, a tiny
    step whose statistics barely move, is read before its predecessor this way."""
    parent = {c: p for p, c in edges}
    for c in sorted(parent):
        p = parent[c]
        gp = parent.get(p)
        if gp is None or dist(p, c) >= dist(p, gp):
            continue
        if _cosine_at(dist, p, gp, c) > settings.backstep_cosine:
            parent[c], parent[p] = gp, c
    return sorted((p, c) for c, p in parent.items())


def _opposed_pairs(
    dist: _Distances, edges: list[tuple[int, int]], settings: LineageSettings
) -> list[tuple[int, int, int]]:
    """(parent, child, child) wherever two children of one parent leave it in opposite
    directions (cosine below ``opposed_cosine``); siblings on the zoos never go below -0.3."""
    kids: dict[int, list[int]] = {}
    for p, c in edges:
        kids.setdefault(p, []).append(c)
    out = []
    for p in sorted(kids):
        cs = sorted(kids[p])
        for i, a in enumerate(cs):
            for b in cs[i + 1 :]:
                if _cosine_at(dist, p, a, b) < settings.opposed_cosine:
                    out.append((p, a, b))
    return out


def _progress_order(stats: np.ndarray, nodes: list[int], root: int) -> np.ndarray:
    """A training-progress score per node, in [0, 1].

    Every model of a family descends from its root, so each statistic's direction is
    learned from how all models differ from the root (no tree needed); statistics are
    weighted by how consistently they do, and combined as mean signed ranks.
    """
    pos = {v: k for k, v in enumerate(nodes)}
    votes = np.sign(np.delete(stats, pos[root], axis=0) - stats[pos[root]])
    learned = np.sign(votes.sum(axis=0))
    weight = np.abs(votes.mean(axis=0)) if len(votes) else np.zeros(stats.shape[1])
    ranks = _ranks(stats) / max(len(nodes) - 1, 1)
    signed = np.where(learned > 0, ranks, 1.0 - ranks)
    return (signed @ weight) / max(float(weight.sum()), 1e-12)


def _progress_tree(
    x: np.ndarray,
    stats: np.ndarray,
    nodes: list[int],
    near: dict[int, list[tuple[float, int]]],
    root: int,
) -> list[tuple[int, int]]:
    """Each model's parent is its nearest neighbour among models that are less trained."""
    pi = _progress_order(stats, nodes, root)
    pos = {v: k for k, v in enumerate(nodes)}
    pi[pos[root]] = -np.inf
    edges = []
    for v in nodes:
        if v == root:
            continue
        mine = pi[pos[v]]
        parent = next((u for _, u in near.get(v, []) if pi[pos[u]] < mine), None)
        if parent is not None:
            edges.append((parent, v))
            continue
        # no measured neighbour is less trained: measure all that are (in slices, so a
        # large family never copies its whole evidence at once)
        cands = [u for u in nodes if pi[pos[u]] < mine]
        d = np.concatenate(
            [np.linalg.norm(x[cands[i : i + 64]] - x[v], axis=1) for i in range(0, len(cands), 64)]
        )
        edges.append((cands[int(np.argmin(d))], v))
    return sorted(edges)


def _regraft(
    edges: list[tuple[int, int]],
    to_grandparent: Callable[[int, int, int, dict[int, set[int]]], bool],
) -> list[tuple[int, int]]:
    """Walk a forest top-down; a child c of p goes to p's (current) parent gp when
    ``to_grandparent(gp, p, c, kids)``, ``kids`` being the current parent -> children
    map. Top-down, so a run of such steps collapses to a fan."""
    parent = {c: p for p, c in edges}
    children: dict[int, list[int]] = {}
    for p, c in edges:
        children.setdefault(p, []).append(c)
    kids = {p: set(cs) for p, cs in children.items()}
    queue = deque(sorted(p for p in children if p not in parent))
    while queue:
        p = queue.popleft()
        for c in sorted(children.get(p, [])):
            gp = parent.get(p)
            if gp is not None and to_grandparent(gp, p, c, kids):
                parent[c] = gp
                kids[p].discard(c)
                kids[gp].add(c)
            queue.append(c)
    return sorted((p, c) for c, p in parent.items())


def _split_sweeps(
    dist: _Distances, edges: list[tuple[int, int]], settings: LineageSettings
) -> list[tuple[int, int]]:
    """Siblings of a learning-rate sweep look like a chain; give them back to the parent.

    Runs from one parent on one task line up along one direction, farther for a larger
    learning rate, so each looks like the parent of the next. A real chain of
    checkpoints of one run takes shrinking steps as optimisation settles; a step that
    moves on in the previous one's direction (cosine above ``sweep_cosine``) but is
    longer than the whole previous edge (ratio above ``sweep_ratio``) is read as a
    sibling trained harder. Once a parent has such a sweep, any further step on from a
    member that stays in line with it (cosine above ``sweep_line`` seen from the parent)
    is one more member, however short. Processed top-down, so a whole sweep collapses
    to a fan.
    """

    def sibling(gp: int, p: int, c: int, kids: dict[int, set[int]]) -> bool:
        d1, d2 = dist(gp, p), dist(p, c)
        if d1 <= 0 or d2 <= 0:
            return False
        # the angle between the two steps gp -> p -> c
        if -_cosine_at(dist, p, gp, c) > settings.sweep_cosine and d2 > settings.sweep_ratio * d1:
            return True
        # a step on from a sweep member, in line with it from the parent: one more member
        if _cosine_at(dist, gp, p, c) <= settings.sweep_line:
            return False
        # (siblings among p's measured neighbours: all of them in families up to dense_limit)
        near = kids[gp] & dist.neighbours.get(p, set())
        return any(_cosine_at(dist, gp, p, k) > settings.sweep_line for k in sorted(near))

    return _regraft(edges, sibling)


def _cosine_at(dist: _Distances, o: int, a: int, b: int) -> float:
    """Cosine of the angle at ``o`` between the steps to ``a`` and ``b`` (law of cosines)."""
    da, db = dist(o, a), dist(o, b)
    if da <= 0 or db <= 0:
        return 0.0
    return (da * da + db * db - dist(a, b) ** 2) / (2 * da * db)


def _skip_detours(
    dist: _Distances, edges: list[tuple[int, int]], settings: LineageSettings
) -> list[tuple[int, int]]:
    """A child hardly farther from its grandparent than from its parent is a sibling.

    Fine-tunes of one base share part of their update, so a sibling that took only a
    small step sits slightly nearer to the others than the base does and looks like
    their parent. A real intermediate model usually lies on the way: the grandparent is
    then farther from the child than the parent is by a clear margin. On the zoos the
    margin of true intermediates was 4-40% of the grandparent-parent distance and that
    of most false ones under 3%; below ``detour_ratio`` the child goes to the grandparent.
    A child in line with a sibling (cosine above ``sweep_line`` seen from the parent) is
    one of a sweep and stays, however near the grandparent a large step took it.
    """
    kids: dict[int, list[int]] = {}
    for p, c in edges:
        kids.setdefault(p, []).append(c)

    def in_sweep(p: int, c: int) -> bool:
        return any(k != c and _cosine_at(dist, p, c, k) > settings.sweep_line for k in kids[p])

    return _regraft(
        edges,
        lambda gp, p, c, _: (
            dist(gp, c) - dist(p, c) < settings.detour_ratio * dist(gp, p) and not in_sweep(p, c)
        ),
    )


def _delta_focus(a: Fingerprint, b: Fingerprint) -> float:
    """How much of the change from ``a`` to ``b`` lies in one direction, in (0, 1].

    Per sampled matrix block, the share of the change's energy in its top singular
    value, averaged over blocks. Training drifts along a few directions; two runs of one
    recipe that differ only in their seed differ by noise with no dominant direction.
    """
    shares = []
    for name, ta in a.tensors.items():
        tb = b.tensors.get(name)
        if (
            tb is None
            or not (ta.is_float and tb.is_float)
            or ta.values.ndim != 2
            or ta.values.shape != tb.values.shape
            or min(ta.values.shape) < 8
            or not np.array_equal(ta.rows, tb.rows)
        ):
            continue
        delta = np.nan_to_num(tb.values.astype(np.float64) - ta.values.astype(np.float64))
        energy = np.linalg.svd(delta, compute_uv=False) ** 2
        if energy.sum() > 0:
            shares.append(float(energy[0] / energy.sum()))
    return float(np.mean(shares)) if shares else 1.0


def _split_twins(
    models: list[ModelInput],
    dist: _Distances,
    edges: list[tuple[int, int]],
    settings: LineageSettings,
    co_merged: frozenset[frozenset[int]] = frozenset(),
    focus: dict[tuple[int, int], float] | None = None,
) -> list[tuple[int, int]]:
    """Two fine-tunes of one recipe (same task, learning rate and length, other seed) are
    twins, but the second looks like a short step on from the first. Such a step comes
    back to the same distance from the grandparent as the first (an isosceles triangle,
    within ``pair_isosceles``), is shorter than the first, and either its change is seed
    noise, less focused than the family's training steps (below ``pair_focus`` x their
    median focus; measured on the zoos: such twins 0.67-0.85 of the median, true steps
    0.82+), or the two were merged into a third model (``co_merged``): merges combine
    runs from one base far more often than a run and its own parent. ``focus`` memoises
    the SVDs across calls (it is symmetric in the two models).
    """
    parent = {c: p for p, c in edges}
    if len(edges) < 3:
        return edges
    memo: dict[tuple[int, int], float] = {} if focus is None else focus

    def focus_of(p: int, c: int) -> float:  # one SVD per pair, shared by sample and test
        key = (p, c) if p < c else (c, p)
        if key not in memo:
            memo[key] = _delta_focus(models[key[0]].fingerprint, models[key[1]].fingerprint)
        return memo[key]

    sample = sorted(edges)[:: max(1, len(edges) // 32)]
    typical = float(np.median([focus_of(p, c) for p, c in sample]))
    for p, c in sorted(edges):
        gp = parent.get(p)
        if gp is None:
            continue
        d_gp_p, d_gp_c, d_p_c = dist(gp, p), dist(gp, c), dist(p, c)
        if abs(d_gp_c - d_gp_p) >= settings.pair_isosceles * d_gp_p or d_p_c >= d_gp_p:
            continue
        if frozenset((p, c)) in co_merged or focus_of(p, c) < settings.pair_focus * typical:
            parent[c] = gp
    return sorted((p, c) for c, p in parent.items())


def _ranks(a: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(a, axis=0, kind="stable"), axis=0).astype(float)
