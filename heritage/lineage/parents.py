"""Parents: once a family's root is chosen, each member's parent from a fitted pair model.

The minimum spanning tree (``tree``) joins nearest kin, and nearest kin is often a
sibling: children fine-tuned on related data share a drift and sit nearer each other
than their parent, so the spanning tree chains them. With the root fixed, every
candidate pair ``u -> v`` (``u`` among ``v``'s nearest kin, or the root) is described by
its geometry relative to the root and by how training statistics move along it
(``PAIR_FEATURES``). Boosted trees fitted on development zoos by ``bench/fit_lineage.py``
turn those features into the log-odds that ``u`` is ``v``'s parent, and the maximum
spanning arborescence (Edmonds) over the log-odds gives every member one parent with no
cycle.

Only distances and statistics enter; nodes are the family's members in content order,
so ties never depend on names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import networkx as nx
import numpy as np

__all__ = [
    "PAIR_FEATURES",
    "BoostedTrees",
    "ParentChoice",
    "RootedFamily",
    "candidate_pairs",
    "choose_parents",
    "family_context",
    "pair_features",
]

# per kind of training statistic (direction.STATS): the mean sign of its change along
# the candidate edge
_STAT_KINDS = 6
PAIR_FEATURES = (
    "beyond_nearest",  # log(d(u, v) / distance from v to its nearest kin)
    "root_progress",  # (d(root, v) - d(root, u)) / median tree step
    "cos_at_parent",  # angle at u between the root and v (0 when u is the root)
    "cos_at_child",  # angle at v between the root and u
    "log_step",  # log(d(u, v) / median tree step)
    "rank",  # log(1 + u's rank among v's kin by distance)
    "is_root",  # u is the root
    "closer_rank",  # u's rank among v's kin nearer the root than v (0: not nearer)
    "skeleton_parent",  # u is v's parent in the spanning tree read from the root
    "skeleton_child",  # v is u's parent there (the pair is a spanning-tree edge)
    *(f"sign_{k}" for k in range(_STAT_KINDS)),
    # the family as a whole, read from its root (the same for all of its pairs): what
    # kind of family the pair sits in tells how far a member's nearest kin is to be
    # trusted as its parent (siblings sharing a drift in a star, or a chain)
    "family_spread",  # median over members of log(d(root, v) / d(v, nearest kin))
    "root_share",  # share of the members that are the root's children in the spanning tree
    "log_members",  # log of the family's size
    "drift_alignment",  # median cosine, seen from the root, between a member and its nearest kin
)
TINY = 1e-12


def candidate_pairs(dist: np.ndarray, root: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """(parents, children): every non-root member's ``k`` nearest kin and the root."""
    n = dist.shape[0]
    off = dist + np.diag(np.full(n, np.inf))
    near = np.argsort(off, axis=1, kind="stable")[:, : min(k, n - 1)]
    pairs = set()
    for v in range(n):
        if v != root:
            pairs.update((int(u), v) for u in near[v])
            pairs.add((root, v))
    arr = np.array(sorted(pairs), dtype=np.int64).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


class RootedFamily(NamedTuple):
    """A family seen from its chosen root: what the pair features read (local indices)."""

    dist: np.ndarray  # (n, n) distances between members
    root: int
    stats: np.ndarray  # (n, S) training statistics (direction.progress_stats)
    kinds: np.ndarray  # (S,) statistic kind per column
    step: float  # the median spanning-tree edge
    skeleton: np.ndarray  # each member's spanning-tree parent read from the root (-1: root)


def pair_features(family: RootedFamily, parent: np.ndarray, child: np.ndarray) -> np.ndarray:
    """(P, len(PAIR_FEATURES)): the features of each pair ``parent[i] -> child[i]``."""
    dist, root, stats, kinds, step, skeleton = family
    n = dist.shape[0]
    step = max(float(step), TINY)
    off = dist + np.diag(np.full(n, np.inf))
    order = np.argsort(off, axis=1, kind="stable")  # per child, kin nearest first
    rank = np.empty((n, n), dtype=np.int64)
    rank[np.arange(n)[:, None], order] = np.arange(n)[None, :]
    nearest = off[np.arange(n), order[:, 0]]
    dr = dist[root]
    duv = dist[parent, child]
    dru, drv = dr[parent], dr[child]
    is_root = parent == root
    cos_u = np.where(is_root, 0.0, (dru**2 + duv**2 - drv**2) / np.maximum(2 * dru * duv, TINY))
    cos_v = (drv**2 + duv**2 - dru**2) / np.maximum(2 * drv * duv, TINY)
    # rank among the child's kin that are nearer the root than the child is
    nearer = np.take_along_axis(dr[None, :] < dr[:, None], order, axis=1)
    closer = np.zeros((n, n))
    np.put_along_axis(closer, order, np.where(nearer, np.cumsum(nearer, axis=1), 0), axis=1)
    feats = [
        np.log(np.maximum(duv, TINY) / np.maximum(nearest[child], TINY)),
        (drv - dru) / step,
        cos_u,
        cos_v,
        np.log(np.maximum(duv, TINY) / step),
        np.log1p(rank[child, parent]),
        is_root.astype(float),
        closer[child, parent],
        (skeleton[child] == parent).astype(float),
        (skeleton[parent] == child).astype(float),
    ]
    signs = np.sign(stats[child] - stats[parent]) if stats.size else None
    for kind in range(_STAT_KINDS):
        cols = kinds == kind
        if signs is not None and cols.any():
            feats.append(signs[:, cols].mean(axis=1))
        else:
            feats.append(np.zeros(len(parent)))
    feats.extend(np.full(len(parent), f) for f in family_context(family, order[:, 0], nearest))
    return np.stack(feats, axis=1)


