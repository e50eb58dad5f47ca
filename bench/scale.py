"""Lineage at scale: time, peak memory and neighbour recall for 1k-100k models.

    python bench/scale.py [--sizes 1000 10000 100000] [--shapes star forest chains]
                          [--recall-queries 1000]

Each (shape, size) runs in a fresh process (bench/shapes.py makes the fingerprints: one
architecture, w' = 1.01 w + noise), so its peak RSS is its own; the figure includes the
fingerprints themselves (4 x 8 x 128 float32 per model). Per run it prints:

- lineage time of ``recover_lineage`` (weights only) and the process's peak RSS;
- directed and undirected edges right;
- neighbour recall@10 on ``--recall-queries`` sampled models: the ANN index against
  brute force over the same sketches (the index's own error), the ANN pairs after exact
  re-ranking against the exact 10 nearest in the full evidence (what lineage gets), and
  how often the true parent is among a model's pairs. In a star the siblings all sit at
  about the same distance, so its exact top 10 is decided by noise the 256-d sketch
  cannot see; the parent is what matters there.

Then a projection to 1,000,000 models from the slope between the two largest sizes.
Not a timed test: the figures go into README with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def run_one(shape: str, n: int, queries: int) -> dict:
    sys.path.insert(0, str(HERE))
    from heritage.lineage import LineageSettings, recover_lineage
    from heritage.lineage.evidence import evidence_layout, evidence_vectors
    from heritage.lineage.neighbours import ann_neighbours, ann_pairs, sketch
    from shapes import shape_prints

    inputs, parent = shape_prints(shape, n)
    t0 = time.perf_counter()
    g = recover_lineage(inputs, LineageSettings(use_times=False))
    secs = time.perf_counter() - t0
    directed = sum(1 for u, v in g.edges if parent.get(v) == u) / len(parent)
    undirected = sum(1 for u, v in g.edges if parent.get(v) == u or parent.get(u) == v) / len(
        parent
    )
    out = {"shape": shape, "models": n, "seconds": secs, "directed": directed}
    out["undirected"] = undirected
    if queries:
        # the neighbour search lineage runs on a group this large, measured on a sample
        fps = [m.fingerprint for m in inputs]
        x = evidence_vectors(fps, evidence_layout(fps), np.float32, raw=False).unit
        sk = sketch((x[k : k + 4096] for k in range(0, len(x), 4096)), x.shape[1])
        k = 10
        ann = ann_neighbours(sk, k)
        pairs, _ = ann_pairs(sk, x, k)
        found: dict[int, set[int]] = {}
        for i, j in pairs:
            found.setdefault(int(i), set()).add(int(j))
            found.setdefault(int(j), set()).add(int(i))
        rng = np.random.default_rng(1)
        sample = rng.choice(n, size=min(queries, n), replace=False)
        index = {m.id: i for i, m in enumerate(inputs)}
        ann_hits = exact_hits = parent_hits = parents = 0
        for q in sample:
            ds = ((sk - sk[q]) ** 2).sum(axis=1)
            ds[q] = np.inf
            ann_hits += len(set(np.argpartition(ds, k)[:k].tolist()) & set(ann[q].tolist()))
            dx = ((x - x[q]) ** 2).sum(axis=1)
            dx[q] = np.inf
            exact_hits += len(set(np.argpartition(dx, k)[:k].tolist()) & found.get(int(q), set()))
            p = parent.get(inputs[q].id)
            if p is not None:
                parents += 1
                parent_hits += index[p] in found.get(int(q), set())
        out["ann_recall"] = ann_hits / (k * len(sample))
        out["exact_recall"] = exact_hits / (k * len(sample))
        out["parent_found"] = parent_hits / max(parents, 1)
    return out


def measure(shape: str, n: int, queries: int) -> dict:
    """Run one configuration in a child process; its peak RSS from wait4."""
    cmd = [sys.executable, __file__, "--one", shape, str(n), "--recall-queries", str(queries)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"scale: {shape} {n} failed with exit code {proc.returncode}")
    result = json.loads(text.strip().splitlines()[-1])
    result["peak_rss_gib"] = usage.ru_maxrss / 2**20  # kilobytes on Linux
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--shapes", nargs="+", default=["star", "forest", "chains"])
    parser.add_argument("--recall-queries", type=int, default=1000)
    parser.add_argument("--one", nargs=2, metavar=("SHAPE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.recall_queries)))
        return
    print(f"cores: {os.cpu_count()}")
    print(
        "| shape | models | lineage (s) | peak RSS (GiB) | directed right | undirected right |"
        " ANN recall@10 vs brute force (sketch) | recall@10 vs exact | parent found |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    results: dict[str, list[dict]] = {}
    for shape in args.shapes:
        for n in args.sizes:
            r = measure(shape, n, args.recall_queries)
            results.setdefault(shape, []).append(r)
            rec = [
                f"{r[k]:.4f}" if k in r else "n/a"
                for k in ("ann_recall", "exact_recall", "parent_found")
            ]
            print(
                f"| {shape} | {n} | {r['seconds']:.1f} | {r['peak_rss_gib']:.2f} |"
                f" {r['directed']:.3f} | {r['undirected']:.3f} | {' | '.join(rec)} |",
                flush=True,
            )
    print("\nprojection to 1,000,000 models (slope between the two largest sizes):")
    for shape, rows in results.items():
        if len(rows) < 2:
            continue
        a, b = rows[-2], rows[-1]
        slope = np.log(b["seconds"] / a["seconds"]) / np.log(b["models"] / a["models"])
        secs = b["seconds"] * (1e6 / b["models"]) ** slope
        mem = a["peak_rss_gib"] + (b["peak_rss_gib"] - a["peak_rss_gib"]) * (
            (1e6 - a["models"]) / (b["models"] - a["models"])
        )
        print(
            f"  {shape}: time ~ n^{slope:.2f} -> {secs / 60:.0f} min; peak RSS (linear) -> {mem:.0f} GiB"
        )


if __name__ == "__main__":
    main()
