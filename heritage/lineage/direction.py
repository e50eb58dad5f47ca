"""Direction: which node of a family's tree is its root, and how sure each edge is.

A root fixes the direction of every edge of the (undirected) tree. Each candidate root
gets features, all computed for every node at once by re-rooting the tree (linear in
the family's size):

- ``consistency``: how consistently each training-progress statistic (per tensor: RMS,
  kurtosis, spread, top singular value share, spectral entropy, row-norm spread) moves
  along the edges read from this root, whichever way it moves;
- ``sign_<stat>``: the net direction each kind of statistic moves along the edges read
  from this root (fitted weights say which way training tends to move it);
- ``log_degree``, ``leaf``, ``farness`` and ``centroid``: where the node sits in the
  tree and in weight space (bases have many children and sit at the centre of stars);
- ``time_order``: creation times moving forward along the edges (0 when unknown).

Boosted trees fitted on development zoos by ``bench/fit_lineage.py`` and shipped in
``scorer.json`` read each candidate's features beside the same standardised and ranked
within its family (``root_inputs``) and give the odds that it is the root; normalised
over the family they are the posterior over roots (without that model, a log-linear
model over the features serves). With the likeliest root, ``parents_from_root`` picks every
member's parent (the pair model of ``heritage.lineage.parents``, then the sibling test).
An edge's direction probability is the posterior mass on its parent's side;
``edge_confidence`` turns it and the pair model's support into the share of such edges
right on development zoos, and ``direction_uncertain`` says when the weights cannot
tell which end is the parent.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import NamedTuple

import numpy as np
from scipy.stats import rankdata

from heritage.fingerprint import Fingerprint
from heritage.lineage.parents import BoostedTrees, RootedFamily, choose_parents, pair_features
from heritage.lineage.tree import SiblingTest, TreeEdge, regraft

__all__ = [
    "EDGE_FEATURES",
    "FEATURES",
    "ROOT_INPUTS",
    "EdgeModel",
    "PARENT_MODEL_MAX",
    "PAIR_CERTAIN",
    "REGIMES",
    "FamilyTree",
    "OrientedEdge",
    "Orientation",
    "Parents",
    "Scorer",
    "direction_uncertain",
    "edge_confidence",
    "edge_features",
    "load_scorer",
    "orient",
    "parents_from_root",
    "progress_stats",
    "regime",
    "root_features",
    "root_inputs",
    "root_posterior",
    "skeleton_parents",
]

# families up to this size choose parents with the fitted pair model over all their
# candidate pairs (heritage.lineage.parents); larger ones keep the spanning tree and
# the sibling test, whose cost is linear in the family's size
PARENT_MODEL_MAX = 256
# a family's regime: without creation times, or with them (edge models and maps are
# fitted for each)
REGIMES = ("weights_only", "with_times")
STATS = ("rms", "kurtosis", "spread", "top_sv", "entropy", "rownorm_cv")
FEATURES = (
    "consistency",
    *(f"sign_{s}" for s in STATS),
    "log_degree",
    "leaf",
    "farness",
    "centroid",
    "time_order",
)


def _batch_stats(values: np.ndarray) -> np.ndarray:
    """Statistics that drift with training, for a stack of samples (models, rows, cols)."""
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
        eig = np.clip(np.linalg.eigvalsh(small @ small.transpose(0, 2, 1)), 0.0, None)[:, ::-1]
        e = eig / np.maximum(eig.sum(axis=1, keepdims=True), 1e-30)
        rn = np.sqrt(np.einsum("ijk,ijk->ij", v, v))
        cols += [
            e[:, 0],
            -(e * np.log(e + 1e-30)).sum(axis=1),
            rn.std(axis=1) / np.maximum(rn.mean(axis=1), 1e-30),
        ]
    return np.stack(cols, axis=1)


def progress_stats(fps: Sequence[Fingerprint]) -> tuple[np.ndarray, np.ndarray]:
    """Per model, training-progress statistics of every float tensor all share.

    Returns the (models, statistics) matrix and, per column, the index into ``STATS``.
    """
    first = fps[0]
    names = [
        n
        for n, t in sorted(first.tensors.items())
        if t.is_float
        and t.values.size >= 8
        and all(n in fp.tensors and fp.tensors[n].values.shape == t.values.shape for fp in fps)
        and all(np.array_equal(fp.tensors[n].rows, t.rows) for fp in fps)
    ]
    blocks, kinds = [], []
    for n in names:
        b = _batch_stats(np.stack([fp.tensors[n].values for fp in fps]))
        blocks.append(b)
        kinds.extend(range(b.shape[1]))
    if not blocks:
        return np.zeros((len(fps), 0)), np.zeros(0, dtype=np.int64)
    return np.concatenate(blocks, axis=1), np.asarray(kinds, dtype=np.int64)


@dataclass
class FamilyTree:
    """A family's fine-tune tree still to be oriented (indices local to ``nodes``)."""

    ids: list[str]  # model ids, for reports only: nothing here reads them
    edges: list[TreeEdge]  # undirected, local indices
    stats: np.ndarray  # (n, S) progress statistics
    kinds: np.ndarray  # (S,) statistic kind per column
    centroid: np.ndarray  # (n,) distance of each node's evidence from the family's mean
    times: np.ndarray  # (n,) creation times, nan when unknown
    dist: Callable[[int, int], float]  # distance between two nodes (local indices)

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def median_step(self) -> float:
        """The median length of the spanning tree's edges."""
        return float(np.median([d for *_, d in self.edges]))

    def distance_matrix(self) -> np.ndarray:
        """(n, n) distances between every two nodes."""
        return np.array([[self.dist(a, b) for b in range(self.n)] for a in range(self.n)])


