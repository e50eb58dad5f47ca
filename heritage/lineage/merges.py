"""Merges: a model that is (almost exactly) an affine combination of two or three others.

Linear merges and SLERP between close models sit on the segment between their parents;
task arithmetic (base + sum of scaled task vectors) is an affine combination of the base
and the fine-tunes with the base's weight at or below zero. The fit needs only the Gram
matrix of the candidates' differences from the child (one small product per model). A fit is a
merge when its residual is a small fraction of the distance to the nearest parent:
training never moves in a straight line, so a checkpoint between its neighbours on one
run is not one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

__all__ = [
    "FAR_PARENT_MAX",
    "Merge",
    "TensorGram",
    "affine_fit",
    "by_whole_tensors",
    "find_merges",
    "find_sparse_merges",
    "whole_tensor_step",
]

# families up to this size look for a merge's second parent among all their members,
# not only its nearest kin (the cost is the family's size per model)
FAR_PARENT_MAX = 64


class Merge(NamedTuple):
    child: int
    parents: tuple[int, ...]  # the models merged (positive weight), nearest first
    weights: tuple[float, ...]  # their weights in the fit
    residual: float  # residual of the fit / distance to the nearest parent
    distances: tuple[float, ...]  # child to each parent
    base: int | None = None  # the model the task vectors were taken from (TIES, DARE)


def affine_fit(gram: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights w (summing to 1) minimising |c - sum w_i p_i|, and the residual norm, for
    each stacked Gram matrix (..., k, k) of the differences p_i - c."""
    gram = np.asarray(gram, dtype=np.float64)
    ones = np.ones(gram.shape[:-1])
    k = gram.shape[-1]
    # a child exactly on its parents' segment (a linear merge: p_1 - c = -(p_2 - c))
    # makes the Gram matrix singular; a ridge of 1e-9 of its mean diagonal keeps the
    # solve defined there and adds ~3e-5 of the parents' distance to a residual
    ridge = 1e-9 * np.trace(gram, axis1=-2, axis2=-1) / k
    with np.errstate(all="ignore"):
        ok = np.isfinite(ridge) & (ridge > 0)
        safe = np.where(ok[..., None, None], gram + ridge[..., None, None] * np.eye(k), np.eye(k))
        u = np.linalg.solve(safe, ones[..., None])[..., 0]
        total = u.sum(axis=-1)
        ok &= np.isfinite(total) & (total > 0)
        w = np.where(ok[..., None], u / np.where(ok, total, 1.0)[..., None], np.nan)
        resid = np.where(ok, np.sqrt(1.0 / np.where(ok, total, 1.0)), np.inf)
    return w, resid


def _fits(
    c: int,
    pool: Sequence[int],
    gram: np.ndarray,
    size: int,
    residual_limit: float,
    combos: np.ndarray | None = None,
) -> list[Merge]:
    """Every acceptable fit of ``c`` from ``size`` members of ``pool`` (all ``size``-sets,
    or the given ``combos`` of indices into ``pool``)."""
    if combos is None:
        combos = np.array(list(itertools.combinations(range(len(pool)), size)))
    if not len(combos):
        return []
    grams = gram[combos[:, :, None], combos[:, None, :]]
    weights, resid = affine_fit(grams)
    diag = np.sqrt(np.maximum(np.diagonal(grams, axis1=1, axis2=2), 0.0))
    out = []
    # necessary for a fit to pass (its nearest positive parent is at most the farthest)
    hopeful = np.isfinite(resid) & (resid < residual_limit * diag.max(axis=1))
    for k in np.flatnonzero(hopeful):
        w, combo = weights[k], combos[k]
        positive = [i for i in range(size) if w[i] > 0.02]
        negative = [i for i in range(size) if w[i] <= 0.02]
        if size == 2:
            if negative:  # a pair must straddle the child
                continue
        elif len(negative) > 1 or len(positive) < 2 or any(w[i] < -1.5 for i in negative):
            continue  # three points: at most the base below zero (task arithmetic)
        d = [float(diag[k, i]) for i in positive]
        if min(d) <= 0 or resid[k] / min(d) >= residual_limit:
            continue
        members = [(d[n], pool[combo[i]], float(w[i])) for n, i in enumerate(positive)]
        out.append(_merge(c, members, float(resid[k] / min(d))))
    return out


def _merge(c: int, members: Sequence[tuple[float, int, float]], residual: float) -> Merge:
    """A merge of ``c`` from its (distance, parent, weight) members, nearest first."""
    ranked = sorted(members)
    return Merge(
        c,
        tuple(m for _, m, _ in ranked),
        tuple(w for _, _, w in ranked),
        residual,
        tuple(d for d, _, _ in ranked),
    )


