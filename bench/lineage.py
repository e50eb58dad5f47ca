"""Lineage accuracy on zoos, side by side with a plain MST and MoTHer, and scaling.

    python bench/lineage.py --zoo DIR [DIR ...] [--scaling 100 1000] [--shapes]

For each zoo (names hashed, no cards) it prints directed-edge precision/recall/F1, the
undirected F1, family ARI, root accuracy, relation accuracy, merge recall, cross-family
edges and copies found, for:
  ours (weights only)    no times
  ours (+upload times)   creation times in truth order
  plain MST              minimum spanning tree inside each of our families (undirected only)
  MoTHer (full weights)  the published method (lambda 0.3, true K), both kurtosis directions;
                         the better one is "MoTHer"; merges and copies: n/a (not output)
then, over all zoos: mean and worst F1, two-model families, relation accuracy per kind,
and the reliability of our confidences per decile. ``--shapes`` runs the synthetic star
of 1,000 and forest of 2,000 (w' = 1.01 w + noise). Not a timed test: figures go into
README, each with the zoos it was measured on.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import networkx as nx
import numpy as np

from heritage.fingerprint import Fingerprint, TensorPrint
from heritage.lineage import LineageSettings, ModelInput, recover_lineage, score
from heritage.lineage.engine import plan_lineage
from heritage.lineage.evidence import architecture_key, build_evidence
from heritage.lineage.metrics import Scores, duplicate_classes, reliability
from heritage.lineage.mother import mother_both
from heritage.lineage.types import Direction

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shapes import edges_right, shape_prints  # noqa: E402
from zoodata import ZooData, load_zoo  # noqa: E402

HEADER = (
    "| zoo | method | precision | recall | F1 | undirected F1 | family ARI | root acc |"
    " relation acc | merge recall | cross-family edges | copies found | time (s) |"
)


def _f(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _row(
    zoo: str, label: str, s: Scores, secs: float, directed: bool = True, copies: bool = True
) -> str:
    return (
        f"| {zoo} | {label} | {_f(s.precision if directed else None)} | "
        f"{_f(s.recall if directed else None)} | {_f(s.f1 if directed else None)} | "
        f"{s.undirected_f1:.3f} | {s.family_ari:.3f} | {_f(s.root_accuracy if directed else None)} | "
        f"{_f(s.relation_accuracy if copies else None)} | {_f(s.merge_recall if copies else None)} | "
        f"{s.cross_family_edges} | {_f(s.copies_found if copies else None)} | {secs:.2f} |"
    )


def plain_mst(zoo: ZooData) -> nx.DiGraph:
    """A minimum spanning tree inside each of our families, on the same evidence."""
    families = nx.DiGraph()
    plan_lineage(
        [ModelInput(i, fp) for i, fp in zoo.prints.items()],
        LineageSettings(use_times=False),
        families,
    )
    groups: dict[str, list[str]] = {}
    for i, fp in zoo.prints.items():
        groups.setdefault(architecture_key(fp), []).append(i)
    g = nx.DiGraph()
    for ids in groups.values():
        ids = sorted(ids)
        x = build_evidence([zoo.prints[i] for i in ids]).unit
        full = nx.Graph()
        for a, i in enumerate(ids):
            g.add_node(i, family=families.nodes[i]["family"])
            full.add_node(i)
            for b in range(a + 1, len(ids)):
                if families.nodes[i]["family"] == families.nodes[ids[b]]["family"]:
                    full.add_edge(i, ids[b], weight=float(np.linalg.norm(x[a] - x[b])))
        for a, b in nx.minimum_spanning_tree(full).edges:
            g.add_edge(a, b, relation="finetune", confidence=1.0)
    return g


def run_zoo(zoo: ZooData, full: ZooData | None, totals: dict) -> None:
    label = zoo.label
    n_fams = len({m.family for m in zoo.truth.values()})
    print(f"\n### {label}: {len(zoo.truth)} models, {n_fams} families ({zoo.folder})")
    print(HEADER)
    print("|" + "---|" * 13)
    runs = [
        (
            "ours (weights only)",
            [ModelInput(i, fp) for i, fp in zoo.prints.items()],
            LineageSettings(use_times=False),
        ),
        (
            "ours (+upload times)",
            [ModelInput(i, fp, float(zoo.order[i])) for i, fp in zoo.prints.items()],
            LineageSettings(),
        ),
    ]
    for name, inputs, settings in runs:
        t0 = time.perf_counter()
        graph = recover_lineage(inputs, settings)
        secs = time.perf_counter() - t0
        s = score(graph, zoo.truth)
        print(_row(label, name, s, secs))
        totals.setdefault(name, []).append((label, s, secs))
        if name == "ours (weights only)":
            _two_model(zoo, graph, totals)
    t0 = time.perf_counter()
    s = score(plain_mst(zoo), zoo.truth)
    print(_row(label, "plain MST", s, time.perf_counter() - t0, directed=False, copies=False))
    totals.setdefault("plain MST", []).append((label, s, 0.0))
    if full is not None:
        t0 = time.perf_counter()
        graphs = {"decreasing": nx.DiGraph(), "increasing": nx.DiGraph()}
        groups: dict[str, list[str]] = {}
        for i, fp in full.prints.items():
            groups.setdefault(architecture_key(fp), []).append(i)
        for k, ids in enumerate(groups.values()):
            res = mother_both(
                {i: full.prints[i] for i in ids},
                len({zoo.truth[i].family for i in ids}),
                prefix=f"g{k}",
            )
            graphs["decreasing"].update(res.decreasing)
            graphs["increasing"].update(res.increasing)
        secs = time.perf_counter() - t0
        scored = {d: score(g, zoo.truth) for d, g in graphs.items()}
        best = max(scored, key=lambda d: scored[d].f1)
        totals.setdefault("MoTHer", []).append((label, scored[best], secs))
        for d in ("decreasing", "increasing"):
            tag = "MoTHer" if d == best else "MoTHer, other direction"
            print(_row(label, f"{tag} (kurtosis {d})", scored[d], secs, copies=False))


def _two_model(zoo: ZooData, graph: nx.DiGraph, totals: dict) -> None:
    """Families of exactly two distinct models: right, uncertain, or wrong (and how sure)."""
    cls = duplicate_classes(zoo.truth)
    fams: dict[str, set[str]] = {}
    for m in zoo.truth.values():
        fams.setdefault(m.family, set()).add(cls[m.id])
    out = totals.setdefault("two-model", [])
    for members in fams.values():
        if len(members) != 2:
            continue
        a, b = sorted(members)
        truth = {
            (cls[p], cls[m.id])
            for m in zoo.truth.values()
            for p in m.parents
            if cls[m.id] in members
        }
        edges = [(u, v, d) for u, v, d in graph.edges(data=True) if {cls[u], cls[v]} == {a, b}]
        if not edges:
            out.append(("missing", 0.0))
            continue
        u, v, d = edges[0]
        if d.get("direction") == Direction.UNCERTAIN:
            out.append(("uncertain", d["confidence"]))
        else:
            out.append(("right" if (cls[u], cls[v]) in truth else "wrong", d["confidence"]))


def summary(totals: dict) -> None:
    print("\n### summary over all zoos")
    print("| method | zoos | mean F1 | worst F1 | mean undirected F1 | worst ARI |")
    print("|---|---|---|---|---|---|")
    for name in ("ours (weights only)", "ours (+upload times)", "plain MST", "MoTHer"):
        rows = totals.get(name, [])
        if not rows:
            continue
        f1 = [s.f1 for _, s, _ in rows]
        uf = [s.undirected_f1 for _, s, _ in rows]
        directed = name != "plain MST"
        print(
            f"| {name} | {len(rows)} | {_f(np.mean(f1) if directed else None)} | "
            f"{_f(min(f1) if directed else None)} | {np.mean(uf):.3f} | {min(s.family_ari for _, s, _ in rows):.3f} |"
        )
    ours = totals.get("ours (weights only)", [])
    mst = {lab: s for lab, s, _ in totals.get("plain MST", [])}
    below = [
        (lab, s.undirected_f1, mst[lab].undirected_f1)
        for lab, s, _ in ours
        if s.undirected_f1 < mst[lab].undirected_f1 - 1e-9
    ]
    print(f"\nzoos where ours is below the plain MST on undirected edges: {len(below)} {below}")
    print(
        f"ours, weights only: lineage time per zoo {min(t for *_, t in ours):.2f}-{max(t for *_, t in ours):.2f} s"
    )
    two = totals.get("two-model", [])
    if two:
        kinds = {
            k: sum(1 for x, _ in two if x == k) for k in ("right", "uncertain", "wrong", "missing")
        }
        wrong_high = sum(1 for x, c in two if x == "wrong" and c > 0.6)
        print(
            f"two-model families: {len(two)}; right {kinds['right']}, uncertain {kinds['uncertain']}, "
            f"wrong {kinds['wrong']} ({wrong_high} stated above 0.6), missing {kinds['missing']}; "
            f"right or uncertain {(kinds['right'] + kinds['uncertain']) / len(two):.3f}"
        )
    by_kind: dict[str, list[tuple[int, float]]] = {}
    for _, s, _ in ours:
        for k, v in s.relation_by_kind.items():
            by_kind.setdefault(k, []).append(v)
    print(
        "relation accuracy per true kind (edges found either way round): "
        + ", ".join(
            f"{k} {sum(n * a for n, a in v) / max(sum(n for n, _ in v), 1):.3f} ({sum(n for n, _ in v)})"
            for k, v in sorted(by_kind.items())
        )
    )
    outcomes = [o for _, s, _ in ours for o in s.outcomes]
    print("\nreliability of ours (weights only), pooled: decile | edges | stated | right | gap")
    for lo, hi, n, stated, right in reliability(outcomes):
        flag = "" if n < 20 or abs(stated - right) <= 0.05 else "  <-- off by more than 0.05"
        print(
            f"  [{lo:.1f}, {hi:.1f}) | {n:5d} | {stated:.3f} | {right:.3f} | {right - stated:+.3f}{flag}"
        )
    top = [r for c, r in outcomes if c >= 0.9]
    if top:
        print(f"edges stated >= 0.9: {len(top)}, right {np.mean(top):.3f}")


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


def run_shapes() -> None:
    print("\n### synthetic shapes (w' = 1.01 w + noise; not training data for the fit)")
    print("| shape | models | directed right | undirected right | uncertain edges | time (s) |")
    print("|---|---|---|---|---|---|")
    for kind, n in (("star", 1000), ("forest", 2000)):
        inputs, parent = shape_prints(kind, n)
        t0 = time.perf_counter()
        g = recover_lineage(inputs, LineageSettings(use_times=False))
        secs = time.perf_counter() - t0
        directed, undirected = edges_right(g, parent)
        unsure = sum(1 for *_, d in g.edges(data=True) if d.get("direction") == Direction.UNCERTAIN)
        print(
            f"| {kind} | {n} | {directed:.3f} | {undirected:.3f} | {unsure} | {secs:.2f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, nargs="*", default=[], help="zoo folders")
    parser.add_argument("--scaling", nargs="*", type=int, default=[])
    parser.add_argument("--shapes", action="store_true", help="the synthetic star and forest")
    parser.add_argument("--no-mother", action="store_true", help="skip MoTHer (reads full weights)")
    parser.add_argument(
        "--merge-share", type=float, default=0.05, help="share of merges in the scaling prints"
    )
    args = parser.parse_args()
    totals: dict = {}
    for folder in args.zoo:
        zoo = load_zoo(folder)
        full = None if args.no_mother else load_zoo(folder, full=True)
        run_zoo(zoo, full, totals)
    if args.zoo:
        summary(totals)
    if args.shapes:
        run_shapes()
    if args.scaling:
        run_scaling(args.scaling, args.merge_share)


if __name__ == "__main__":
    main()
