"""Small HTML fragments repeated thousands of times, built in Python rather than Jinja macros.

A catalog of 10,000 models renders the same row, badge and table cells tens of thousands
of times; Jinja macro calls dominate publishing time there. These helpers escape every
value from the index with ``markupsafe.escape`` exactly as autoescape would.
"""

from __future__ import annotations

from functools import lru_cache

from markupsafe import Markup, escape

from heritage.lineage.types import Relation
from heritage.publish.data import Edge, Family, Model
from heritage.publish.fmt import day, grouped, human_count, number

# Relations site.css colours (class rel-NAME): every Relation, and "root" for family roots.
KNOWN_RELATIONS = frozenset({*(r.value for r in Relation), "root"})
_DASH = Markup('<span class="muted">–</span>')
_UNCERTAIN = Markup(
    ' <span class="dir-uncertain" title="The weights cannot tell which of these two models '
    'is the parent">direction uncertain</span>'
)


@lru_cache(maxsize=256)
def relation_badge(name: str | None) -> Markup:
    """A relation as a coloured pill; a dash when there is none."""
    if not name:
        return _DASH
    cls = f" rel-{name}" if name in KNOWN_RELATIONS else ""
    return Markup(f'<span class="rel{cls}">{escape(name)}</span>')


def direction_note(edge: Edge | None) -> Markup:
    """A small "direction uncertain" label (with a leading space) after an edge the weights
    could not orient; nothing for any other edge."""
    return _UNCERTAIN if edge is not None and edge.uncertain else Markup("")


_VERIFIED = Markup(
    ' <span class="proof verified" title="Rounding the parent\'s weights the way this copy '
    'stores them reproduces it exactly: proven, not estimated">verified</span>'
)
_UNFAITHFUL = Markup(
    ' <span class="proof unfaithful" title="Nearest to this parent, but some weights lie '
    'further from it than rounding can move them: changed during quantization?">'
    "unfaithful copy</span>"
)


def proof_note(edge: Edge | None) -> Markup:
    """A "verified" badge (with a leading space) after a copy proven by re-rounding its
    parent, an "unfaithful copy" warning after one that rounding cannot explain, and
    nothing after any other edge."""
    if edge is None or edge.verified is None:
        return Markup("")
    return _VERIFIED if edge.verified else _UNFAITHFUL


def family_badge(family: Family, root: str) -> Markup:
    """The family's name as a link with its colour stripe."""
    return Markup(
        f'<a class="badge fam fc{family.colour}" href="{root}families/{family.slug}.html" '
        f'title="Family of {family.n_models} models">{escape(family.label)}</a>'
    )


def model_row(m: Model, root: str) -> Markup:
    """One catalog table row (the script in static/catalog.js builds the same markup)."""
    date = day(m.date)
    fmt_, src = escape(m.format or "unknown"), escape(m.source or "unknown")
    rel = f"{escape(m.relation)} · " if m.relation else ""
    fam_sub = f'<span class="sub-fam">{escape(m.family.label)} · </span>' if m.family else ""
    failed = ' <span class="badge bad">failed</span>' if m.status == "failed" else ""
    fam = family_badge(m.family, root) if m.family else _DASH
    layers = m.n_layers if m.n_layers is not None else "–"
    return Markup(
        f'<tr><td class="name"><a href="{root}models/{m.slug}.html">{escape(m.name)}</a>{failed}'
        f'<span class="sub">{fam_sub}{rel}{fmt_} · {src} · {date}</span></td>'
        f'<td class="num">{human_count(m.n_params)}</td>'
        f'<td class="num opt">{layers}</td><td class="opt-s">{fam}</td>'
        f'<td class="opt">{relation_badge(m.relation)}</td>'
        f'<td class="opt">{fmt_}</td><td class="opt">{src}</td>'
        f'<td class="opt nowrap">{date}</td></tr>\n'
    )


def tensor_rows(tensors: list[tuple]) -> Markup:
    """The rows of a model's per-tensor statistics table."""
    out = []
    for name, dtype, shape, n, mean, std, kurt, rms, absmax, unique in tensors:
        dims = ", ".join(str(d) for d in shape or [])
        out.append(
            f'<tr><td class="break"><code>{escape(name)}</code></td><td>{escape(dtype or "–")}'
            f'</td><td class="nowrap">[{dims}]</td><td class="num">{grouped(n)}</td>'
            f'<td class="num">{number(mean)}</td><td class="num">{number(std)}</td>'
            f'<td class="num">{number(kurt)}</td><td class="num">{number(rms)}</td>'
            f'<td class="num">{number(absmax)}</td><td class="num">{number(unique, 2)}</td></tr>\n'
        )
    return Markup("".join(out))