class _Rooted(NamedTuple):
    order: np.ndarray  # BFS order from the root
    parent: np.ndarray  # parent per node (-1 for the root)
    pdist: np.ndarray  # distance to the parent


def _root_at(n: int, edges: Sequence[TreeEdge], root: int) -> _Rooted:
    adj: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for a, b, d in edges:
        adj[a].append((b, d))
        adj[b].append((a, d))
    parent = np.full(n, -1)
    pdist = np.zeros(n)
    order = [root]
    seen = np.zeros(n, dtype=bool)
    seen[root] = True
    k = 0
    while k < len(order):
        v = order[k]
        k += 1
        for w, d in adj[v]:
            if not seen[w]:
                seen[w] = True
                parent[w] = v
                pdist[w] = d
                order.append(w)
    return _Rooted(np.asarray(order), parent, pdist)


# what the boosted root model reads per candidate root: its features, the same
# standardised and ranked within the family (what matters is how a node stands out
# among its kin), the family's size, and where each kind of training statistic of the
# node sits among the family's (a base trained least far sits at one end)
ROOT_INPUTS = (
    *FEATURES,
    *(f"z_{f}" for f in FEATURES),
    *(f"rank_{f}" for f in FEATURES),
    "log_members",
    *(f"level_{s}" for s in STATS),
)


def _ranks(values: np.ndarray) -> np.ndarray:
    """Per column, each row's share of the other rows with a larger value (ties count
    half), so equal values always get equal ranks."""
    n = values.shape[0]
    return (n - rankdata(values, method="average", axis=0)) / max(n - 1, 1)


def _standardised(values: np.ndarray) -> np.ndarray:
    return (values - values.mean(axis=0)) / (values.std(axis=0) + 1e-9)


def root_inputs(tree: FamilyTree, features: np.ndarray) -> np.ndarray:
    """(n, len(ROOT_INPUTS)): what the root model reads of every candidate root, from
    its ``root_features`` and the tree's statistics."""
    n = tree.n
    levels = np.zeros((n, len(STATS)))
    if tree.stats.size:
        z = _standardised(tree.stats)
        for k in range(len(STATS)):
            cols = tree.kinds == k
            if cols.any():
                levels[:, k] = z[:, cols].mean(axis=1)
    return np.concatenate(
        [
            features,
            _standardised(features),
            _ranks(features),
            np.full((n, 1), np.log(n)),
            levels,
        ],
        axis=1,
    )


