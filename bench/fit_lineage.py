"""Fit the lineage engine's direction model on development zoos; write scorer.json.

    python bench/fit_lineage.py --zoo DIR [DIR ...] [--out heritage/lineage/scorer.json]

Only development zoos belong here (zoo seeds 0-49, the real-weights dev split); test
zoos (seeds 100-119, the real-weights test split) are for bench/lineage.py alone.

1. Every zoo is planned (families, copies, merges, spanning trees) from weights alone,
   with names hashed; each family's tree gets root features (heritage.lineage.direction).
   Each zoo is planned twice, without and with upload times (truth order), so the time
   feature gets a weight too.
2. The root model: boosted trees (scikit-learn's HistGradientBoostingClassifier) over
   every candidate root's ``ROOT_INPUTS`` (its features, the same standardised and
   ranked within its family, the family's size, its training statistics' levels),
   labelled by whether it is the true root, each family weighing the same. The
   log-linear model (a logistic regression without intercept on feature differences,
   true root minus each other node) is fitted and shipped too, as the fallback.
3. The parent model (heritage.lineage.parents): boosted trees (scikit-learn's
   HistGradientBoostingClassifier) over every candidate pair of the weights-only trees,
   rooted at the true root, labelled by whether the candidate is the true parent; shipped
   as plain arrays. Synthetic families (``synthetic_examples``: large random trees and
   stars, with and without a drift their children share) join the zoos' trees here, as
   the zoos have no family above about 40 members. The sibling test (for families above ``PARENT_MODEL_MAX``) is fitted
   too.
4. Calibration, leave-one-zoo-out: each zoo's edges are oriented by models fitted on the
   other zoos. A logistic regression per regime (families with and without creation
   times) maps an edge's features (``EDGE_FEATURES``: direction probability, the pair
   model's support for its parent, the family's size) to the share of such edges right
   as directed, and a recalibration of its log-odds (quadratic, fitted on each zoo's
   log-odds from a regression that never saw that zoo) corrects how they transfer to
   new zoos: the edge's confidence. Its reliability is printed per decile, each zoo's
   confidences from models fitted on the other zoos. Per regime, an isotonic regression
   maps the direction probability to the share right in direction among edges right
   either way round, which marks edges "uncertain" below ``UNCERTAIN_BELOW``. A
   two-member family's direction is stated from the lowest probability at and above
   which the regime's development pairs were right ``PAIR_CERTAIN`` of the time at 95%
   confidence (one-sided Clopper-Pearson bound), if any (``pair_certain_from``).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from scipy.stats import beta
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from heritage.fingerprint import Fingerprint, TensorPrint, tensor_stats
from heritage.lineage import LineageSettings, ModelInput, recover_lineage
from heritage.lineage.direction import (
    EDGE_FEATURES,
    FEATURES,
    PAIR_CERTAIN,
    EdgeModel,
    FamilyTree,
    Scorer,
    edge_features,
    orient,
    regime,
    root_features,
    root_inputs,
    skeleton_parents,
)
from heritage.lineage.engine import plan_lineage
from heritage.lineage.metrics import duplicate_classes, reliability
from heritage.lineage.parents import BoostedTrees, RootedFamily, candidate_pairs, pair_features
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
    with_times: bool
    dist: np.ndarray  # (n, n) distances between the tree's nodes


def _example(
    zoo: str,
    tree: FamilyTree,
    root: int,
    true_edges: set[tuple[str, str]],
    classes: list[str],
    with_times: bool,
) -> Example:
    return Example(
        zoo,
        tree,
        root_features(tree),
        root,
        true_edges,
        classes,
        with_times,
        tree.distance_matrix(),
    )


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
        out.append(_example(zoo.label, tree, roots[0], true_edges, classes, with_times))
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


class RootModel(NamedTuple):
    coef: np.ndarray  # the log-linear fallback
    trees: dict | None  # the boosted root model (BoostedTrees.from_dict)


def fit_roots(train: list[Example], c: float = 1.0) -> RootModel:
    return RootModel(fit_coef(train, c), fit_root_model(train))


def fit_root_model(train: list[Example]) -> dict | None:
    """Boosted trees over every candidate root's ROOT_INPUTS: is it the true root?
    Each family weighs the same."""
    x = np.concatenate([root_inputs(ex.tree, ex.features) for ex in train])
    y = np.concatenate([np.arange(ex.tree.n) == ex.root for ex in train]).astype(int)
    w = np.concatenate([np.full(ex.tree.n, 1.0 / ex.tree.n) for ex in train])
    if len(set(y.tolist())) < 2:
        return None
    model = HistGradientBoostingClassifier(
        max_depth=3, max_iter=200, learning_rate=0.05, min_samples_leaf=20, random_state=0
    ).fit(x, y, sample_weight=w)
    return tree_arrays(model, x)


def tree_arrays(model: HistGradientBoostingClassifier, x: np.ndarray) -> dict:
    """A fitted binary HistGradientBoostingClassifier as plain arrays
    (BoostedTrees.from_dict), checked to give scikit-learn's own log-odds on ``x``."""
    trees = []
    for (pred,) in model._predictors:
        nodes = pred.nodes
        trees.append(
            {
                "feature": nodes["feature_idx"].tolist(),
                "threshold": nodes["num_threshold"].tolist(),
                "left": nodes["left"].tolist(),
                "right": nodes["right"].tolist(),
                "leaf": nodes["is_leaf"].astype(bool).tolist(),
                "value": nodes["value"].tolist(),
            }
        )
    out = {"baseline": float(model._baseline_prediction.ravel()[0]), "trees": trees}
    mine = BoostedTrees.from_dict(out).log_odds(x[:500])
    assert np.allclose(mine, model.decision_function(x[:500]), atol=1e-6)
    return out


