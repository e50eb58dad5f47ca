"""A family's lineage as GraphML, DOT, Mermaid and JSON, for other tools.

Every format carries the same graph: one node per published member (id, name, parameter
count, model page) and one edge per inferred parent -> child derivation inside the family
(relation, direction, confidence, distance, merge weight); an edge whose direction is
uncertain is drawn without an arrow where the format allows. Names are escaped for each format, so a
hostile name stays a string in every one of them.
"""

from __future__ import annotations

import json
from typing import Any
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

from heritage.publish.data import Edge, Family, Model
from heritage.publish.fmt import finite

EXPORT_FORMATS = {"graphml": "GraphML", "dot": "DOT", "mmd": "Mermaid", "json": "JSON"}


def export_path(family: Family, ext: str) -> str:
    """Site-relative path of one export of a family."""
    return f"api/families/{family.slug}/lineage.{ext}"


def _node(m: Model) -> dict[str, Any]:
    return {
        "id": m.id,
        "name": m.name,
        "slug": m.slug,
        "n_params": m.n_params,
        "format": m.format,
        "url": f"models/{m.slug}.html",
        "root": m.family is not None and m is m.family.root,
    }


def _edge(e: Edge) -> dict[str, Any]:
    return {
        "parent": e.parent.id,
        "child": e.child.id,
        "relation": e.relation,
        "direction": e.direction,
        "confidence": e.confidence,
        "distance": e.distance,
        "weight": e.weight,
        "method": e.method,
    }


def to_json(family: Family) -> str:
    """Nodes and edges as JSON (node-link style)."""
    data = {
        "family": family.id,
        "root": family.root.id if family.root else None,
        "directed": True,
        "nodes": [_node(m) for m in family.members],
        "edges": [_edge(e) for e in family.edges],
    }
    return json.dumps(finite(data), indent=1, ensure_ascii=False)


_GRAPHML_KEYS = (
    ("name", "node", "string"),
    ("n_params", "node", "long"),
    ("format", "node", "string"),
    ("url", "node", "string"),
    ("root", "node", "boolean"),
    ("relation", "edge", "string"),
    ("direction", "edge", "string"),
    ("confidence", "edge", "double"),
    ("distance", "edge", "double"),
    ("weight", "edge", "double"),
    ("method", "edge", "string"),
)


def _xml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return xml_escape(_clean(str(value)))


def _clean(text: str) -> str:
    """Drop characters XML 1.0 cannot hold at all (control characters)."""
    return "".join(c for c in text if c in "\t\n\r" or ord(c) >= 0x20)


def to_graphml(family: Family) -> str:
    """GraphML (readable by networkx, Gephi, yEd, igraph)."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<graphml xmlns="http://graphml.graphdrawing.org/xmlns">',
    ]
    for name, target, kind in _GRAPHML_KEYS:
        lines.append(f'  <key id="{name}" for="{target}" attr.name="{name}" attr.type="{kind}"/>')
    lines.append(f'  <graph id={quoteattr(_clean(family.id))} edgedefault="directed">')
    for m in family.members:
        lines.append(f"    <node id={quoteattr(_clean(m.id))}>")
        for key, value in _node(m).items():
            if key in ("id", "slug") or value is None:
                continue
            lines.append(f'      <data key="{key}">{_xml_text(value)}</data>')
        lines.append("    </node>")
    for e in family.edges:
        src, dst = quoteattr(_clean(e.parent.id)), quoteattr(_clean(e.child.id))
        lines.append(f"    <edge source={src} target={dst}>")
        for key, value in _edge(e).items():
            if key in ("parent", "child") or value is None:
                continue
            lines.append(f'      <data key="{key}">{_xml_text(value)}</data>')
        lines.append("    </edge>")
    lines += ["  </graph>", "</graphml>", ""]
    return "\n".join(lines)


def _dot_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r", "").replace("\n", "\\n") + '"'


def to_dot(family: Family) -> str:
    """Graphviz DOT (``dot -Tsvg lineage.dot``)."""
    lines = [
        f"digraph {_dot_string(family.id)} {{",
        "  rankdir=LR;",
        '  node [shape=box, style=rounded, fontname="sans-serif"];',
        '  edge [fontname="sans-serif", fontsize=10];',
    ]
    for m in family.members:
        attrs = f"label={_dot_string(m.name)}"
        if m.family is not None and m is m.family.root:
            attrs += ", penwidth=2"
        lines.append(f"  {_dot_string(m.id)} [{attrs}];")
    for e in family.edges:
        label = f"{e.relation} {e.confidence:.2f}" if e.confidence is not None else e.relation
        style = {"adapter": "dashed", "quantized": "dotted"}.get(e.relation, "solid")
        arrow = ", dir=none" if e.uncertain else ""
        lines.append(
            f"  {_dot_string(e.parent.id)} -> {_dot_string(e.child.id)} "
            f"[label={_dot_string(label)}, style={style}{arrow}];"
        )
    lines += ["}", ""]
    return "\n".join(lines)


def _mermaid_label(text: str) -> str:
    """Mermaid label text: quotes and markup characters as entity codes."""
    out = []
    for c in text:
        if c.isalnum() or c in " -_./:@+,":
            out.append(c)
        elif ord(c) < 0x20:
            out.append(" ")
        else:
            out.append(f"#{ord(c)};")
    return '"' + "".join(out) + '"'


def to_mermaid(family: Family) -> str:
    """A Mermaid flowchart (paste into any Mermaid renderer)."""
    ids = {m.id: f"n{i}" for i, m in enumerate(family.members)}
    lines = ["flowchart LR"]
    for m in family.members:
        lines.append(f"  {ids[m.id]}[{_mermaid_label(m.name)}]")
    for e in family.edges:
        label = f"{e.relation} {e.confidence:.2f}" if e.confidence is not None else e.relation
        link = "---" if e.uncertain else "-->"
        lines.append(f"  {ids[e.parent.id]} {link}|{_mermaid_label(label)}| {ids[e.child.id]}")
    if family.root is not None:
        lines.append("  classDef root stroke-width:3px")
        lines.append(f"  class {ids[family.root.id]} root")
    lines.append("")
    return "\n".join(lines)


def family_exports(family: Family) -> dict[str, str]:
    """Every export of a family by file extension."""
    return {
        "graphml": to_graphml(family),
        "dot": to_dot(family),
        "mmd": to_mermaid(family),
        "json": to_json(family),
    }
