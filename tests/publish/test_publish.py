"""Publishing the index: pages, JSON API, exports, escaping, privacy and the atomic swap."""

from __future__ import annotations

import argparse
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import networkx as nx
import pytest

from heritage.cli import main
from heritage.cli.options import DEFAULT_DB
from heritage.cli.publish import add_publish_arguments, run_publish
from heritage.index import IndexData, connect_readonly, edges_frame, write_index
from heritage.lineage.types import Direction, Relation
from heritage.publish import DEFAULT_DB as PUBLISH_DB
from heritage.publish import PublishError, publish
from heritage.publish import build as build_module
from heritage.publish.data import load_site
from heritage.publish.slugs import slug
from tests.index.sample import declared_vs_inferred, sample_graph, sample_index
from tests.publish.conftest import EVIL_ID, EVIL_NAME, GATED_NAME, PRIVATE_NAME

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'"
)


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, as a browser would parse them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def pages(site: Path) -> list[Path]:
    return sorted(site.rglob("*.html"))


def text_files(site: Path) -> list[Path]:
    return [p for p in site.rglob("*") if p.is_file()]


def test_every_page_type_is_written(site: Path) -> None:
    for rel in ("index.html", "models.html", "families.html", "stats.html", "add.html"):
        assert (site / rel).is_file(), rel
    assert (site / "models" / f"{slug('a')}.html").is_file()
    assert (site / "families" / f"{slug('fam-1')}.html").is_file()
    assert (site / "static" / "search-index.js").is_file()
    assert (site / "static" / "catalog.js").is_file()
    assert (site / ".heritage-site").is_file()


def test_pages_have_csp_title_lang_and_one_h1(site: Path) -> None:
    for page in pages(site):
        html = page.read_text()
        assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in html, page
        assert '<html lang="en">' in html
        assert re.search(r"<title>[^<]+ · Model Heritage</title>", html), page
        assert html.count("<h1") == 1, page
        levels = [int(h) for h in re.findall(r"<h([1-6])[\s>]", html)]
        assert all(b <= a + 1 for a, b in zip(levels, levels[1:], strict=False)), (page, levels)
        # No inline script, no inline style, no event handler attributes.
        for tag, attrs in Tags(html).tags:
            assert tag != "script" or attrs.get("src"), page
            assert "style" not in attrs, (page, tag)
            assert not any(a.startswith("on") for a in attrs), (page, tag, attrs)
            for a in ("href", "src"):
                assert not (attrs.get(a) or "").lower().startswith(("javascript:", "data:"))


def test_nothing_is_loaded_from_elsewhere(site: Path) -> None:
    for page in pages(site):
        html = page.read_text()
        for attr in re.findall(
            r'<(?:script|link|img|iframe|source)[^>]*\s(?:src|href)="([^"]*)"', html
        ):
            assert "://" not in attr and not attr.startswith("//"), (page, attr)
        for href in re.findall(r'\shref="([^"]*)"', html):
            assert not href.startswith("/"), (page, href)  # relative links only
            if "://" in href:
                assert href.startswith(("https://", "http://")), (page, href)


def test_hostile_name_and_card_are_escaped_everywhere(site: Path) -> None:
    evil = site / "models" / f"{slug(EVIL_ID)}.html"
    html = evil.read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; · Model Heritage</title>" in html
    assert "&lt;img src=x onerror=" in html
    assert 'href="javascript' not in html.lower() and 'href="data:' not in html.lower()
    assert 'href="https://example.org/a?b=1&amp;c=2"' in html
    assert "&lt;svg onload=alert(5)&gt;" in html
    # The Hub link is percent-encoded: no quote can leave the attribute. A third path part
    # reads as a subfolder of the repo (ORG/NAME/FOLDER), linked inside the tree.
    assert (
        "https://huggingface.co/evil/x%22%3E%3Cscript%3Ealert%286%29%3C/tree/main/script%3E" in html
    )
    for page in pages(site):
        text = page.read_text()
        for raw in ("<script>alert", "<svg onload", "<img src=x", "<b>bold</b>", "<i>org"):
            assert raw not in text, (page, raw)


