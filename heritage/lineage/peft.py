"""PEFT LoRA adapters attached to the base they fit.

An adapter (format ``peft-lora``, heritage.formats.peft) holds no full weights: kinship
cannot see it. Its base is found among the full models instead:

* **candidates** are the models that hold every base weight the adapter changes, at the
  shape it expects ([out, in] for each lora pair), and every tensor it saves whole
  (``modules_to_save``), at the same shape;
* a **verified** base: a candidate ``c`` with another candidate ``m`` (a merged copy)
  whose sampled weights are ``c + scale * B @ A`` on every adapted matrix, up to the
  rounding of their storage, equal to ``c`` everywhere else, and holding the adapter's
  saved tensors. The fingerprint samples B on its base weight's rows and A on its
  column window (heritage.fingerprint.aligned_plan), so the sampled update lines up with
  the base's samples entry for entry. The edge is then a proof: confidence 1.0, verified;
* else, with ``modules_to_save``, the candidate whose weights of those modules are
  nearest the adapter's trained ones (a candidate holding them exactly is a merged
  copy, not a base), more confident the clearer its lead over the next;
* else, when exactly one candidate fits, that one, at low confidence;
* otherwise the adapter is left unattached (no edge), and says why.

Plain functions over fingerprints (numpy), no I/O. Names never decide: candidates are
taken in content order (heritage.lineage.engine.content_key) and ties fall to content;
ids break a tie only between models whose sampled weights are identical.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

from heritage.fingerprint import Fingerprint, TensorPrint
from heritage.formats.peft import LoraLayout, LoraModule
from heritage.lineage.evidence import architecture_key, rounding_step

__all__ = [
    "NEAREST_MAX",
    "ONLY_FIT",
    "AdapterInput",
    "Basis",
    "Placement",
    "attach_adapters",
    "fitting",
    "update_size",
    "verify_merge",
]

ONLY_FIT = 0.5  # confidence of the one candidate that fits, nothing else known
NEAREST_MIN, NEAREST_MAX = 0.55, 0.95  # nearest saved modules: from a tie to a clear lead
_EXPLAINED = 0.25  # a merge's residual must be under this share of the difference
_F32_EPS = 2.0**-24


class Basis(StrEnum):
    """Why an adapter was attached where it was, or not at all."""

    VERIFIED = "verified"  # a merged copy equals the base plus the adapter's update
    NEAREST_SAVED = "nearest_saved"  # its modules_to_save weights are nearest the base's
    ONLY_FIT = "only_fit"  # the one model its shapes fit
    AMBIGUOUS = "ambiguous"  # several models fit and nothing tells them apart: no edge
    NO_FIT = "no_fit"  # no indexed model holds the weights it changes: no edge
    KEPT = "kept"  # carried from the previous index (its candidates did not change)


@dataclass(frozen=True)
class AdapterInput:
    """One adapter as lineage sees it: an id, its fingerprint and its LoRA layout."""

    id: str
    fingerprint: Fingerprint
    layout: LoraLayout


@dataclass(frozen=True)
class Placement:
    """Where one adapter hangs: its base (None: unattached), and how sure that is."""

    adapter: str
    base: str | None
    basis: Basis
    confidence: float
    architecture: str  # the adapter's own architecture key (its family when unattached)
    distance: float = 0.0  # the update's size relative to the base's adapted weights
    verified: bool = False
    merged: tuple[str, ...] = ()  # merged copies that verify it, in content order
    candidates: int = 0  # models whose shapes fit
    rank: int = 0  # the largest rank among its lora pairs

    @property
    def attached(self) -> bool:
        return self.base is not None


def fitting(layout: LoraLayout, fp: Fingerprint) -> bool:
    """Whether a model's tensors hold every base weight the adapter needs, at its shape."""
    return layout.fits({name: t.shape for name, t in fp.tensors.items()})


def _rows_in(t: TensorPrint, rows: np.ndarray) -> np.ndarray:
    return t.values[np.searchsorted(t.rows, rows)].astype(np.float64)


@dataclass
class _Update:
    """One lora pair's update ``scale * B @ A`` on the sampled rows of B (its base
    weight's rows) and the base weight's column window."""

    base: str
    rows: np.ndarray
    cols: tuple[int, int]
    delta: np.ndarray  # (len(rows), window)
    slack: np.ndarray  # float32 rounding the product may carry, per entry


def _updates(adapter: AdapterInput) -> list[_Update]:
    """The adapter's sampled update per aligned lora pair (transposed pairs and DoRA
    adapters have none: their merge is not ``W + scale * B @ A`` on these entries)."""
    layout, fp = adapter.layout, adapter.fingerprint
    if layout.config.use_dora:
        return []
    out = []
    for m in layout.modules:
        a, b = fp.tensors.get(m.a), fp.tensors.get(m.b)
        if m.transposed or a is None or b is None or not _aligned(m, a, b):
            continue
        scale = layout.config.scale(m.rank, m.module)
        av, bv = a.values.astype(np.float64), b.values.astype(np.float64)
        delta = scale * (bv @ av)
        slack = 4 * m.rank * _F32_EPS * abs(scale) * (np.abs(bv) @ np.abs(av))
        out.append(_Update(m.base, b.rows, a.cols, delta, slack))
    return out


