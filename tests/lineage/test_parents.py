"""The pair model that picks each member's parent once the root is known."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from scipy.sparse.csgraph import breadth_first_order, minimum_spanning_tree

from heritage.lineage.direction import (
    ROOT_INPUTS,
    FamilyTree,
    OrientedEdge,
    edge_confidence,
    load_scorer,
    orient,
    parents_from_root,
    progress_stats,
    root_features,
    root_inputs,
)
from heritage.lineage.parents import (
    PAIR_FEATURES,
    BoostedTrees,
    RootedFamily,
    candidate_pairs,
    choose_parents,
    family_context,
    pair_features,
)
from heritage.lineage.tree import TreeEdge
from tests.lineage.synthetic import SHAPES, finetune, make, root


def _points(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, 5))
    return np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))


def _family(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random recursive tree of fine-tunes: distances and training statistics."""
    rng = np.random.default_rng(seed)
    ws = [root(seed)]
    for i in range(1, n):
        ws.append(finetune(ws[int(rng.integers(i))], seed * 100 + i))
    x = np.stack([np.concatenate([w[k].ravel() for k in sorted(SHAPES)]) for w in ws])
    dist = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    stats, kinds = progress_stats([make(w) for w in ws])
    return dist, stats, kinds


def _skeleton(dist: np.ndarray, root: int) -> np.ndarray:
    """Each member's parent in the minimum spanning tree read from ``root``."""
    _, pred = breadth_first_order(
        minimum_spanning_tree(dist), root, directed=False, return_predecessors=True
    )
    return np.where(pred < 0, -1, pred)


def test_candidates_are_nearest_kin_and_the_root():
    dist = _points(30, 1)
    parent, child = candidate_pairs(dist, 4, k=3)
    family = RootedFamily(dist, 4, np.zeros((30, 0)), np.zeros(0, int), 1.0, np.full(30, -1))
    feats = pair_features(family, parent, child)
    assert feats.shape == (len(parent), len(PAIR_FEATURES))
    assert np.isfinite(feats).all()
    assert 4 not in set(child.tolist())
    pairs = set(zip(parent.tolist(), child.tolist(), strict=True))
    for v in range(30):
        if v == 4:
            continue
        near = np.argsort(np.where(np.arange(30) == v, np.inf, dist[v]))[:3]
        assert (4, v) in pairs
        assert all((int(u), v) in pairs for u in near)


def test_parents_form_one_tree_from_the_root():
    dist, stats, kinds = _family(25, 3)
    model = load_scorer().parent_model
    family = RootedFamily(dist, 0, stats, kinds, 1.0, _skeleton(dist, 0))
    parent = choose_parents(family, model).parent
    assert sorted(parent) == list(range(1, 25))
    for v in range(1, 25):
        seen = set()
        while v != 0:
            assert v not in seen
            seen.add(v)
            v = parent[v]


def test_relabelling_the_members_relabels_the_parents():
    dist, stats, kinds = _family(20, 4)
    model = load_scorer().parent_model
    family = RootedFamily(dist, 0, stats, kinds, 1.0, _skeleton(dist, 0))
    parent = choose_parents(family, model).parent
    perm = np.random.default_rng(0).permutation(20)  # new index of each old member
    inv = np.argsort(perm)
    moved_dist = dist[np.ix_(inv, inv)]
    root = int(perm[0])
    moved_family = RootedFamily(
        moved_dist, root, stats[inv], kinds, 1.0, _skeleton(moved_dist, root)
    )
    moved = choose_parents(moved_family, model).parent
    assert {int(perm[v]): int(perm[p]) for v, p in parent.items()} == moved


def test_boosted_trees_sum_their_leaves():
    stump = {
        "feature": [1, 0, 0],
        "threshold": [0.0, 0.0, 0.0],
        "left": [1, 0, 0],
        "right": [2, 0, 0],
        "leaf": [False, True, True],
        "value": [0.0, -1.0, 2.0],
    }
    model = BoostedTrees.from_dict({"baseline": 0.5, "trees": [stump, stump]})
    x = np.array([[9.0, -1.0], [9.0, 0.0], [9.0, 0.5]])
    assert model.log_odds(x).tolist() == [-1.5, -1.5, 4.5]


def _tree(ws: list[dict[str, np.ndarray]]) -> FamilyTree:
    x = np.stack([np.concatenate([w[k].ravel() for k in sorted(SHAPES)]) for w in ws])
    dist = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    mst = minimum_spanning_tree(dist).tocoo()
    edges = [
        TreeEdge(min(a, b), max(a, b), float(dist[a, b]))
        for a, b in zip(mst.row.tolist(), mst.col.tolist(), strict=True)
    ]
    stats, kinds = progress_stats([make(w) for w in ws])
    return FamilyTree(
        [f"m{i}" for i in range(len(ws))],
        edges,
        stats,
        kinds,
        np.zeros(len(ws)),
        np.full(len(ws), np.nan),
        lambda a, b: float(dist[a, b]),
    )


