"""Unit tests of the site's building blocks: slugs, safe markdown, formatting, tree, charts."""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path

from heritage.lineage.types import Relation
from heritage.publish import html
from heritage.publish.charts import param_buckets, size_buckets, time_buckets
from heritage.publish.data import build_site
from heritage.publish.fmt import finite, human_bytes, human_count, number
from heritage.publish.markdown import render_markdown, safe_url
from heritage.publish.slugs import slug
from heritage.publish.tree import RELATIONS, family_pages, short_label, text_width

SITE_CSS = Path(__file__).resolve().parents[2] / "heritage" / "site" / "static" / "site.css"


def test_slug_is_safe_stable_and_distinct() -> None:
    ids = ["org/Name v2", "org/name-v2", "Org/Name V2", "<script>", "", "日本/モデル", "a" * 300]
    slugs = [slug(i) for i in ids]
    assert len(set(slugs)) == len(ids)
    assert all(re.fullmatch(r"[a-z0-9-]{1,60}", s) for s in slugs)
    assert slug("org/Name v2") == slug("org/Name v2") == "org-name-v2-" + slugs[0][-8:]
    assert slug("<script>").startswith("script-")


def test_markdown_escapes_html_and_drops_unsafe_links() -> None:
    html = str(
        render_markdown(
            "<script>alert(1)</script> **b** [x](javascript:alert(1)) "
            "[y](JaVaScRiPt:alert(1)) [z](https://ok.example/p?a=1&b=2) ![img](https://e/x.png) "
            '<a href="javascript:alert(2)">raw</a> [q](https://e.org/"onclick="x)'
        )
    )
    assert "<script" not in html and "&lt;script&gt;" in html
    assert 'href="javascript' not in html.lower()  # shown as text, never as a link
    assert (
        '<a href="https://ok.example/p?a=1&amp;b=2" rel="nofollow noopener noreferrer">z</a>'
        in html
    )
    assert "<img" not in html and "img" in html  # alt text only
    assert "&lt;a href=" in html
    assert 'onclick="' not in html
    assert "<strong>b</strong>" in html


def test_markdown_blocks() -> None:
    html = str(
        render_markdown("# Title\n\npara\nline\n\n- a\n- b\n\n1. one\n\n> q\n\n```\n<x>\n```")
    )
    assert '<p class="md-heading">Title</p>' in html  # never a real heading
    assert "<h1" not in html
    assert "<p>para\nline</p>" in html
    assert "<ul>\n<li>a</li>\n<li>b</li>\n</ul>" in html
    assert "<ol>\n<li>one</li>\n</ol>" in html
    assert "<blockquote>\n<p>q</p>\n</blockquote>" in html
    assert "<pre><code>&lt;x&gt;\n</code></pre>" in html
    assert str(render_markdown(None)) == "" and str(render_markdown("  \n")) == ""


def test_markdown_never_blows_up_on_pathological_input() -> None:
    """Hostile cards cannot stall a run: input is cut at MAX_CHARS, and nesting that makes
    a parser backtrack renders in about a second each at that length (1.9 s for 20,000
    ``[`` on the busy 2-core machine). The bound only catches a blow-up by orders of
    magnitude, so a loaded CI machine does not fail it."""
    for text in ("`" * 20000, "*a " * 7000, "**" * 10000, "_" * 20000, "[" * 20000, "![](" * 5000):
        start = time.perf_counter()
        render_markdown(text * 50)  # cut to MAX_CHARS: 50 times the text costs no more
        assert time.perf_counter() - start < 30.0, text[:8]


def test_markdown_shows_raw_script_escaped() -> None:
    html = str(render_markdown("<script>alert(1)</script>\n\ntext <script src=x></script>"))
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;script src=x&gt;&lt;/script&gt;" in html


def test_markdown_javascript_link_is_not_a_link() -> None:
    for text in (
        "[x](javascript:alert(1))",
        "[x](JAVASCRIPT:alert(1))",
        "[x]( javascript:alert(1) )",
        "[x](<javascript:alert(1)>)",
        "<javascript:alert(1)>",
        "[x][r]\n\n[r]: javascript:alert(1)",
        "[x](vbscript:msgbox(1))",
        "[x](data:text/html;base64,PHNjcmlwdD4=)",
        "[x](//evil.org/a)",
        "[x](/etc/passwd)",
    ):
        html = str(render_markdown(text))
        assert "<a" not in html, (text, html)
        assert text.startswith("<") or "x" in html  # the label is still shown, as text


def test_markdown_refuses_data_images_and_loads_no_image() -> None:
    html = str(render_markdown("![pixel](data:image/png;base64,iVBORw0KGgo=)"))
    assert "<img" not in html and "<a" not in html
    assert 'src="data:' not in html and 'href="data:' not in html
    html = str(render_markdown('![a *b* <c>](https://e.org/x.png "t")'))
    assert html == "<p>a b &lt;c&gt;</p>"  # alt text only, escaped


def test_markdown_keeps_safe_and_relative_links() -> None:
    html = str(
        render_markdown("[a](https://e.org) [b](mailto:x@y.z) [c](docs/x.html#s) <http://e.org>")
    )
    assert '<a href="https://e.org" rel="nofollow noopener noreferrer">a</a>' in html
    assert '<a href="mailto:x@y.z" rel="nofollow noopener noreferrer">b</a>' in html
    assert '<a href="docs/x.html#s" rel="nofollow noopener noreferrer">c</a>' in html
    assert '<a href="http://e.org" rel="nofollow noopener noreferrer">http://e.org</a>' in html


