"""Indexing speed on the medium zoo: first run, then a run over the unchanged folder.

    python bench/index.py [--size medium] [--seed 0] [--workers 4] [--no-flow]

For the plain pipeline (``heritage index --no-prefect``) and the Prefect flow (ephemeral
server, thread pool) it prints models/s, checkpoint bytes read and bytes hashed per model
for a first run into an empty index, and the time and bytes read of a no-change rerun.
Not a timed test: figures go into the README.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

from heritage.crawl import run_index  # noqa: E402
from heritage.index import read_index  # noqa: E402
from heritage.zoo.cache import cached_zoo  # noqa: E402


def _row(engine: str, n: int, first: dict, first_s: float, rerun: dict, rerun_s: float) -> str:
    return (
        f"| {engine} | {n} | {first_s:.2f} | {n / first_s:.1f} | "
        f"{first['bytes_read'] / n:,.0f} | {first['bytes_hashed'] / n:,.0f} | "
        f"{rerun_s:.2f} | {rerun['bytes_read']:,} | {rerun['bytes_hashed']:,} |"
    )


def bench_plain(root: Path, db: Path, workers: int) -> tuple[dict, float, dict, float]:
    t0 = time.perf_counter()
    first = run_index([root], db, workers=workers).to_dict()
    t1 = time.perf_counter()
    rerun = run_index([root], db, workers=workers).to_dict()
    return first, t1 - t0, rerun, time.perf_counter() - t1


def bench_flow(root: Path, db: Path, workers: int) -> tuple[dict, float, dict, float]:
    from flows.index_local import index_local

    index_local(paths=[str(root)], db=str(db.with_suffix(".warmup.duckdb")), workers=workers)
    t0 = time.perf_counter()  # the ephemeral server is up now: time the runs only
    first = index_local(paths=[str(root)], db=str(db), workers=workers)
    t1 = time.perf_counter()
    rerun = index_local(paths=[str(root)], db=str(db), workers=workers)
    return first, t1 - t0, rerun, time.perf_counter() - t1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="medium", choices=["small", "medium"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--no-flow", action="store_true", help="skip the Prefect flow")
    args = p.parse_args()
    root = cached_zoo(args.size, args.seed)
    total = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    print(f"zoo {args.size} seed {args.seed}: {root} ({total / 1e6:.1f} MB on disk)")
    print(f"{os.cpu_count()} cores, {args.workers} workers\n")
    print(
        "| engine | models | first run s | models/s | bytes read/model | bytes hashed/model "
        "| no-change rerun s | rerun bytes read | rerun bytes hashed |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        engines = [("plain", bench_plain)] + ([] if args.no_flow else [("prefect", bench_flow)])
        for name, fn in engines:
            db = Path(tmp) / f"{name}.duckdb"
            first, first_s, rerun, rerun_s = fn(root, db, args.workers)
            print(_row(name, first["n_seen"], first, first_s, rerun, rerun_s), flush=True)
        size = (Path(tmp) / "plain.duckdb").stat().st_size
        data = read_index(Path(tmp) / "plain.duckdb")
    print(
        f"\nindex file {size / 1e6:.1f} MB: {data.models.height} models, "
        f"{data.fingerprints.height} fingerprinted tensors, {data.edges.height} edges"
    )


if __name__ == "__main__":
    main()
