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
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["Merge", "affine_fit", "find_merges"]


class Merge(NamedTuple):
    child: int
    parents: tuple[int, ...]  # the models merged (positive weight), nearest first
    weights: tuple[float, ...]  # their weights in the fit
    residual: float  # residual of the fit / distance to the nearest parent
    distances: tuple[float, ...]  # child to each parent


def affine_fit(gram: np.ndarray) -> tuple[np.ndarray, float]:
    """Weights w (summing to 1) minimising |c - sum w_i p_i| and the residual norm, from
    the Gram matrix of the differences p_i - c."""
    ones = np.ones(len(gram))
    try:
        u = np.linalg.solve(gram, ones)
    except np.linalg.LinAlgError:
        return np.full(len(gram), np.nan), np.inf
    total = float(ones @ u)
    if not np.isfinite(total) or total <= 0:
        return np.full(len(gram), np.nan), np.inf
    return u / total, float(np.sqrt(1.0 / total))


def _candidate_fit(
    c: int, pool: Sequence[int], gram: np.ndarray, combo: tuple[int, ...], residual_limit: float
) -> Merge | None:
    w, resid = affine_fit(gram[np.ix_(combo, combo)])
    if not np.all(np.isfinite(w)):
        return None
    positive = [k for k in range(len(combo)) if w[k] > 0.02]
    negative = [k for k in range(len(combo)) if w[k] <= 0.02]
    if len(combo) == 2:
        if negative:  # a pair must straddle the child
            return None
    elif len(negative) > 1 or len(positive) < 2 or any(w[k] < -1.5 for k in negative):
        return None  # three points: at most the base below zero (task arithmetic)
    d = [float(np.sqrt(max(gram[combo[k], combo[k]], 0.0))) for k in positive]
    if min(d) <= 0:
        return None
    ratio = resid / min(d)
    if ratio >= residual_limit:
        return None
    order = sorted(range(len(positive)), key=lambda k: (d[k], pool[combo[positive[k]]]))
    return Merge(
        c,
        tuple(pool[combo[positive[k]]] for k in order),
        tuple(float(w[positive[k]]) for k in order),
        ratio,
        tuple(d[k] for k in order),
    )


def find_merges(
    x: np.ndarray,
    core: Sequence[int],
    near: dict[int, list[tuple[float, int]]],
    candidates: int,
    residual_limit: float,
) -> list[Merge]:
    """Merged models among ``core``, each fitted from its ``candidates`` nearest others.

    A three-parent fit is kept only when it beats every two-parent fit by half; merged
    models are never parents of other merges here (chains of merges are rare and would
    otherwise explain each other).
    """
    found: list[Merge] = []
    core_set = set(core)
    for c in core:
        pool = [j for d, j in near.get(c, []) if j in core_set and d > 0][:candidates]
        if len(pool) < 2:
            continue
        v = x[pool] - x[c]
        gram = v @ v.T
        best2 = None
        for combo in itertools.combinations(range(len(pool)), 2):
            m = _candidate_fit(c, pool, gram, combo, residual_limit)
            if m is not None and (best2 is None or m.residual < best2.residual):
                best2 = m
        best3 = None
        for combo in itertools.combinations(range(len(pool)), 3):
            m = _candidate_fit(c, pool, gram, combo, residual_limit)
            if m is not None and (best3 is None or m.residual < best3.residual):
                best3 = m
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
