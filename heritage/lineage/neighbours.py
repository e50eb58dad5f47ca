"""Sparse candidate pairs: each model's nearest neighbours, so cost grows like n * k.

Groups small enough are measured pair by pair (``all_pairs``); larger ones get
``ann_pairs``: neighbours of ``sketch``es, Gaussian random projections of the evidence
vectors to ``SKETCH_DIMS`` coordinates, re-ranked by exact distances. Up to
``EXACT_SKETCH_LIMIT`` models the sketches are searched exactly (a few seconds at that
size, and exact where an approximate index is weakest: a star's children form an
isotropic cloud around their base, on which HNSW recall@10 fell to 0.40-0.98); above
it, an approximate nearest-neighbour index (faiss HNSW, chosen by measurement in
bench/scale.py), whose recall is measured on a sample of models each time: below
``MIN_RECALL`` the search is exact after all.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

SKETCH_DIMS = 256
EXACT_SKETCH_LIMIT = 20_000  # up to this many models, sketches are searched exactly
MIN_RECALL = 0.99  # an approximate search that finds less of the k nearest is not used
_PROJECTION_BLOCK = 4096  # coordinates per block of the projection matrix


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def sketch(rows: Iterable[np.ndarray], width: int, dims: int = SKETCH_DIMS) -> np.ndarray:
    """Random projections (float32, ``dims`` coordinates) of evidence vectors given in
    chunks of rows: distances between sketches estimate distances between vectors to
    about ``sqrt(2 / dims)`` relative error. The projection depends only on ``width`` and
    ``dims`` (seeded per block of coordinates), so a model's sketch never depends on
    which other models are in its group."""
    blocks = [
        (
            start,
            np.random.default_rng([start, dims])
            .standard_normal((min(_PROJECTION_BLOCK, width - start), dims))
            .astype(np.float32)
            / np.float32(np.sqrt(dims)),
        )
        for start in range(0, width, _PROJECTION_BLOCK)
    ]
    out = []
    for chunk in rows:
        acc = np.zeros((chunk.shape[0], dims), np.float32)
        for start, proj in blocks:
            part = chunk[:, start : start + proj.shape[0]].astype(np.float32)
            acc += part @ proj
        out.append(acc)
    return np.concatenate(out) if out else np.zeros((0, dims), np.float32)


def _hnsw(data: np.ndarray, links: int, ef: int):  # -> faiss.IndexHNSWFlat
    import faiss

    threads = faiss.omp_get_max_threads()
    index = faiss.IndexHNSWFlat(data.shape[1], links)
    index.hnsw.efConstruction = max(ef, 2 * links)
    try:
        faiss.omp_set_num_threads(1)
        index.add(data)
    finally:
        faiss.omp_set_num_threads(threads)
    return index


def _hnsw_search(index, data: np.ndarray, rows: np.ndarray, k: int, ef: int) -> np.ndarray:
    """(len(rows), k) neighbours of ``data[rows]`` other than themselves (-1 padded)."""
    index.hnsw.efSearch = max(ef, k + 1)
    _, found = index.search(data[rows], k + 1)
    out = np.full((len(rows), k), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        row = found[i][(found[i] != r) & (found[i] >= 0)][:k]
        out[i, : len(row)] = row
    return out


def ann_neighbours(sk: np.ndarray, k: int, ef: int = 128, links: int = 64) -> np.ndarray:
    """(n, k) indices of each row's approximate ``k`` nearest other rows (-1 where fewer
    exist), from a faiss HNSW index over the sketches. The graph is built on one thread
    (insertion order then fixes it: the same input gives the same neighbours); the
    search runs on all cores."""
    n = sk.shape[0]
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((n, 0), dtype=np.int64)
    data = np.ascontiguousarray(sk, dtype=np.float32)
    return _hnsw_search(_hnsw(data, links, ef), data, np.arange(n), k, ef)


def _exact_rows(sk: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` nearest other rows of ``sk`` for each row index in ``queries``, nearest
    first (brute force)."""
    d = _sq_dists(sk[queries], sk)
    d[np.arange(len(queries)), queries] = np.inf
    if k < sk.shape[0] - 1:
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
    else:
        part = np.argsort(d, axis=1)[:, :k]
    order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def exact_neighbours(sk: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """(n, k) indices of each row's ``k`` nearest other rows, by brute force."""
    n = sk.shape[0]
    k = min(k, n - 1)
    if k < 1:
        return np.zeros((n, max(k, 0)), dtype=np.int64)
    data = np.ascontiguousarray(sk, dtype=np.float32)
    blocks = [np.arange(start, min(start + block, n)) for start in range(0, n, block)]
    return np.concatenate([_exact_rows(data, rows, k) for rows in blocks]).astype(np.int64)


def _recall_sample(n: int, sample: int = 200) -> np.ndarray:
    return np.sort(np.random.default_rng(0).choice(n, size=min(sample, n), replace=False))


def _recall(exact: np.ndarray, near: np.ndarray) -> float:
    hits = sum(len(set(e.tolist()) & set(m.tolist())) for e, m in zip(exact, near, strict=True))
    return hits / max(exact.size, 1)


def sketch_recall(sk: np.ndarray, near: np.ndarray, k: int, sample: int = 200) -> float:
    """Share of the exact ``k`` nearest sketches found in ``near`` (each row's candidate
    list), over a fixed sample of rows: the search's recall@k, measured."""
    n = sk.shape[0]
    k = min(k, n - 1)
    if k < 1:
        return 1.0
    queries = _recall_sample(n, sample)
    exact = _exact_rows(np.ascontiguousarray(sk, dtype=np.float32), queries, k)
    return _recall(exact, near[queries])


def sketch_neighbours(
    sk: np.ndarray, k: int, want: int | None = None, ef: int = 128, links: int = 64
) -> np.ndarray:
    """Each row's ``k`` nearest sketches (as candidates for its ``want`` nearest, default
    ``k``): exact up to ``EXACT_SKETCH_LIMIT`` rows. Above, the HNSW index is built and
    first asked for a fixed sample of rows; when it finds less than ``MIN_RECALL`` of
    their exact ``want`` nearest, the search is exact after all (a star's children, an
    isotropic cloud around their base, are the case: HNSW found 0.56 of their 10
    nearest at 100k), else the index answers for every row."""
    n = sk.shape[0]
    if n <= EXACT_SKETCH_LIMIT:
        return exact_neighbours(sk, k)
    k = min(k, n - 1)
    want = min(want or k, k)
    data = np.ascontiguousarray(sk, dtype=np.float32)
    index = _hnsw(data, links, ef)
    queries = _recall_sample(n)
    near = _hnsw_search(index, data, queries, k, ef)
    if _recall(_exact_rows(data, queries, want), near) < MIN_RECALL:
        return exact_neighbours(data, k)
    return _hnsw_search(index, data, np.arange(n), k, ef)


def ann_pairs(
    sk: np.ndarray, x: np.ndarray, k: int, candidates: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """Unordered pairs (i < j) linking each row to its ``k`` nearest rows of ``x`` among
    the ``candidates * k`` nearest sketches, with their exact distances."""
    n = sk.shape[0]
    if n < 2:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0)
    near = sketch_neighbours(sk, candidates * k, want=k)
    rows = np.repeat(np.arange(n), near.shape[1])
    cols = near.ravel()
    ok = cols >= 0
    pairs = np.stack([rows[ok], cols[ok]], axis=1)
    pairs = np.unique(np.sort(pairs, axis=1), axis=0)
    dist = pair_distances(x, pairs)
    # keep each row's k nearest by exact distance (a pair stays if either end keeps it)
    row = np.concatenate([pairs[:, 0], pairs[:, 1]])
    idx = np.tile(np.arange(len(pairs)), 2)
    order = np.lexsort((idx, np.tile(dist, 2), row))
    starts = np.flatnonzero(np.r_[True, np.diff(row[order]) != 0])
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = np.zeros(len(pairs), dtype=bool)
    keep[idx[order[rank < k]]] = True
    return pairs[keep], dist[keep]


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
