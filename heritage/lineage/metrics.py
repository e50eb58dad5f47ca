"""Scores of a recovered lineage graph against known truth (the zoo's truth.json).

Exact duplicates are indistinguishable by their weights, so truth is compared up to
duplicate classes: an edge counts as right when its ends are in the right classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import networkx as nx
import numpy as np


@dataclass(frozen=True)
class TruthModel:
    id: str
    parents: tuple[str, ...]
    relation: str  # root, finetune, adapter, merge, quantized, duplicate
    family: str


@dataclass
class Scores:
    precision: float
    recall: float
    f1: float
    family_ari: float
    root_accuracy: float
    relation_accuracy: float
    merge_recall: float
    cross_family_edges: int
    copies_found: float  # duplicates and quantized copies attached to the right source
    calibration: dict[str, tuple[int, float]]  # confidence bucket -> (edges, accuracy)
    undirected_f1: float = 0.0  # edges right either way round
    # true relation -> (edges found either way round, share given that relation)
    relation_by_kind: dict[str, tuple[int, float]] = field(default_factory=dict)
    # every predicted edge: (stated confidence, right as directed)
    outcomes: list[tuple[float, bool]] = field(default_factory=list)

    def as_row(self) -> dict[str, float]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "family_ari": self.family_ari,
            "root_acc": self.root_accuracy,
            "relation_acc": self.relation_accuracy,
            "merge_recall": self.merge_recall,
            "cross_family_edges": self.cross_family_edges,
            "copies_found": self.copies_found,
            "undirected_f1": self.undirected_f1,
        }


def adjusted_rand_index(labels_a: Sequence[object], labels_b: Sequence[object]) -> float:
    """ARI of two clusterings of the same items (1 = identical, ~0 = chance)."""
    a = np.unique(np.asarray([str(x) for x in labels_a]), return_inverse=True)[1]
    b = np.unique(np.asarray([str(x) for x in labels_b]), return_inverse=True)[1]
    table = np.zeros((a.max() + 1, b.max() + 1), dtype=np.int64)
    np.add.at(table, (a, b), 1)

    def comb2(v: np.ndarray) -> float:
        return float((v * (v - 1) // 2).sum())

    n = len(a)
    index = comb2(table)
    sa, sb = comb2(table.sum(1)), comb2(table.sum(0))
    total = n * (n - 1) / 2
    expected = sa * sb / total if total else 0.0
    top = (sa + sb) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)


def duplicate_classes(truth: Mapping[str, TruthModel]) -> dict[str, str]:
    """Each model's class of exact duplicates (named by its smallest id)."""
    uf = {m: m for m in truth}

    def find(a: str) -> str:
        while uf[a] != a:
            a = uf[a]
        return a

    for m in truth.values():
        if m.relation == "duplicate":
            ra, rb = find(m.id), find(m.parents[0])
            if ra != rb:
                uf[max(ra, rb)] = min(ra, rb)
    return {m: find(m) for m in truth}


def score(graph: nx.DiGraph, truth: Mapping[str, TruthModel]) -> Scores:
    cls = duplicate_classes(truth)
    true_edges: dict[tuple[str, str], str] = {}
    for m in truth.values():
        for p in m.parents:
            if m.relation == "duplicate":
                true_edges[tuple(sorted((cls[p], cls[m.id])))] = "duplicate"  # same class
            else:
                true_edges[(cls[p], cls[m.id])] = m.relation
    pred: dict[tuple[str, str], tuple[str, float]] = {}
    for u, v, data in graph.edges(data=True):
        key = (cls[u], cls[v])
        if data["relation"] == "duplicate":
            key = tuple(sorted(key))
        pred[key] = (data["relation"], data.get("confidence", 1.0))
    # duplicate edges compare as classes: a predicted duplicate inside a true class is right
    hits = [k for k in pred if k in true_edges]
    precision = len(hits) / len(pred) if pred else 1.0
    recall = len(hits) / len(true_edges) if true_edges else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0

    ids = sorted(truth)
    ari = adjusted_rand_index(
        [truth[i].family for i in ids], [graph.nodes[i].get("family", i) for i in ids]
    )
    true_roots = {cls[m.id] for m in truth.values() if m.relation == "root"}
    pred_roots = {cls[n] for n in graph.nodes if graph.in_degree(n) == 0}
    root_acc = len(true_roots & pred_roots) / len(true_roots) if true_roots else 1.0
    relation_ok = [pred[k][0] == true_edges[k] for k in hits]
    relation_acc = float(np.mean(relation_ok)) if relation_ok else 1.0
    undirected_true = {frozenset(k): r for k, r in true_edges.items() if k[0] != k[1]}
    undirected_pred = {frozenset(k): r for k, (r, _) in pred.items() if k[0] != k[1]}
    u_hits = [k for k in undirected_pred if k in undirected_true]
    up = len(u_hits) / len(undirected_pred) if undirected_pred else 1.0
    ur = len(u_hits) / len(undirected_true) if undirected_true else 1.0
    undirected_f1 = 2 * up * ur / (up + ur) if up + ur else 0.0
    by_kind: dict[str, list[bool]] = {}
    for k in u_hits:
        by_kind.setdefault(undirected_true[k], []).append(undirected_pred[k] == undirected_true[k])
    relation_by_kind = {r: (len(v), float(np.mean(v))) for r, v in sorted(by_kind.items())}
    merges = [m for m in truth.values() if m.relation == "merge"]
    merge_hits = sum(
        all(pred.get((cls[p], cls[m.id]), ("", 0))[0] == "merge" for p in m.parents) for m in merges
    )
    fam = {i: truth[i].family for i in truth}
    cross = sum(1 for u, v in graph.edges if fam[u] != fam[v])
    copies = [m for m in truth.values() if m.relation in ("duplicate", "quantized")]
    found = 0
    for m in copies:
        key = (cls[m.parents[0]], cls[m.id])
        if m.relation == "duplicate":
            found += int(any(cls[u] == cls[m.id] and cls[v] == cls[m.id] for u, v in graph.edges))
        else:
            found += int(pred.get(key, ("", 0))[0] == "quantized")
    buckets: dict[str, list[bool]] = {}
    for k, (_, conf) in pred.items():
        label = (
            ">=0.9"
            if conf >= 0.9
            else ">=0.8"
            if conf >= 0.8
            else ">=0.7"
            if conf >= 0.7
            else ">=0.5"
            if conf >= 0.5
            else "<0.5"
        )
        buckets.setdefault(label, []).append(k in true_edges)
    calibration = {b: (len(v), float(np.mean(v))) for b, v in sorted(buckets.items())}
    return Scores(
        precision,
        recall,
        f1,
        ari,
        root_acc,
        relation_acc,
        merge_hits / len(merges) if merges else 1.0,
        cross,
        found / len(copies) if copies else 1.0,
        calibration,
        undirected_f1,
        relation_by_kind,
        [(conf, k in true_edges) for k, (_, conf) in pred.items()],
    )


def reliability(
    outcomes: Sequence[tuple[float, bool]], bins: int = 10
) -> list[tuple[float, float, int, float, float]]:
    """Per confidence decile: (low, high, edges, mean stated confidence, share right)."""
    out = []
    for k in range(bins):
        lo, hi = k / bins, (k + 1) / bins
        inside = [(c, r) for c, r in outcomes if lo <= c < hi or (k == bins - 1 and c == 1.0)]
        if inside:
            out.append(
                (
                    lo,
                    hi,
                    len(inside),
                    float(np.mean([c for c, _ in inside])),
                    float(np.mean([r for _, r in inside])),
                )
            )
    return out