def test_hostile_name_is_safe_in_exports(site: Path) -> None:
    fam = site / "api" / "families" / slug("fam-1")
    graph = nx.read_graphml(fam / "lineage.graphml")
    assert graph.nodes[EVIL_ID]["name"] == EVIL_NAME
    ElementTree.parse(fam / "lineage.graphml")  # well-formed XML
    dot = (fam / "lineage.dot").read_text()
    assert '"evil/<script>alert(1)</script>" [label="<script>alert(1)</script>"]' in dot
    mmd = (fam / "lineage.mmd").read_text()
    assert "<script>" not in mmd and "#60;script#62;alert#40;1#41;#60;/script#62;" in mmd
    data = json.loads((fam / "lineage.json").read_text())
    assert EVIL_NAME in {n["name"] for n in data["nodes"]}
    js = (site / "static" / "search-index.js").read_text()
    assert js.startswith("/* Generated by heritage publish. */\nwindow.HERITAGE_INDEX = {")
    index = json.loads(js.split("=", 1)[1].strip().rstrip(";"))
    assert EVIL_NAME in {r[1] for r in index["models"]}


def test_json_api_shape(site: Path) -> None:
    models = json.loads((site / "api" / "models.json").read_text())
    assert models["count"] == len(models["models"]) == 7  # a-e, broken, evil
    keys = {"id", "slug", "name", "url", "api", "n_params", "family_id", "relation", "parents"}
    assert all(keys <= set(m) for m in models["models"])
    for m in models["models"]:
        assert (site / m["url"]).is_file() and (site / m["api"]).is_file()

    e = json.loads((site / "api" / "models" / f"{slug('e')}.json").read_text())
    assert e["id"] == "e" and e["name"] == "org/model-e"
    assert {p["id"] for p in e["lineage"]["parents"]} == {"c", "d"}
    assert {p["relation"] for p in e["lineage"]["parents"]} == {"merge"}
    assert e["lineage"]["path_to_root"] in (["c", "b", "a"], ["d", "a"])
    assert e["lineage"]["agreement"] == "agrees"
    assert e["source_url"] == "https://huggingface.co/org/model-e/tree/main"
    assert e["family"]["id"] == "fam-1" and len(e["tensors"]) == 6
    assert e["tensors"][0]["mean"] is None or isinstance(e["tensors"][0]["mean"], float)

    fams = json.loads((site / "api" / "families.json").read_text())
    assert [f["id"] for f in fams["families"]] == ["fam-1"]  # fam-2 has no model rows
    fam = fams["families"][0]
    assert fam["root_id"] == "a" and fam["n_models"] == 6
    for rel in fam["exports"].values():
        assert (site / rel).is_file()
    members = json.loads((site / fam["api"]).read_text())
    assert {m["id"] for m in members["models"]} == {"a", "b", "c", "d", "e", EVIL_ID}

    stats = json.loads((site / "api" / "stats.json").read_text())
    assert stats["models"] == 7 and stats["families"] == 1 and stats["edges"] == 6
    assert stats["disagreements"] == 1  # c declares org/model-d, an indexed non-parent
    assert stats["unknown_bases"] == 2  # a declares someone/else; evil declares <i>...</i>
    assert stats["proposed_bases"] == 1  # d declares nothing
    c = json.loads((site / "api" / "models" / f"{slug('c')}.json").read_text())
    assert c["lineage"]["agreement"] == "disagrees"
    assert c["lineage"]["declared_base_ids"] == ["d"]
    proposed = c["lineage"]["proposed_base"]
    assert (proposed["id"], proposed["relation"], proposed["confidence"]) == ("b", "finetune", 0.8)
    assert e["lineage"]["proposed_base"] is None  # it agrees
    assert stats["last_run"]["status"] == "partial"
    assert set(stats["charts"]) >= {"parameters", "family-sizes", "relations", "indexed"}


def test_private_and_gated_models_are_left_out(
    site: Path, hostile_db: Path, tmp_path: Path
) -> None:
    for page in text_files(site):
        text = page.read_text()
        for secret in (PRIVATE_NAME, GATED_NAME, "secret/private", "secret/gated"):
            assert secret not in text, (page, secret)
    d = json.loads((site / "api" / "models" / f"{slug('d')}.json").read_text())
    assert [p["id"] for p in d["lineage"]["parents"]] == ["a"]  # the gated parent is gone

    report = publish(hostile_db, tmp_path / "all", include_private=True)
    assert report.n_models == 9 and report.include_private
    models = json.loads((tmp_path / "all" / "api" / "models.json").read_text())
    assert {PRIVATE_NAME, GATED_NAME} <= {m["name"] for m in models["models"]}
    page = (tmp_path / "all" / "models" / f"{slug('secret/private')}.html").read_text()
    assert ">private</span>" in page