def scorer_with(
    roots: RootModel, test: SiblingTest | None = None, parents: dict | None = None
) -> Scorer:
    return Scorer(
        coef=roots.coef,
        edge_models={},
        direction_map={},
        uncertain_below=0.0,
        fitted_on="",
        sibling_test=test,
        parent_model=BoostedTrees.from_dict(parents) if parents else None,
        root_model=BoostedTrees.from_dict(roots.trees) if roots.trees else None,
    )


def synthetic_examples(seed: int, families: int = 12) -> list[Example]:
    """Families the zoos lack, for the parent model only: random recursive trees and
    stars of 10-150 members whose children share a drift of 0-3 times their own step
    (0: a plain minimum spanning tree recovers them exactly). Each step is
    ``w' = 1.01 w + drift + noise`` over 6 matrices of 16 sampled rows x 64 columns."""
    rng = np.random.default_rng(seed)
    out = []
    for f in range(families):
        size = int(rng.integers(10, 151))
        star = rng.random() < 0.3
        drift_ratio = float(rng.choice([0.0, 0.0, 0.5, 1.0, 2.0, 3.0]))
        noise = float(rng.choice([0.002, 0.005, 0.01]))
        weights = [[rng.standard_normal((16, 64)) * 0.1 for _ in range(6)]]
        drifts: dict[int, list[np.ndarray]] = {}
        parent = [-1]
        for i in range(1, size):
            p = 0 if star else int(rng.integers(i))
            if p not in drifts:  # the drift a parent's children share
                drifts[p] = [rng.normal(0, noise * drift_ratio, (16, 64)) for _ in range(6)]
            weights.append(
                [
                    1.01 * w + d + rng.normal(0, noise, w.shape)
                    for w, d in zip(weights[p], drifts[p], strict=True)
                ]
            )
            parent.append(p)
        ids = [f"s{seed}-{f}-{i}" for i in range(size)]
        rows = np.arange(16)
        inputs = [
            ModelInput(
                ids[i],
                Fingerprint(
                    {
                        f"layers.{j}.w": TensorPrint(
                            f"layers.{j}.w",
                            "F32",
                            (256, 256),
                            rows,
                            (0, 64),
                            w.astype(np.float32),
                            tensor_stats(w),
                        )
                        for j, w in enumerate(weights[i])
                    }
                ),
            )
            for i in range(size)
        ]
        true_edges = {(ids[parent[i]], ids[i]) for i in range(1, size)}
        for plan in plan_lineage(inputs, LineageSettings(use_times=False)):
            tree = plan.tree
            if tree.n < 3 or ids[0] not in tree.ids:
                continue
            root = tree.ids.index(ids[0])
            out.append(_example(f"synthetic-{seed}", tree, root, true_edges, list(tree.ids), False))
    return out


def fit_parent_model(exs: list[Example]) -> dict | None:
    """Boosted trees over the candidate pairs of the weights-only trees, rooted at the
    true root: is the candidate the child's true parent? Returned as plain arrays."""
    rows, labels = [], []
    for ex in exs:
        if ex.with_times or ex.tree.n < 2:
            continue
        family = RootedFamily(
            ex.dist,
            ex.root,
            ex.tree.stats,
            ex.tree.kinds,
            ex.tree.median_step,
            skeleton_parents(ex.tree, ex.root),
        )
        par, chi = candidate_pairs(ex.dist, ex.root)
        rows.append(pair_features(family, par, chi))
        labels += [
            (ex.classes[u], ex.classes[v]) in ex.true_edges
            for u, v in zip(par.tolist(), chi.tolist(), strict=True)
        ]
    y = np.array(labels, dtype=int)
    if not rows or len(set(labels)) < 2:
        return None
    x = np.concatenate(rows)
    model = HistGradientBoostingClassifier(
        max_depth=4, max_iter=150, learning_rate=0.05, min_samples_leaf=20, random_state=0
    ).fit(x, y)
    return tree_arrays(model, x)


