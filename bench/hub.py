"""Bytes and requests per model when indexing the small zoo through the local Hub emulator.

    .venv/bin/python bench/hub.py [--zoo PATH]

Also serves a >200 MB sparse safetensors repo to show that only its header and the
fingerprint samples are fetched.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from heritage.hub.crawl import run_hub  # noqa: E402
from tests.hub.conftest import sparse_safetensors  # noqa: E402
from tests.hub.emulator import HubEmulator  # noqa: E402


def _run(root: Path, label: str) -> None:
    emu = HubEmulator(root).start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            report = run_hub(Path(tmp) / "hub.duckdb", endpoint=emu.url, token=False)
            seconds = time.perf_counter() - t0
        print(f"\n{label}: {len(emu.repos)} repos in {seconds:.2f} s")
        print(f"{'repo':48} {'size':>12} {'read':>10} {'req':>4} {'served':>10} {'resolver':>8}")
        for repo, (nbytes, nreq) in sorted(report.per_repo.items()):
            if not nreq:
                continue
            size = sum((emu.repos[repo] / f).stat().st_size for f in emu.files(repo))
            served = emu.counters.per_repo_bytes.get(repo, 0)
            res = emu.counters.per_repo_requests.get(repo, 0)
            print(f"{repo:48} {size:>12,} {nbytes:>10,} {nreq:>4} {served:>10,} {res:>8}")
        api = sum(1 for _, p, _ in emu.counters.log if p.startswith("/api/"))
        print(
            f"total: {report.bytes_read:,} bytes, {report.requests} resolver requests, "
            f"{api} API requests; {len(report.read)} read, "
            f"{len(report.not_fingerprinted)} not fingerprinted, {len(report.failed)} failed"
        )
    finally:
        emu.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", type=Path, default=REPO / ".cache" / "zoo-small-seed0")
    args = ap.parse_args()
    _run(args.zoo, f"zoo {args.zoo.name}")
    with tempfile.TemporaryDirectory() as tmp:
        sparse_safetensors(Path(tmp) / "bigco" / "sparse-llm" / "model.safetensors")
        _run(Path(tmp), "sparse 256 MB safetensors")


if __name__ == "__main__":
    main()
