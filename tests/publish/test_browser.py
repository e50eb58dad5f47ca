"""The published site in a real browser (Debian's Chromium through Playwright), from file://.

Every test watches all requests: each must be a file:// URL inside the site folder, no
dialog may open (a hostile name must never run), and no page error or CSP violation may
be logged. Screenshots of each page type land in build/screenshots/.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from heritage.publish.build import CATALOG_FIELDS
from heritage.publish.html import KNOWN_RELATIONS
from heritage.publish.slugs import slug
from tests.publish.conftest import EVIL_ID, EVIL_NAME

Opener = Callable[..., Page]


class Watch:
    """What a browser context did that it must not: leave the folder, alert, fail."""

    def __init__(self, site: Path) -> None:
        self.prefix = site.resolve().as_uri() + "/"
        self.outside: list[str] = []
        self.dialogs: list[str] = []
        self.errors: list[str] = []

    def route(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(self.prefix):
            route.continue_()
        else:
            self.outside.append(url)
            route.abort()

    def check(self) -> None:
        assert self.outside == [], f"requests left the site folder: {self.outside}"
        assert self.dialogs == [], f"a dialog opened: {self.dialogs}"
        assert self.errors == [], f"page errors: {self.errors}"


@pytest.fixture()
def open_site(browser: Browser, site: Path) -> Iterator[Opener]:
    """open_site(rel, js=True, width=1280, root=site) -> page, with every request watched."""
    contexts = []
    watches = []

    def opener(rel: str, js: bool = True, width: int = 1280, root: Path = site) -> Page:
        context = browser.new_context(
            java_script_enabled=js, viewport={"width": width, "height": 900}
        )
        watch = Watch(root)
        context.route("**/*", watch.route)
        page = context.new_page()
        page.on("dialog", lambda d: (watch.dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: watch.errors.append(str(e)))
        page.on(
            "console",
            lambda m: watch.errors.append(m.text) if m.type in ("error", "warning") else None,
        )
        contexts.append(context)
        watches.append(watch)
        page.goto((root / rel).resolve().as_uri())
        return page

    yield opener
    for context in contexts:
        context.close()
    for watch in watches:
        watch.check()


def rows(page: Page) -> list[str]:
    return page.locator("#models-body td.name a").all_inner_texts()


def test_search_filters_as_you_type(open_site: Opener, screenshots: Path) -> None:
    page = open_site("models.html")
    assert page.locator("#filters").is_visible()
    assert len(rows(page)) == 7
    page.get_by_label("Search by name").press_sequentially("MODEL-")
    assert sorted(rows(page)) == [f"org/model-{i}" for i in "abcde"]
    page.get_by_label("Search by name").press_sequentially("e")
    assert rows(page) == ["org/model-e"]
    assert page.locator("#count").inner_text() == "1 model matches"
    page.screenshot(path=screenshots / "catalog-search.png", full_page=True)
    page.get_by_label("Search by name").fill("no such model")
    assert rows(page) == [] and "No models match" in page.locator("#models-body").inner_text()
    page.get_by_role("button", name="Clear filters").click()
    # A locator wait: wait_for_function polls through eval, which the page's CSP refuses.
    expect(page.locator("#models-body tr")).to_have_count(7)
    page.get_by_label("Sort by").select_option("-params")
    assert rows(page)[:2] == [EVIL_NAME, "org/model-e"]  # 1,234 and 1,004 parameters
    page.get_by_label("Source").select_option(label="local")
    assert rows(page) == ["broken"]
    assert "source=" in page.url  # the state is kept in the address


def test_catalog_filters_by_family_from_a_link(open_site: Opener) -> None:
    page = open_site("models.html")
    page.goto(page.url + f"#family={slug('fam-1')}")
    # A locator wait: wait_for_function polls through eval, which the page's CSP refuses.
    expect(page.locator("#models-body tr")).to_have_count(6)
    assert EVIL_NAME in rows(page)
    assert "broken" not in rows(page)


def test_open_a_model_page_from_the_catalog(open_site: Opener, screenshots: Path) -> None:
    page = open_site("models.html")
    page.get_by_label("Search by name").fill("model-e")
    page.get_by_role("link", name="org/model-e", exact=True).click()
    page.wait_for_url(f"**/models/{slug('e')}.html")
    assert page.locator("h1").inner_text() == "org/model-e"
    assert page.title() == "org/model-e · Model Heritage"
    assert "The weights agree" in page.locator("body").inner_text()
    page.screenshot(path=screenshots / "model.png", full_page=True)


def test_follow_parent_links_to_the_root(open_site: Opener) -> None:
    page = open_site(f"models/{slug('e')}.html")
    visited = [page.locator("h1").inner_text()]
    for _ in range(10):
        parents = page.locator("#lineage-title ~ ul.edge-list").first
        text = page.locator("section[aria-labelledby=lineage-title]").inner_text()
        if "None found: this model is the root of its family." in text:
            break
        parents.locator("a").first.click()
        page.wait_for_load_state()
        visited.append(page.locator("h1").inner_text())
    assert visited == ["org/model-e", "org/model-c", "org/model-b", "org/model-a"]
    assert "root" in page.locator(".tags").inner_text()


def test_family_tree_node_opens_the_model(open_site: Opener, screenshots: Path) -> None:
    page = open_site(f"families/{slug('fam-1')}.html")
    tree = page.locator("svg.tree")
    assert tree.get_attribute("role") == "group"
    assert page.locator("svg.tree a.node").count() == 6
    assert page.locator("svg.tree .edge.rel-merge").count() == 2
    page.screenshot(path=screenshots / "family.png", full_page=True)
    page.locator("svg.tree a.node", has_text="org/model-b").click()
    page.wait_for_url(f"**/models/{slug('b')}.html")
    assert page.locator("h1").inner_text() == "org/model-b"


def test_tree_is_reachable_by_keyboard(open_site: Opener) -> None:
    page = open_site(f"families/{slug('fam-1')}.html")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.closest('svg.tree') !== null"):
            break
    else:
        pytest.fail("no tree node takes keyboard focus")
    page.keyboard.press("Enter")
    page.wait_for_url("**/models/*.html")


def test_works_with_javascript_disabled(open_site: Opener, screenshots: Path) -> None:
    page = open_site("models.html", js=False)
    assert len(rows(page)) == 7  # the full list, rendered server-side
    assert not page.locator("#filters").is_visible()
    assert "Search and filters need JavaScript" in page.locator("main").inner_text()
    page.screenshot(path=screenshots / "catalog-no-js.png", full_page=True)
    page.get_by_role("link", name="org/model-d", exact=True).click()
    page.wait_for_url(f"**/models/{slug('d')}.html")
    assert page.locator("h1").inner_text() == "org/model-d"


def test_hostile_model_renders_as_text(open_site: Opener, screenshots: Path) -> None:
    page = open_site(f"models/{slug(EVIL_ID)}.html")
    assert page.locator("h1").inner_text() == EVIL_NAME
    assert page.locator("main script, main img, main svg[onload]").count() == 0
    body = page.locator("main").inner_text()
    assert '<img src=x onerror="alert(2)">' in body
    assert page.locator("main a[href^='javascript']").count() == 0
    page.screenshot(path=screenshots / "hostile-model.png", full_page=True)
    catalog = open_site("models.html")
    catalog.get_by_label("Search by name").fill("<script")
    assert rows(catalog) == [EVIL_NAME]


def test_every_page_type_loads_offline(open_site: Opener, screenshots: Path) -> None:
    for rel, name in (
        ("index.html", "home"),
        ("stats.html", "stats"),
        ("add.html", "add"),
        ("families.html", "families"),
    ):
        page = open_site(rel)
        assert page.locator("h1").count() == 1
        page.screenshot(path=screenshots / f"{name}.png", full_page=True)
    page = open_site("stats.html")
    assert page.locator("svg.chart").count() >= 4


@pytest.mark.parametrize("rel", ["models.html", "index.html", "model", "family", "stats.html"])
def test_fits_a_375_pixel_screen(open_site: Opener, rel: str, screenshots: Path) -> None:
    rel = {"model": f"models/{slug('e')}.html", "family": f"families/{slug('fam-1')}.html"}.get(
        rel, rel
    )
    page = open_site(rel, width=375)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375, f"{rel} is {width}px wide at 375px"
    if rel in ("models.html", f"models/{slug('e')}.html"):
        name = "catalog" if rel == "models.html" else "model"
        page.screenshot(path=screenshots / f"{name}-375px.png", full_page=True)


def _search_index(n: int) -> str:
    """A catalog index of ``n`` synthetic models in the format the site writes."""
    rng = random.Random(0)
    words = ["llama", "mistral", "qwen", "phi", "gemma", "bert", "vit", "mamba", "olmo", "t5"]
    fams = [[f"fam-{i}", f"org/{rng.choice(words)}-{i}", 5, i % 10] for i in range(n // 5)]
    models = []
    for i in range(n):
        name = f"org{i % 97}/{rng.choice(words)}-{rng.choice(['7b', '13b', '1b'])}-{i}"
        date = f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}"
        models.append(
            [f"m{i}", name, rng.randrange(10**6, 10**10), 32, i // 5, i % 4, i % 3, i % 2]
            + [date, "finetune", "ok"]
        )
    data = {
        "fields": list(CATALOG_FIELDS),
        "relations": sorted(KNOWN_RELATIONS),
        "families": fams,
        "archs": ["A", "B", "C", "D"],
        "formats": ["safetensors", "pytorch", "gguf"],
        "sources": ["hub", "local"],
        "models": models,
    }
    return f"window.HERITAGE_INDEX = {json.dumps(data)};\n"


def test_search_filters_10000_models(open_site: Opener, site: Path, tmp_path: Path) -> None:
    """Search over 10,000 models narrows the list; its speed is measured by bench/site.py."""
    big = tmp_path / "site"
    shutil.copytree(site, big)
    (big / "static" / "search-index.js").write_text(_search_index(10_000))
    page = open_site("models.html", root=big)
    assert page.locator("#count").inner_text() == "Showing 100 of 10,000 models"
    page.fill("#q", "llama-7b-1")
    count = page.locator("#count").inner_text()
    found = re.fullmatch(r"([\d,]+) models? match(?:es)?", count)
    assert found and 0 < int(found.group(1).replace(",", "")) < 10_000, count


def test_script_rows_match_the_server_rows(open_site: Opener) -> None:
    server = open_site("models.html", js=False)
    client = open_site("models.html")
    html = "Array.from(document.querySelectorAll('#models-body tr'), r => r.outerHTML)"
    assert client.evaluate(html) == server.evaluate(html)


def test_every_control_has_a_label(open_site: Opener) -> None:
    page = open_site("models.html")
    controls = page.locator("main input, main select, main button")
    assert controls.count() >= 12
    for i in range(controls.count()):
        control = controls.nth(i)
        name = control.evaluate(
            "el => (el.labels && el.labels.length ? el.labels[0].textContent : '')"
            " || el.getAttribute('aria-label') || el.textContent"
        )
        assert name.strip(), control.evaluate("el => el.outerHTML")
