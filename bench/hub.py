"""Bytes and requests per model when indexing Hub repos through the local Hub emulator.

    .venv/bin/python bench/hub.py [--zoo PATH]

Crawls the small zoo, then synthetic repos: a zoo model re-split into 2 and 3 shards, a
4 GB sparse single-file safetensors and a 13 GB sparse 3-shard model shaped like a 7B
Llama, to show that only headers and fingerprint samples are fetched. Prints, per model,
the bytes read and the resolver (file) requests the emulator counted, then the requests
per model for single-file, 2-shard and 3-shard models and the bytes per model, small and
large.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from heritage.hub.crawl import run_hub  # noqa: E402
from tests.hub.conftest import SINGLE, reshard, sparse_llm, sparse_safetensors  # noqa: E402
from tests.hub.emulator import HubEmulator  # noqa: E402


def _weights(emu: HubEmulator, repo: str) -> tuple[int, int]:
    """(weight bytes, weight files) of a served repo."""
    files = [f for f in emu.files(repo) if f.endswith(".safetensors")]
    return sum((emu.repos[repo] / f).stat().st_size for f in files), len(files)


def _run(root: Path, label: str) -> list[tuple[str, int, int, int, int]]:
    """Crawl ``root`` through a fresh emulator; (repo, shards, size, bytes, requests) per model."""
    emu = HubEmulator(root).start()
    out = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            report = run_hub(Path(tmp) / "hub.duckdb", endpoint=emu.url, token=False)
            seconds = time.perf_counter() - t0
        print(f"\n{label}: {len(emu.repos)} repos in {seconds:.2f} s")
        print(f"{'repo':48} {'files':>5} {'weights':>14} {'read':>10} {'resolver':>8}")
        for repo in sorted(report.read):
            size, n = _weights(emu, repo)
            served = emu.counters.per_repo_bytes.get(repo, 0)
            res = emu.counters.per_repo_requests.get(repo, 0)
            out.append((repo, n, size, served, res))
            print(f"{repo:48} {n:>5} {size:>14,} {served:>10,} {res:>8}")
        api = sum(1 for _, p, _ in emu.counters.log if p.startswith("/api/"))
        heads = sum(1 for m, _, _ in emu.counters.log if m == "HEAD")
        print(
            f"total: {report.bytes_read:,} bytes, {report.requests} resolver requests "
            f"({heads} HEAD), {api} API requests; {len(report.read)} read, "
            f"{len(report.not_fingerprinted)} not fingerprinted, {len(report.failed)} failed"
        )
    finally:
        emu.stop()
    return out


def _summary(rows: list[tuple[str, int, int, int, int]]) -> None:
    def spread(values: list[int]) -> str:
        if not values:
            return "-"
        return f"{min(values):,}–{max(values):,} (median {statistics.median(values):,.0f})"

    small = [r for r in rows if r[2] < 200e6]
    print("\nrequests per model under 200 MB (resolver):")
    for n, budget in ((1, 4), (2, 6), (3, 8)):
        got = [r for _, k, _, _, r in small if k == n]
        label = f"{n} weight file{'s' if n > 1 else ''}"
        print(f"  {label:14} {spread(got):>24}   budget {budget}   ({len(got)} models)")
    print("bytes per model:")
    print(f"  under 200 MB   {spread([b for _, _, _, b, _ in small])}")
    for repo, n, size, b, r in rows:
        if size >= 200e6:
            print(
                f"  {repo}: {size / 1e9:.1f} GB in {n} file{'s' if n > 1 else ''}, "
                f"{b:,} bytes ({100 * b / size:.4f} %) in {r:,} requests"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", type=Path, default=REPO / ".cache" / "zoo-small-seed0")
    args = ap.parse_args()
    rows = _run(args.zoo, f"zoo {args.zoo.name}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        reshard(args.zoo / SINGLE, root / "shards" / "two", 2)
        reshard(args.zoo / SINGLE, root / "shards" / "three", 3)
        sparse_safetensors(root / "bigco" / "sparse-4gb" / "model.safetensors")
        sparse_llm(root / "bigco" / "sparse-7b")
        rows += _run(root, "synthetic: re-sharded zoo model, sparse 4 GB and 13 GB models")
    _summary(rows)


if __name__ == "__main__":
    main()
