from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import kurtosis

from heritage.fingerprint import Fingerprint, TensorPrint
from heritage.lineage.mother import (
    RELATIONS,
    family_distances,
    kurtosis_layers,
    mother,
    mother_both,
    tree_distances,
    tree_layers,
)

# --- distance ---------------------------------------------------------------------------

# Three models, two square layers and one non-square layer (ignored: the authors keep
# square matrices only). Pair order is a < b < c; Delta = W_first - W_second.
A = {"net.0.weight": np.zeros((2, 2)), "net.1.weight": np.zeros((2, 2))}
B = {"net.0.weight": np.array([[1.0, 0], [0, 1]]), "net.1.weight": np.array([[-2.0, 0], [0, 0]])}
C = {"net.0.weight": np.array([[0.0, 0], [0, -2]]), "net.1.weight": np.array([[0.0, 0], [0, 1]])}
for i, w in enumerate((A, B, C)):
    w["net.2.weight"] = np.full((2, 3), 100.0 * i)  # huge, but not square
HAND = {"a": A, "b": B, "c": C}


def _stacks(models, names):
    return [np.stack([models[i][n].ravel() for i in sorted(models)]) for n in names]


def test_minmax_max_distance_matches_hand_computation():
    # net.0: a-b = [-1 0; 0 -1] (max 0, min -1); a-c = [0 0; 0 2] (max 2, min 0);
    #        b-c = [1 0; 0 3] (max 3, min 0); m = -1, M = 3
    #        -> ab (0+1)/4 = 0.25, ac (2+1)/4 = 0.75, bc (3+1)/4 = 1
    # net.1: a-b = [2 0; 0 0] (max 2, min 0); a-c = [0 0; 0 -1] (max 0, min -1);
    #        b-c = [-2 0; 0 -1] (max 0, min -2); m = -2, M = 2
    #        -> ab (2+2)/4 = 1, ac (0+2)/4 = 0.5, bc (0+2)/4 = 0.5
    # the maximum over layers: ab 1, ac 0.75, bc 1
    names = tree_layers({n: w.shape for n, w in A.items()})
    assert names == ["net.0.weight", "net.1.weight"]
    d = tree_distances(_stacks(HAND, names), "minmax-max")
    expected = np.array([[0, 1, 0.75], [1, 0, 1], [0.75, 1, 0]])
    np.testing.assert_allclose(d, expected)


def test_rms_mean_distance_matches_hand_computation():
    # per layer sqrt(mean(Delta^2)), then the mean over the two layers
    ab = (math.sqrt(2 / 4) + math.sqrt(4 / 4)) / 2
    ac = (math.sqrt(4 / 4) + math.sqrt(1 / 4)) / 2
    bc = (math.sqrt(10 / 4) + math.sqrt(5 / 4)) / 2
    d = tree_distances(_stacks(HAND, ["net.0.weight", "net.1.weight"]), "rms-mean")
    np.testing.assert_allclose(d, [[0, ab, ac], [ab, 0, bc], [ac, bc, 0]])


def test_family_distance_is_sum_of_mean_absolute_differences():
    # ab: 2/4 + 2/4; ac: 2/4 + 1/4; bc: 4/4 + 3/4
    d = family_distances(_stacks(HAND, ["net.0.weight", "net.1.weight"]))
    np.testing.assert_allclose(d, [[0, 1, 0.75], [1, 0, 1.75], [0.75, 1.75, 0]])


def test_pipeline_uses_the_hand_distance_and_skips_non_square():
    result = mother_both(HAND, 1)
    assert result.distance_layers == ("net.0.weight", "net.1.weight")
    expected = {("a", "b"): 1.0, ("a", "c"): 0.75, ("b", "c"): 1.0}
    for u, v, data in result.decreasing.edges(data=True):
        assert data["distance"] == pytest.approx(expected[tuple(sorted((u, v)))])


# --- kurtosis ---------------------------------------------------------------------------


def test_kurtosis_reads_only_the_attention_output_projection():
    rng = np.random.default_rng(0)
    heavy = rng.standard_t(2, size=(16, 16))
    model = {}
    for b in range(2):
        p = f"model.layers.{b}."
        model[p + "self_attn.q_proj.weight"] = heavy  # outliers that must not count
        model[p + "self_attn.o_proj.weight"] = rng.standard_normal((16, 16))
        model[p + "mlp.up_proj.weight"] = heavy[:, :8]
    model["lm_head.weight"] = heavy
    result = mother_both({"x": model, "y": model}, 1)
    o_proj = [f"model.layers.{b}.self_attn.o_proj.weight" for b in range(2)]
    assert result.kurtosis_layers == tuple(o_proj)
    want = sum(kurtosis(model[n].ravel(), fisher=True, bias=True) for n in o_proj)
    assert result.kurtosis["x"] == pytest.approx(want)


