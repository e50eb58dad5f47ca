"""Tree: the undirected skeleton of a family's fine-tunes, a minimum spanning tree.

A fine-tune moves its parent's weights a short way; its nearest kin is its parent or a
sibling, and the minimum spanning tree over pairwise distances recovers a tree of short
steps exactly when each step is shorter than any shortcut across it. Nothing here says
which end of an edge is the parent: that is ``direction``'s job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from heritage.lineage.neighbours import PairDistances

__all__ = [
    "REGRAFT_FEATURES",
    "SiblingTest",
    "TreeEdge",
    "regraft",
    "regraft_features",
    "spanning_tree",
]


class TreeEdge(NamedTuple):
    a: int  # indices into the group; a < b
    b: int
    distance: float


def spanning_tree(x: np.ndarray, nodes: Sequence[int], dist: PairDistances) -> list[TreeEdge]:
    """Minimum spanning tree of ``nodes`` over the measured pairs among them.

    Sparse candidate pairs can leave islands; each pair of islands is bridged by its
    closest pair of members so the tree always spans the family.
    """
    nodes = list(nodes)
    n = len(nodes)
    if n < 2:
        return []
    local = {v: k for k, v in enumerate(nodes)}
    rows, cols, vals = [], [], []
    for (i, j), d in dist.known.items():
        a, b = local.get(i), local.get(j)
        if a is not None and b is not None:
            rows.append(a)
            cols.append(b)
            vals.append(d)
    w = np.asarray(vals, dtype=np.float64)
    w[w == 0] = np.finfo(np.float64).tiny  # csgraph reads a stored 0 as no edge
    graph = sparse.coo_array((w, (rows, cols)), shape=(n, n)).tocsr()
    count, label = csgraph.connected_components(graph, directed=False)
    if count > 1:
        comps = [np.flatnonzero(label == c) for c in range(count)]
        comps.sort(key=lambda c: int(c[0]))
        extra_r, extra_c, extra_v = [], [], []
        idx = np.asarray(nodes)
        for a_i in range(count):
            for b_i in range(a_i + 1, count):
                a, b = comps[a_i], comps[b_i]
                d = np.sqrt(((x[idx[a]][:, None, :] - x[idx[b]][None, :, :]) ** 2).sum(-1))
                ia, ib = np.unravel_index(np.argmin(d), d.shape)
                extra_r.append(int(a[ia]))
                extra_c.append(int(b[ib]))
                extra_v.append(max(float(d[ia, ib]), np.finfo(np.float64).tiny))
        graph = sparse.coo_array(
            (np.r_[w, extra_v], (np.r_[rows, extra_r], np.r_[cols, extra_c])), shape=(n, n)
        ).tocsr()
    tree = csgraph.minimum_spanning_tree(graph).tocoo()
    out = []
    for a, b in zip(tree.row.tolist(), tree.col.tolist(), strict=True):
        i, j = nodes[a], nodes[b]
        out.append(TreeEdge(min(i, j), max(i, j), dist(i, j)))
    return sorted(out)


REGRAFT_FEATURES = ("closer_to_grandparent", "isosceles", "step_back", "step_ratio")


def regraft_features(g: int, u: int, v: int, dist: Callable[[int, int], float]) -> np.ndarray:
    """Geometry of a child ``v`` of ``u`` whose own parent is ``g``: does ``v`` belong
    under ``g`` (a sibling of ``u``) instead? Siblings that share their task's common
    drift sit closer to each other than to their parent, so the spanning tree chains
    them; such a 'child' is about as far from ``g`` as ``u`` is, and steps back
    towards ``g`` as seen from ``u``."""
    d_gu, d_gv, d_uv = dist(g, u), dist(g, v), dist(u, v)
    tiny = 1e-12
    cos_u = (d_gu**2 + d_uv**2 - d_gv**2) / max(2 * d_gu * d_uv, tiny)
    return np.array(
        [
            np.log(max(d_gv, tiny) / max(d_uv, tiny)),
            np.log(max(d_gv, tiny) / max(d_gu, tiny)),
            cos_u,
            np.log(max(d_uv, tiny) / max(d_gu, tiny)),
        ]
    )


@dataclass(frozen=True)
class SiblingTest:
    """A small fitted decision tree over ``REGRAFT_FEATURES``: the probability that a
    child belongs to its grandparent. Arrays as scikit-learn stores a tree: per node
    the feature tested (-1 at a leaf), the threshold, the two children, and at a leaf
    the share of development cases that moved."""

    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    value: tuple[float, ...]

    def probability(self, x: np.ndarray) -> float:
        node = 0
        while self.feature[node] >= 0:
            go_left = x[self.feature[node]] <= self.threshold[node]
            node = self.left[node] if go_left else self.right[node]
        return self.value[node]

    @staticmethod
    def from_dict(d: dict) -> SiblingTest:
        return SiblingTest(
            tuple(int(v) for v in d["feature"]),
            tuple(float(v) for v in d["threshold"]),
            tuple(int(v) for v in d["left"]),
            tuple(int(v) for v in d["right"]),
            tuple(float(v) for v in d["value"]),
        )


def regraft(
    order: Sequence[int],
    parent: dict[int, int],
    dist: Callable[[int, int], float],
    test: SiblingTest | None,
) -> dict[int, int]:
    """Walk the rooted tree top-down; a child whose geometry says it is its parent's
    sibling (the fitted test's probability above one half) moves up to its
    grandparent. Children keep their own children, so a chained run of siblings folds
    back into a fan one step at a time."""
    out = dict(parent)
    if test is None:
        return out
    for v in order:
        u = out.get(v)
        g = out.get(u) if u is not None else None
        if g is None:
            continue
        if test.probability(regraft_features(g, u, v, dist)) > 0.5:
            out[v] = g
    return out
