"""MoTHer (Horwitz et al., ICLR 2025) re-implemented as the benchmark's baseline.

As in the authors' ICLR code: within a tree, distance is the mean over square weight
matrices of RMS(W_i - W_j); direction is a binary kurtosis rule, the cost of i -> j
being D[i, j] + lambda * mean(D) * [kurtosis_j > kurtosis_i] with lambda = 0.3 (fine-
tuning is assumed to lower kurtosis); the tree is a Chu-Liu-Edmonds minimum spanning
arborescence. Families come from Ward clustering on the sum over square matrices of
mean |W_i - W_j|, with the number of families given (MoTHer needs it by hand).
"""

from __future__ import annotations

from collections.abc import Mapping

import networkx as nx
import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.stats import kurtosis

LAMBDA = 0.3


def square_matrices(weights: Mapping[str, np.ndarray]) -> list[str]:
    return sorted(n for n, w in weights.items() if w.ndim == 2 and w.shape[0] == w.shape[1])


def mother(
    models: Mapping[str, Mapping[str, np.ndarray]],
    n_families: int,
    lam: float = LAMBDA,
    prefix: str = "mother",
) -> nx.DiGraph:
    """MoTHer over models of one architecture; ``n_families`` is the true K."""
    ids = sorted(models)
    names = square_matrices(models[ids[0]])
    graph = nx.DiGraph(method="mother-iclr2025")
    graph.add_nodes_from(ids)
    if len(ids) == 1:
        graph.nodes[ids[0]]["family"] = f"{prefix}-0"
        return graph
    stacks = {n: np.stack([models[i][n].astype(np.float64).ravel() for i in ids]) for n in names}
    n = len(ids)
    cluster_d = np.zeros((n, n))
    for s in stacks.values():
        for i in range(n):
            cluster_d[i] += np.abs(s - s[i]).mean(axis=1)
    condensed = cluster_d[np.triu_indices(n, k=1)]
    labels = fcluster(linkage(condensed, method="ward"), t=n_families, criterion="maxclust")
    kurt = np.zeros(n)
    for s in stacks.values():
        kurt += kurtosis(s, axis=1, fisher=True)
    for label in sorted(set(labels)):
        members = [i for i in range(n) if labels[i] == label]
        for i in members:
            graph.nodes[ids[i]]["family"] = f"{prefix}-{label}"
        if len(members) == 1:
            continue
        dist = np.zeros((len(members), len(members)))
        for s in stacks.values():
            sub = s[members]
            for a in range(len(members)):
                dist[a] += np.sqrt(((sub - sub[a]) ** 2).mean(axis=1))
        dist /= max(len(stacks), 1)
        penalty = lam * dist.mean()
        g = nx.DiGraph()
        for a, i in enumerate(members):
            for b, j in enumerate(members):
                if a != b:
                    cost = dist[a, b] + penalty * float(kurt[j] > kurt[i])
                    g.add_edge(ids[i], ids[j], cost=cost)
        tree = nx.minimum_spanning_arborescence(g, attr="cost")
        for u, v in tree.edges:
            a, b = members.index(ids.index(u)), members.index(ids.index(v))
            graph.add_edge(u, v, relation="finetune", confidence=1.0, distance=float(dist[a, b]))
    return graph
