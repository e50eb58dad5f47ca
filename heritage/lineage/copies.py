"""Copies: exact duplicates and lower-precision (quantized) copies of a family member.

Duplicates have equal sampled values in every tensor; the weights cannot tell which is
the original, so the earliest upload (when times are known) or the first in content
order stands for the class. A model stored with fewer bits of precision that lies within
rounding distance of a higher-precision member is that member's quantized leaf; when
its storage type rounds deterministically (F16, BF16, Q8_0, Q4_0, ...), the member whose
weights, rounded the same way, reproduce it exactly is its source, at any distance, and
the edge is verified (``heritage.lineage.verify``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np
from networkx.utils import UnionFind

from heritage.fingerprint import Fingerprint
from heritage.lineage.neighbours import PairDistances
from heritage.lineage.types import Relation
from heritage.lineage.verify import Verdict, checkable, verdict

# nearest candidate sources a checkable copy is re-quantized against
VERIFY_CANDIDATES = 8

__all__ = ["Copy", "CopiesResult", "find_copies", "identical"]


class Copy(NamedTuple):
    source: int
    copy: int
    relation: Relation  # duplicate or quantized
    confidence: float
    distance: float
    # quantized copies: True when rounding the source reproduces the copy exactly
    # (heritage.lineage.verify), False when the copy is unfaithful to it (a block moved
    # further than rounding can), None when neither could be shown
    verified: bool | None = None


class CopiesResult(NamedTuple):
    copies: list[Copy]
    core: list[int]  # members that are neither duplicates nor quantized copies


def identical(a: Fingerprint, b: Fingerprint) -> bool:
    """Same sampled values in every tensor (float comparison after dtype conversion)."""
    if a.tensors.keys() != b.tensors.keys():
        return False
    for name, ta in a.tensors.items():
        tb = b.tensors[name]
        if ta.shape != tb.shape or not np.array_equal(ta.values, tb.values, equal_nan=True):
            return False
    return True


def find_copies(
    fps: Sequence[Fingerprint],
    members: Sequence[int],
    zero_pairs: Iterable[tuple[int, int]],
    dist: PairDistances,
    times: Sequence[float | None],
    bits: Sequence[int],
    tolerance: Sequence[tuple[int, float]],
) -> CopiesResult:
    """Duplicates collapse onto one representative; quantized copies hang off their source.

    ``zero_pairs`` are the members' pairs at evidence distance 0 (duplicate candidates);
    ``bits`` is each model's storage precision (heritage.lineage.precision).
    ``tolerance`` maps storage precision (bits, at most) to the largest evidence distance
    rounding can explain at that precision.
    """
    uf = UnionFind(members)
    for i, j in zero_pairs:
        if identical(fps[i], fps[j]):
            uf.union(i, j)
    copies: list[Copy] = []
    reps: list[int] = []
    for cls in sorted(sorted(s) for s in uf.to_sets()):
        timed = [i for i in cls if times[i] is not None]
        rep = min(timed, key=lambda i: (times[i], i)) if timed else cls[0]
        reps.append(rep)
        copies += [Copy(rep, o, Relation.DUPLICATE, 1.0, 0.0) for o in cls if o != rep]
    reps.sort()
    quantized: set[int] = set()
    proven: dict[int, int] = {}  # verified copy -> its source
    for c in sorted(reps, key=lambda i: (bits[i], i)):
        tol = next((t for b, t in sorted(tolerance) if bits[c] <= b), None)
        if tol is None:
            continue
        # rounding proves a source of equal precision too (BF16 rounded to F16): the
        # check needs the source in another storage type, so it never runs both ways
        near = sorted(
            (d, p)
            for p in reps
            if p != c and p not in quantized and bits[p] >= bits[c]
            if (d := dist.measured(p, c)) is not None
        )
        nearest = [(d, p) for d, p in near if bits[p] > bits[c]]
        found = _verified_source(fps, c, near)
        if found is None:
            found = _copy_source(fps, c, reps, bits, proven, dist)
        if found is not None:
            d, p = found
            copies.append(Copy(p, c, Relation.QUANTIZED, 1.0, d, verified=True))
            quantized.add(c)
            proven[c] = p
            continue
        if nearest and nearest[0][0] <= tol:
            d, p = nearest[0]
            conf = 0.5 + 0.5 * max(0.0, 1.0 - d / tol)
            unfaithful = checkable(fps[c]) and verdict(fps[c], fps[p]) == Verdict.UNFAITHFUL
            copies.append(Copy(p, c, Relation.QUANTIZED, conf, d, False if unfaithful else None))
            quantized.add(c)
    return CopiesResult(copies, [i for i in reps if i not in quantized])


def _copy_source(
    fps: Sequence[Fingerprint],
    c: int,
    reps: Sequence[int],
    bits: Sequence[int],
    proven: dict[int, int],
    dist: PairDistances,
) -> tuple[float, int] | None:
    """When no member that is not a copy reproduces ``c``: the nearest verified copy (of
    at least ``c``'s precision) that does, while the source it was proven from does not.
    An F16 export of a BF16 copy is that copy's, not the F32 original's; a copy that its
    copy's source also reproduces stays with that source (the first pass found it)."""
    if not checkable(fps[c]):
        return None
    near = sorted(
        (d, p)
        for p in reps
        if p in proven and p != c and bits[p] >= bits[c]
        if (d := dist.measured(p, c)) is not None
    )
    for d, p in near[:VERIFY_CANDIDATES]:
        reproduces = verdict(fps[c], fps[p]) == Verdict.VERIFIED
        if reproduces and verdict(fps[c], fps[proven[p]]) != Verdict.VERIFIED:
            return d, p
    return None


def _verified_source(
    fps: Sequence[Fingerprint], c: int, nearest: Sequence[tuple[float, int]]
) -> tuple[float, int] | None:
    """The nearest of ``c``'s candidate sources whose rounding reproduces it exactly."""
    if not checkable(fps[c]):
        return None
    for d, p in nearest[:VERIFY_CANDIDATES]:
        if verdict(fps[c], fps[p]) == Verdict.VERIFIED:
            return d, p
    return None
