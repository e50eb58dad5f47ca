"""Lineage at scale: time, peak memory and neighbour recall for 1k-100k models.

    python bench/scale.py [--sizes 1000 10000 100000] [--shapes star forest chains]
                          [--recall-queries 1000]
    python bench/scale.py --dask 1 2 [--dask-size 20000]

Each (shape, size) runs in a fresh process (bench/shapes.py makes the fingerprints: one
architecture, w' = 1.01 w + noise), so its peak RSS is its own; the figure includes the
fingerprints themselves (4 x 8 x 128 float32 per model). Per run it prints:

- lineage time of ``recover_lineage`` (weights only) and the process's peak RSS;
- the time ``update_lineage`` takes to add one more model (a fine-tune of the first
  family's root) to that lineage, and how many models it planned again;
- directed and undirected edges right;
- neighbour recall@10 on ``--recall-queries`` sampled models: the share of the exact 10
  nearest sketches (brute force) among the 30 candidates lineage re-ranks, for the
  search it runs at this size (exact up to EXACT_SKETCH_LIMIT models; above, HNSW
  unless HNSW's recall on a sample is below MIN_RECALL) and for HNSW alone; then the pairs
  lineage keeps (after exact re-ranking) against the exact 10 nearest in the full
  evidence, and how often the true parent is among a model's pairs. In a star the
  siblings all sit at about the same distance, so its exact top 10 is decided by noise
  the 256-d sketch cannot see; the parent is what matters there.

Then a projection to 1,000,000 models from the slope between the two largest sizes.
``--dask`` instead runs a forest's family jobs (``family_lineage``) on LocalClusters of
the given numbers of worker processes, and checks their edges equal the in-process ones;
the group stage (kinship) runs in the calling process either way.
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
    from heritage.lineage import LineageSettings, ModelInput, recover_lineage
    from heritage.lineage.evidence import evidence_layout, evidence_vectors
    from heritage.lineage.incremental import update_lineage
    from heritage.lineage.neighbours import (
        ann_neighbours,
        ann_pairs,
        sketch,
        sketch_neighbours,
    )
    from shapes import edges_right, finetune_print, shape_prints

    inputs, parent = shape_prints(shape, n)
    t0 = time.perf_counter()
    g = recover_lineage(inputs, LineageSettings(use_times=False))
    secs = time.perf_counter() - t0
    directed, undirected = edges_right(g, parent)
    out = {"shape": shape, "models": n, "seconds": secs, "directed": directed}
    out["undirected"] = undirected
    # one more model (a fine-tune of the first family's root) into the n-model lineage
    new = ModelInput("added-one", finetune_print(inputs[0].fingerprint))
    t0 = time.perf_counter()
    update = update_lineage(g, [*inputs, new], {new.id}, LineageSettings(use_times=False))
    out["add_one_seconds"] = time.perf_counter() - t0
    ug, root_id = update.graph, inputs[0].id
    if ug.has_edge(root_id, new.id):
        out["add_one"] = ""
    elif ug.has_edge(new.id, root_id):
        out["add_one"] = f" (reversed, {ug.edges[new.id, root_id]['direction']})"
    else:
        out["add_one"] = " (wrong parent)"
    out["add_one_replanned"] = len(update.planned)
    if queries:
        # the neighbour search lineage runs on a group this large, measured on a sample
        fps = [m.fingerprint for m in inputs]
        x = evidence_vectors(fps, evidence_layout(fps), np.float32, raw=False).unit
        sk = sketch((x[k : k + 4096] for k in range(0, len(x), 4096)), x.shape[1])
        k = 10
        # the candidates lineage re-ranks: 3k nearest sketches (ann_pairs)
        used = sketch_neighbours(sk, 3 * k, want=k)
        ann = ann_neighbours(sk, 3 * k)
        pairs, _ = ann_pairs(sk, x, k)
        found: dict[int, set[int]] = {}
        for i, j in pairs:
            found.setdefault(int(i), set()).add(int(j))
            found.setdefault(int(j), set()).add(int(i))
        rng = np.random.default_rng(1)
        sample = rng.choice(n, size=min(queries, n), replace=False)
        index = {m.id: i for i, m in enumerate(inputs)}
        used_hits = ann_hits = exact_hits = parent_hits = parents = 0
        # brute force for the sampled queries, as matrix products (no n x dims copies)
        sk_sq = np.einsum("ij,ij->i", sk, sk)
        x_sq = np.einsum("ij,ij->i", x, x)
        for start in range(0, len(sample), 100):
            qs = sample[start : start + 100]
            ds = sk_sq[None, :] + sk_sq[qs, None] - 2.0 * (sk[qs] @ sk.T)
            dx = x_sq[None, :] + x_sq[qs, None] - 2.0 * (x[qs] @ x.T)
            ds[np.arange(len(qs)), qs] = np.inf
            dx[np.arange(len(qs)), qs] = np.inf
            for row, q in enumerate(qs):
                top = set(np.argpartition(ds[row], k)[:k].tolist())
                used_hits += len(top & set(used[q].tolist()))
                ann_hits += len(top & set(ann[q].tolist()))
                exact = set(np.argpartition(dx[row], k)[:k].tolist())
                exact_hits += len(exact & found.get(int(q), set()))
                p = parent.get(inputs[q].id)
                if p is not None:
                    parents += 1
                    parent_hits += index[p] in found.get(int(q), set())
        out["used_recall"] = used_hits / (k * len(sample))
        out["ann_recall"] = ann_hits / (k * len(sample))
        out["exact_recall"] = exact_hits / (k * len(sample))
        out["parent_found"] = parent_hits / max(parents, 1)
    return out


def run_dask(shape: str, n: int, workers: list[int]) -> list[dict]:
    """Family jobs on a LocalCluster of each size (worker processes, one thread each),
    against running them here; edges compared as sorted rows."""
    import distributed

    sys.path.insert(0, str(HERE))
    from heritage.lineage import LineageSettings, family_jobs, family_lineage, merge_families
    from shapes import shape_prints

    inputs, _ = shape_prints(shape, n)
    settings = LineageSettings(use_times=False)

    def rows(g) -> list:
        return sorted(
            (u, v, sorted((k, str(x)) for k, x in d.items())) for u, v, d in g.edges(data=True)
        )

    t0 = time.perf_counter()
    jobs = family_jobs(inputs, settings)
    group_secs = time.perf_counter() - t0
    t0 = time.perf_counter()
    local = merge_families(family_lineage(j, settings) for j in jobs)
    out = [{"workers": "the calling process", "seconds": group_secs + time.perf_counter() - t0}]
    for w in workers:
        with (
            distributed.LocalCluster(
                n_workers=w, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            client.run(lambda: __import__("heritage.lineage"))  # warm the imports
            t0 = time.perf_counter()
            futures = client.map(family_lineage, jobs, settings=settings, pure=False)
            graph = merge_families(client.gather(futures))
            secs = group_secs + time.perf_counter() - t0
        out.append({"workers": w, "seconds": secs, "same": rows(graph) == rows(local)})
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
    parser.add_argument(
        "--dask",
        type=int,
        nargs="*",
        metavar="WORKERS",
        help="instead: the family jobs of a forest of --dask-size models on LocalClusters"
        " of these many worker processes",
    )
    parser.add_argument("--dask-size", type=int, default=20000)
    parser.add_argument("--one", nargs=2, metavar=("SHAPE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one[0], int(args.one[1]), args.recall_queries)))
        return
    if args.dask:
        print(f"cores: {os.cpu_count()}; forest of {args.dask_size} models")
        print("| family jobs run on | lineage (s) | edges equal to in-process |")
        print("|---|---|---|")
        for r in run_dask("forest", args.dask_size, args.dask):
            same = "" if "same" not in r else ("yes" if r["same"] else "NO")
            where = r["workers"] if isinstance(r["workers"], str) else f"{r['workers']} worker(s)"
            print(f"| {where} | {r['seconds']:.1f} | {same} |", flush=True)
        return
    print(f"cores: {os.cpu_count()}")
    print(
        "| shape | models | lineage (s) | peak RSS (GiB) | directed right | undirected right |"
        " recall@10 vs brute force: search used | HNSW alone | pairs vs exact | parent found |"
        " add one model (s) | models replanned |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    results: dict[str, list[dict]] = {}
    for shape in args.shapes:
        for n in args.sizes:
            r = measure(shape, n, args.recall_queries)
            results.setdefault(shape, []).append(r)
            rec = [
                f"{r[k]:.4f}" if k in r else "n/a"
                for k in ("used_recall", "ann_recall", "exact_recall", "parent_found")
            ]
            print(
                f"| {shape} | {n} | {r['seconds']:.1f} | {r['peak_rss_gib']:.2f} |"
                f" {r['directed']:.3f} | {r['undirected']:.3f} | {' | '.join(rec)} |"
                f" {r['add_one_seconds']:.2f}{r['add_one']} |"
                f" {r['add_one_replanned']} |",
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
