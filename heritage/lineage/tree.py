"""Tree: the undirected skeleton of a family's fine-tunes, a minimum spanning tree.

A fine-tune moves its parent's weights a short way; its nearest kin is its parent or a
sibling, and the minimum spanning tree over pairwise distances recovers a tree of short
steps exactly when each step is shorter than any shortcut across it. Nothing here says
which end of an edge is the parent: that is ``direction``'s job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import networkx as nx
import numpy as np

from heritage.lineage.neighbours import PairDistances

__all__ = [
    "REGRAFT_FEATURES",
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
    g = nx.Graph()
    g.add_nodes_from(nodes)
    node_set = set(nodes)
    for (i, j), d in dist.known.items():
        if i in node_set and j in node_set:
            g.add_edge(i, j, distance=d)
    comps = sorted(sorted(c) for c in nx.connected_components(g))
    for a_i in range(len(comps)):
        for b_i in range(a_i + 1, len(comps)):
            a, b = comps[a_i], comps[b_i]
            d = np.sqrt(((x[a][:, None, :] - x[b][None, :, :]) ** 2).sum(-1))
            ia, ib = np.unravel_index(np.argmin(d), d.shape)
            g.add_edge(a[ia], b[ib], distance=float(d[ia, ib]))
    tree = nx.minimum_spanning_tree(g, weight="distance", algorithm="kruskal")
    return sorted(
        TreeEdge(min(i, j), max(i, j), d["distance"]) for i, j, d in tree.edges(data=True)
    )


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


def regraft(
    order: Sequence[int],
    parent: dict[int, int],
    dist: Callable[[int, int], float],
    coef: np.ndarray,
    intercept: float,
) -> dict[int, int]:
    """Walk the rooted tree top-down; a child whose geometry says it is its parent's
    sibling (the fitted model's probability above one half) moves up to its
    grandparent. Children keep their own children, so a chained run of siblings folds
    back into a fan one step at a time."""
    out = dict(parent)
    if not len(coef):
        return out
    for v in order:
        u = out.get(v)
        g = out.get(u) if u is not None else None
        if g is None:
            continue
        if float(regraft_features(g, u, v, dist) @ coef) + intercept > 0:
            out[v] = g
    return out
