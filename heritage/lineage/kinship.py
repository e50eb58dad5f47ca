"""Kinship: which models of one architecture group descend from a common ancestor.

Two independently initialised models have centred weights that correlate at about 0
(± 1/sqrt(entries)); any fine-tune, adapter, merge or copy keeps most of its parent's
weights, so kin correlate far above that. Kinship is linked along each model's measured
neighbours and closed transitively (union-find).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from networkx.utils import UnionFind

__all__ = ["Family", "family_id", "find_families", "kin_confidence", "pair_cosines"]


@dataclass(frozen=True)
class Family:
    """Members (indices into the group, in the group's content order) of one family.

    ``confidence[k]`` is how sure member ``k`` belongs: how far its closest kin's
    correlation lies above what unrelated models show.
    """

    id: str
    members: tuple[int, ...]
    confidence: tuple[float, ...]


def pair_cosines(x: np.ndarray, pairs: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Cosine of each pair's evidence vectors from their norms and distance."""
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    cos = np.zeros(len(pairs))
    if not len(pairs):
        return cos
    a, b = norms[pairs[:, 0]], norms[pairs[:, 1]]
    ok = (a > 0) & (b > 0)
    cos[ok] = (a[ok] ** 2 + b[ok] ** 2 - dist[ok] ** 2) / (2 * a[ok] * b[ok])
    return cos


def _logistic(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, x))))


def family_id(member_ids: Sequence[str]) -> str:
    """A family's id: a hash of its sorted member ids (a label only, it decides nothing)."""
    digest = hashlib.sha256("\n".join(sorted(member_ids)).encode())
    return "fam-" + digest.hexdigest()[:12]


def kin_confidence(best_cosine: float, kin_cosine: float, entries: int) -> float:
    """How sure a member belongs to its family: how far its closest kin's correlation
    lies above ``kin_cosine``, in units of what unrelated models show (1/sqrt(entries))."""
    null_sd = 1.0 / math.sqrt(max(entries, 1))
    return round(_logistic((best_cosine - kin_cosine) / (4 * null_sd + 1e-3)), 4)


def find_families(
    ids: Sequence[str],
    x: np.ndarray,
    pairs: np.ndarray,
    dist: np.ndarray,
    kin_cosine: float,
) -> list[Family]:
    """Group the rows of ``x`` into families (kin when cosine > ``kin_cosine``, or equal).

    Families come out in the order of their first member; the family id hashes the
    sorted member ids (a label only: it never decides anything).
    """
    n = x.shape[0]
    cos = pair_cosines(x, pairs, dist)
    uf = UnionFind(range(n))
    for (i, j), c, d in zip(pairs, cos, dist, strict=True):
        if c > kin_cosine or d == 0:
            uf.union(int(i), int(j))
    root = [uf[i] for i in range(n)]
    best = np.full(n, -1.0)
    for (i, j), c in zip(pairs, cos, strict=True):
        if root[i] == root[j]:
            best[i] = max(best[i], c)
            best[j] = max(best[j], c)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(root[i], []).append(i)
    out = []
    for members in sorted(groups.values()):
        conf = tuple(
            1.0 if len(members) == 1 else kin_confidence(best[i], kin_cosine, x.shape[1])
            for i in members
        )
        out.append(Family(family_id([ids[i] for i in members]), tuple(members), conf))
    return out