def test_model_page_content(site: Path) -> None:
    html = (site / "models" / f"{slug('e')}.html").read_text()
    for text in (
        "Specifications",
        "1,004",  # parameters
        "Structure hash",
        "Path to the family root",
        f'href="../models/{slug("c")}.html">org/model-c</a>',
        f'href="../models/{slug("d")}.html">org/model-d</a>',
        "confidence 0.70, merge weight 0.40",
        "The weights agree",
        "https://huggingface.co/org/model-e/tree/main",
        "Tensor statistics",
        "layers.0.attn.weight",
        "Indexed",
        f'href="../families/{slug("fam-1")}.html"',
    ):
        assert text in html, text
    c = (site / "models" / f"{slug('c')}.html").read_text()
    assert "The weights disagree" in c
    assert re.search(
        r'The weights propose: <a href="\.\./models/[^"]+">org/model-b</a> .*confidence 0\.80', c
    )
    d = (site / "models" / f"{slug('d')}.html").read_text()
    assert "No base model is declared" in d
    assert re.search(
        r'Proposed base model: <a href="\.\./models/[^"]+">org/model-a</a> .*confidence 0\.95', d
    )
    evil = (site / "models" / f"{slug(EVIL_ID)}.html").read_text()
    assert "is not in this index" in evil and "&lt;i&gt;org/model-a&lt;/i&gt;" in evil
    assert re.search(r"The weights propose: .*org/model-a</a> .*confidence 0\.66", evil)
    broken = (site / "models" / f"{slug('f')}.html").read_text()
    assert "has no fingerprint" in broken and "propose" not in broken
    a = (site / "models" / f"{slug('a')}.html").read_text()
    assert "None found: this model is the root of its family." in a
    assert "Could not be read" in broken and "empty file" in broken


def test_site_verdicts_match_the_sql_view(hostile_db: Path) -> None:
    """The site computes the declared_vs_inferred verdict itself; it must match the view."""
    site = load_site(hostile_db, include_private=True)  # nothing hidden: same models as SQL
    view = declared_vs_inferred(
        hostile_db,
        "status, matched_bases, declared_base_ids, proposed_base_id, proposed_confidence",
    )
    ours = {
        m.id: (
            m.agreement,
            m.matched,
            m.declared_ids,
            m.proposed.parent.id if m.proposed else None,
            m.proposed.confidence if m.proposed else None,
        )
        for m in site.models
        if m.agreement
    }
    assert ours == view
    assert {s for s, *_ in view.values()} == {
        "agrees",
        "disagrees",
        "unknown_base",
        "unverified",
        "proposed",
    }


def test_family_page_tree_and_text_equivalent(site: Path) -> None:
    html = (site / "families" / f"{slug('fam-1')}.html").read_text()
    start = html.index('<svg xmlns="http://www.w3.org/2000/svg" class="tree"')
    svg = html[start : html.index("</svg>", start)]
    assert 'role="group"' in svg and '<title id="tree-title">' in svg
    assert len(re.findall(r'<a href="[^"]+" class="node[ "]', svg)) == 6
    assert svg.count("rel-merge") == 2  # a merge draws both parents
    assert "finetune · 0.90" in svg
    assert f'href="../models/{slug("a")}.html" class="node root"' in svg
    outline = html[html.index('<ul class="outline">') :]
    assert "merge of org/model-c (confidence 0.70); also merge of org/model-d" in outline
    for ext in ("graphml", "dot", "mmd", "json"):
        assert f"api/families/{slug('fam-1')}/lineage.{ext}" in html


def test_home_page_lists_every_relation(site: Path) -> None:
    home = (site / "index.html").read_text()
    for r in Relation:
        assert f'<span class="rel rel-{r}">{r}</span>' in home, r
    assert "direction uncertain" in home