def test_kurtosis_layers_for_vit_and_for_models_without_attention():
    vit = {
        "vit.encoder.layer.0.attention.attention.query.weight": (64, 64),
        "vit.encoder.layer.0.attention.output.dense.weight": (64, 64),
        "vit.encoder.layer.0.intermediate.dense.weight": (128, 64),
        "vit.encoder.layer.0.output.dense.weight": (64, 64),  # MLP output, even if square
        "classifier.weight": (10, 64),
    }
    assert kurtosis_layers(vit) == ["vit.encoder.layer.0.attention.output.dense.weight"]
    assert tree_layers(vit) == [
        "vit.encoder.layer.0.attention.attention.query.weight",
        "vit.encoder.layer.0.attention.output.dense.weight",
    ]
    mlp = {"net.0.weight": (128, 32), "net.2.weight": (128, 128), "net.4.weight": (10, 128)}
    assert kurtosis_layers(mlp) == ["net.2.weight"]  # no attention: the square matrices
    assert kurtosis_layers({"net.0.weight": (8, 4), "net.2.weight": (2, 8)}) == [
        "net.0.weight",
        "net.2.weight",
    ]  # nothing square: every 2-D matrix


# --- direction and tree -----------------------------------------------------------------


def _chain(seed: int = 0, steps: int = 4, names=("q", "o")):
    """A chain whose attention output grows outliers with training (kurtosis rises)."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((32, 32)) * 0.1  # never trained: distance and kurtosis from o
    o = rng.standard_normal((32, 32)) * 0.1
    spikes = rng.choice(o.size, size=16, replace=False)
    signs = np.where(np.arange(16) % 2 == 0, 1.0, -1.0)
    models = []
    for _ in range(steps):
        models.append(
            {
                "model.layers.0.self_attn.q_proj.weight": q.copy(),
                "model.layers.0.self_attn.o_proj.weight": o.copy(),
            }
        )
        o = o + 0.01 * rng.standard_normal(o.shape)
        o.ravel()[spikes] += 0.5 * signs
    return models


@pytest.mark.parametrize("distance", ["minmax-max", "rms-mean"])
def test_kurtosis_direction_recovers_or_reverses_a_chain(distance):
    ids = ["m-c", "m-a", "m-d", "m-b"]  # chain order, not sorted order
    models = dict(zip(ids, _chain(), strict=True))
    result = mother_both(models, 1, distance=distance)
    k = [result.kurtosis[i] for i in ids]
    assert k == sorted(k) and len(set(k)) == len(k)  # kurtosis rises along the chain
    forward = set(zip(ids[:-1], ids[1:], strict=True))
    assert set(result.increasing.edges) == forward
    assert set(result.decreasing.edges) == {(v, u) for u, v in forward}
    assert set(mother(models, 1, direction="increasing", distance=distance).edges) == forward
    assert set(mother(models, 1, distance=distance).edges) == {(v, u) for u, v in forward}


def test_two_unrelated_families_are_separated():
    rng = np.random.default_rng(1)
    models = {}
    for fam in ("x", "y"):
        base = {
            f"model.layers.{b}.self_attn.o_proj.weight": rng.standard_normal((24, 24))
            for b in range(2)
        }
        models[f"{fam}0"] = base
        for k in range(1, 4):
            models[f"{fam}{k}"] = {
                n: w + 0.05 * rng.standard_normal(w.shape) for n, w in base.items()
            }
    result = mother_both(models, 2, prefix="fam")
    labels = result.families
    assert len({labels[f"x{k}"] for k in range(4)}) == 1
    assert len({labels[f"y{k}"] for k in range(4)}) == 1
    assert labels["x0"] != labels["y0"]
    for g in (result.decreasing, result.increasing):
        assert g.number_of_edges() == len(models) - 2
        assert all(labels[u] == labels[v] for u, v in g.edges)
        assert {d["relation"] for *_, d in g.edges(data=True)} == {"finetune"}
        assert g.graph["relations"] == RELATIONS == ("finetune",)
        assert all(g.nodes[i]["family"] == labels[i] for i in models)
    assert not result.detects_merges and not result.detects_copies


def test_full_fingerprints_give_the_same_result_as_weights():
    models = dict(zip(["p", "q", "r"], _chain(steps=3), strict=True))

    def as_print(weights):
        return Fingerprint(
            {
                n: TensorPrint(n, "F32", w.shape, np.arange(w.shape[0]), (0, w.shape[1]), w)
                for n, w in weights.items()
            }
        )

    prints = {i: as_print(w) for i, w in models.items()}
    a, b = mother_both(models, 1), mother_both(prints, 1)
    assert a.kurtosis == pytest.approx(b.kurtosis)
    assert set(a.decreasing.edges) == set(b.decreasing.edges)


def test_bad_arguments():
    with pytest.raises(ValueError):
        mother(HAND, 1, direction="sideways")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        mother(HAND, 1, distance="l2")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        mother(HAND, 0)
    assert mother({}, 1).number_of_nodes() == 0
    single = mother({"only": A}, 3)
    assert list(single.nodes) == ["only"] and single.number_of_edges() == 0