def test_safe_url() -> None:
    assert safe_url("https://a.b/c") == "https://a.b/c"
    assert safe_url("HTTP://a.b/c") == "HTTP://a.b/c"
    assert safe_url("mailto:x@y.z") == "mailto:x@y.z"
    assert safe_url("docs/a.html") == "docs/a.html" and safe_url("#part") == "#part"
    for bad in ("javascript:alert(1)", "data:text/html,x", "//evil.org", "/rel", "https://a b"):
        assert safe_url(bad) is None
    for bad in ("vbscript:x", "file:///etc/passwd", "\\\\evil.org", "", "a\tb", "x:y"):
        assert safe_url(bad) is None


def test_formatting() -> None:
    assert human_count(7_241_732_096) == "7.24B"
    assert human_count(22026) == "22.0K"
    assert human_count(None) == "–"
    assert human_count(12) == "12"
    assert human_bytes(91037) == "88.9 KiB"
    assert number(float("nan")) == "NaN"
    assert number(1e-5) == "1.000e-05"
    assert finite({"a": [float("inf"), 1.0], "b": float("nan")}) == {"a": [None, 1.0], "b": None}


def test_charts_buckets() -> None:
    assert param_buckets([5_000, 50_000, 60_000]) == [("1K–10K", 1), ("10K–100K", 2)]
    assert param_buckets([]) == []
    assert size_buckets([1, 1, 7])[:2] == [("1", 2), ("2", 0)]
    days = time_buckets([datetime(2025, 1, 1), datetime(2025, 1, 3)])
    assert days == [("2025-01-01", 1), ("2025-01-02", 0), ("2025-01-03", 1)]
    months = time_buckets([datetime(2024, 1, 1), datetime(2024, 12, 31)])
    assert len(months) == 12 and months[0] == ("2024-01", 1)


def test_short_label_fits_the_box() -> None:
    long = "sweepco/tinyllama-b-domain-sweep-lr0.0003-s0-extra-long-name"
    label = short_label(long)
    assert "…" in label and label.endswith("s0-extra-long-name"[-8:])
    assert text_width(label) <= 190
    assert short_label("org/a") == "org/a"


def _model(mid: str, family: str = "f") -> dict:
    return {"model_id": mid, "name": mid, "family_id": family, "status": "ok"}


def test_tree_pages_cover_a_large_family_once() -> None:
    ids = [f"m{i:03d}" for i in range(450)]
    edges = [
        {"parent_id": ids[(i - 1) // 3], "child_id": ids[i], "relation": "finetune"}
        for i in range(1, 450)
    ]
    edges.append({"parent_id": ids[5], "child_id": ids[300], "relation": "merge"})
    site = build_site(
        [_model(i) for i in ids],
        edges,
        [{"family_id": "f", "root_model_id": ids[0]}],
        [],
        {},
        [],
    )
    pages = family_pages(site.families[0], page_size=200)
    assert [len(p.members) for p in pages] == [200, 200, 50]
    listed = [m.id for p in pages for m in p.members]
    assert sorted(listed) == sorted(ids)  # every member on exactly one page
    assert pages[0].context == []
    assert all(p.context for p in pages[1:])  # later pages show where their branches hang
    assert "on page 2" in str(pages[0].svg)
    for p in pages:
        svg = str(p.svg)
        assert svg.count("<a href=") >= len(p.members)
        assert "<script" not in svg


def test_tree_survives_a_cycle() -> None:
    edges = [
        {"parent_id": "a", "child_id": "b", "relation": "finetune", "confidence": 0.9},
        {"parent_id": "b", "child_id": "a", "relation": "finetune", "confidence": 0.9},
        {"parent_id": "b", "child_id": "c", "relation": "finetune", "confidence": 0.9},
    ]
    site = build_site([_model(i) for i in "abc"], edges, [], [], {}, [])
    (page,) = family_pages(site.families[0])
    assert sorted(m.id for m in page.members) == ["a", "b", "c"]
    assert len(site.by_id["c"].path_to_root()) == 2  # c -> b -> a, then stops


def test_every_relation_has_a_style() -> None:
    """The site's relation lists come from the Relation enum; site.css styles each one."""
    values = [r.value for r in Relation]
    assert list(RELATIONS) == values
    assert {*values, "root"} == html.KNOWN_RELATIONS
    css = SITE_CSS.read_text()
    for r in values:
        assert f".rel-{r} {{" in css and f".edge.rel-{r} path {{" in css, r
    assert str(html.relation_badge("merge")) == '<span class="rel rel-merge">merge</span>'
    assert str(html.relation_badge("<b>")) == '<span class="rel">&lt;b&gt;</span>'


def test_uncertain_edges_are_drawn_without_an_arrow() -> None:
    edges = [
        {"parent_id": "a", "child_id": "b", "relation": "finetune", "confidence": 0.9},
        {
            "parent_id": "b",
            "child_id": "c",
            "relation": "finetune",
            "confidence": 0.55,
            "direction": "uncertain",
        },
    ]
    site = build_site([_model(i) for i in "abc"], edges, [], [], {}, [])
    b, c = site.by_id["b"], site.by_id["c"]
    assert not b.primary.uncertain and c.primary.uncertain
    assert str(html.direction_note(b.primary)) == ""
    assert "direction uncertain" in str(html.direction_note(c.primary))
    (page,) = family_pages(site.families[0])
    svg = str(page.svg)
    assert svg.count('marker-end="url(#arrow)"') == 1
    assert svg.count('marker-start="url(#dot)" marker-end="url(#dot)"') == 1
    assert svg.count("edge rel-finetune uncertain") == 1
    assert "direction uncertain (either could be the parent)" in svg
    assert "finetune of b (confidence 0.55, direction uncertain)" in str(page.outline)
