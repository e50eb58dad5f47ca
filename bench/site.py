"""Benchmark publishing: a synthetic 10,000-model index, published twice, then searched.

    python bench/site.py [--models 10000] [--tensors 24] [--rebuild] [--no-browser]

Builds (and caches in .cache/bench/) a synthetic index, publishes all of it (the few
private and gated models included, so every one of the N models is published) into a fresh folder
and again over that site (the atomic replace also deletes the old one), printing seconds,
pages per second and the time of each step. Then opens the catalog from file:// in
Debian's Chromium and times each keystroke of a query typed into the search box, over
all models (filter + render + the layout it causes).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from heritage.index import write_index  # noqa: E402
from heritage.publish import publish  # noqa: E402
from heritage.publish.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from heritage.publish.synthetic import synthetic_index  # noqa: E402

CACHE = ROOT / ".cache" / "bench"
QUERY = "llama-7b-instruct"
TYPE_JS = """(query) => {
    const input = document.getElementById('q');
    const out = [];
    for (let i = 1; i <= query.length; i++) {
        const t0 = performance.now();
        input.value = query.slice(0, i);
        input.dispatchEvent(new Event('input', {bubbles: true}));
        document.body.getBoundingClientRect();
        out.push(performance.now() - t0);
    }
    return out;
}"""


def build_index(n: int, tensors: int, rebuild: bool) -> Path:
    db = CACHE / f"site-{n}-t{tensors}.duckdb"
    if db.exists() and not rebuild:
        print(f"index     {db} (cached)")
        return db
    start = time.perf_counter()
    CACHE.mkdir(parents=True, exist_ok=True)
    write_index(db, synthetic_index(n, seed=0, tensors_per_model=tensors))
    print(f"index     {db} built in {time.perf_counter() - start:.1f} s")
    return db


def search_times(site: Path) -> None:
    if not Path(CHROMIUM).exists():
        print(f"search    skipped: {CHROMIUM} not found (apt-get install -y chromium)")
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        start = time.perf_counter()
        page.goto((site / "models.html").as_uri())
        page.wait_for_selector("#filters:not([hidden])")
        loaded = time.perf_counter() - start
        n = page.evaluate("window.HERITAGE_INDEX.models.length")
        runs = [page.evaluate(TYPE_JS, QUERY) for _ in range(3)]
        browser.close()
    times = [t for run in runs for t in run]
    print(f"catalog   {n:,} models: page loaded and search ready in {loaded:.2f} s")
    print(
        f"search    {len(times)} keystrokes of {QUERY!r} (x3): median {statistics.median(times):.1f} ms,"
        f" p90 {statistics.quantiles(times, n=10)[-1]:.1f} ms, max {max(times):.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=10_000)
    parser.add_argument("--tensors", type=int, default=24, help="mean tensors per model")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached index")
    parser.add_argument("--no-browser", action="store_true", help="skip the search timing")
    args = parser.parse_args()

    db = build_index(args.models, args.tensors, args.rebuild)
    out = CACHE / f"site-{args.models}"
    shutil.rmtree(out, ignore_errors=True)
    for label in ("fresh", "replace"):
        report = publish(db, out, include_private=True)  # all of them, private ones too
        print(
            f"publish   {label:8}{report.seconds:6.1f} s  {report.pages_per_second:6.0f} pages/s  "
            f"{report.n_models:,} models, {report.n_families:,} families, "
            f"{report.n_pages:,} pages, {report.n_files:,} files, {report.bytes / 2**20:.0f} MiB"
        )
        print("          " + ", ".join(f"{k} {v:.1f} s" for k, v in report.phases.items()))
    if not args.no_browser:
        search_times(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