class TensorGram(NamedTuple):
    """Per-tensor Gram matrices of a family's raw sampled values: ``gram[t, i, j]`` is
    the dot product of members i and j (indices into ``members``) over tensor t."""

    members: list[int]
    gram: np.ndarray  # (tensors, n, n), float64

    @staticmethod
    def of(raw: np.ndarray, slices: Sequence[slice], members: Sequence[int]) -> TensorGram:
        rows = raw[list(members)].astype(np.float64)
        gram = np.stack([rows[:, sl] @ rows[:, sl].T for sl in slices])
        return TensorGram(list(members), gram)


def _span_pairs(
    c: int, pool: Sequence[int], others: Sequence[int], tg: TensorGram, residual_limit: float
) -> list[Merge]:
    """Two-parent fits of ``c`` as ``a_t p + b_t q`` tensor by tensor (coefficients free
    per tensor, through the origin): SLERP interpolates each tensor on the great circle
    between its parents, off the straight segment an affine fit needs, but always in
    their span. Kept when the fit is tight (residual under ``residual_limit`` of the
    distance to the nearer parent), both parents weigh in (median coefficients above
    0.02, and both above 0.02 in at least one tensor) and neither parent alone comes
    within ten times the fit's residual."""
    local = {m: k for k, m in enumerate(tg.members)}
    g = tg.gram
    ci = local[c]
    pi = np.array([local[p] for p in pool])
    qi = np.array([local[q] for q in others])
    a = g[:, pi, pi][:, :, None]  # (T, P, 1)
    d = g[:, qi, qi][:, None, :]  # (T, 1, Q)
    b = g[:, pi[:, None], qi[None, :]]  # (T, P, Q)
    e = g[:, pi, ci][:, :, None]
    f = g[:, qi, ci][:, None, :]
    cc = g[:, ci, ci][:, None, None]
    with np.errstate(all="ignore"):
        det = a * d - b * b
        alpha = np.where(det > 0, (e * d - f * b) / det, np.nan)
        beta = np.where(det > 0, (a * f - b * e) / det, np.nan)
        res2 = np.maximum(cc - alpha * e - beta * f, 0.0).sum(axis=0)
        alone = np.minimum(
            np.maximum(cc - e * e / a, 0.0).sum(axis=0), np.maximum(cc - f * f / d, 0.0).sum(axis=0)
        )
        dist_p = np.sqrt(np.maximum(cc - 2 * e + a, 0.0).sum(axis=0))  # (P, 1)
        dist_q = np.sqrt(np.maximum(cc - 2 * f + d, 0.0).sum(axis=0))  # (1, Q)
        nearest = np.minimum(dist_p, dist_q)
        ratio = np.sqrt(res2) / nearest
        wa, wb = np.median(alpha, axis=0), np.median(beta, axis=0)
        ok = (
            np.isfinite(ratio)
            & (ratio < residual_limit)
            & (wa > 0.02)
            & (wb > 0.02)
            & (np.sqrt(alone) >= 10 * np.sqrt(res2))
            # some tensor mixes both: a base whose adapters changed different tensors is
            # each adapter on the tensors it left alone, one parent per tensor
            & (np.minimum(alpha, beta) > 0.02).any(axis=0)
        )
    out = []
    for i, j in zip(*np.nonzero(ok), strict=True):
        total = float(wa[i, j] + wb[i, j])
        members = [
            (float(dist_p[i, 0]), pool[i], float(wa[i, j]) / total),
            (float(dist_q[0, j]), others[j], float(wb[i, j]) / total),
        ]
        out.append(_merge(c, members, float(ratio[i, j])))
    return out


def _rank(m: Merge) -> tuple[float, tuple[int, ...]]:
    return (m.residual, m.parents)


