from __future__ import annotations

import random

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heritage.lineage import LineageSettings, ModelInput, recover_lineage
from heritage.lineage.direction import Scorer
from heritage.lineage.merges import by_whole_tensors, whole_tensor_step
from heritage.lineage.types import Direction, Relation
from tests.lineage.synthetic import average, bf16, finetune, forest, int8, make, root


def _weights() -> dict[str, dict[str, np.ndarray]]:
    """Two two-model families and a small tree, no copies (duplicates are interchangeable)."""
    a, b, c = root(31), root(32), root(33)
    a1 = finetune(a, 311)
    return {
        "a": a,
        "a1": a1,
        "a2": finetune(a, 312),
        "a11": finetune(a1, 3111),
        "b": b,
        "b1": finetune(b, 321),
        "c": c,
        "c1": finetune(c, 331, scale=0.03),
    }


_ZOO_WEIGHTS = _weights()


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


# The synthetic fine-tune grows the weights (w' = 1.01 w + noise); a scorer that knows
# it (RMS rises with training) tests the engine's mechanics apart from the shipped,
# fitted direction model, which the zoo tests and bench/lineage.py measure.
GROWTH = Scorer.from_dict(
    {
        "coef": {"sign_rms": 8.0, "consistency": 1.0, "log_degree": 1.0},
        "direction_map": {"x": [0.0, 1.0], "y": [0.0, 1.0]},
        "uncertain_below": 0.75,
    }
)