@pytest.mark.parametrize("drift", [0.0, 0.01, 0.02])
def test_a_star_with_a_shared_drift_hangs_every_child_off_its_base(drift):
    """Children fine-tuned on related data share a drift and, once it outgrows their own
    steps, sit nearer each other than their base: the spanning tree chains them, the
    parents chosen from the base must not (up to a drift twice the children's own
    steps; at three times the shipped models chain them too)."""
    base = root(1)
    rng = np.random.default_rng(5)
    shared = {k: drift * rng.standard_normal(w.shape) for k, w in base.items()}
    kids = []
    for i in range(12):
        r = np.random.default_rng(100 + i)
        kids.append(
            {k: w * 1.01 + shared[k] + 0.01 * r.standard_normal(w.shape) for k, w in base.items()}
        )
    tree = _tree([base, *kids])
    parent = parents_from_root(tree, 0, load_scorer()).parent
    assert parent == dict.fromkeys(range(1, 13), 0)


@pytest.mark.parametrize("timed", [False, True])
def test_confidence_rises_with_the_pair_models_support(timed):
    scorer = load_scorer()
    doubt, sure = (OrientedEdge(0, 1, 1.0, 0.8, s) for s in (-2.0, 2.0))
    assert edge_confidence(doubt, 30, timed, scorer) < edge_confidence(sure, 30, timed, scorer)


def test_without_edge_models_the_direction_probability_is_the_confidence():
    scorer = replace(load_scorer(), edge_models={})
    assert edge_confidence(OrientedEdge(0, 1, 1.0, 0.8, 1.0), 30, False, scorer) == 0.8


def _star(drift: float, kids: int = 12) -> np.ndarray:
    """Distances of a base (member 0) and ``kids`` children that share a drift."""
    base = root(1)
    rng = np.random.default_rng(5)
    shared = {k: drift * rng.standard_normal(w.shape) for k, w in base.items()}
    ws = [base]
    for i in range(kids):
        r = np.random.default_rng(100 + i)
        ws.append({k: w + shared[k] + 0.01 * r.standard_normal(w.shape) for k, w in base.items()})
    x = np.stack([np.concatenate([w[k].ravel() for k in sorted(SHAPES)]) for w in ws])
    return np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))


def _context(dist: np.ndarray, root_: int = 0) -> tuple[float, float, float, float]:
    n = dist.shape[0]
    off = dist + np.diag(np.full(n, np.inf))
    family = RootedFamily(
        dist, root_, np.zeros((n, 0)), np.zeros(0, int), 1.0, _skeleton(dist, root_)
    )
    return family_context(family, off.argmin(axis=1), off.min(axis=1))


def test_family_context_tells_a_drifted_star_from_a_plain_one_and_a_chain():
    spread, share, size, align = _context(_star(0.0))
    assert share == 1.0  # every child hangs off the base in the spanning tree
    assert size == pytest.approx(np.log(13))
    # each child's nearest kin is the base (siblings lie sqrt(2) steps apart)
    assert spread == pytest.approx(0.0, abs=1e-9)
    assert align == 0.0
    d_spread, d_share, _, d_align = _context(_star(0.02))
    # a drift twice the children's own steps: the base lies sqrt(5) steps from each
    # child, its nearest sibling sqrt(2), and seen from the base any two children
    # point the same way up to their own steps (cosine 4/5)
    assert d_spread == pytest.approx(np.log(np.sqrt(5 / 2)), abs=0.05)
    assert d_align == pytest.approx(0.8, abs=0.05)
    assert d_share == pytest.approx(1 / 12)  # the spanning tree chains the children
    # a chain read from its first member: each member's nearest kin is a neighbour
    ws = [root(2)]
    for i in range(8):
        ws.append(finetune(ws[-1], 300 + i))
    x = np.stack([np.concatenate([w[k].ravel() for k in sorted(SHAPES)]) for w in ws])
    c_spread, c_share, _, c_align = _context(np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)))
    assert c_share == pytest.approx(1 / 8)
    assert c_spread > 0.5  # members lie further from the root than from their neighbours
    assert 0.3 < c_align < 1.0


def test_root_inputs_follow_the_members_not_their_order():
    rng = np.random.default_rng(7)
    ws = [root(3)]
    for i in range(1, 15):
        ws.append(finetune(ws[int(rng.integers(i))], 700 + i))
    perm = rng.permutation(15)
    tree, moved = _tree(ws), _tree([ws[i] for i in perm])
    x = root_inputs(tree, root_features(tree))
    assert x.shape == (15, len(ROOT_INPUTS))
    assert np.isfinite(x).all()
    assert np.allclose(root_inputs(moved, root_features(moved)), x[perm], atol=1e-4)
    assert orient(moved, load_scorer()).root == list(perm).index(orient(tree, load_scorer()).root)


def test_equal_root_features_get_equal_ranks():
    ws = [root(4), *(finetune(root(4), 800 + i) for i in range(4))]
    tree = _tree(ws)
    features = np.zeros((5, len(ROOT_INPUTS) // 3))
    features[:, 0] = [3.0, 1.0, 1.0, 1.0, 0.0]
    ranks = root_inputs(tree, features)[:, 2 * features.shape[1] : 3 * features.shape[1]]
    assert ranks[:, 0].tolist() == [0.0, 0.5, 0.5, 0.5, 1.0]
    assert (ranks[:, 1] == 0.5).all()  # a column of ties: every member in the middle
