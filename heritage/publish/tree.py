"""Family trees drawn server-side as inline SVG, with a text list equivalent.

Layout, left to right: a model's column is the longest path from the family's sources
(so a merge always sits right of both parents), its row comes from a tidy layout of the
*primary* tree (each model under its most confident parent), so fans stack vertically
and the primary edges never cross. Extra parents (merges) are drawn as additional edges.

Families larger than :data:`PAGE_SIZE` are split into pages along a depth-first walk of
the primary tree, so each page holds whole subtrees where it can. A page also shows, as
"context", the parent of each subtree it starts with; a model whose children continue on
another page links there.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from markupsafe import Markup, escape

from heritage.lineage.types import Relation
from heritage.publish.data import Edge, Family, Model
from heritage.publish.fmt import confidence, human_count

PAGE_SIZE = 200  # models drawn per tree page
NODE_W, NODE_H = 210, 30
GAP_X = 140  # space between columns: room for the edge labels
ROW_H = 42
PAD = 16
MORE_W = 130  # room right of the last column for "+N on page k" links


@dataclass
class TreePage:
    """One page of a family's tree."""

    number: int
    total: int
    filename: str  # inside families/
    members: list[Model]
    context: list[Model]
    svg: Markup
    outline: Markup


def page_filename(family_slug: str, number: int) -> str:
    """``{slug}.html`` for the first page, ``{slug}-p{n}.html`` after."""
    return f"{family_slug}.html" if number == 1 else f"{family_slug}-p{number}.html"


_EM: dict[str, float] = {}
for _c in "ijlIft.,:;|!'()[]1 /-":
    _EM[_c] = 0.34
for _c in "mwMW@%":
    _EM[_c] = 0.86
for _c in "ABCDEFGHJKLNOPQRSTUVXYZ023456789":
    _EM[_c] = 0.64


def text_width(text: str, size: float = 13.0) -> float:
    """Rough width in px of text in a proportional sans-serif font (no font metrics here)."""
    em = _EM.get
    return size * sum(em(c, 1.0 if ord(c) > 0x2E7F else 0.56) for c in text)