def find_merges(
    x: np.ndarray,
    core: Sequence[int],
    near: dict[int, list[tuple[float, int]]],
    candidates: int,
    residual_limit: float,
    tensor_gram: TensorGram | None = None,
) -> list[Merge]:
    """Merged models among ``core``, each fitted from its ``candidates`` nearest others
    (in families of up to ``FAR_PARENT_MAX`` members, a two-parent fit may also take its
    second parent from any other member, and with ``tensor_gram`` it may also be a
    combination per tensor: SLERP).

    A three-parent fit is kept only when it beats every two-parent fit by half; merged
    models are never parents of other merges here (chains of merges are rare and would
    otherwise explain each other).
    """
    found: list[Merge] = []
    core_set = set(core)
    far = len(core) <= FAR_PARENT_MAX
    if far:  # the family's dot products once; differences from each child follow
        at = {j: k for k, j in enumerate(core)}
        rows = x[list(core)].astype(np.float64)
        rows -= rows.mean(axis=0)  # about the family's mean, so no precision is lost
        dots = rows @ rows.T
    for c in core:
        pool = [j for d, j in near.get(c, []) if j in core_set and d > 0][:candidates]
        if len(pool) < 2:
            continue
        if far:
            wide = pool + [j for j in core if j != c and j not in set(pool)]
            wi, ci = [at[j] for j in wide], at[c]
            centred = (
                dots[np.ix_(wi, wi)] - dots[wi, ci][:, None] - dots[ci, wi][None, :] + dots[ci, ci]
            )
            gram = centred[: len(pool), : len(pool)]
        else:  # float64: a float32 product can leave a merge's Gram matrix indefinite
            v = x[pool].astype(np.float64) - x[c]
            gram = v @ v.T
        pairs = _fits(c, pool, gram, 2, residual_limit)
        triples = _fits(c, pool, gram, 3, residual_limit)
        if far and len(wide) > len(pool):
            # one (pairs) or two (triples) of the nearest, and one from anywhere in the
            # family: a merge weighted towards some parents sits near them, and its other
            # parent can be farther than the nearest few kin (in a star, every member is
            # about as far)
            nearest, beyond = range(len(pool)), range(len(pool), len(wide))
            pair_combos = np.array([(i, k) for i in nearest for k in beyond])
            pairs += _fits(c, wide, centred, 2, residual_limit, pair_combos)
            triple_combos = np.array(
                [(i, j, k) for i, j in itertools.combinations(nearest, 2) for k in beyond]
            )
            triples += _fits(c, wide, centred, 3, residual_limit, triple_combos)
        if far and tensor_gram is not None and not pairs:  # an affine fit stands first
            pairs = _span_pairs(c, pool, [j for j in core if j != c], tensor_gram, residual_limit)
        best2 = min(pairs, key=_rank, default=None)
        best3 = min(triples, key=_rank, default=None)
        best = best2
        if best3 is not None and (best2 is None or best3.residual < 0.5 * best2.residual):
            best = best3
        if best is not None:
            found.append(best)
    accepted: list[Merge] = []
    children: set[int] = set()
    parents: set[int] = set()
    for m in sorted(found, key=lambda m: (m.residual, m.child)):
        if m.child in parents or m.child in children or children & set(m.parents):
            continue
        accepted.append(m)
        children.add(m.child)
        parents.update(m.parents)
    return sorted(accepted, key=lambda m: m.child)


def _mode_entries(tau_c: np.ndarray, tau_p: np.ndarray) -> tuple[np.ndarray, float]:
    """Entries where tau_c / tau_p takes its most common positive value (to 1e-3), and
    that value."""
    r = np.divide(tau_c, tau_p, out=np.zeros_like(tau_c), where=tau_p != 0)
    pos = r > 0
    if not pos.any():
        return np.zeros(len(tau_c), dtype=bool), 0.0
    key = np.zeros(len(r), dtype=np.int64)
    key[pos] = np.round(np.log(r[pos]) / 1e-3).astype(np.int64)
    values, counts = np.unique(key[pos], return_counts=True)
    k = int(np.argmax(counts))
    return pos & (key == values[k]), float(np.exp(values[k] * 1e-3))


class _Cover(NamedTuple):
    parent: int
    ratio: float  # tau_c / tau_parent on the entries it explains
    entries: np.ndarray  # the entries of tau_c it explains (before the others chosen)


def _cover(tau_c: np.ndarray, taus: dict[int, np.ndarray], min_share: float) -> list[_Cover]:
    """Greedily, the models whose changes (times a constant) explain the most entries of
    ``tau_c`` not yet explained, while each adds at least ``min_share`` of them."""
    found = {p: _mode_entries(tau_c, t) for p, t in taus.items()}
    explained = np.zeros(len(tau_c), dtype=bool)
    out: list[_Cover] = []
    while True:
        chosen = {c.parent for c in out}
        gains = {p: int((m & ~explained).sum()) for p, (m, _) in found.items() if p not in chosen}
        if not gains:
            return out
        best = min(gains, key=lambda p: (-gains[p], p))
        if gains[best] < min_share * len(tau_c):
            return out
        mask, ratio = found[best]
        out.append(_Cover(best, ratio, mask))
        explained |= mask


def whole_tensor_step(changed: np.ndarray, slices: Sequence[slice]) -> bool:
    """Whether two models differ by whole tensors: some tensors in every entry, the
    others in none. That is an adapter and its base (a LoRA changes its target modules
    and nothing else), not a sparse merge and its base, whose task vectors reach into
    every tensor they were taken from."""
    shares = [float(changed[sl].mean()) for sl in slices if sl.stop > sl.start]
    return (
        bool(shares)
        and all(v <= 0.01 or v >= 0.99 for v in shares)
        and any(v >= 0.99 for v in shares)
        and any(v <= 0.01 for v in shares)
    )