def _graph(zoo, **kw):
    return recover_lineage(
        [ModelInput(k, v) for k, v in zoo.items()],
        LineageSettings(use_times=False, **kw),
        scorer=GROWTH,
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
    g2 = _graph(dict(items))
    assert sorted(g1.edges(data=True)) == sorted(g2.edges(data=True))
    assert dict(g1.nodes(data=True)) == dict(g2.nodes(data=True))


def _shape(g: nx.DiGraph, name: dict[str, str]) -> tuple:
    """The graph with nodes renamed, families as a partition: comparable across runs."""
    edges = sorted(
        (name[u], name[v], d["relation"], d["confidence"], d["direction"])
        for u, v, d in g.edges(data=True)
    )
    fams: dict[str, set[str]] = {}
    for n, d in g.nodes(data=True):
        fams.setdefault(d["family"], set()).add(name[n])
    return edges, sorted(sorted(f) for f in fams.values())


@settings(max_examples=8, deadline=None)
@given(st.randoms(use_true_random=False))
def test_renaming_and_shuffling_give_the_same_graph(rnd):
    """Ids and input order never decide: a renamed, shuffled zoo gives the renamed graph."""
    w = {k: v for k, v in _ZOO_WEIGHTS.items()}
    ids = list(w)
    new = [f"id-{rnd.getrandbits(32):08x}-{k}" for k in range(len(ids))]
    rnd.shuffle(new)
    rename = dict(zip(ids, new, strict=True))
    items = list(w.items())
    rnd.shuffle(items)
    g1 = recover_lineage([ModelInput(k, make(v)) for k, v in w.items()])
    g2 = recover_lineage([ModelInput(rename[k], make(v)) for k, v in items])
    assert _shape(g1, rename) == _shape(g2, {n: n for n in g2.nodes})


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


def _star(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = root(seed)
    out = {"base": base}
    for i in range(n):
        out[f"c{i:03d}"] = {
            k: (v * 1.01 + 0.004 * rng.standard_normal(v.shape)).astype(np.float32)
            for k, v in base.items()
        }
    return out


def test_a_star_hangs_every_fine_tune_off_its_base():
    star = _star(60)
    g = recover_lineage([ModelInput(k, make(v)) for k, v in star.items()])
    assert g.in_degree("base") == 0
    assert sorted(v for u, v in g.edges) == sorted(k for k in star if k != "base")
    assert {u for u, _ in g.edges} == {"base"}
    assert all(d["direction"] == Direction.INFERRED for *_, d in g.edges(data=True))


def test_tree_edges_are_the_minimum_spanning_tree():
    """Never worse than a plain MST: the fine-tune skeleton is the MST on the evidence."""
    rng = np.random.default_rng(4)
    w = {"r": root(40)}
    names = ["r"]
    for i in range(30):
        w[f"m{i}"] = finetune(w[names[int(rng.integers(len(names)))]], 400 + i)
        names.append(f"m{i}")
    g = recover_lineage([ModelInput(k, make(v)) for k, v in w.items()])
    ids = sorted(w)
    flat = np.stack(
        [np.concatenate([w[i][n].ravel() for n in sorted(w[i]) if w[i][n].ndim == 2]) for i in ids]
    )
    full = nx.Graph()
    for a in range(len(ids)):
        for b in range(a + 1, len(ids)):
            full.add_edge(ids[a], ids[b], weight=float(np.linalg.norm(flat[a] - flat[b])))
    mst = {frozenset(e) for e in nx.minimum_spanning_tree(full).edges}
    assert {frozenset(e) for e in g.edges} == mst


def test_two_model_family_is_right_or_says_uncertain():
    a = root(50)
    b = finetune(a, 501)
    g = recover_lineage([ModelInput("x", make(a)), ModelInput("y", make(b))])
    ((u, v, d),) = g.edges(data=True)
    if d["direction"] == Direction.UNCERTAIN:
        assert d["confidence"] <= 0.6
    else:
        assert (u, v) == ("x", "y")


@pytest.mark.parametrize("seed", range(4))
def test_a_pair_is_uncertain_from_weights_alone_and_follows_creation_times(seed):
    """Weights alone orient two-model families barely better than chance (development
    zoos), so the shipped scorer states no direction for them; creation times do."""
    a = root(70 + seed)
    b = finetune(a, 700 + seed)
    alone = recover_lineage(
        [ModelInput("x", make(a)), ModelInput("y", make(b))], LineageSettings(use_times=False)
    )
    ((_, _, d),) = alone.edges(data=True)
    assert d["direction"] == Direction.UNCERTAIN
    assert d["confidence"] <= 0.6
    timed = recover_lineage([ModelInput("x", make(a), 1.0), ModelInput("y", make(b), 2.0)])
    ((u, v, d),) = timed.edges(data=True)
    assert (u, v) == ("x", "y")
    assert d["direction"] == Direction.INFERRED


def _merge_edges(models: dict[str, dict], child: str) -> dict[str, dict]:
    """The edges into ``child`` of the weights-only lineage of ``models``, by parent;
    every one must be a merge edge."""
    g = recover_lineage(
        [ModelInput(k, make(v)) for k, v in models.items()], LineageSettings(use_times=False)
    )
    into = {u: d for u, _, d in g.in_edges(child, data=True)}
    assert all(d["relation"] == Relation.MERGE for d in into.values())
    return into


def test_a_merge_finds_a_parent_beyond_its_nearest_kin():
    """A merge weighted 0.9 towards one fine-tune of a star sits nearer every other
    fine-tune than its second parent (a fine-tune that moved twice as far): the second
    parent is found among all the family's members."""
    base = root(80)
    kids = {f"k{i}": finetune(base, 800 + i) for i in range(9)}
    kids["far"] = finetune(base, 899, scale=0.04)
    models = {"base": base, **kids, "merge": average(kids["k0"], kids["far"], 0.9)}
    into = _merge_edges(models, "merge")
    assert set(into) == {"k0", "far"}
    assert into["k0"]["weight"] == pytest.approx(0.9, abs=0.01)


def test_an_even_merge_in_a_large_family_is_found():
    """An even linear merge sits exactly on its parents' segment, so its fit's Gram
    matrix is singular; a family above the dense limit keeps its evidence in float32,
    where rounding once left that matrix indefinite and the merge was read as a
    fine-tune of the base."""
    base = root(81)
    kids = {f"k{i:03d}": finetune(base, 8100 + i) for i in range(LineageSettings().dense_limit)}
    models = {"base": base, **kids, "merge": average(kids["k007"], kids["k100"], 0.5)}
    into = _merge_edges(models, "merge")
    assert set(into) == {"k007", "k100"}
    assert into["k007"]["weight"] == pytest.approx(0.5, abs=0.01)


def test_a_three_parent_merge_finds_a_third_parent_beyond_its_nearest_kin():
    base = root(85)
    kids = {f"k{i}": finetune(base, 850 + i) for i in range(9)}
    kids["far"] = finetune(base, 899, scale=0.05)
    soup = {
        n: (0.45 * kids["k0"][n] + 0.4 * kids["k1"][n] + 0.15 * kids["far"][n]).astype(np.float32)
        for n in base
    }
    models = {"base": base, **kids, "soup": soup}
    into = _merge_edges(models, "soup")
    assert set(into) == {"k0", "k1", "far"}


def _slerp(a: dict, b: dict, t: float) -> dict:
    out = {}
    for k in a:
        x, y = a[k].ravel().astype(np.float64), b[k].ravel().astype(np.float64)
        theta = np.arccos(np.clip(x @ y / np.linalg.norm(x) / np.linalg.norm(y), -1, 1))
        z = (np.sin((1 - t) * theta) * x + np.sin(t * theta) * y) / np.sin(theta)
        out[k] = z.reshape(a[k].shape).astype(np.float32)
    return out


def test_a_slerp_merge_off_the_segment_is_found_tensor_by_tensor():
    """SLERP interpolates each tensor on the great circle between its parents: off the
    straight segment an affine fit needs (by more than its 10% limit here), but in the
    parents' span tensor by tensor."""
    base = root(90)
    kids = {f"k{i}": finetune(base, 900 + i, scale=0.1) for i in range(4)}
    models = {"base": base, **kids, "slerp": _slerp(kids["k0"], kids["k1"], 0.3)}
    into = _merge_edges(models, "slerp")
    assert set(into) == {"k0", "k1"}


def test_a_merged_lora_is_an_adapter_with_its_rank():
    rng = np.random.default_rng(6)
    a = root(60)
    ft = finetune(a, 601)
    lora = {}
    for k, v in ft.items():
        if v.ndim == 2 and k in ("layers.0.w", "layers.1.w", "layers.2.w"):
            bmat = 0.05 * rng.standard_normal((v.shape[0], 4))
            amat = 0.05 * rng.standard_normal((4, v.shape[1]))
            lora[k] = (v + bmat @ amat).astype(np.float32)
        else:
            lora[k] = v
    g = recover_lineage(
        [ModelInput("a", make(a)), ModelInput("ft", make(ft)), ModelInput("ft-lora", make(lora))]
    )
    edge = g.edges[next((u, v) for u, v in g.edges if "ft-lora" in (u, v))]
    assert edge["relation"] == Relation.ADAPTER and edge["rank"] == 4
    assert (
        g.edges[next((u, v) for u, v in g.edges if {u, v} == {"a", "ft"})]["relation"] == "finetune"
    )


def test_task_arithmetic_and_three_parent_merges():
    base = root(70)
    f1, f2, f3 = finetune(base, 701), finetune(base, 702), finetune(base, 703)
    arith = {k: (f1[k] + f2[k] - base[k]).astype(np.float32) for k in base}
    three = {k: (0.2 * f1[k] + 0.3 * f2[k] + 0.5 * f3[k]).astype(np.float32) for k in base}
    w = {"base": base, "f1": f1, "f2": f2, "f3": f3, "arith": arith, "three": three}
    g = recover_lineage([ModelInput(k, make(v)) for k, v in w.items()])
    assert {u for u, _ in g.in_edges("arith")} == {"f1", "f2"}
    assert {u for u, _ in g.in_edges("three")} == {"f1", "f2", "f3"}
    weights = {u: d["weight"] for u, _, d in g.in_edges("three", data=True)}
    assert weights == pytest.approx({"f1": 0.2, "f2": 0.3, "f3": 0.5}, abs=0.01)
    assert all(d["relation"] == "merge" for *_, d in g.in_edges(["arith", "three"], data=True))


def test_ties_and_dare_merges_are_found_by_their_exact_entries():
    rng = np.random.default_rng(8)
    base = root(80)
    f1, f2, f3 = finetune(base, 801), finetune(base, 802), finetune(base, 803)
    dare = {}
    for k in base:
        acc = base[k].astype(np.float32).copy()
        for w, f in ((0.6, f1), (0.8, f2)):
            keep = rng.random(base[k].shape) < 0.3
            acc = (acc + w * (f[k] - base[k]) * keep / 0.3).astype(np.float32)
        dare[k] = acc
    w = {"base": base, "f1": f1, "f2": f2, "f3": f3, "dare": dare}
    g = recover_lineage([ModelInput(k, make(v)) for k, v in w.items()])
    assert {u for u, _ in g.in_edges("dare")} == {"f1", "f2"}
    assert all(d["relation"] == "merge" for *_, d in g.in_edges("dare", data=True))
    tree = {frozenset((u, v)) for u, v, d in g.edges(data=True) if d["relation"] != "merge"}
    assert tree == {frozenset(("base", f)) for f in ("f1", "f2", "f3")}


def _lora(parent: dict, modules: tuple[str, ...], seed: int) -> dict:
    """A merged rank-2 LoRA on ``modules``: every other tensor is the parent's, bit for bit."""
    rng = np.random.default_rng(seed)
    out = dict(parent)
    for k in modules:
        rows, cols = parent[k].shape
        step = rng.normal(0, 0.05, (rows, 2)) @ rng.normal(0, 0.05, (2, cols))
        out[k] = (parent[k] + step).astype(np.float32)
    return out


def test_the_base_of_adapters_on_different_modules_is_no_merge_of_them():
    """The base equals each adapter on every tensor that adapter left alone, so tensor by
    tensor it lies in their span (a SLERP reading, one parent per tensor) and entry by
    entry it is one of theirs (a TIES or DARE reading); a real merge mixes both parents
    inside its tensors."""
    base = root(82)
    tuned = {f"ft{i}": finetune(base, 820 + i) for i in range(2)}
    names = sorted(k for k in base if base[k].ndim == 2)
    a = _lora(base, tuple(names[:3]), 1)
    b = _lora(base, tuple(names[3:]), 2)
    w = {"base": base, **tuned, "lora-a": a, "lora-b": b}
    g = recover_lineage(
        [ModelInput(k, make(v)) for k, v in w.items()], LineageSettings(use_times=False)
    )
    assert not [e for e in g.edges(data=True) if e[2]["relation"] == Relation.MERGE]
    assert (
        g.in_degree("base") == 0
        or g.edges[next(iter(g.predecessors("base"))), "base"]["direction"] == Direction.UNCERTAIN
    )
    for child in ("lora-a", "lora-b"):
        assert {u for u, _ in g.in_edges(child)} == {"base"}
        assert g.edges["base", child]["relation"] == Relation.ADAPTER


def test_a_sparse_merge_reading_with_every_tensor_from_one_parent_is_refused():
    """TIES and DARE take task-vector entries one by one, so inside each tensor their
    parents alternate; one parent per whole tensor is the base of adapters instead."""
    changed = np.ones(40, dtype=bool)
    changed[[3, 25]] = False  # entries equal to the base are no part of the reading
    slices = [slice(0, 20), slice(20, 40)]
    first = np.r_[np.ones(19, bool), np.zeros(19, bool)]  # the whole first tensor
    second = ~first
    assert by_whole_tensors([first, second], changed, slices)
    alternating = np.arange(38) % 2 == 0  # each tensor from both parents
    assert not by_whole_tensors([alternating, ~alternating], changed, slices)


def test_a_base_that_differs_from_the_mergeby_whole_tensors_is_an_adapter_pair():
    """A LoRA changes its target tensors in every entry and leaves the others alone; a
    sparse merge's task vectors reach into every tensor, never all of its entries."""
    slices = [slice(0, 20), slice(20, 40), slice(40, 60)]
    lora = np.r_[np.ones(20, bool), np.zeros(40, bool)]
    assert whole_tensor_step(lora, slices)
    rng = np.random.default_rng(0)
    dare = rng.random(60) < 0.5
    assert not whole_tensor_step(dare, slices)
    assert not whole_tensor_step(np.ones(60, bool), slices)  # every entry: not a LoRA


def test_a_large_group_takes_the_sparse_path_and_finds_the_same_tree():
    """Above ``dense_limit`` models, neighbours come from the ANN index over sketches
    and each family is planned on its own evidence: same families and tree edges as
    measuring every pair, and still independent of names and input order."""
    w = forest(3, 40, seed=0, root_seed=700, stride=100)
    inputs = [ModelInput(k, make(v)) for k, v in w.items()]
    dense = recover_lineage(inputs, LineageSettings(use_times=False))
    # 50: families measured pair by pair; 20: families of 40 measured on their ANN pairs
    for limit in (20, 50):
        sparse = recover_lineage(inputs, LineageSettings(use_times=False, dense_limit=limit))
        assert {frozenset(e) for e in sparse.edges} == {frozenset(e) for e in dense.edges}
    fam = {n: d["family"] for n, d in sparse.nodes(data=True)}
    assert len(set(fam.values())) == 3
    assert all(fam[n] == fam[f"{n.split('-')[0]}-root"] for n in fam)
    rename = {k: f"x{k[::-1]}" for k in w}
    shuffled = list(w.items())
    random.Random(5).shuffle(shuffled)
    again = recover_lineage(
        [ModelInput(rename[k], make(v)) for k, v in shuffled],
        LineageSettings(use_times=False, dense_limit=50),
    )
    assert _shape(sparse, rename) == _shape(again, {n: n for n in again.nodes})