def short_label(name: str, width: float = NODE_W - 20) -> str:
    """Shorten a long name in the middle to fit ``width`` px, keeping the distinguishing end."""
    if text_width(name) <= width:
        return name
    head, tail = name[: len(name) // 3], name[len(name) // 3 :]
    while head or tail:
        if len(tail) > 2 * len(head) or not head:
            tail = tail[1:]
        else:
            head = head[:-1]
        label = head + "…" + tail
        if text_width(label) <= width:
            return label
    return "…"


class FamilyTree:
    """The primary tree of a family and its depth-first order."""

    def __init__(self, family: Family) -> None:
        self.family = family
        members = {m.id for m in family.members}
        # Parent edges inside the family, most confident first (Model.parents is sorted).
        self.in_edges: dict[str, list[Edge]] = {
            m.id: [e for e in m.parents if e.parent.id in members] for m in family.members
        }
        self.tree_parent: dict[str, Edge | None] = {
            mid: (edges[0] if edges else None) for mid, edges in self.in_edges.items()
        }
        self.order: list[Model] = []
        self.tree_children: dict[str, list[Model]] = defaultdict(list)
        self._walk()
        self.index = {m.id: i for i, m in enumerate(self.order)}

    def _walk(self) -> None:
        fam = self.family
        kids: dict[str, list[Model]] = defaultdict(list)
        for m in fam.members:
            e = self.tree_parent[m.id]
            if e is not None:
                kids[e.parent.id].append(m)
        for lst in kids.values():
            lst.sort(key=lambda m: (m.name.lower(), m.id))
        roots = [m for m in fam.members if self.tree_parent[m.id] is None]
        roots.sort(key=lambda m: (m is not fam.root, m.name.lower(), m.id))
        seen: set[str] = set()
        pending = sorted(fam.members, key=lambda m: (m.name.lower(), m.id))
        while True:
            for root in roots:
                stack = [root]
                while stack:
                    node = stack.pop()
                    if node.id in seen:
                        continue
                    seen.add(node.id)
                    self.order.append(node)
                    children = [c for c in kids[node.id] if c.id not in seen]
                    self.tree_children[node.id] = children
                    stack.extend(reversed(children))
            left = [m for m in pending if m.id not in seen]
            if not left:
                break
            self.tree_parent[left[0].id] = None  # a cycle of primary parents: cut it here
            roots = [left[0]]

    def pages(self, page_size: int = PAGE_SIZE) -> list[list[Model]]:
        """The depth-first order cut into pages."""
        return [self.order[i : i + page_size] for i in range(0, len(self.order), page_size)] or [[]]


def _layers(nodes: list[Model], edges: list[Edge], tree: FamilyTree) -> dict[str, int]:
    """Longest-path column of each node over the drawn edges (cycles fall back to the tree)."""
    ids = {m.id for m in nodes}
    indeg = {m.id: 0 for m in nodes}
    out: dict[str, list[str]] = defaultdict(list)
    for e in edges:
        indeg[e.child.id] += 1
        out[e.parent.id].append(e.child.id)
    layer = {m.id: 0 for m in nodes}
    queue = [m.id for m in nodes if indeg[m.id] == 0]
    done = set()
    while queue:
        u = queue.pop()
        done.add(u)
        for v in out[u]:
            layer[v] = max(layer[v], layer[u] + 1)
            indeg[v] -= 1
            if indeg[v] == 0:
                queue.append(v)
    for m in sorted((m for m in nodes if m.id not in done), key=lambda m: tree.index[m.id]):
        e = tree.tree_parent.get(m.id)
        if e is not None and e.parent.id in ids:
            layer[m.id] = layer[e.parent.id] + 1
    return layer


def _rows(nodes: list[Model], tree: FamilyTree) -> dict[str, float]:
    """Tidy rows: leaves take the next row, a parent sits midway between its children."""
    ids = {m.id for m in nodes}
    children: dict[str, list[Model]] = {
        m.id: [c for c in tree.tree_children.get(m.id, []) if c.id in ids] for m in nodes
    }
    has_parent = {c.id for kids in children.values() for c in kids}
    roots = sorted((m for m in nodes if m.id not in has_parent), key=lambda m: tree.index[m.id])
    row: dict[str, float] = {}
    own: dict[str, list[Model]] = {}
    next_row = 0.0
    for root in roots:
        stack: list[tuple[Model, bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                kids = own[node.id]
                row[node.id] = (row[kids[0].id] + row[kids[-1].id]) / 2
                continue
            if node.id in own:
                continue
            own[node.id] = kids = children[node.id]  # a tree: each node is reached once
            if not kids:
                row[node.id] = next_row
                next_row += 1
                continue
            stack.append((node, True))
            stack.extend((c, False) for c in reversed(kids))
    # Nodes whose children were all placed elsewhere (cycles) still need a row.
    for m in nodes:
        if m.id not in row:
            row[m.id] = next_row
            next_row += 1
    return row


def _edge_class(e: Edge) -> str:
    weak = " weak" if e.confidence is not None and e.confidence < 0.5 else ""
    rel = e.relation if e.relation in RELATIONS else "other"
    return f"edge rel-{rel}{weak}{' uncertain' if e.uncertain else ''}"


# Relations with an edge style of their own in site.css (the rest are drawn as "other").
RELATIONS = tuple(r.value for r in Relation)


def render_svg(
    family: Family,
    tree: FamilyTree,
    nodes: list[Model],
    context: set[str],
    more: dict[str, tuple[int, str, int]],
    title: str,
    root: str = "../",
) -> Markup:
    """The SVG of some nodes of a family: boxes linking to model pages, labelled edges.

    ``more`` maps a node id to (hidden children, page file, page number) for the
    "+N on page k" links.
    """
    ids = {m.id for m in nodes}
    edges = [
        e
        for m in nodes
        for e in tree.in_edges.get(m.id, [])
        if e.parent.id in ids and not (m.id in context and e.parent.id in context)
    ]
    layer = _layers(nodes, edges, tree)
    row = _rows(nodes, tree)
    n_cols = max(layer.values(), default=0) + 1
    n_rows = max(row.values(), default=0) + 1
    width = int(PAD * 2 + n_cols * NODE_W + (n_cols - 1) * GAP_X + (MORE_W if more else 0))
    height = int(PAD * 2 + (n_rows - 1) * ROW_H + NODE_H)

    def xy(mid: str) -> tuple[float, float]:
        return PAD + layer[mid] * (NODE_W + GAP_X), PAD + row[mid] * ROW_H

    parts: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="tree" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="group" '
        f'aria-labelledby="tree-title"><title id="tree-title">{escape(title)}</title>',
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L8,4 L0,8 z" '
        'class="arrowhead"/></marker><marker id="dot" viewBox="0 0 8 8" refX="4" refY="4" '
        'markerWidth="6" markerHeight="6"><circle cx="4" cy="4" r="3" class="arrowhead"/>'
        '</marker></defs><g class="edges">',
    ]
    incoming: dict[str, list[Edge]] = defaultdict(list)
    for e in edges:
        incoming[e.child.id].append(e)
    for child_id, ins in incoming.items():
        ex, ey = xy(child_id)
        k = len(ins)
        for i, e in enumerate(ins):
            offset = (i - (k - 1) / 2) * min(8.0, 20.0 / max(k - 1, 1)) if k > 1 else 0.0
            px, py = xy(e.parent.id)
            sx, sy = px + NODE_W, py + NODE_H / 2
            tx, ty = ex - 1, ey + NODE_H / 2 + offset
            bend = max(40.0, min(GAP_X * 0.6, (tx - sx) / 2))
            label = f"{e.relation} · {confidence(e.confidence)}"
            if e.weight is not None:
                label += f" · w {e.weight:.2f}"
            ly = ty - 5 if offset <= 0 else ty + 13
            desc = (
                f"{e.parent.name} → {e.child.name}: {e.relation}, "
                f"confidence {confidence(e.confidence)}"
            )
            # An edge the weights could not orient ends in dots, not an arrowhead.
            ends = 'marker-end="url(#arrow)"'
            if e.uncertain:
                desc += ", direction uncertain (either could be the parent)"
                ends = 'marker-start="url(#dot)" marker-end="url(#dot)"'
            parts.append(
                f'<g class="{_edge_class(e)}"><title>{escape(desc)}</title>'
                f'<path d="M{sx:.0f},{sy:.1f} C{sx + bend:.0f},{sy:.1f} {tx - bend:.0f},'
                f'{ty:.1f} {tx:.0f},{ty:.1f}" {ends}/>'
                f'<text x="{tx - 8:.0f}" y="{ly:.1f}" text-anchor="end">{escape(label)}</text></g>'
            )
    parts.append('</g><g class="nodes">')
    for m in nodes:
        x, y = xy(m.id)
        cls = "node"
        if m is family.root:
            cls += " root"
        if m.id in context:
            cls += " ctx"
        tip = f"{m.name} · {human_count(m.n_params)} parameters"
        if m.id in context:
            tip += " (shown for context)"
        parts.append(
            f'<a href="{root}models/{m.slug}.html" class="{cls}" aria-label="{escape(tip)}">'
            f"<title>{escape(tip)}</title>"
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{NODE_W}" height="{NODE_H}" rx="6"/>'
            f'<text x="{x + 10:.0f}" y="{y + NODE_H / 2 + 4.5:.1f}">'
            f"{escape(short_label(m.name))}</text></a>"
        )
        if m.id in more:
            count, href, number = more[m.id]
            parts.append(
                f'<a href="{href}" class="more"><text x="{x + NODE_W + 8:.0f}" '
                f'y="{y + NODE_H / 2 + 4:.1f}">+{count} on page {number} →</text></a>'
            )
    parts.append("</g></svg>")
    return Markup("".join(parts))


def _uncertain(e: Edge) -> str:
    return ", direction uncertain" if e.uncertain else ""


def _outline(
    tree: FamilyTree,
    nodes: list[Model],
    context: set[str],
    more: dict[str, tuple[int, str, int]],
    page_of: dict[str, int],
    family_slug: str,
    root: str = "../",
) -> Markup:
    """Nested lists following the primary tree: the tree's text equivalent."""
    ids = {m.id for m in nodes}
    children = {m.id: [c for c in tree.tree_children.get(m.id, []) if c.id in ids] for m in nodes}
    has_parent = {c.id for kids in children.values() for c in kids}
    tops = sorted((m for m in nodes if m.id not in has_parent), key=lambda m: tree.index[m.id])

    def item(m: Model) -> str:
        link = f'<a href="{root}models/{m.slug}.html">{escape(m.name)}</a>'
        bits: list[str] = []
        ins = tree.in_edges.get(m.id, [])
        primary = tree.tree_parent.get(m.id)
        if primary is None:
            bits.append("root of the family" if m is tree.family.root else "no parent found")
        else:
            bits.append(
                f"{escape(primary.relation)} of {escape(primary.parent.name)} "
                f"(confidence {confidence(primary.confidence)}{_uncertain(primary)})"
            )
        for e in ins:
            if e is not primary:
                bits.append(
                    f"also {escape(e.relation)} of {escape(e.parent.name)} "
                    f"(confidence {confidence(e.confidence)}{_uncertain(e)})"
                )
        if m.id in context:
            number = page_of.get(m.id, 1)
            href = page_filename(family_slug, number)
            bits.append(f'shown for context, listed on <a href="{href}">page {number}</a>')
        if m.id in more:
            count, href, number = more[m.id]
            bits.append(f'{count} more children on <a href="{href}">page {number}</a>')
        return f'<li>{link} <span class="muted">— {"; ".join(bits)}</span>'

    parts = ['<ul class="outline">']
    for top in tops:
        stack: list[tuple[Model, bool]] = [(top, False)]
        while stack:
            node, closing = stack.pop()
            if closing:
                parts.append("</ul></li>" if children[node.id] else "</li>")
                continue
            parts.append(item(node))
            stack.append((node, True))
            if children[node.id]:
                parts.append("<ul>")
                stack.extend((c, False) for c in reversed(children[node.id]))
    parts.append("</ul>")
    return Markup("".join(parts))


def family_pages(family: Family, page_size: int = PAGE_SIZE, root: str = "../") -> list[TreePage]:
    """Every tree page of a family: SVG and outline of each page's models."""
    tree = FamilyTree(family)
    chunks = tree.pages(page_size)
    page_of = {m.id: n for n, chunk in enumerate(chunks, start=1) for m in chunk}
    pages = []
    for number, chunk in enumerate(chunks, start=1):
        chunk_ids = {m.id for m in chunk}
        context: list[Model] = []
        for m in chunk:
            e = tree.tree_parent.get(m.id)
            if e is not None and e.parent.id not in chunk_ids and e.parent not in context:
                context.append(e.parent)
        nodes = sorted(context, key=lambda m: tree.index[m.id]) + chunk
        more: dict[str, tuple[int, str, int]] = {}
        for m in chunk:
            away = [c for c in tree.tree_children.get(m.id, []) if c.id not in chunk_ids]
            if away:
                first = min(page_of[c.id] for c in away)
                more[m.id] = (len(away), page_filename(family.slug, first), first)
        ctx = {m.id for m in context}
        title = f"Lineage tree of the {family.label} family"
        if len(chunks) > 1:
            title += f", page {number} of {len(chunks)}"
        pages.append(
            TreePage(
                number=number,
                total=len(chunks),
                filename=page_filename(family.slug, number),
                members=chunk,
                context=context,
                svg=render_svg(family, tree, nodes, ctx, more, title, root),
                outline=_outline(tree, nodes, ctx, more, page_of, family.slug, root),
            )
        )
    return pages
