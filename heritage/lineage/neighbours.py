"""Sparse candidate pairs: each model's nearest neighbours, so cost grows like n * k.

Neighbours are searched on a fixed subsample of coordinates (an unbiased estimate of
the full distance), then every candidate pair is measured exactly.
"""

from __future__ import annotations

import numpy as np

SKETCH_COORDS = 4096


def _sketch(x: np.ndarray, coords: int) -> np.ndarray:
    if x.shape[1] <= coords:
        return x
    pick = np.random.default_rng(0).choice(x.shape[1], size=coords, replace=False)
    return x[:, np.sort(pick)] * np.sqrt(x.shape[1] / coords)


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def candidate_pairs(x: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """Unordered pairs (i < j) linking each row of ``x`` to its ``k`` nearest rows."""
    n = x.shape[0]
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64)
    k = min(k, n - 1)
    s = _sketch(x, SKETCH_COORDS).astype(np.float32)
    pairs = []
    for start in range(0, n, block):
        d = _sq_dists(s[start : start + block], s)
        rows = np.arange(start, min(start + block, n))
        d[np.arange(len(rows)), rows] = np.inf
        nn = np.argpartition(d, k - 1, axis=1)[:, :k] if k < n - 1 else np.argsort(d, axis=1)[:, :k]
        pairs.append(np.stack([np.repeat(rows, nn.shape[1]), nn.ravel()], axis=1))
    p = np.concatenate(pairs)
    p = np.sort(p, axis=1)
    p = p[p[:, 0] != p[:, 1]]
    return np.unique(p, axis=0)


def pair_distances(x: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Euclidean distance for each pair: from the Gram matrix when most pairs are asked."""
    n = x.shape[0]
    if len(pairs) and len(pairs) >= n * (n - 1) // 4:
        gram = x @ x.T
        sq = np.diag(gram)
        d2 = sq[pairs[:, 0]] + sq[pairs[:, 1]] - 2.0 * gram[pairs[:, 0], pairs[:, 1]]
        # cancellation leaves ~1e-16 * |x|^2 of noise: clamp identical rows to exactly 0
        out = np.sqrt(np.maximum(d2, 0.0))
        tiny = np.flatnonzero(out < 1e-6)
        for k in tiny:
            i, j = pairs[k]
            out[k] = float(np.linalg.norm(x[i] - x[j]))
        return out
    # sparse pairs: one small matrix-vector product per model, no (pairs x dims) copies
    sq = np.einsum("ij,ij->i", x, x)
    out = np.empty(len(pairs))
    order = np.argsort(pairs[:, 0], kind="stable")
    firsts = pairs[order, 0]
    bounds = np.flatnonzero(np.diff(firsts)) + 1
    for group in np.split(order, bounds):
        if not len(group):
            continue
        i = pairs[group[0], 0]
        js = pairs[group, 1]
        d2 = sq[i] + sq[js] - 2.0 * (x[js] @ x[i])
        out[group] = np.sqrt(np.maximum(d2, 0.0))
    tiny = np.flatnonzero(out < 1e-6)
    for k in tiny:
        i, j = pairs[k]
        out[k] = float(np.linalg.norm(x[i] - x[j]))
    return out


def all_pairs(n: int) -> np.ndarray:
    i, j = np.triu_indices(n, k=1)
    return np.stack([i, j], axis=1)


class PairDistances:
    """Distances between rows of ``x``, each measured once (seeded with known pairs)."""

    def __init__(self, x: np.ndarray, pairs: np.ndarray, dists: np.ndarray) -> None:
        self.x = x
        self.known: dict[tuple[int, int], float] = {
            (int(i), int(j)): float(d) for (i, j), d in zip(pairs, dists, strict=True)
        }

    def __call__(self, i: int, j: int) -> float:
        if i == j:
            return 0.0
        key = (i, j) if i < j else (j, i)
        d = self.known.get(key)
        if d is None:
            d = float(np.linalg.norm(self.x[i] - self.x[j]))
            self.known[key] = d
        return d

    def measured(self, i: int, j: int) -> float | None:
        """The distance if it was measured, else None (no new work)."""
        return self.known.get((i, j) if i < j else (j, i))

    def neighbour_lists(self, members: set[int]) -> dict[int, list[tuple[float, int]]]:
        """For each member, its measured neighbours among ``members``, nearest first."""
        near: dict[int, list[tuple[float, int]]] = {m: [] for m in members}
        for (i, j), d in self.known.items():
            if i in members and j in members:
                near[i].append((d, j))
                near[j].append((d, i))
        for lst in near.values():
            lst.sort()
        return near