def visible_text(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def test_uncertain_direction_reaches_the_index_the_api_and_the_pages(tmp_path: Path) -> None:
    """An edge lineage could not orient is stored, served and shown as such."""
    graph = sample_graph()
    graph.edges["b", "c"].update(direction=Direction.UNCERTAIN, confidence=0.55)
    data = sample_index()
    data.edges = edges_frame(graph)
    db = tmp_path / "uncertain.duckdb"
    write_index(db, data)
    con = connect_readonly(db)
    try:
        rows = con.execute("SELECT parent_id, child_id, direction FROM edges").fetchall()
    finally:
        con.close()
    assert [r for r in rows if r[2] != "inferred"] == [("b", "c", "uncertain")]
    assert len(rows) == 5

    out = tmp_path / "site"
    publish(db, out)
    api = {i: json.loads((out / "api" / "models" / f"{slug(i)}.json").read_text()) for i in "abc"}
    assert [(e["id"], e["direction"]) for e in api["c"]["lineage"]["parents"]] == [
        ("b", "uncertain")
    ]
    assert api["c"]["lineage"]["proposed_base"]["direction"] == "uncertain"
    assert [(e["id"], e["direction"]) for e in api["b"]["lineage"]["children"]] == [
        ("c", "uncertain")
    ]
    assert [(e["id"], e["direction"]) for e in api["a"]["lineage"]["children"]] == [
        ("b", "inferred"),
        ("d", "inferred"),
    ]
    pages = {i: (out / "models" / f"{slug(i)}.html").read_text() for i in "abc"}
    assert "org/model-b finetune direction uncertain confidence 0.55" in visible_text(pages["c"])
    assert "org/model-c finetune direction uncertain confidence 0.55" in visible_text(pages["b"])
    assert visible_text(pages["c"]).count("direction uncertain") == 2  # parent, proposed base
    assert "direction uncertain" not in pages["a"]

    family = (out / "families" / f"{slug('fam-1')}.html").read_text()
    assert family.count('marker-start="url(#dot)"') == 1
    assert "finetune of org/model-b (confidence 0.55, direction uncertain)" in family
    assert "direction uncertain</li>" in family  # the legend entry
    lineage = out / "api" / "families" / slug("fam-1")
    edges = json.loads((lineage / "lineage.json").read_text())["edges"]
    assert {(e["parent"], e["child"]): e["direction"] for e in edges}[("b", "c")] == "uncertain"
    assert (lineage / "lineage.dot").read_text().count("dir=none") == 1
    assert (lineage / "lineage.mmd").read_text().count(" ---|") == 1
    assert '<data key="direction">uncertain</data>' in (lineage / "lineage.graphml").read_text()


def test_verified_and_unfaithful_copies_reach_the_index_the_api_and_the_pages(
    tmp_path: Path,
) -> None:
    """A quantized copy proven by re-rounding its parent carries a verified badge; one
    rounding cannot explain carries a warning."""
    graph = sample_graph()
    graph.edges["a", "b"].update(relation=Relation.QUANTIZED, verified=True, confidence=1.0)
    graph.edges["b", "c"].update(relation=Relation.QUANTIZED, verified=False)
    data = sample_index()
    data.edges = edges_frame(graph)
    db = tmp_path / "verified.duckdb"
    write_index(db, data)
    con = connect_readonly(db)
    try:
        rows = con.execute("SELECT parent_id, child_id, verified FROM edges").fetchall()
    finally:
        con.close()
    assert sorted(r for r in rows if r[2] is not None) == [("a", "b", True), ("b", "c", False)]
    out = tmp_path / "site"
    publish(db, out)
    api = {i: json.loads((out / "api" / "models" / f"{slug(i)}.json").read_text()) for i in "bc"}
    assert [(e["id"], e["verified"]) for e in api["b"]["lineage"]["parents"]] == [("a", True)]
    assert [(e["id"], e["verified"]) for e in api["c"]["lineage"]["parents"]] == [("b", False)]
    pages = {i: visible_text((out / "models" / f"{slug(i)}.html").read_text()) for i in "abc"}
    assert "org/model-a quantized verified confidence 1.00" in pages["b"]
    assert "org/model-b quantized unfaithful copy" in pages["c"]
    assert "unfaithful" not in pages["a"]


def test_large_family_is_paginated(big_site: Path) -> None:
    fams = json.loads((big_site / "api" / "families.json").read_text())["families"]
    big = max(fams, key=lambda f: f["n_models"])
    assert big["n_models"] > 200
    first = (big_site / big["url"]).read_text()
    assert 'aria-label="Tree pages"' in first
    second = big_site / "families" / f"{big['slug']}-p2.html"
    assert second.is_file()
    html = second.read_text()
    assert "page 2 of" in html and "ctx" in html  # context parents drawn dashed
    members = json.loads((big_site / big["api"]).read_text())["models"]
    drawn = sum(  # boxes that are not context copies of a parent from another page
        len(re.findall(r'<a href="[^"]+" class="node(?: root)?" ', p.read_text()))
        for p in (big_site / "families").glob(f"{big['slug']}*.html")
    )
    assert drawn == len(members)


def test_empty_index_shows_how_to_add(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    write_index(db, IndexData())
    report = publish(db, tmp_path / "site")
    assert report.n_models == 0
    for page in ("index.html", "models.html"):
        html = (tmp_path / "site" / page).read_text()
        assert "No models yet" in html and "heritage index" in html
    assert json.loads((tmp_path / "site" / "api" / "models.json").read_text())["count"] == 0


def test_republish_replaces_the_site_atomically(fresh_site: Path, hostile_db: Path) -> None:
    (fresh_site / "stale.html").write_text("old")
    report = publish(hostile_db, fresh_site)
    assert not (fresh_site / "stale.html").exists()
    assert report.n_files == len(text_files(fresh_site))
    assert [p.name for p in fresh_site.parent.iterdir() if p.name.startswith(".")] == []


def test_failed_build_keeps_the_old_site(
    fresh_site: Path, hostile_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_index = (fresh_site / "index.html").read_text()

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(build_module, "search_index", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        publish(hostile_db, fresh_site)
    assert (fresh_site / "index.html").read_text() == old_index
    assert [p.name for p in fresh_site.parent.iterdir() if p.name.startswith(".")] == []


def test_refuses_to_replace_a_foreign_folder(hostile_db: Path, tmp_path: Path) -> None:
    home = tmp_path / "important"
    home.mkdir()
    (home / "thesis.tex").write_text("do not delete")
    with pytest.raises(PublishError, match="not written by heritage publish"):
        publish(hostile_db, home)
    assert (home / "thesis.tex").read_text() == "do not delete"
    (tmp_path / "file").write_text("x")
    with pytest.raises(PublishError, match="not a folder"):
        publish(hostile_db, tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert publish(hostile_db, empty).n_models == 7


def test_falls_back_to_two_renames(
    fresh_site: Path, hostile_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(build_module, "_exchange", lambda a, b: False)
    (fresh_site / "stale.html").write_text("old")
    publish(hostile_db, fresh_site)
    assert not (fresh_site / "stale.html").exists() and (fresh_site / "index.html").is_file()
    assert [p.name for p in fresh_site.parent.iterdir() if p.name.startswith(".")] == []


def test_cli(hostile_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_publish_arguments(parser)
    args = parser.parse_args(["--db", str(hostile_db), "--out", str(tmp_path / "s")])
    assert args.func is run_publish
    assert args.func(args) == 0
    assert "published 7 models, 1 families" in capsys.readouterr().out
    missing = tmp_path / "missing.duckdb"
    assert main(["publish", "--db", str(missing), "--out", str(tmp_path / "t")]) == 1
    err = capsys.readouterr().err
    assert err == f"heritage: error: {missing}: no index file (run `heritage index` first)\n"
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("not a site")
    assert main(["publish", "--db", str(hostile_db), "--out", str(tmp_path / "taken")]) == 1
    assert "refusing to replace it" in capsys.readouterr().err
    defaults = parser.parse_args([])
    assert (defaults.db, defaults.out, defaults.include_private) == (
        "lineage.duckdb",
        "build/site",
        False,
    )
    assert PUBLISH_DB == DEFAULT_DB  # the flows' default index is the command line's


MARKER_HTML = '<p class="local-marker">Our lab &amp; its models</p>'


def _custom_templates(folder: Path) -> Path:
    """A copy of the packaged base.html with a marker before </footer>, and an add.html of
    our own; every other template is left to the package."""
    from importlib.resources import files

    folder.mkdir()
    base = (files("heritage.site") / "templates" / "base.html").read_text()
    assert base.count("</footer>") == 1
    (folder / "base.html").write_text(base.replace("</footer>", MARKER_HTML + "</footer>"))
    (folder / "add.html").write_text(
        '{% extends "base.html" %}{% block title %}Ask us{% endblock %}'
        "{% block main %}<h1>Ask us to add {{ '<b>' }} a model</h1>{% endblock %}"
    )
    return folder


def test_templates_override_packaged_ones_by_name(
    hostile_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    templates = _custom_templates(tmp_path / "mine")
    out = tmp_path / "custom"
    args = ["publish", "--db", str(hostile_db), "--out", str(out), "--templates", str(templates)]
    assert main(args) == 0
    assert "published 7 models" in capsys.readouterr().out
    written = pages(out)
    assert len(written) > 8
    for page in written:  # every page extends the overridden base.html
        assert MARKER_HTML in page.read_text(), page
    add = (out / "add.html").read_text()
    assert "<h1>Ask us to add &lt;b&gt; a model</h1>" in add  # autoescape stays on
    assert "From the command line" not in add
    # the templates not overridden still come from the package
    model = (out / "models" / f"{slug('a')}.html").read_text()
    assert '<h1 class="model-name">' in model  # model.html, from the package
    assert "Add a model</a>" in model  # the packaged nav, kept in the copied base.html
    assert CSP in model
    assert "<h1>Models</h1>" in (out / "models.html").read_text()
    plain = tmp_path / "plain"
    publish(hostile_db, plain)
    assert MARKER_HTML not in (plain / "index.html").read_text()
    assert "From the command line" in (plain / "add.html").read_text()


def test_missing_templates_folder_is_one_line_and_exit_1(
    hostile_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nowhere"
    out = tmp_path / "out"
    args = ["publish", "--db", str(hostile_db), "--out", str(out), "--templates", str(missing)]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert captured.err == f"heritage: error: {missing}: templates folder not found\n"
    assert captured.out == "" and not out.exists()
    with pytest.raises(PublishError, match="templates folder not found"):
        publish(hostile_db, out, templates=missing)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(PublishError, match="templates folder not found"):
        publish(hostile_db, out, templates=tmp_path / "a-file")


def test_flow_body_publishes(hostile_db: Path, tmp_path: Path) -> None:
    from prefect.logging import disable_run_logger

    from flows.publish_site import publish_site

    with disable_run_logger():
        result = publish_site.fn(db=str(hostile_db), out=str(tmp_path / "flow-site"))
    assert result["n_models"] == 7 and (tmp_path / "flow-site" / "index.html").is_file()
    assert result["phases"]["load index"] >= 0
    templates = _custom_templates(tmp_path / "flow-templates")
    with disable_run_logger():
        publish_site.fn(db=str(hostile_db), out=str(tmp_path / "flow-2"), templates=str(templates))
    assert MARKER_HTML in (tmp_path / "flow-2" / "stats.html").read_text()


def test_publish_hook_uses_the_environment(
    hostile_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.publish_site import publish_hook

    monkeypatch.setenv("HERITAGE_SITE_DIR", str(tmp_path / "hooked"))
    result = publish_hook(str(hostile_db), {"status": "ok"})
    assert result["n_models"] == 7 and (tmp_path / "hooked" / "models.html").is_file()


def test_site_files_are_package_data() -> None:
    """Every template and asset under heritage/site is matched by pyproject's package-data
    globs (so a wheel ships it), and no data-files install them beside the package."""
    import fnmatch
    import tomllib

    root = Path(__file__).resolve().parents[2]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "data-files" not in setuptools
    globs = setuptools["package-data"]["heritage.site"]
    package = root / "heritage" / "site"
    shipped = [
        f.relative_to(package).as_posix()
        for folder in ("templates", "static")
        for f in (package / folder).rglob("*")
        if f.is_file() and not f.name.startswith(".")
    ]

    def listed(f: str) -> bool:  # a glob's "*" does not descend into subfolders
        return any(f.count("/") == g.count("/") and fnmatch.fnmatch(f, g) for g in globs)

    assert "templates/base.html" in shipped and "static/site.css" in shipped
    assert all(listed(f) for f in shipped), [f for f in shipped if not listed(f)]
    assert (package / "__init__.py").is_file()  # PackageLoader and files() need a package


def test_templates_and_assets_come_from_the_package(site: Path) -> None:
    from importlib.resources import files

    static = files("heritage.site") / "static"
    for name in ("site.css", "catalog.js", "favicon.svg"):
        assert (site / "static" / name).read_bytes() == (static / name).read_bytes()