def _aligned(m: LoraModule, a: TensorPrint, b: TensorPrint) -> bool:
    """A sampled on every rank row (whole), B on whole rows of rank columns."""
    return (
        a.values.shape[0] == m.rank
        and np.array_equal(a.rows, np.arange(m.rank))
        and b.cols == (0, m.rank)
        and b.values.shape[1] == m.rank
    )


def update_size(updates: Sequence[_Update], base: Fingerprint) -> float:
    """How far the adapter moves a base: the norm of its sampled update over the norm
    of the base's sampled weights it changes (0 when none lines up)."""
    num = den = 0.0
    for u in updates:
        w = base.tensors.get(u.base)
        if w is None or w.cols != u.cols:
            continue
        rows = np.intersect1d(w.rows, u.rows)
        if not rows.size:
            continue
        num += float(np.sum(u.delta[np.searchsorted(u.rows, rows)] ** 2))
        den += float(np.sum(_rows_in(w, rows) ** 2))
    return float(np.sqrt(num / den)) if den > 0 else 0.0


def _within(a: np.ndarray, b: np.ndarray, step: float, extra: np.ndarray | float = 0.0) -> bool:
    """Equal up to storage rounding (relative ``step``), a floor near zero and ``extra``."""
    floor = 1e-6 * float(np.abs(b).max(initial=0.0)) + 1e-30
    with np.errstate(invalid="ignore"):
        return bool(np.all(np.abs(a - b) <= step * (np.abs(a) + np.abs(b)) + floor + extra))


def verify_merge(
    adapter: AdapterInput, updates: Sequence[_Update], base: Fingerprint, merged: Fingerprint
) -> float | None:
    """Whether ``merged`` is ``base`` with the adapter merged in: on every adapted weight
    sampled alike, ``merged = base + scale * B @ A`` up to rounding, and the update
    explains the difference; elsewhere ``merged = base`` up to rounding; the saved
    tensors are the adapter's. Returns the residual's share of the difference (lower
    is better), or None when not shown."""
    layout = adapter.layout
    touched = layout.touched_modules
    saved = {s.base: s for s in layout.saved}
    resid = diff = 0.0
    compared = 0
    for u in updates:
        w, m = base.tensors.get(u.base), merged.tensors.get(u.base)
        if w is None or m is None or w.cols != u.cols or m.cols != u.cols:
            continue
        rows = np.intersect1d(np.intersect1d(w.rows, m.rows), u.rows)
        if not rows.size:
            continue
        k = np.searchsorted(u.rows, rows)
        wv, mv, dv = _rows_in(w, rows), _rows_in(m, rows), u.delta[k]
        step = 2 * rounding_step(w.dtype, m.dtype)
        if not _within(mv, wv + dv, step, u.slack[k] + step * np.abs(dv)):
            return None
        resid += float(np.sum((mv - wv - dv) ** 2))
        diff += float(np.sum((mv - wv) ** 2))
        compared += 1
    if not compared or diff == 0 or resid > _EXPLAINED**2 * diff:
        return None
    for name, w in base.tensors.items():
        m = merged.tensors.get(name)
        module = name.rsplit(".", 1)[0]
        if m is None or not (w.is_float and m.is_float) or module in touched:
            continue
        if not np.array_equal(w.rows, m.rows) or w.cols != m.cols:
            continue
        if name in saved:
            s = adapter.fingerprint.tensors.get(saved[name].name)
            if s is None or s.cols != m.cols or not np.array_equal(s.rows, m.rows):
                continue
            w = s  # the merged model holds the adapter's saved weights
        step = rounding_step(w.dtype, m.dtype)
        if not _within(m.values.astype(np.float64), w.values.astype(np.float64), step):
            return None
    return float(np.sqrt(resid / diff))


def _saved_distance(adapter: AdapterInput, fp: Fingerprint) -> tuple[float, bool] | None:
    """(relative distance, held exactly) between the adapter's trained saved tensors and
    the candidate's; None when the adapter saves no trained module."""
    num = den = 0.0
    exact, any_saved = True, False
    for s in adapter.layout.saved:
        if not s.trained:
            continue
        mine, theirs = adapter.fingerprint.tensors.get(s.name), fp.tensors.get(s.base)
        if mine is None or theirs is None or mine.cols != theirs.cols:
            continue
        rows = np.intersect1d(mine.rows, theirs.rows)
        if not rows.size:
            continue
        a, b = _rows_in(mine, rows), _rows_in(theirs, rows)
        num += float(np.sum((a - b) ** 2))
        den += float(np.sum(a**2))
        exact = exact and _within(b, a, rounding_step(mine.dtype, theirs.dtype))
        any_saved = True
    if not any_saved:
        return None
    return (float(np.sqrt(num / den)) if den > 0 else float(np.sqrt(num))), exact


