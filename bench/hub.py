"""Requests and bytes per model when indexing Hub repos through the local Hub emulator.

    .venv/bin/python bench/hub.py [--zoo PATH]

Crawls the small zoo, then synthetic repos: a zoo model whole and re-split into 2 and 3
shards, a 4 GB sparse single-file safetensors and a 13 GB sparse 3-shard model shaped
like a 7B Llama, to show that only headers and fingerprint samples are fetched. Each is
crawled twice: with the emulator redirecting weight files to its CDN as the Hub does
(one resolver request per file, ranges from the CDN), and without redirects (a proxy or
mirror: every range is a resolver request, planned to the request budget). Prints, per
model, the resolver requests (what the Hub's "resolvers" rate limit counts), the CDN
requests, the bytes read and their share of the model's size, as the emulator counted
them, then checks them against the targets: at most 4 resolver requests for a single
file and 2 per further shard, the shard index included; under 2 MB, and under 1 % of the
model for models over 200 MB.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from heritage.hub.crawl import run_hub  # noqa: E402
from heritage.hub.remote import request_budget  # noqa: E402
from tests.hub.conftest import SINGLE, reshard, sparse_llm, sparse_safetensors  # noqa: E402
from tests.hub.emulator import HubEmulator  # noqa: E402

MB = 2 * 1024 * 1024  # the byte target: 2 MiB per model
LARGE = 200e6  # models over this must also stay under 1 % of their size


@dataclass
class Row:
    repo: str
    files: int
    size: int
    bytes: int
    resolver: int
    cdn: int

    @property
    def share(self) -> float:
        return 100 * self.bytes / self.size

    @property
    def ok(self) -> bool:
        fits = self.resolver <= request_budget(self.files) and self.bytes < MB
        return fits and (self.size <= LARGE or self.bytes < self.size / 100)


def _weights(emu: HubEmulator, repo: str) -> tuple[int, int]:
    """(weight bytes, weight files) of a served repo."""
    files = [f for f in emu.files(repo) if f.endswith(".safetensors")]
    return sum((emu.repos[repo] / f).stat().st_size for f in files), len(files)


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e3:.0f} KB"


def _run(root: Path, label: str, cdn: bool, show: bool = True) -> list[Row]:
    """Crawl ``root`` through a fresh emulator; one row per fingerprinted model."""
    emu = HubEmulator(root, cdn=cdn).start()
    out = []
    mode = "CDN redirects" if cdn else "no redirects"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            report = run_hub(Path(tmp) / "hub.duckdb", endpoint=emu.url, token=False)
            seconds = time.perf_counter() - t0
        print(f"\n{label}, {mode}: {len(emu.repos)} repos in {seconds:.2f} s")
        if show:
            print(
                f"{'repo':46} {'files':>5} {'weights':>14} {'resolver':>8} {'CDN':>6} "
                f"{'bytes':>10} {'% of size':>9}"
            )
        for repo in sorted(report.read):
            size, n = _weights(emu, repo)
            c = emu.counters
            row = Row(repo, n, size, c.per_repo_bytes.get(repo, 0), c.resolver(repo), c.cdn(repo))
            out.append(row)
            if show:
                print(
                    f"{repo:46} {n:>5} {size:>14,} {row.resolver:>8} {row.cdn:>6,} "
                    f"{row.bytes:>10,} {row.share:>8.3f}%"
                )
        c = emu.counters
        print(
            f"total: {report.bytes_read:,} bytes; {c.resolver_requests:,} resolver, "
            f"{c.cdn_requests:,} CDN and {c.api_requests} API requests; {len(report.read)} "
            f"read, {len(report.not_fingerprinted)} not fingerprinted, {len(report.failed)} failed"
        )
    finally:
        emu.stop()
    return out


def _spread(values: list[int]) -> str:
    if not values:
        return "-"
    lo, hi, mid = min(values), max(values), statistics.median(values)
    return f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,} (median {mid:,.0f})"


def _zoo_summary(label: str, rows: list[Row]) -> None:
    print(f"\n{label}: per zoo model (all under 200 MB)")
    for n in (1, 2):
        got = [r for r in rows if r.files == n]
        name = f"{n} weight file{'s' if n > 1 else ''}"
        print(
            f"  {name:14} resolver {_spread([r.resolver for r in got]):>8} "
            f"(budget {request_budget(n)}), CDN {_spread([r.cdn for r in got]):>22}, "
            f"bytes {_spread([r.bytes for r in got])}  ({len(got)} models)"
        )


def _compare(cdn: list[Row], direct: list[Row]) -> None:
    print("\nsynthetic models, CDN redirects vs no redirects (targets: resolver <= budget,")
    print("bytes < 2 MB, and < 1 % of the size over 200 MB)")
    print(
        f"{'model':22} {'size':>8} {'budget':>6} | {'resolver':>8} {'CDN':>6} {'bytes':>10} "
        f"{'%':>7} {'ok':>3} | {'resolver':>8} {'bytes':>10} {'%':>7} {'ok':>3}"
    )
    by_repo = {r.repo: r for r in direct}
    for r in sorted(cdn, key=lambda r: r.size):
        d = by_repo[r.repo]
        print(
            f"{r.repo:22} {_size(r.size):>8} {request_budget(r.files):>6} | {r.resolver:>8} "
            f"{r.cdn:>6,} {r.bytes:>10,} {r.share:>6.3f}% {'yes' if r.ok else 'NO':>3} | "
            f"{d.resolver:>8,} {d.bytes:>10,} {d.share:>6.3f}% {'yes' if d.ok else 'NO':>3}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", type=Path, default=REPO / ".cache" / "zoo-small-seed0")
    args = ap.parse_args()
    zoo_cdn = _run(args.zoo, f"zoo {args.zoo.name}", cdn=True)
    zoo_direct = _run(args.zoo, f"zoo {args.zoo.name}", cdn=False, show=False)
    _zoo_summary("CDN redirects", zoo_cdn)
    _zoo_summary("no redirects", zoo_direct)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        shutil.copytree(args.zoo / SINGLE, root / "shards" / "one")
        reshard(args.zoo / SINGLE, root / "shards" / "two", 2)
        reshard(args.zoo / SINGLE, root / "shards" / "three", 3)
        sparse_safetensors(root / "bigco" / "sparse-4gb" / "model.safetensors")
        sparse_llm(root / "bigco" / "sparse-7b")
        label = "synthetic: a zoo model in 1, 2, 3 shards, sparse 4 GB and 13 GB models"
        synth_cdn = _run(root, label, cdn=True)
        synth_direct = _run(root, label, cdn=False)
    _compare(synth_cdn, synth_direct)
    bad = [r.repo for r in zoo_cdn + synth_cdn if not r.ok]
    print(f"\nCDN redirects: {bad if bad else 'every model within the targets'}")


if __name__ == "__main__":
    main()