def root_features(tree: FamilyTree) -> np.ndarray:
    """(n, len(FEATURES)): every node's features as the family's root."""
    n = tree.n
    out = np.zeros((n, len(FEATURES)))
    if n < 2:
        return out
    ref = _root_at(n, tree.edges, 0)
    e = n - 1
    child = ref.order[1:]
    par = ref.parent[child]
    # per edge, oriented reference-parent -> child: the change of every statistic
    signs = np.sign(tree.stats[child] - tree.stats[par])  # (E, S)
    kinds = tree.kinds
    per_kind = np.zeros((e, len(STATS)))
    if signs.size:
        for k in range(len(STATS)):
            cols = kinds == k
            if cols.any():
                per_kind[:, k] = signs[:, cols].mean(axis=1)
    dt = tree.times[child] - tree.times[par]
    tsign = np.where(np.isfinite(dt), np.sign(np.nan_to_num(dt)), 0.0)
    edge_vals = np.concatenate([signs, per_kind, tsign[:, None]], axis=1)  # (E, S + K + 1)
    # sum over the path from the reference root to each node: read from root r, the
    # edges on that path run the other way, so the oriented sum is total - 2 * path
    path = np.zeros((n, edge_vals.shape[1]))
    for k, v in enumerate(child):
        path[v] = path[ref.parent[v]] + edge_vals[k]
    oriented = edge_vals.sum(axis=0)[None, :] - 2.0 * path
    s = signs.shape[1]
    if s:
        out[:, 0] = np.abs(oriented[:, :s]).mean(axis=1) / e
    out[:, 1 : 1 + len(STATS)] = oriented[:, s : s + len(STATS)] / e
    col = 1 + len(STATS)
    deg = np.zeros(n)
    for a, b, _ in tree.edges:
        deg[a] += 1
        deg[b] += 1
    out[:, col] = np.log(deg)
    out[:, col + 1] = (deg == 1) & (n > 2)
    # farness: sum of tree distances to every node, re-rooted edge by edge
    size = np.ones(n)
    for v in ref.order[::-1][:-1]:
        size[ref.parent[v]] += size[v]
    depth = np.zeros(n)
    for v in child:
        depth[v] = depth[ref.parent[v]] + ref.pdist[v]
    far = np.zeros(n)
    far[0] = depth.sum()
    for v in child:
        far[v] = far[ref.parent[v]] + ref.pdist[v] * (n - 2 * size[v])
    scale = max(float(np.median([d for *_, d in tree.edges])), 1e-12) * n
    out[:, col + 2] = (far - far.min()) / scale
    off = tree.centroid
    out[:, col + 3] = off / max(float(off.mean()), 1e-12)
    out[:, col + 4] = oriented[:, -1] / e
    return out


@dataclass(frozen=True)
class EdgeModel:
    """An edge's confidence from ``EDGE_FEATURES``: a logistic regression (``coef``,
    intercept first), then a recalibration of its log-odds z measured on development
    zoos it was not fitted on: sigmoid(a + b z + c z^2), z clipped to the range seen."""

    coef: np.ndarray
    recalibration: np.ndarray  # (a, b, c)
    z_range: tuple[float, float]

    def confidence(self, features: np.ndarray) -> float:
        z = float(self.coef[0] + features @ self.coef[1:])
        z = min(max(z, self.z_range[0]), self.z_range[1])
        a, b, c = self.recalibration
        return float(1.0 / (1.0 + np.exp(-(a + b * z + c * z * z))))

    @staticmethod
    def from_dict(d: dict) -> EdgeModel:
        lo, hi = d["z_range"]
        return EdgeModel(
            np.asarray(d["coef"], dtype=np.float64),
            np.asarray(d["recalibration"], dtype=np.float64),
            (float(lo), float(hi)),
        )