def _content_order(models: Sequence[tuple[str, Fingerprint]]) -> list[tuple[str, Fingerprint]]:
    from heritage.lineage.engine import content_key  # the engine imports this module

    keys = {mid: content_key(fp) for mid, fp in models}
    return sorted(models, key=lambda m: (keys[m[0]], m[0]))


@dataclass
class _Candidates:
    ids: list[str] = field(default_factory=list)
    fps: list[Fingerprint] = field(default_factory=list)


def _screen(updates: Sequence[_Update], fps: Sequence[Fingerprint]) -> list[tuple[int, int]]:
    """Pairs (base, merged) whose samples of the largest update's weight differ by about
    that update: a cheap first test before ``verify_merge`` checks every tensor."""
    if len(fps) < 2 or not updates:
        return []
    u = max(updates, key=lambda u: float(np.sum(u.delta**2)))
    groups: dict[tuple, list[int]] = {}
    for i, fp in enumerate(fps):
        w = fp.tensors[u.base]
        rows = np.intersect1d(w.rows, u.rows)
        if w.cols == u.cols and rows.size:
            groups.setdefault((w.cols, rows.tobytes()), []).append(i)
    pairs = []
    for (_, raw), idx in sorted(groups.items(), key=lambda g: g[1][0]):
        rows = np.frombuffer(raw, dtype=np.int64)
        delta = u.delta[np.searchsorted(u.rows, rows)].ravel()
        v = np.stack([_rows_in(fps[i].tensors[u.base], rows).ravel() for i in idx])
        # |v_m - (v_c + delta)| for every (c, m), from norms and dot products
        p = v + delta
        d2 = (v**2).sum(1)[None, :] + (p**2).sum(1)[:, None] - 2 * p @ v.T
        bound = 0.5 * float(np.sqrt(np.sum(delta**2)))
        for ci, mi in zip(*np.nonzero(d2 <= bound**2), strict=True):
            if ci != mi:
                pairs.append((idx[int(ci)], idx[int(mi)]))
    return sorted(pairs)


def _place(adapter: AdapterInput, cands: _Candidates) -> Placement:
    layout = adapter.layout
    common = {
        "adapter": adapter.id,
        "architecture": architecture_key(adapter.fingerprint),
        "candidates": len(cands.ids),
        "rank": max(m.rank for m in layout.modules),
    }
    if not cands.ids:
        return Placement(base=None, basis=Basis.NO_FIT, confidence=0.0, **common)
    updates = _updates(adapter)

    def attach(i: int, basis: Basis, confidence: float, **extra: object) -> Placement:
        size = round(update_size(updates, cands.fps[i]), 6)
        conf = round(float(min(1.0, max(0.0, confidence))), 4)
        return Placement(
            base=cands.ids[i], basis=basis, confidence=conf, distance=size, **common, **extra
        )

    verified: dict[int, list[tuple[float, int]]] = {}
    for c, m in _screen(updates, cands.fps):
        share = verify_merge(adapter, updates, cands.fps[c], cands.fps[m])
        if share is not None:
            verified.setdefault(c, []).append((share, m))
    if verified:
        best = min(verified, key=lambda c: (min(s for s, _ in verified[c]), c))
        merged = tuple(cands.ids[m] for _, m in sorted(verified[best], key=lambda x: x[1]))
        return attach(best, Basis.VERIFIED, 1.0, verified=True, merged=merged)
    saved = [_saved_distance(adapter, fp) for fp in cands.fps]
    if any(s is not None for s in saved):
        # a candidate holding the trained modules exactly is a merged copy, not a base
        scored = [(s[0], i) for i, s in enumerate(saved) if s is not None and not s[1]]
        if not scored:
            return Placement(base=None, basis=Basis.AMBIGUOUS, confidence=0.0, **common)
        scored.sort()
        if len(scored) == 1:
            return attach(scored[0][1], Basis.NEAREST_SAVED, ONLY_FIT)
        (d1, i1), (d2, _) = scored[0], scored[1]
        lead = 1.0 - d1 / d2 if d2 > 0 else 0.0
        return attach(i1, Basis.NEAREST_SAVED, NEAREST_MIN + (NEAREST_MAX - NEAREST_MIN) * lead)
    if len(cands.ids) == 1:
        return attach(0, Basis.ONLY_FIT, ONLY_FIT)
    return Placement(base=None, basis=Basis.AMBIGUOUS, confidence=0.0, **common)


def attach_adapters(
    adapters: Sequence[AdapterInput], models: Sequence[tuple[str, Fingerprint]]
) -> list[Placement]:
    """Each adapter's placement among ``models`` (id, fingerprint: the full models), in
    the adapters' id order. The result does not depend on the ids or the order of the
    inputs, except between models whose sampled weights are identical."""
    ordered = _content_order(list(models))
    out = []
    for adapter in sorted(adapters, key=lambda a: a.id):
        cands = _Candidates()
        for mid, fp in ordered:
            if fitting(adapter.layout, fp):
                cands.ids.append(mid)
                cands.fps.append(fp)
        out.append(_place(adapter, cands))
    return out