def regraft_examples(exs: list[Example], roots: RootModel) -> tuple[np.ndarray, np.ndarray]:
    """Each child v of u under g in the trees oriented by ``roots``, labelled 1 when g is
    v's true parent, 0 when u is (pairs where neither is are left out)."""
    rows, labels = [], []
    scorer = scorer_with(roots)
    for ex in exs:
        res = orient(ex.tree, scorer)
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


def fit_sibling_test(exs: list[Example], roots: RootModel) -> SiblingTest | None:
    """A depth-3 decision tree (at least 8 cases a leaf) over the regraft features."""
    x, y = regraft_examples(exs, roots)
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


class Outcome(NamedTuple):
    zoo: str
    with_times: bool
    features: np.ndarray  # EDGE_FEATURES
    probability: float  # direction probability
    right: bool  # right as directed
    either: bool  # right either way round


def edge_outcomes(
    exs: list[Example], roots: RootModel, test: SiblingTest | None, parents: dict | None
) -> list[Outcome]:
    """Every tree edge of ``exs`` oriented by these models, and whether it is right."""
    out = []
    scorer = scorer_with(roots, test, parents)
    for ex in exs:
        res = orient(ex.tree, scorer)
        for e in res.edges:
            p, c = ex.classes[e.parent], ex.classes[e.child]
            right, back = (p, c) in ex.true_edges, (c, p) in ex.true_edges
            feats = edge_features(e, ex.tree.n)
            out.append(Outcome(ex.zoo, ex.with_times, feats, e.probability, right, right or back))
    return out


def _logistic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    model = LogisticRegression(C=1.0, max_iter=5000).fit(x, y)
    return np.r_[model.intercept_, model.coef_[0]]


def _log_odds(outcomes: list[Outcome], coef: np.ndarray) -> np.ndarray:
    return np.array([coef[0] + o.features @ coef[1:] for o in outcomes])


def fit_edge_model(outcomes: list[Outcome]) -> dict:
    """Logistic regression of right-as-directed on EDGE_FEATURES, then a recalibration
    of its log-odds z, sigmoid(a + b z + c z^2), fitted on each zoo's z from a
    regression fitted on the other zoos (so it measures how the log-odds transfer)."""
    x = np.array([o.features for o in outcomes])
    y = np.array([o.right for o in outcomes], dtype=int)
    zoos = np.array([o.zoo for o in outcomes])
    held = np.zeros(len(outcomes))
    for zoo in sorted(set(zoos.tolist())):
        rest = zoos != zoo
        coef = (
            _logistic(x[rest], y[rest])
            if len(set(y[rest].tolist())) > 1
            else np.zeros(len(EDGE_FEATURES) + 1)
        )
        held[~rest] = _log_odds([o for o, r in zip(outcomes, rest, strict=True) if not r], coef)
    recal = _logistic(np.c_[held, held**2], y) if len(set(y.tolist())) > 1 else np.zeros(3)
    return {
        "coef": [round(float(v), 6) for v in _logistic(x, y)],
        "recalibration": [round(float(v), 6) for v in recal],
        "z_range": [round(float(held.min()), 4), round(float(held.max()), 4)],
    }


def edge_reliability(outcomes: list[Outcome]) -> list[tuple[float, bool]]:
    """(stated, right) per edge, each zoo's confidences from an edge model fitted on the
    other zoos' outcomes: how the shipped confidences fare on a zoo they never saw."""
    out = []
    for zoo in sorted({o.zoo for o in outcomes}):
        model = EdgeModel.from_dict(fit_edge_model([o for o in outcomes if o.zoo != zoo]))
        out += [(model.confidence(o.features), o.right) for o in outcomes if o.zoo == zoo]
    return out


def fit_relation_maps(folders: list[Path]) -> dict[str, dict[str, list[float]]]:
    """Per copy and merge relation: the engine's own confidence -> share right."""
    raw = scorer_with(RootModel(np.zeros(len(FEATURES)), None))  # copies and merges only
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


