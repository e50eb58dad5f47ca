from __future__ import annotations

import random

import networkx as nx
import numpy as np
import pytest

from heritage.lineage import LineageSettings, ModelInput, recover_lineage
from heritage.lineage.engine import (
    _delta_focus,
    _Distances,
    _lift_opposed,
    _pick_root,
    _skip_detours,
    _split_sweeps,
    _split_twins,
    _TreeProblem,
    _unfold_backsteps,
)
from tests.lineage.synthetic import average, bf16, finetune, int8, make, root


@pytest.fixture(scope="module")
def zoo():
    """Two independent roots; a has a child, a grandchild, copies and a merge."""
    a, b = root(1), root(2)
    a1 = finetune(a, 11)
    a2 = finetune(a, 12)
    a11 = finetune(a1, 111)
    b1 = finetune(b, 21)
    return {
        "a": make(a),
        "a1": make(a1),
        "a2": make(a2),
        "a11": make(a11),
        "a1-dup": make(a1),
        "a1-bf16": make(bf16(a1), dtype="BF16"),
        "a2-int8": make(int8(a2)),
        "a-soup": make(average(a1, a2, 0.3)),
        "b": make(b),
        "b1": make(b1),
    }


def _graph(zoo, **kw):
    return recover_lineage(
        [ModelInput(k, v) for k, v in zoo.items()], LineageSettings(use_times=False, **kw)
    )


def test_independent_roots_are_never_one_family(zoo):
    g = _graph(zoo)
    fam = {n: g.nodes[n]["family"] for n in g.nodes}
    assert len({fam[n] for n in zoo if n.startswith("a")}) == 1
    assert {fam["b"]} == {fam["b1"]} != {fam["a"]}
    assert not any(fam[u] != fam[v] for u, v in g.edges)


def test_duplicates_and_copies_are_found(zoo):
    g = _graph(zoo)
    dup = [(u, v) for u, v, d in g.edges(data=True) if d["relation"] == "duplicate"]
    assert {frozenset(e) for e in dup} == {frozenset(("a1", "a1-dup"))}
    assert g.edges[next(iter(dup))]["confidence"] == 1.0
    rel = {(u, v): d["relation"] for u, v, d in g.edges(data=True)}
    q = {v: u for (u, v), r in rel.items() if r == "quantized"}
    assert q["a1-bf16"] in ("a1", "a1-dup") and q["a2-int8"] == "a2"
    # quantized copies are leaves
    assert g.out_degree("a1-bf16") == 0 and g.out_degree("a2-int8") == 0


def test_merge_gets_two_parents_with_weights(zoo):
    g = _graph(zoo)
    parents = {u: d for u, _, d in g.in_edges("a-soup", data=True)}
    assert set(parents) <= {"a1", "a1-dup", "a2"} and len(parents) == 2
    assert all(d["relation"] == "merge" for d in parents.values())
    weights = sorted(d["weight"] for d in parents.values())
    assert weights == pytest.approx([0.3, 0.7], abs=0.01)


def test_tree_edges_and_roots(zoo):
    g = _graph(zoo)
    assert g.in_degree("a") == 0 and g.in_degree("b") == 0
    parent = {v: u for u, v, d in g.edges(data=True) if d["relation"] == "finetune"}
    assert parent["b1"] == "b"
    assert parent["a11"] in ("a1", "a1-dup")
    assert parent["a2"] == "a"
    for _, _, d in g.edges(data=True):
        assert 0.0 <= d["confidence"] <= 1.0 and d["method"]


def test_result_does_not_depend_on_input_order(zoo):
    items = list(zoo.items())
    random.Random(3).shuffle(items)
    g1 = _graph(zoo)
    g2 = recover_lineage([ModelInput(k, v) for k, v in items], LineageSettings(use_times=False))
    assert sorted(g1.edges(data=True)) == sorted(g2.edges(data=True))
    assert dict(g1.nodes(data=True)) == dict(g2.nodes(data=True))


