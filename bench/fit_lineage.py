"""Fit the lineage engine's direction model on development zoos; write scorer.json.

    python bench/fit_lineage.py --zoo DIR [DIR ...] [--out heritage/lineage/scorer.json]

Only development zoos belong here (zoo seeds 0-49, the real-weights dev split); test
zoos (seeds 100-119, the real-weights test split) are for bench/lineage.py alone.

1. Every zoo is planned (families, copies, merges, spanning trees) from weights alone,
   with names hashed; each family's tree gets root features (heritage.lineage.direction).
   Each zoo is planned twice, without and with upload times (truth order), so the time
   feature gets a weight too.
2. The root model: a logistic regression without intercept on feature differences
   (true root minus each other node, weighted so every family counts once), i.e. a
   pairwise ranking fit of the log-linear posterior over roots.
3. Calibration, leave-one-zoo-out: each zoo's edges are oriented by weights fitted on the
   other zoos, and isotonic regressions map an edge's direction probability to the share
   of such edges right as directed (its confidence), and right in direction among edges
   right either way round (which marks edges "uncertain" below ``UNCERTAIN_BELOW``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from heritage.lineage import LineageSettings, ModelInput, recover_lineage
from heritage.lineage.direction import FEATURES, FamilyTree, Scorer, orient, root_features
from heritage.lineage.engine import plan_lineage
from heritage.lineage.metrics import duplicate_classes
from heritage.lineage.tree import REGRAFT_FEATURES, SiblingTest, regraft_features

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zoodata import ZooData, ancestors, load_zoo  # noqa: E402

# an edge whose direction is right less than 3 times in 4 says so: "uncertain"
UNCERTAIN_BELOW = 0.75
OUT = Path(__file__).resolve().parents[1] / "heritage" / "lineage" / "scorer.json"


@dataclass
class Example:
    zoo: str
    tree: FamilyTree
    features: np.ndarray
    root: int  # local index of the true root
    true_edges: set[tuple[str, str]]  # (parent class, child class)
    classes: list[str]  # class of each tree node


def examples(zoo: ZooData, with_times: bool) -> tuple[list[Example], int]:
    inputs = [
        ModelInput(i, fp, float(zoo.order[i]) if with_times else None)
        for i, fp in zoo.prints.items()
    ]
    plans = plan_lineage(inputs, LineageSettings(use_times=with_times))
    cls = duplicate_classes(zoo.truth)
    anc = {m: {cls[a] for a in s} for m, s in ancestors(zoo.truth).items()}
    true_edges = {
        (cls[p], cls[m.id])
        for m in zoo.truth.values()
        for p in m.parents
        if m.relation != "duplicate"
    }
    out, skipped = [], 0
    for plan in plans:
        tree = plan.tree
        if tree.n < 2:
            continue
        classes = [cls[i] for i in tree.ids]
        cset = set(classes)
        roots = [k for k, i in enumerate(tree.ids) if not (anc[i] & (cset - {classes[k]}))]
        if len(roots) != 1:
            skipped += 1
            continue
        out.append(Example(zoo.label, tree, root_features(tree), roots[0], true_edges, classes))
    return out, skipped


def fit_coef(train: list[Example], c: float = 1.0) -> np.ndarray:
    rows, weights = [], []
    for ex in train:
        others = [k for k in range(ex.tree.n) if k != ex.root]
        diff = ex.features[ex.root][None, :] - ex.features[others]
        rows.append(diff)
        weights.append(np.full(len(others), 1.0 / len(others)))
    x = np.concatenate(rows)
    w = np.concatenate(weights)
    xx = np.concatenate([x, -x])
    yy = np.concatenate([np.ones(len(x)), np.zeros(len(x))])
    model = LogisticRegression(fit_intercept=False, C=c, max_iter=5000)
    model.fit(xx, yy, sample_weight=np.concatenate([w, w]))
    return model.coef_[0]


def scorer_with(coef: np.ndarray, test: SiblingTest | None = None) -> Scorer:
    empty = (np.zeros(0), np.zeros(0))
    return Scorer(coef, empty, empty, 0.0, "", test)


def regraft_examples(exs: list[Example], coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each child v of u under g in the trees oriented by ``coef``, labelled 1 when g is
    v's true parent, 0 when u is (pairs where neither is are left out)."""
    rows, labels = [], []
    for ex in exs:
        res = orient(ex.tree, scorer_with(coef))
        parent = {e.child: e.parent for e in res.edges}
        for v, u in parent.items():
            g = parent.get(u)
            if g is None:
                continue
            cv, cu, cg = ex.classes[v], ex.classes[u], ex.classes[g]
            up, here = (cg, cv) in ex.true_edges, (cu, cv) in ex.true_edges
            if up or here:
                rows.append(regraft_features(g, u, v, ex.tree.dist))
                labels.append(1.0 if up else 0.0)
    return np.array(rows).reshape(-1, len(REGRAFT_FEATURES)), np.array(labels)