@dataclass(frozen=True)
class Scorer:
    """Fitted weights of the root model and the confidence maps (see ``scorer.json``)."""

    coef: np.ndarray  # one weight per FEATURES entry
    # an edge's confidence, one model for families whose members carry creation times
    # ("with_times"), one for families without ("weights_only"); empty: the direction
    # probability stands
    edge_models: dict[str, EdgeModel]
    # per regime ("weights_only", "with_times"), an isotonic map, as (x thresholds, y
    # values), from an edge's direction probability to the measured share of such edges
    # right in direction among edges right either way
    direction_map: dict[str, tuple[np.ndarray, np.ndarray]]
    uncertain_below: float  # direction accuracy below which an edge is "uncertain"
    fitted_on: str
    # the tree's sibling test (heritage.lineage.tree.regraft); None: the spanning
    # tree stands as it is
    sibling_test: SiblingTest | None = None
    # isotonic maps from the engine's own confidence of a duplicate, quantized or merge
    # edge (from its fit) to the share of such edges right on development zoos
    relation_maps: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    # the pair model choosing each member's parent once the root is known
    # (heritage.lineage.parents); None: the spanning tree and the sibling test decide
    parent_model: BoostedTrees | None = None
    # per regime, the direction probability from which development pairs (two-member
    # families) were right ``PAIR_CERTAIN`` of the time, at 95% confidence; None: no
    # probability was (every pair uncertain). Empty: the families' map serves pairs too
    pair_certain_from: dict[str, float | None] = field(default_factory=dict)
    # boosted trees over ``ROOT_INPUTS``: the log-odds that a candidate is the root;
    # None: the log-linear model over ``FEATURES`` (``coef``) decides
    root_model: BoostedTrees | None = None

    @staticmethod
    def from_dict(d: dict) -> Scorer:
        coef = np.array([d["coef"].get(f, 0.0) for f in FEATURES])
        rg = d.get("sibling_test")
        maps = d["direction_map"]
        if "x" in maps:  # one map for both regimes
            maps = dict.fromkeys(REGIMES, maps)
        return Scorer(
            coef,
            {k: EdgeModel.from_dict(v) for k, v in (d.get("edge_models") or {}).items()},
            {k: _mapping(m) for k, m in maps.items()},
            float(d["uncertain_below"]),
            d.get("fitted_on", ""),
            SiblingTest.from_dict(rg) if rg else None,
            {r: _mapping(m) for r, m in (d.get("relation_maps") or {}).items()},
            BoostedTrees.from_dict(d["parent_model"]) if d.get("parent_model") else None,
            dict(d.get("pair_certain_from") or {}),
            BoostedTrees.from_dict(d["root_model"]) if d.get("root_model") else None,
        )


def _mapping(d: dict) -> tuple[np.ndarray, np.ndarray]:
    """An isotonic map as stored in scorer.json: (x thresholds, y values)."""
    return np.asarray(d["x"]), np.asarray(d["y"])


@cache
def load_scorer() -> Scorer:
    """The scorer shipped with the package (heritage/lineage/scorer.json)."""
    text = resources.files("heritage.lineage").joinpath("scorer.json").read_text()
    return Scorer.from_dict(json.loads(text))


class OrientedEdge(NamedTuple):
    parent: int  # local indices
    child: int
    distance: float
    probability: float  # posterior mass of the root on the parent's side
    # the pair model's log-odds that the parent is right (given the root); nan where
    # the family has no pair model (two members, or above PARENT_MODEL_MAX)
    support: float = float("nan")


class Orientation(NamedTuple):
    root: int
    root_probability: float
    edges: list[OrientedEdge]


def root_posterior(tree: FamilyTree, scorer: Scorer) -> np.ndarray:
    """Each member's probability of being the family's root: the root model's odds (or
    the log-linear model's scores), normalised over the family."""
    features = root_features(tree)
    if scorer.root_model is not None:
        s = scorer.root_model.log_odds(root_inputs(tree, features))
    else:
        s = features @ scorer.coef
    s = s - s.max()
    p = np.exp(s)
    return p / p.sum()


def skeleton_parents(tree: FamilyTree, root: int) -> np.ndarray:
    """Each member's parent in the spanning tree read from ``root`` (-1 for the root)."""
    return _root_at(tree.n, tree.edges, root).parent


class Parents(NamedTuple):
    parent: dict[int, int]  # child -> parent, local indices
    # child -> the pair model's log-odds that its parent is right; nan where the family
    # has no pair model
    support: dict[int, float]