def family_context(
    family: RootedFamily, nearest_kin: np.ndarray, nearest: np.ndarray
) -> tuple[float, float, float, float]:
    """The family-wide pair features (``family_spread`` to ``drift_alignment``), from
    distances alone: inner products of the members' offsets from the root follow from
    the distances (law of cosines)."""
    dist, root, skeleton = family.dist, family.root, family.skeleton
    n = dist.shape[0]
    others = np.flatnonzero(np.arange(n) != root)
    if not len(others):
        return 0.0, 0.0, 0.0, 0.0
    dr = dist[root]
    spread = np.log(np.maximum(dr[others], TINY) / np.maximum(nearest[others], TINY))
    kin = nearest_kin[others]
    # <x_v - x_root, x_k - x_root> for each member v and its nearest kin k
    inner = (dr[others] ** 2 + dr[kin] ** 2 - dist[others, kin] ** 2) / 2.0
    cos = np.where(kin == root, 0.0, inner / np.maximum(dr[others] * dr[kin], TINY))
    return (
        float(np.median(spread)),
        float(np.count_nonzero(skeleton == root)) / len(others),
        float(np.log(n)),
        float(np.median(cos)),
    )


@dataclass(frozen=True)
class BoostedTrees:
    """A fitted sum of regression trees over ``PAIR_FEATURES``: log-odds that a
    candidate is the parent. Arrays as scikit-learn stores each tree, stacked as
    (trees, nodes) and padded with leaves of value 0: the feature tested, the threshold
    (``<=`` goes left), the two children, the leaf flag and the leaf value."""

    baseline: float
    feature: np.ndarray
    threshold: np.ndarray
    left: np.ndarray
    right: np.ndarray
    leaf: np.ndarray
    value: np.ndarray

    def log_odds(self, x: np.ndarray) -> np.ndarray:
        """Every row's log-odds, all trees walked together one level at a time."""
        t, width = self.feature.shape
        feature, threshold = self.feature.ravel(), self.threshold.ravel()
        left, right = self.left.ravel(), self.right.ravel()
        leaf, value = self.leaf.ravel(), self.value.ravel()
        base = (np.arange(t) * width)[:, None]
        at = np.broadcast_to(base, (t, len(x))).copy()  # flat index of each walk's node
        cols = x.shape[1]
        flat_x = np.ascontiguousarray(x).ravel()
        row_start = (np.arange(len(x)) * cols)[None, :]
        while True:
            inner = ~leaf[at]
            if not inner.any():
                break
            go_left = flat_x[row_start + feature[at]] <= threshold[at]
            at = np.where(inner, base + np.where(go_left, left[at], right[at]), at)
        return self.baseline + value[at].sum(axis=0)

    @staticmethod
    def from_dict(d: dict) -> BoostedTrees:
        trees = d["trees"]
        width = max((len(tr["leaf"]) for tr in trees), default=1)

        def stack(key: str, dtype: type, pad: object) -> np.ndarray:
            out = np.full((len(trees), width), pad, dtype=dtype)
            for k, tr in enumerate(trees):
                out[k, : len(tr[key])] = tr[key]
            return out

        return BoostedTrees(
            float(d["baseline"]),
            stack("feature", np.int64, 0),
            stack("threshold", np.float64, 0.0),
            stack("left", np.int64, 0),
            stack("right", np.int64, 0),
            stack("leaf", bool, True),
            stack("value", np.float64, 0.0),
        )


class ParentChoice(NamedTuple):
    parent: dict[int, int]  # child -> parent, local indices
    log_odds: dict[tuple[int, int], float]  # (parent, child) -> the model's log-odds


def choose_parents(family: RootedFamily, model: BoostedTrees, k: int = 10) -> ParentChoice:
    """Every non-root member's parent: the maximum spanning arborescence from the root
    over the model's log-odds of the candidate pairs (all of them returned too)."""
    n, root = family.dist.shape[0], family.root
    if n < 2:
        return ParentChoice({}, {})
    parent, child = candidate_pairs(family.dist, root, k)
    score = model.log_odds(pair_features(family, parent, child))
    scores = dict(
        zip(zip(parent.tolist(), child.tolist(), strict=True), score.tolist(), strict=True)
    )
    # every member's best candidate; when they form no cycle that is the maximum
    # arborescence already (Edmonds' first step), else Edmonds contracts the cycles
    best: dict[int, tuple[float, int]] = {}
    for (u, v), sc in scores.items():  # ties keep the lower parent index
        if v not in best or sc > best[v][0]:
            best[v] = (sc, u)
    greedy = {v: u for v, (_, u) in best.items()}
    if not _has_cycle(greedy, root):
        return ParentChoice(greedy, scores)
    g = nx.DiGraph()
    g.add_nodes_from(range(n))
    for (u, v), sc in scores.items():
        g.add_edge(u, v, weight=sc)
    arb = nx.maximum_spanning_arborescence(g, attr="weight")
    return ParentChoice({int(v): int(u) for u, v in arb.edges}, scores)


def _has_cycle(parent: dict[int, int], root: int) -> bool:
    reaches = {root: True}  # member -> reaches the root
    for start in parent:
        path: list[int] = []
        on_path: set[int] = set()
        v = start
        while v not in reaches:
            if v in on_path:
                return True
            path.append(v)
            on_path.add(v)
            v = parent[v]
        for w in path:
            reaches[w] = True
    return False