def fit_sibling_test(exs: list[Example], coef: np.ndarray) -> SiblingTest | None:
    """A depth-3 decision tree (at least 8 cases a leaf) over the regraft features."""
    x, y = regraft_examples(exs, coef)
    if len(set(y.tolist())) < 2:
        return None
    model = DecisionTreeClassifier(max_depth=3, min_samples_leaf=8, random_state=0).fit(x, y)
    t = model.tree_
    share = t.value[:, 0, 1] / np.maximum(t.value[:, 0, :].sum(axis=1), 1e-12)
    return SiblingTest(
        tuple(int(v) for v in t.feature),
        tuple(round(float(v), 6) for v in t.threshold),
        tuple(int(v) for v in t.children_left),
        tuple(int(v) for v in t.children_right),
        tuple(round(float(v), 6) for v in share),
    )


def edge_outcomes(
    exs: list[Example], coef: np.ndarray, test: SiblingTest | None
) -> list[tuple[float, bool, bool]]:
    """(direction probability, right as directed, right either way) per tree edge."""
    out = []
    for ex in exs:
        res = orient(ex.tree, scorer_with(coef, test))
        for e in res.edges:
            p, c = ex.classes[e.parent], ex.classes[e.child]
            out.append((e.probability, (p, c) in ex.true_edges, (c, p) in ex.true_edges))
    return out


def fit_relation_maps(folders: list[Path]) -> dict[str, dict[str, list[float]]]:
    """Per copy and merge relation: the engine's own confidence -> share right."""
    raw = scorer_with(np.zeros(len(FEATURES)))  # copies and merges only: no direction
    seen: dict[str, list[tuple[float, bool]]] = {}
    for folder in folders:
        zoo = load_zoo(folder)
        g = recover_lineage(
            [ModelInput(i, fp) for i, fp in zoo.prints.items()],
            LineageSettings(use_times=False),
            raw,
        )
        cls = duplicate_classes(zoo.truth)
        true = {(cls[p], cls[m.id]) for m in zoo.truth.values() for p in m.parents}
        for u, v, d in g.edges(data=True):
            rel = str(d["relation"])
            if rel in ("duplicate", "quantized", "merge"):
                key = (cls[u], cls[v])
                right = key in true if rel != "duplicate" else cls[u] == cls[v]
                seen.setdefault(rel, []).append((d["confidence"], right))
    out = {}
    for rel, pairs in sorted(seen.items()):
        x = np.array([c for c, _ in pairs])
        y = np.array([r for _, r in pairs], float)
        out[rel] = isotonic(x, y)
        print(f"{rel}: {len(pairs)} edges, right {y.mean():.3f}")
    return out


def isotonic(x: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(x, y)
    return {
        "x": [round(float(v), 6) for v in iso.X_thresholds_],
        "y": [round(float(v), 6) for v in iso.y_thresholds_],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", type=Path, nargs="+", required=True, help="development zoos")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--c", type=float, default=1.0, help="inverse L2 strength")
    args = parser.parse_args()
    exs: list[Example] = []
    labels = []
    for folder in args.zoo:
        zoo = load_zoo(folder)
        labels.append(zoo.label)
        for with_times in (False, True):
            got, skipped = examples(zoo, with_times)
            exs += got
        print(f"{zoo.label}: {len(got)} family trees (+ as many with times), {skipped} skipped")
    coef = fit_coef(exs, args.c)
    print("coefficients:", {f: round(float(v), 3) for f, v in zip(FEATURES, coef, strict=True)})
    test = fit_sibling_test(exs, coef)
    print("sibling test:", test)
    # leave-one-zoo-out outcomes for calibration and an honest root accuracy
    outcomes: list[tuple[float, bool, bool]] = []
    root_hits = []
    for label in sorted(set(labels)):
        held = [e for e in exs if e.zoo == label]
        rest = [e for e in exs if e.zoo != label] or held
        c = fit_coef(rest, args.c)
        outcomes += edge_outcomes(held, c, fit_sibling_test(rest, c))
        for ex in held:
            root_hits.append(orient(ex.tree, scorer_with(c)).root == ex.root)
    prob = np.array([o[0] for o in outcomes])
    right = np.array([o[1] for o in outcomes], float)
    either = np.array([o[1] or o[2] for o in outcomes])
    print(
        f"leave-one-zoo-out: root accuracy {np.mean(root_hits):.3f} over {len(root_hits)} trees;"
        f" tree edges {len(prob)}, right as directed {right.mean():.3f}, either way {either.mean():.3f}"
    )
    relation_maps = fit_relation_maps(args.zoo)
    edge_map = isotonic(prob, right)
    direction_map = isotonic(prob[either], right[either])
    doc = {
        "fitted_on": ", ".join(labels),
        "how": "bench/fit_lineage.py: pairwise logistic root model; leave-one-zoo-out isotonic maps",
        "coef": {f: round(float(v), 6) for f, v in zip(FEATURES, coef, strict=True)},
        "sibling_test": None
        if test is None
        else {
            "features": list(REGRAFT_FEATURES),
            "feature": list(test.feature),
            "threshold": list(test.threshold),
            "left": list(test.left),
            "right": list(test.right),
            "value": list(test.value),
        },
        "edge_map": edge_map,
        "direction_map": direction_map,
        "uncertain_below": UNCERTAIN_BELOW,
        "relation_maps": relation_maps,
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
