"""Lineage accuracy on the zoo, side by side with MoTHer, and scaling on synthetic prints.

    python bench/lineage.py [--size small medium] [--seed 0 1 2 3] [--zoo DIR ...]
                            [--scaling 100 1000 10000]

Zoos are built on first use into .cache/zoo-<size>-seed<seed> (a medium zoo takes minutes).

For each zoo it prints directed-edge precision/recall/F1, family ARI, root accuracy,
relation accuracy, merge recall, cross-family edges and copies found, for:
  ours (weights only)   names replaced by hashes, no times, no cards
  ours (+upload times)  the same, plus creation times in truth order
  ours (full weights)   weights only, every entry of every tensor instead of the sample
  MoTHer (full weights) the published method with lambda 0.3 and Ward with the true K
and the calibration of our confidences. Not a timed test: figures go into README.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np

from heritage.fingerprint import Fingerprint, FingerprintSettings, TensorPrint, fingerprint
from heritage.formats import open_checkpoint
from heritage.lineage import (
    LineageSettings,
    ModelInput,
    TruthModel,
    architecture_key,
    recover_lineage,
    score,
)
from heritage.lineage.mother import mother
from heritage.zoo import load_truth
from heritage.zoo.cache import cached_zoo

FULL = FingerprintSettings(rows=10**9, cols=10**9)


def _hash(location: str) -> str:
    return "m-" + hashlib.sha256(location.encode()).hexdigest()[:12]


def _row(label: str, s, secs: float) -> str:
    r = s.as_row()
    return (
        f"| {label} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
        f"{r['family_ari']:.3f} | {r['root_acc']:.3f} | {r['relation_acc']:.3f} | "
        f"{r['merge_recall']:.3f} | {r['cross_family_edges']} | {r['copies_found']:.3f} | "
        f"{secs:.2f} |"
    )


def run_zoo(size: str, seed: int, root: Path | None = None) -> None:
    root = root or cached_zoo(size=size, seed=seed)
    truth = load_truth(root)
    records = truth["models"]
    hashed = {m["location"]: _hash(m["location"]) for m in records}
    tm = {
        hashed[m["location"]]: TruthModel(
            hashed[m["location"]],
            tuple(hashed[p] for p in m["parents"]),
            m["relation"],
            m["family"],
        )
        for m in records
    }
    t0 = time.perf_counter()
    prints: dict[str, Fingerprint] = {}
    full: dict[str, Fingerprint] = {}
    for m in records:
        with open_checkpoint(root / m["location"]) as ckpt:
            prints[hashed[m["location"]]] = fingerprint(ckpt)
            full[hashed[m["location"]]] = fingerprint(ckpt, FULL)
    read_s = time.perf_counter() - t0
    fp_bytes = np.mean([fp.nbytes for fp in prints.values()])
    full_bytes = np.mean([fp.nbytes for fp in full.values()])
    order = {hashed[m["location"]]: k for k, m in enumerate(records)}  # parents come first

    print(f"\n### zoo {size}, seed {seed}: {len(records)} models ({root})")
    print(
        f"fingerprint {fp_bytes / 1024:.1f} KB/model (full weights {full_bytes / 1024:.1f} KB); read {read_s:.1f} s"
    )
    print(
        "| method | precision | recall | F1 | family ARI | root acc | relation acc | merge recall | cross-family edges | copies found | time (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    runs = [
        (
            "ours (weights only)",
            [ModelInput(i, fp) for i, fp in prints.items()],
            LineageSettings(use_times=False),
        ),
        (
            "ours (+upload times)",
            [ModelInput(i, fp, float(order[i])) for i, fp in prints.items()],
            LineageSettings(),
        ),
        (
            "ours (full weights)",
            [ModelInput(i, fp) for i, fp in full.items()],
            LineageSettings(use_times=False),
        ),
    ]
    calibration = None
    for label, inputs, settings in runs:
        t0 = time.perf_counter()
        graph = recover_lineage(inputs, settings)
        secs = time.perf_counter() - t0
        s = score(graph, tm)
        calibration = calibration or s.calibration
        print(_row(label, s, secs))
    # MoTHer: per architecture group, full weights, the true number of families
    t0 = time.perf_counter()
    import networkx as nx

    combined = nx.DiGraph()
    groups: dict[str, list[str]] = {}
    for i, fp in full.items():
        groups.setdefault(architecture_key(fp), []).append(i)
    for ids in groups.values():
        weights = {
            i: {
                n: t.values.reshape(t.shape)
                for n, t in full[i].tensors.items()
                if len(t.shape) == 2
            }
            for i in ids
        }
        k = len({tm[i].family for i in ids})
        combined.update(mother(weights, k, prefix=f"mother-{len(combined)}"))
    s = score(combined, tm)
    print(_row("MoTHer (full weights)", s, time.perf_counter() - t0))
    print("\ncalibration of ours (weights only): confidence bucket -> edges, accuracy")
    for bucket, (n, acc) in (calibration or {}).items():
        print(f"  {bucket:>6}: {n:4d} edges, {acc:.3f} right")


def synthetic_prints(
    n: int, families: int, seed: int = 0, merge_share: float = 0.05
) -> list[ModelInput]:
    """Fingerprints of one architecture: random roots and random-walk fine-tune trees,
    ``merge_share`` of the models being merges of two random members of their family
    (rarely siblings: the worst case for the root choice, which then builds several
    final trees)."""
    rng = np.random.default_rng(seed)
    shapes = [(32, 128)] * 8
    roots = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(families)]
    models: list[list[np.ndarray]] = []
    members: list[list[int]] = [[] for _ in range(families)]
    for k in range(n):
        fam = k % families
        if k < families:
            weights = roots[fam]
        elif len(members[fam]) >= 3 and rng.random() < merge_share:
            a, b = rng.choice(members[fam], size=2, replace=False)
            alpha = float(rng.uniform(0.3, 0.7))
            pairs = zip(models[a], models[b], strict=True)
            weights = [alpha * wa + (1 - alpha) * wb for wa, wb in pairs]
        else:
            parent = models[members[fam][int(rng.integers(0, len(members[fam])))]]
            weights = [w + 0.05 * rng.standard_normal(w.shape).astype(np.float32) for w in parent]
        members[fam].append(k)
        models.append(weights)
    out = []
    for k, ws in enumerate(models):
        tensors = {
            f"layers.{j}.w": TensorPrint(
                f"layers.{j}.w", "F32", (512, 512), np.arange(32), (0, 128), w
            )
            for j, w in enumerate(ws)
        }
        out.append(ModelInput(f"s{k:05d}", Fingerprint(tensors)))
    return out


def run_scaling(sizes: list[int], merge_share: float = 0.05) -> None:
    print(
        "\n### scaling: synthetic fingerprints of one architecture"
        f" (8 matrices, 10 families, {merge_share:.0%} merges)"
    )
    print("| models | lineage time (s) |")
    print("|---|---|")
    for n in sizes:
        inputs = synthetic_prints(n, 10, merge_share=merge_share)
        t0 = time.perf_counter()
        recover_lineage(inputs, LineageSettings(use_times=False))
        print(f"| {n} | {time.perf_counter() - t0:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", nargs="*", default=["small", "medium"])
    parser.add_argument("--seed", type=int, nargs="*", default=[0], help="zoo seeds to run")
    parser.add_argument("--scaling", nargs="*", type=int, default=[100, 1000, 10000])
    parser.add_argument("--zoo", type=Path, nargs="*", default=[], help="extra zoo folders")
    parser.add_argument(
        "--merge-share", type=float, default=0.05, help="share of merges in the scaling prints"
    )
    args = parser.parse_args()
    for size in args.size:
        for seed in args.seed:
            run_zoo(size, seed)
    for folder in args.zoo:
        truth = load_truth(folder)
        run_zoo(truth["size"], truth["seed"], folder)
    if args.scaling:
        run_scaling(args.scaling, args.merge_share)


if __name__ == "__main__":
    main()
