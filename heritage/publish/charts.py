"""Statistics charts rendered server-side as small SVGs (no script, no external assets).

Each chart comes with the rows it was drawn from, which pages also show as a table, so
the numbers are readable without the picture.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from heritage.publish.data import Site
from heritage.publish.fmt import grouped

WIDTH = 560
_PARAM_EDGES = [10**k for k in range(3, 15, 1)]  # 1K, 10K, ... 100T
_SIZE_BUCKETS = [(1, 1), (2, 2), (3, 5), (6, 10), (11, 20), (21, 50), (51, 100), (101, 200)]


@dataclass
class Chart:
    """A drawn chart and its data (label, value) for the table equivalent."""

    key: str
    title: str
    description: str
    svg: Markup
    rows: list[tuple[str, int]]
    unit: str = "models"


def _short(n: int) -> str:
    for size, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if n >= size:
            return f"{n // size}{suffix}"
    return str(n)


def param_buckets(values: list[int]) -> list[tuple[str, int]]:
    """Models per decade of parameter count, from the smallest to the largest non-empty."""
    labels = [f"< {_short(_PARAM_EDGES[0])}"]
    labels += [f"{_short(lo)}–{_short(hi)}" for lo, hi in itertools.pairwise(_PARAM_EDGES)]
    labels.append(f"≥ {_short(_PARAM_EDGES[-1])}")
    counts = [0] * len(labels)
    for v in values:
        counts[sum(1 for edge in _PARAM_EDGES if v >= edge)] += 1
    used = [i for i, c in enumerate(counts) if c]
    if not used:
        return []
    return list(zip(labels, counts, strict=True))[used[0] : used[-1] + 1]


def size_buckets(sizes: list[int]) -> list[tuple[str, int]]:
    """Families per size range."""
    rows = []
    for lo, hi in _SIZE_BUCKETS:
        label = str(lo) if lo == hi else f"{lo}–{hi}"
        rows.append((label, sum(1 for s in sizes if lo <= s <= hi)))
    rows.append((f"> {_SIZE_BUCKETS[-1][1]}", sum(1 for s in sizes if s > _SIZE_BUCKETS[-1][1])))
    used = [i for i, (_, c) in enumerate(rows) if c]
    return rows[: used[-1] + 1] if used else []


def time_buckets(dates: list[datetime]) -> list[tuple[str, int]]:
    """Models per day, month or year (whichever keeps the chart readable), gaps included."""
    if not dates:
        return []
    first, last = min(dates), max(dates)
    span = (last - first).days
    counts: Counter = Counter()
    if span <= 45:
        for d in dates:
            counts[d.strftime("%Y-%m-%d")] += 1
        keys, day = [], first.date()
        while day <= last.date():
            keys.append(day.isoformat())
            day += timedelta(days=1)
    elif span <= 3 * 366:
        for d in dates:
            counts[d.strftime("%Y-%m")] += 1
        keys, (y, m) = [], (first.year, first.month)
        while (y, m) <= (last.year, last.month):
            keys.append(f"{y:04d}-{m:02d}")
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    else:
        for d in dates:
            counts[f"{d.year:04d}"] += 1
        keys = [f"{y:04d}" for y in range(first.year, last.year + 1)]
    return [(k, counts[k]) for k in keys]


def hbar_svg(rows: list[tuple[str, int]], title: str, label_w: int = 150) -> Markup:
    """Horizontal bars, one per row, value printed after the bar."""
    row_h, top = 26, 8
    height = top * 2 + row_h * max(len(rows), 1)
    bar_w = WIDTH - label_w - 70
    peak = max((v for _, v in rows), default=0) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i, (label, value) in enumerate(rows):
        y = top + i * row_h
        w = 0 if value == 0 else max(2.0, bar_w * value / peak)
        parts.append(
            f'<text class="lbl" x="{label_w - 8}" y="{y + 17}" text-anchor="end">'
            f"{escape(label)}</text>"
            f'<rect class="bar" x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 8}" '
            f'rx="2"/><text class="val" x="{label_w + w + 6:.1f}" y="{y + 17}">'
            f"{grouped(value)}</text>"
        )
    if not rows:
        parts.append(f'<text class="lbl" x="8" y="{top + 17}">No data yet</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def timeline_svg(rows: list[tuple[str, int]], title: str) -> Markup:
    """Columns per period plus the running total as a line, on one count axis."""
    height, left, right, top, bottom = 240, 48, 16, 12, 36
    plot_w, plot_h = WIDTH - left - right, height - top - bottom
    totals, running = [], 0
    for _, v in rows:
        running += v
        totals.append(running)
    peak = max(totals, default=0) or 1
    step = _nice_step(peak)
    top_tick = step * math.ceil(peak / step)
    n = max(len(rows), 1)
    slot = plot_w / n

    def y_of(v: float) -> float:
        return top + plot_h - plot_h * v / top_tick

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    tick = 0
    while tick <= top_tick:
        y = y_of(tick)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{WIDTH - right}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="lbl" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{_short(tick)}</text>"
        )
        tick += step
    for i, (_, v) in enumerate(rows):
        if v:
            bar = min(max(slot * 0.7, 1.0), 40.0)
            x = left + (i + 0.5) * slot - bar / 2
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{y_of(v):.1f}" width="{bar:.1f}" '
                f'height="{top + plot_h - y_of(v):.1f}"/>'
            )
    if rows:
        points = " ".join(
            f"{left + (i + 0.5) * slot:.1f},{y_of(t):.1f}" for i, t in enumerate(totals)
        )
        parts.append(f'<polyline class="line" points="{points}"/>')
        if len(rows) <= 40:
            parts.extend(
                f'<circle class="dot" cx="{left + (i + 0.5) * slot:.1f}" cy="{y_of(t):.1f}" r="3"/>'
                for i, t in enumerate(totals)
            )
        label_every = max(1, math.ceil(len(rows) / 6))
        for i, (label, _) in enumerate(rows):
            if i % label_every == 0 or i == len(rows) - 1:
                parts.append(
                    f'<text class="lbl" x="{left + (i + 0.5) * slot:.1f}" y="{height - 14}" '
                    f'text-anchor="middle">{escape(label)}</text>'
                )
    else:
        parts.append(f'<text class="lbl" x="{left + 8}" y="{top + 20}">No data yet</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice_step(peak: float) -> int:
    raw = peak / 4
    mag = 10 ** math.floor(math.log10(raw)) if raw >= 1 else 1
    for k in (1, 2, 5, 10):
        if k * mag >= raw:
            return int(k * mag)
    return int(10 * mag)  # pragma: no cover


def site_charts(site: Site) -> list[Chart]:
    """The statistics page's charts."""
    params = param_buckets([m.n_params for m in site.models if m.n_params is not None])
    sizes = size_buckets([f.n_models for f in site.families])
    relations = sorted(Counter(e.relation for e in site.edges).items(), key=lambda kv: -kv[1])
    dates = time_buckets([m.indexed_at for m in site.models if m.indexed_at is not None])
    formats = Counter(m.format or "unknown" for m in site.models).most_common(12)
    names = {
        "agrees": "agrees",
        "disagrees": "disagrees",
        "unknown_base": "declared base not indexed",
        "unverified": "not fingerprinted",
        "compatible": "adapter fits the declared base",
        "incompatible": "adapter does not fit the declared base",
        "proposed": "nothing declared, base proposed",
    }
    counts = site.agreement_counts()
    agreement = [(names[k], counts.get(k, 0)) for k in names if counts.get(k, 0)]
    return [
        Chart(
            "parameters",
            "Parameter distribution",
            "Models per decade of parameter count.",
            hbar_svg(params, "Models per parameter range"),
            params,
        ),
        Chart(
            "family-sizes",
            "Family sizes",
            "Families by number of member models.",
            hbar_svg(sizes, "Families per size range", label_w=90),
            sizes,
            unit="families",
        ),
        Chart(
            "relations",
            "Relations",
            "Lineage edges by how the child was derived from its parent.",
            hbar_svg(relations, "Edges per relation", label_w=110),
            relations,
            unit="edges",
        ),
        Chart(
            "indexed",
            "Models indexed over time",
            "Columns: models indexed per period. Line: running total.",
            timeline_svg(dates, "Models indexed over time"),
            dates,
        ),
        Chart(
            "agreement",
            "Declared versus inferred lineage",
            "Models whose card declares a base model, against the parents found in the weights.",
            hbar_svg(agreement, "Declared versus inferred lineage", label_w=200),
            agreement,
        ),
        Chart(
            "formats",
            "Checkpoint formats",
            "Models per checkpoint format.",
            hbar_svg(formats, "Models per format", label_w=150),
            formats,
        ),
    ]