def by_whole_tensors(
    masks: Sequence[np.ndarray], changed: np.ndarray, slices: Sequence[slice]
) -> bool:
    """Whether each changed tensor is explained (99% of its changed entries) by a single
    parent's change. TIES and DARE pick task-vector entries one by one, so inside a
    tensor their parents alternate; the base of adapters that changed different modules
    equals each adapter on whole tensors it left alone, and reads as their "merge"."""
    at = np.flatnonzero(changed)  # entry index of each position in the masks
    whole = False
    for sl in slices:
        lo, hi = np.searchsorted(at, [sl.start, sl.stop])
        if hi - lo == 0:
            continue
        if max(float(m[lo:hi].mean()) for m in masks) < 0.99:
            return False
        whole = True
    return whole


def _spread(m: Merge, dist: Callable[[int, int], float]) -> float:
    assert m.base is not None
    return float(np.mean([dist(m.base, p) for p in m.parents]))


def find_sparse_merges(
    raw: np.ndarray,
    core: Sequence[int],
    exact: Sequence[bool],
    dist: Callable[[int, int], float],
    near: dict[int, list[tuple[float, int]]],
    min_share: float = 0.05,
    probe: int = 2048,
    min_equal: float = 0.005,
    pool: int = 12,
    slices: Sequence[slice] = (),
) -> list[Merge]:
    """TIES and DARE merges: base + a sparse combination of task vectors.

    Where every merged task vector was trimmed or dropped, the merge equals its base
    exactly, which training never does to a float32 matrix entry; where a single one
    survived, the merge's change from the base is that task vector times a constant
    (its weight, over the density for DARE; 1 for TIES's disjoint mean). A model that
    equals another on part of its entries, and whose change from it is, on at least
    ``min_share`` of the changed entries, one constant times another model's change, for
    at least two models, is their merge. ``exact`` marks the models stored in float32
    (rounding to fewer bits makes equal entries and ratios common by chance). The base
    is looked for among a model's ``2 * pool`` nearest kin (``near``) that equal it on at
    least ``min_equal`` of ``probe`` sampled entries (float32 values never coincide by
    chance that often), the merged models among its ``pool`` nearest. With the tensors'
    ``slices``, a reading in which every changed tensor comes whole from one parent
    (``by_whole_tensors``), or whose base differs from the merge by whole tensors
    (``whole_tensor_step``), is refused.
    """
    core = [i for i in core if exact[i]]
    if len(core) < 4 or raw.shape[1] == 0:
        return []
    cols = np.unique(np.linspace(0, raw.shape[1] - 1, min(probe, raw.shape[1])).astype(int))
    core_set = set(core)
    found = []
    for c in core:
        # the base and the merged models are among a merge's nearest kin
        nearest = [j for _, j in near.get(c, []) if j in core_set][: 2 * pool]
        if len(nearest) < 3:
            continue
        probe_vals = raw[np.ix_(nearest, cols)]
        eq = (probe_vals == raw[c, cols]).mean(axis=1)
        bases = [nearest[j] for j in np.argsort(-eq, kind="stable") if min_equal <= eq[j] < 1][:6]
        nearest = nearest[:pool]
        readings = []
        for b in bases:
            changed = raw[c] != raw[b]
            if changed.all() or not changed.any() or whole_tensor_step(changed, slices):
                continue
            base = raw[b, changed].astype(np.float64)
            tau_c = raw[c, changed].astype(np.float64) - base
            taus = {
                p: raw[p, changed].astype(np.float64) - base for p in nearest if p not in (b, c)
            }
            parents = _cover(tau_c, taus, min_share)
            if len(parents) < 2:
                continue
            if not by_whole_tensors([p.entries for p in parents], changed, slices):
                merge = Merge(
                    c,
                    tuple(p.parent for p in parents),
                    tuple(p.ratio for p in parents),
                    0.0,
                    tuple(dist(c, p.parent) for p in parents),
                    b,
                )
                readings.append((_spread(merge, dist), b, merge))
        # a parent of the merge read as its base explains it as well (the true base then
        # shows up as a parent); the true base is the one nearest the merged models,
        # which each took a single step from it
        if readings:
            found.append(min(readings)[2])
    # a merge and its base read the other way round look alike (each is the other's base
    # plus the same sparse changes); the base is the one nearer the merged fine-tunes,
    # which took a single step from it while the merge rescales or sums their changes
    by_child = {m.child: m for m in found}
    return [
        m
        for m in found
        if not (
            m.base in by_child
            and by_child[m.base].base == m.child
            and (_spread(by_child[m.base], dist), m.base) < (_spread(m, dist), m.child)
        )
    ]