def test_times_orient_a_duplicate_pair():
    w = root(5)
    inputs = [
        ModelInput("late", make(w), created_at=200.0),
        ModelInput("early", make(w), created_at=100.0),
    ]
    g = recover_lineage(inputs)
    assert list(g.edges) == [("early", "late")]
    assert g.edges["early", "late"]["relation"] == "duplicate"


def test_single_model_and_empty_input():
    g = recover_lineage([ModelInput("only", make(root(9)))])
    assert list(g.nodes) == ["only"] and not g.edges
    assert recover_lineage([]).number_of_nodes() == 0


def test_duplicate_ids_are_refused():
    with pytest.raises(ValueError, match="unique"):
        recover_lineage([ModelInput("x", make(root(1))), ModelInput("x", make(root(2)))])


def test_a_sibling_that_took_a_small_step_does_not_adopt_the_others():
    """Siblings share part of their update: the one that moved least looks like a parent."""
    rng = np.random.default_rng(0)
    dims = 4000

    def unit() -> np.ndarray:
        v = rng.standard_normal(dims)
        return v / np.linalg.norm(v)

    u, w = unit(), unit()
    base = np.zeros(dims)
    small = 0.1 * u  # a sibling that barely moved...
    big = 1.0 * w + 0.06 * u  # ...and one that moved far, sharing a little of its update
    x = np.stack([base, small, big])
    chained = [(0, 1), (1, 2)]
    assert np.linalg.norm(big - small) < np.linalg.norm(big - base)  # the trap
    assert _skip_detours(_Distances(x, {}), chained, LineageSettings()) == [(0, 1), (0, 2)]
    assert _skip_detours(_Distances(x, {}), chained, LineageSettings(detour_ratio=0.0)) == chained
    # a real intermediate: its child moved on from it, three times as far
    x2 = np.stack([base, small, small + 0.3 * w])
    assert _skip_detours(_Distances(x2, {}), chained, LineageSettings()) == chained


def test_a_large_sweep_step_that_drifted_back_stays_with_its_sweep():
    """A sweep that partly undoes its parent's fine-tune: its largest step ends nearer
    the base than its parent, yet it is in line with its sibling, so it stays."""
    rng = np.random.default_rng(2)
    u, w = (v / np.linalg.norm(v) for v in rng.standard_normal((2, 4000)))
    base, domain = np.zeros(4000), u
    x = np.stack([base, domain, domain + 0.6 * w - 0.24 * u, domain + 1.5 * w - 0.6 * u])
    assert np.linalg.norm(x[3] - base) < np.linalg.norm(x[3] - domain)  # the trap
    tree = [(0, 1), (1, 2), (1, 3)]
    assert _skip_detours(_Distances(x, {}), tree, LineageSettings()) == tree
    off = LineageSettings(sweep_line=1.1)
    assert _skip_detours(_Distances(x, {}), tree, off) == [(0, 1), (0, 3), (1, 2)]


def test_a_sweep_is_a_fan_even_where_its_steps_shrink_but_a_run_stays_a_chain():
    """Four learning rates from one base lie on one line; the last, only twice the
    third's rate, is nearer the third than the third is to the base."""
    rng = np.random.default_rng(3)
    u = rng.standard_normal(4000)
    u /= np.linalg.norm(u)

    def jitter() -> np.ndarray:
        return 0.05 * rng.standard_normal(4000) / np.sqrt(4000)

    sweep = np.stack([np.zeros(4000)] + [a * u + jitter() for a in (0.15, 0.4, 1.0, 1.4)])
    chain = [(0, 1), (1, 2), (2, 3), (3, 4)]
    fan = [(0, 1), (0, 2), (0, 3), (0, 4)]
    assert _split_sweeps(_Distances(sweep, {}), chain, LineageSettings()) == fan
    # without the in-line rule the shrinking last step stays a child of the third
    old = _split_sweeps(_Distances(sweep, {}), chain, LineageSettings(sweep_line=1.1))
    assert old == [(0, 1), (0, 2), (0, 3), (3, 4)]
    # checkpoints of one run: each step shorter than the last, nothing to split
    run = np.stack([np.zeros(4000)] + [a * u + jitter() for a in (1.0, 1.5, 1.75, 1.85)])
    assert _split_sweeps(_Distances(run, {}), chain, LineageSettings()) == chain