def certain_from(prob: np.ndarray, right: np.ndarray, target: float) -> float | None:
    """The lowest probability p such that the cases at or above p were right at least
    ``target`` of the time at 95% confidence (one-sided Clopper-Pearson lower bound of
    their share right); None when no p qualifies."""
    order = np.argsort(-prob, kind="stable")
    p, r = prob[order], right[order].astype(float)
    hits = np.cumsum(r)
    best = None
    for k in range(len(p)):
        if k + 1 < len(p) and p[k + 1] == p[k]:
            continue  # a threshold takes every case of equal probability
        n, x = k + 1, hits[k]
        lower = float(beta.ppf(0.05, x, n - x + 1)) if x > 0 else 0.0
        if lower >= target:
            best = round(float(p[k]), 6)
    return best


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
    parser.add_argument(
        "--synthetic",
        type=int,
        default=4,
        help="sets of synthetic families (seeds 1000, 1001, ...) for the parent model",
    )
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
    roots = fit_roots(exs, args.c)
    coef = roots.coef
    print("coefficients:", {f: round(float(v), 3) for f, v in zip(FEATURES, coef, strict=True)})
    print("root model:", len(roots.trees["trees"]) if roots.trees else 0, "trees")
    test = fit_sibling_test(exs, roots)
    print("sibling test:", test)
    synth = [e for k in range(args.synthetic) for e in synthetic_examples(1000 + k)]
    print(f"synthetic: {len(synth)} families for the parent model")
    parents = fit_parent_model(exs + synth)
    print("parent model:", len(parents["trees"]) if parents else 0, "trees")
    # leave-one-zoo-out outcomes for calibration and an honest root accuracy
    outcomes: list[Outcome] = []
    root_hits = []
    for label in sorted(set(labels)):
        held = [e for e in exs if e.zoo == label]
        rest = [e for e in exs if e.zoo != label] or held
        r = fit_roots(rest, args.c)
        outcomes += edge_outcomes(
            held, r, fit_sibling_test(rest, r), fit_parent_model(rest + synth)
        )
        scorer = scorer_with(r)
        for ex in held:
            root_hits.append(orient(ex.tree, scorer).root == ex.root)
    prob = np.array([o.probability for o in outcomes])
    right = np.array([o.right for o in outcomes], float)
    either = np.array([o.either for o in outcomes])
    print(
        f"leave-one-zoo-out: root accuracy {np.mean(root_hits):.3f} over {len(root_hits)} trees;"
        f" tree edges {len(prob)}, right as directed {right.mean():.3f}, either way {either.mean():.3f}"
    )
    timed = np.array([o.with_times for o in outcomes])
    print(
        f"  weights only: tree edges {(~timed).sum()}, right as directed"
        f" {right[~timed].mean():.3f}, either way {either[~timed].mean():.3f}"
    )
    pair = np.array([o.features[EDGE_FEATURES.index("two_members")] == 1.0 for o in outcomes])
    edge_models, direction_map, pair_certain = {}, {}, {}
    for t in (False, True):
        key = regime(t)
        part = [o for o in outcomes if o.with_times == t]
        edge_models[key] = fit_edge_model(part)
        print(
            f"reliability of tree edges, {key}, leave-one-zoo-out: decile | edges | stated | right"
        )
        for lo, hi, n, stated, share in reliability(edge_reliability(part)):
            flag = "" if n < 20 or abs(stated - share) <= 0.05 else "  <-- off by more than 0.05"
            print(f"  [{lo:.1f}, {hi:.1f}) | {n:5d} | {stated:.3f} | {share:.3f}{flag}")
        here = timed == t
        direction_map[key] = isotonic(prob[either & ~pair & here], right[either & ~pair & here])
        pair_certain[key] = certain_from(prob[pair & here], right[pair & here], PAIR_CERTAIN)
        n_stated = int((prob[pair & here] >= (pair_certain[key] or np.inf)).sum())
        print(f"pairs, {key}: direction stated from {pair_certain[key]} ({n_stated} dev pairs)")
    relation_maps = fit_relation_maps(args.zoo)
    doc = {
        "fitted_on": ", ".join(labels),
        "how": "bench/fit_lineage.py: boosted-tree root model (pairwise logistic fallback); boosted-tree parent model; leave-one-zoo-out isotonic maps",
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
        "parent_model": parents,
        "root_model": roots.trees,
        "edge_features": list(EDGE_FEATURES),
        "edge_models": edge_models,
        "direction_map": direction_map,
        "pair_certain_from": pair_certain,
        "uncertain_below": UNCERTAIN_BELOW,
        "relation_maps": relation_maps,
    }
    # the boosted models' arrays one line per tree, the rest one value per line
    models = {key: doc.pop(key) for key in ("parent_model", "root_model")}
    text = json.dumps(doc, indent=1)
    for key, trees in models.items():
        if trees is None:
            continue
        lines = ",\n".join("  " + json.dumps(t, separators=(",", ":")) for t in trees["trees"])
        model = (
            f'{{\n  "baseline": {json.dumps(trees["baseline"])},\n  "trees": [\n{lines}\n  ]\n }}'
        )
        text = text[:-2] + f',\n "{key}": {model}\n}}'
    json.loads(text)  # still one valid document
    args.out.write_text(text + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