def parents_from_root(tree: FamilyTree, root: int, scorer: Scorer) -> Parents:
    """Every member's parent once the root is chosen.

    Families up to ``PARENT_MODEL_MAX`` members: the fitted pair model's maximum
    spanning arborescence (``heritage.lineage.parents``); larger ones: the spanning tree
    read from the root. Then the sibling test folds chains of siblings left in the tree
    back into fans (the pair model, fitted on the zoos' milder drifts, can still chain a
    strongly drifted star).
    """
    n = tree.n
    rooted = _root_at(n, tree.edges, root)
    model = scorer.parent_model
    family: RootedFamily | None = None
    choice = None
    if model is not None and 2 < n <= PARENT_MODEL_MAX:
        family = RootedFamily(
            tree.distance_matrix(), root, tree.stats, tree.kinds, tree.median_step, rooted.parent
        )
        choice = choose_parents(family, model)
        rooted = _root_from_parents(n, choice.parent, root)
    order = [int(v) for v in rooted.order]
    parent = regraft(
        order, {v: int(rooted.parent[v]) for v in order[1:]}, tree.dist, scorer.sibling_test
    )
    if choice is None:  # no pair model: no support either
        return Parents(parent, dict.fromkeys(parent, float("nan")))
    # regrafted edges may not have been candidates: score them now
    extra = sorted((p, v) for v, p in parent.items() if (p, v) not in choice.log_odds)
    scores = dict(choice.log_odds)
    if extra:
        pa, ch = (np.array(x, dtype=np.int64) for x in zip(*extra, strict=True))
        scores.update(
            zip(extra, model.log_odds(pair_features(family, pa, ch)).tolist(), strict=True)
        )
    return Parents(parent, {v: scores[(p, v)] for v, p in parent.items()})


def _root_from_parents(n: int, parent: dict[int, int], root: int) -> _Rooted:
    return _root_at(n, [TreeEdge(p, v, 0.0) for v, p in parent.items()], root)


def orient(tree: FamilyTree, scorer: Scorer) -> Orientation:
    """The likeliest root (ties to the first in content order), every member's parent,
    and each edge's probability: the posterior mass of the root on the parent's side."""
    n = tree.n
    if n == 1:
        return Orientation(0, 1.0, [])
    post = root_posterior(tree, scorer)
    root = int(np.argmax(post))
    parent, support = parents_from_root(tree, root, scorer)
    final = _root_from_parents(n, parent, root)
    below = post.copy()
    for v in final.order[::-1][:-1]:
        below[final.parent[v]] += below[v]
    edges = [
        OrientedEdge(p, v, tree.dist(p, v), float(1.0 - below[v]), support[v])
        for v, p in parent.items()
    ]
    return Orientation(root, float(post[root]), sorted(edges))


EDGE_FEATURES = ("direction_logit", "support", "has_support", "two_members", "log_members")


def edge_features(edge: OrientedEdge, members: int) -> np.ndarray:
    """What an edge's confidence is fitted on: how sure the root posterior is of its
    direction, how sure the pair model is of its parent, and the family's size."""
    p = min(max(edge.probability, 1e-4), 1 - 1e-4)
    has = not np.isnan(edge.support)
    return np.array(
        [
            np.log(p / (1 - p)),
            edge.support if has else 0.0,
            float(has),
            float(members == 2),
            np.log(members),
        ]
    )


def regime(timed: bool) -> str:
    """The name of a family's regime: its members carry creation times, or not."""
    return REGIMES[1] if timed else REGIMES[0]


def edge_confidence(edge: OrientedEdge, members: int, timed: bool, scorer: Scorer) -> float:
    """The share of development edges like this one that were right as directed."""
    model = scorer.edge_models.get(regime(timed))
    if model is None:
        return edge.probability
    return model.confidence(edge_features(edge, members))


# a two-member family's direction is stated only where development pairs like it were
# right this often (at 95% confidence): a pair has no tree to read a root from, and the
# weights alone orient pairs barely better than chance
PAIR_CERTAIN = 0.95


def direction_uncertain(edge: OrientedEdge, members: int, timed: bool, scorer: Scorer) -> bool:
    """Whether the weights (and times, when ``timed``) cannot tell which end of the edge
    is the parent."""
    key = regime(timed)
    if members == 2 and scorer.pair_certain_from:
        certain = scorer.pair_certain_from.get(key)
        return certain is None or edge.probability < certain
    mapping = scorer.direction_map.get(key)
    if mapping is None:
        return False
    return calibrate(edge.probability, mapping) < scorer.uncertain_below


def calibrate(probability: float, mapping: tuple[np.ndarray, np.ndarray]) -> float:
    x, y = mapping
    if not len(x):
        return probability
    return float(np.interp(probability, x, y))