def test_a_checkpoint_read_before_its_predecessor_is_put_back_between():
    """Three checkpoints of one run on a line; the last step is tiny, so the progress
    order can put the last before the middle one: 100 -> 300 -> 200."""
    rng = np.random.default_rng(4)
    u, w = (v / np.linalg.norm(v) for v in rng.standard_normal((2, 4000)))
    x = np.stack([np.zeros(4000), 0.06 * u, 0.073 * u + 0.01 * w])  # steps 100, 200, 300
    misread = [(0, 2), (2, 1)]
    assert _unfold_backsteps(_Distances(x, {}), misread, LineageSettings()) == [(0, 1), (1, 2)]
    # a real step that turns back part of the way (cosine 0.45 at most on the zoos) stays
    turn = np.stack([np.zeros(4000), u, u - 0.3 * u + 0.6 * w])
    chain = [(0, 1), (1, 2)]
    assert _unfold_backsteps(_Distances(turn, {}), chain, LineageSettings()) == chain


def test_a_model_between_two_of_its_children_gives_its_place_to_one():
    """A sweep that partly undoes its parent's fine-tune ends nearer the base than the
    parent does; the base then adopts the smallest sweep step, which looks like the
    parent of both the real parent and the next step (children in opposite directions)."""
    rng = np.random.default_rng(1)
    dims = 4000
    u, w = (v / np.linalg.norm(v) for v in rng.standard_normal((2, dims)))
    base = np.zeros(dims)
    domain = base + u
    step1 = domain + 0.3 * w - 0.1 * u  # the sweep drifts back towards the base
    step2 = domain + 0.7 * w - 0.2 * u
    assert np.linalg.norm(step1 - base) < np.linalg.norm(domain - base)  # the trap

    # without progress statistics an edge costs its distance
    dist = _Distances(np.stack([base, domain, step1, step2]), {})
    trapped = [(0, 2), (2, 1), (2, 3)]
    assert _lift_opposed(dist, trapped, dist, LineageSettings()) == [(0, 1), (1, 2), (2, 3)]
    off = LineageSettings(opposed_cosine=-1.1)
    assert _lift_opposed(dist, trapped, dist, off) == trapped
    # children that leave in different but not opposite directions are left alone
    fan = [(0, 1), (1, 2), (1, 3)]
    other = _Distances(np.stack([base, domain, step1, domain + 0.7 * np.roll(w, 1)]), {})
    assert _lift_opposed(other, fan, other, LineageSettings()) == fan


