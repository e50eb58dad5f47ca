"""Number, size and date formatting shared by pages, charts and the search index."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))


def human_count(n: int | float | None) -> str:
    """``7241732096`` -> ``7.24B``; small numbers as they are; ``None`` -> ``–``."""
    if n is None:
        return "–"
    for size, suffix in _SUFFIXES:
        if abs(n) >= size:
            value = n / size
            digits = 2 if value < 10 else 1 if value < 100 else 0
            return f"{value:.{digits}f}{suffix}"
    return f"{int(n)}" if float(n).is_integer() else f"{n:.2f}"


def human_bytes(n: int | None) -> str:
    """``91037`` -> ``88.9 KiB``."""
    if n is None:
        return "–"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def grouped(n: int | None) -> str:
    """``22026`` -> ``22,026``."""
    return "–" if n is None else f"{n:,}"


def number(x: float | None, digits: int = 4) -> str:
    """A statistic in a table: short, never ``nan`` surprises."""
    if x is None:
        return "–"
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e5):
        return f"{x:.{max(digits - 1, 1)}e}"
    return f"{x:.{digits}g}"


def confidence(x: float | None) -> str:
    """Confidence in [0, 1] with two decimals."""
    return "–" if x is None else f"{x:.2f}"


def day(t: datetime | None) -> str:
    """``2026-11-26``."""
    return "–" if t is None else t.strftime("%Y-%m-%d")


def minute(t: datetime | None) -> str:
    """``2026-11-26 17:47 UTC``."""
    return "–" if t is None else t.strftime("%Y-%m-%d %H:%M UTC")


def iso(t: datetime | None) -> str | None:
    """ISO 8601 (UTC, seconds) for JSON, ``None`` stays ``None``."""
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: those become null (recursively)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value
