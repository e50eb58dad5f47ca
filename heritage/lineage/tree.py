"""Tree: the undirected skeleton of a family's fine-tunes, a minimum spanning tree.

A fine-tune moves its parent's weights a short way; its nearest kin is its parent or a
sibling, and the minimum spanning tree over pairwise distances recovers a tree of short
steps exactly when each step is shorter than any shortcut across it. Nothing here says
which end of an edge is the parent: that is ``direction``'s job.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import networkx as nx
import numpy as np

from heritage.lineage.neighbours import PairDistances

__all__ = ["TreeEdge", "spanning_tree"]


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