def test_twins_of_one_recipe_are_split_but_a_focused_step_is_kept():
    """Same task and learning rate, other seed: the second twin is no child of the first."""
    rng = np.random.default_rng(1)
    base = root(7)

    def drift(direction_seed: int, size: float) -> dict[str, np.ndarray]:
        g = np.random.default_rng(direction_seed)
        out = {}
        for name, w in base.items():
            if w.ndim == 2:  # training moves along a few directions: rank one here
                out[name] = (
                    size
                    * np.outer(g.standard_normal(w.shape[0]), g.standard_normal(w.shape[1]))
                    / 10
                )
            else:
                out[name] = np.zeros_like(w)
        return out

    def plus(*parts: dict[str, np.ndarray], noise: float = 0.0) -> dict[str, np.ndarray]:
        return {
            n: (sum(p[n] for p in parts) + noise * rng.standard_normal(parts[0][n].shape)).astype(
                np.float32
            )
            for n in parts[0]
        }

    task = drift(1, 0.3)
    twin_a = plus(base, task, noise=0.004)
    twin_b = plus(base, task, noise=0.004)
    other = plus(base, drift(2, 0.3), noise=0.004)
    step = plus(twin_a, drift(3, 0.12), noise=0.001)  # a focused step on from twin a
    inputs = [
        ModelInput(k, make(w))
        for k, w in {"base": base, "a": twin_a, "b": twin_b, "other": other, "step": step}.items()
    ]
    x = np.stack(
        [
            np.concatenate([m.fingerprint.tensors[n].values.ravel() for n in sorted(base)])
            for m in inputs
        ]
    )
    chained = [(0, 1), (0, 3), (1, 2), (1, 4)]
    assert _delta_focus(inputs[1].fingerprint, inputs[2].fingerprint) < 0.5 * _delta_focus(
        inputs[0].fingerprint, inputs[1].fingerprint
    )
    assert _split_twins(inputs, _Distances(x, {}), chained, LineageSettings()) == [
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 4),
    ]
    blind = LineageSettings(pair_focus=0.0)  # focus can tell nothing
    assert _split_twins(inputs, _Distances(x, {}), chained, blind) == chained
    # ...but twins merged into a third model are siblings all the same
    merged = frozenset({frozenset((1, 2))})
    assert _split_twins(inputs, _Distances(x, {}), chained, blind, merged) == [
        (0, 1),
        (0, 2),
        (0, 3),
        (1, 4),
    ]


def test_a_root_that_splits_two_merged_models_loses_to_one_that_keeps_them_siblings():
    """A sweep read backwards is a run of shrinking steps ending at the fine-tune it came
    from: distances cannot tell, statistics may favour it; the merge of two sweep members
    says they are siblings, which only the true root's tree makes them."""
    rng = np.random.default_rng(2)
    dims = 4000
    u, w, n0, n1 = (v / np.linalg.norm(v) for v in rng.standard_normal((4, dims)))
    base = np.zeros(dims)
    domain = base + u
    sweep = [domain + 0.3 * w + 0.05 * n0, domain + 0.6 * w + 0.05 * n1, domain + 1.2 * w]
    x = np.stack([base, domain, *sweep])
    nodes = list(range(5))
    pairs = {(i, j): float(np.linalg.norm(x[i] - x[j])) for i in nodes for j in nodes if i < j}
    spanning = nx.Graph()
    for i, j in [(0, 1), (1, 2), (2, 3), (3, 4)]:
        spanning.add_edge(i, j, distance=pairs[(i, j)])
    near = {v: sorted((pairs[min(u, v), max(u, v)], u) for u in nodes if u != v) for v in nodes}
    prob = _TreeProblem(
        nodes,
        pairs,
        spanning,
        np.zeros((5, 0)),  # no statistics: the trials' order below stands for them
        near,
        _Distances(x, pairs),
        frozenset({frozenset((2, 3))}),  # the first two sweep members were merged
    )
    models = [ModelInput(str(i), make(root(i))) for i in nodes]
    trials = [(0.60, 4, []), (0.55, 0, []), (0.40, 1, [])]  # the far sweep end scores best

    score, chosen, edges, second = _pick_root(models, prob, trials, LineageSettings())
    assert chosen == 0
    assert edges == [(0, 1), (1, 2), (1, 3), (1, 4)]
    assert score == pytest.approx(0.55) and second == pytest.approx(0.60 - 0.2)
    # without the merge, or with the rule off, the best-scored trial stands
    off = LineageSettings(merge_sibling_weight=0.0)
    assert _pick_root(models, prob, trials, off)[1] == 4
    too_large = LineageSettings(merge_root_limit=4)  # five models: above the limit
    assert _pick_root(models, prob, trials, too_large)[1] == 4
    lone = _TreeProblem(nodes, pairs, spanning, prob.stats, near, _Distances(x, pairs))
    assert _pick_root(models, lone, trials, LineageSettings())[1] == 4
