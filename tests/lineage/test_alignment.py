"""Alignment, neighbour search and precision detection, tested on hand-built prints."""

from __future__ import annotations

import dataclasses

import ml_dtypes
import numpy as np
import pytest

from heritage.fingerprint import Fingerprint, TensorPrint
from heritage.lineage.evidence import (
    architecture_key,
    build_evidence,
    evidence_layout,
    evidence_vectors,
)
from heritage.lineage.neighbours import (
    all_pairs,
    ann_pairs,
    pair_distances,
    sketch,
)
from heritage.lineage.precision import int8_grid_fraction, precision_bits


def _print(name: str, shape: tuple[int, ...], rows, values, dtype: str = "F32") -> TensorPrint:
    values = np.asarray(values, dtype=np.float32)
    return TensorPrint(
        name, dtype, shape, np.asarray(rows, dtype=np.int64), (0, values.shape[1]), values
    )


def _model(rng: np.random.Generator, vocab: int = 100) -> dict[str, np.ndarray]:
    return {
        "embed": rng.standard_normal((vocab, 16)),
        "w": rng.standard_normal((32, 16)),
        "norm": 1.0 + 0.01 * rng.standard_normal((1, 16)),
        "ids": np.arange(16, dtype=np.float64).reshape(1, 16),
    }


def _fp(weights: dict[str, np.ndarray], emb_rows, ids_dtype: str = "I64") -> Fingerprint:
    vocab = weights["embed"].shape[0]
    return Fingerprint(
        {
            "embed": _print("embed", (vocab, 16), emb_rows, weights["embed"][emb_rows]),
            "w": _print("w", (32, 16), np.arange(32), weights["w"]),
            "norm": _print("norm", (16,), [0], weights["norm"]),
            "ids": _print("ids", (1, 16), [0], weights["ids"], dtype=ids_dtype),
        }
    )


def test_resized_vocabulary_compares_on_shared_rows_only():
    rng = np.random.default_rng(0)
    base = _model(rng)
    grown = {k: v.copy() for k, v in base.items()}
    grown["embed"] = np.concatenate([base["embed"], rng.standard_normal((28, 16))])
    # the sampler keeps the same rows of the shared range and adds some of the new ones
    other = _model(rng)  # an unrelated model, so the pair's tensors are not constant
    a = _fp(base, np.arange(0, 100, 5))
    b = _fp(grown, np.concatenate([np.arange(0, 100, 5), [101, 110, 127]]))
    ev = build_evidence([a, b, _fp(other, np.arange(0, 100, 5))])
    assert ev.tensors == ["embed", "w"]  # norm vector and integer buffer carry no evidence
    emb = ev.slices[ev.tensors.index("embed")]
    assert ev.raw[:, emb].shape == (3, 20 * 16)
    # unchanged shared rows: the resized copy is at distance 0 from its source
    assert np.array_equal(ev.raw[0], ev.raw[1])
    assert np.linalg.norm(ev.unit[0] - ev.unit[1]) == 0.0
    assert np.linalg.norm(ev.unit[0] - ev.unit[2]) > 0.5


def test_tensors_sharing_too_few_rows_are_dropped():
    rng = np.random.default_rng(1)
    m1, m2 = _model(rng), _model(rng)
    a = _fp(m1, np.arange(0, 20))
    b = _fp(m2, np.arange(15, 35))  # 5 of 20 rows shared: below half
    assert "embed" not in build_evidence([a, b]).tensors
    assert "embed" in build_evidence([a, b], min_shared=0.25).tensors


def test_a_tensor_equal_in_every_model_is_no_evidence_and_tensors_weigh_alike():
    rng = np.random.default_rng(2)
    m1, m2, m3 = (_model(rng) for _ in range(3))
    frozen = rng.standard_normal((32, 16))
    for m in (m1, m2, m3):
        m["w"] = frozen.copy()
    prints = [_fp(m, np.arange(0, 100, 4)) for m in (m1, m2, m3)]
    assert build_evidence(prints).tensors == ["embed"]

    # still none when a half-precision copy rounds it (a fixed STFT basis once made an
    # independently trained model kin to a family that had a bf16 copy)
    half = {k: v.astype(ml_dtypes.bfloat16).astype(np.float64) for k, v in m1.items()}
    rounded = _fp(half, np.arange(0, 100, 4))
    rounded.tensors["w"] = dataclasses.replace(rounded.tensors["w"], dtype="BF16")
    assert build_evidence([*prints, rounded]).tensors == ["embed"]
    changed = {**half, "w": half["w"] + 0.05}  # a change beyond rounding is evidence
    moved = _fp(changed, np.arange(0, 100, 4))
    moved.tensors["w"] = dataclasses.replace(moved.tensors["w"], dtype="BF16")
    assert build_evidence([*prints, moved]).tensors == ["embed", "w"]

    # a tensor stored 1000x larger does not outweigh the others
    m3 = {k: v.copy() for k, v in m1.items()}
    m1["w"], m3["w"] = rng.standard_normal((32, 16)), rng.standard_normal((32, 16))
    m3["embed"] = m1["embed"] + rng.standard_normal(m1["embed"].shape)
    m1["w"] *= 1000.0
    m3["w"] *= 1000.0
    ev = build_evidence([_fp(m1, np.arange(0, 100, 4)), _fp(m3, np.arange(0, 100, 4))])
    per_tensor = [np.linalg.norm(ev.unit[0, sl] - ev.unit[1, sl]) for sl in ev.slices]
    assert max(per_tensor) / min(per_tensor) < 3.0
    # every vector has norm about one whatever the units
    assert np.allclose(np.linalg.norm(ev.unit, axis=1), 1.0, atol=0.2)


def test_non_finite_values_become_zero_not_nan_distances():
    rng = np.random.default_rng(3)
    m1, m2 = _model(rng), _model(rng)
    m2["w"][0, :3] = [np.nan, np.inf, -np.inf]
    ev = build_evidence([_fp(m1, np.arange(0, 100, 4)), _fp(m2, np.arange(0, 100, 4))])
    assert np.isfinite(ev.raw).all() and np.isfinite(ev.unit).all()


def test_architecture_key_ignores_dtype_and_vocab_size_but_not_row_shapes():
    rng = np.random.default_rng(4)
    m = _model(rng)
    a = _fp(m, np.arange(0, 100, 5))
    b = _fp(m, np.arange(0, 100, 5))
    b.tensors["w"].dtype = "BF16"
    b.tensors["embed"].shape = (320, 16)
    assert architecture_key(a) == architecture_key(b)
    c = _fp(m, np.arange(0, 100, 5))
    c.tensors["w"].shape = (32, 17)
    assert architecture_key(a) != architecture_key(c)


def _family_walk(n: int, dims: int, seed: int) -> np.ndarray:
    """Trees of 50 models: each a random earlier member of its tree plus a step of its own."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, dims))
    for i in range(n):
        if i % 50 == 0:
            x[i] = rng.standard_normal(dims)
        else:
            p = rng.integers(i - i % 50, i)
            x[i] = x[p] + rng.uniform(0.05, 0.3) * rng.standard_normal(dims)
    return x / np.sqrt(dims)


def _exact_top(x: np.ndarray, k: int) -> np.ndarray:
    sq = (x * x).sum(axis=1)
    full = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0))
    np.fill_diagonal(full, np.inf)
    return np.argsort(full, axis=1)[:, :k]


@pytest.mark.parametrize("n, dims", [(60, 300), (300, 9000)])
def test_candidate_pairs_hold_the_true_nearest_neighbours(n, dims):
    x = _family_walk(n, dims, seed=5)  # searched on 256-d sketches, re-ranked exactly
    k = 5
    pairs = {tuple(p) for p in ann_pairs(sketch([x], x.shape[1]), x, k)[0]}
    nearest = _exact_top(x, k)
    # every model's own nearest neighbour is a candidate, and almost all of its top k
    assert all((min(i, j), max(i, j)) in pairs for i, j in enumerate(nearest[:, 0]))
    hits = sum((min(i, j), max(i, j)) in pairs for i in range(n) for j in nearest[i])
    assert hits / (n * k) >= 0.98
    assert len(pairs) <= n * k  # sparse: n * k at most, never n^2


def test_ann_pairs_recall_the_exact_nearest_neighbours():
    x = _family_walk(1200, 2000, seed=8)
    k = 10
    sk = sketch([x[:500], x[500:]], x.shape[1])
    assert sk.shape == (1200, 256) and sk.dtype == np.float32
    pairs, dist = ann_pairs(sk, x, k)
    assert np.allclose(dist, np.linalg.norm(x[pairs[:, 0]] - x[pairs[:, 1]], axis=1))
    found = {tuple(p) for p in pairs}
    nearest = _exact_top(x, k)
    hits = sum((min(i, j), max(i, j)) in found for i in range(len(x)) for j in nearest[i])
    assert hits / (len(x) * k) >= 0.99
    assert len(pairs) <= len(x) * k  # each model keeps its k nearest: never n^2


def test_a_sketch_depends_only_on_its_own_vector():
    x = _family_walk(60, 5000, seed=9)  # wider than one projection block
    whole = sketch([x], x.shape[1])
    alone = sketch([x[17:18]], x.shape[1])
    assert np.allclose(whole[17], alone[0], rtol=1e-5, atol=1e-6)
    # distances between sketches estimate the true ones
    true = np.linalg.norm(x[0] - x[1:], axis=1)
    est = np.linalg.norm(whole[0] - whole[1:], axis=1)
    assert np.median(np.abs(est / true - 1)) < 0.1


def test_evidence_of_a_subset_equals_its_rows_in_the_whole_group():
    rng = np.random.default_rng(3)
    fps = [_fp(_model(rng), np.arange(0, 100, 5)) for _ in range(5)]
    whole = build_evidence(fps)
    layout = evidence_layout(fps)
    part = evidence_vectors([fps[1], fps[3]], layout)
    assert np.array_equal(part.unit, whole.unit[[1, 3]])
    assert np.array_equal(part.raw, whole.raw[[1, 3]])
    assert evidence_vectors(fps, layout, np.float32, raw=False).raw.shape == (5, 0)


def test_pair_distances_match_direct_measurement_sparse_and_dense():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((40, 50))
    x[7] = x[3]  # identical rows must come out exactly 0, not cancellation noise
    dense = all_pairs(40)
    sparse = dense[::37]
    for pairs in (dense, sparse):
        d = pair_distances(x, pairs)
        want = np.linalg.norm(x[pairs[:, 0]] - x[pairs[:, 1]], axis=1)
        assert np.allclose(d, want, rtol=1e-9, atol=1e-9)
    d = pair_distances(x, np.array([[3, 7]]))
    assert d[0] == 0.0
    assert pair_distances(x, dense)[np.flatnonzero((dense == [3, 7]).all(axis=1))[0]] == 0.0
    assert len(ann_pairs(sketch([x[:1]], x.shape[1]), x[:1], 5)[0]) == 0


def _mat_fp(values: np.ndarray, dtype: str = "F32") -> Fingerprint:
    return Fingerprint(
        {
            "w": _print(
                "w", (values.shape[0], values.shape[1]), np.arange(values.shape[0]), values, dtype
            )
        }
    )


def test_precision_bits_read_from_the_values_not_only_the_dtype():
    rng = np.random.default_rng(7)
    w = rng.standard_normal((8, 128)).astype(np.float32) * 0.05
    assert precision_bits(_mat_fp(w)) == 32
    # a bf16 re-save stored back as float32 still holds only 16 bits
    assert precision_bits(_mat_fp(w.astype(ml_dtypes.bfloat16).astype(np.float32))) == 16
    assert precision_bits(_mat_fp(w.astype(np.float16).astype(np.float32), "F16")) == 16
    # per-row absmax int8, dequantized to float32 and to float16
    scale = np.abs(w).max(axis=1, keepdims=True) / 127.0
    q = np.round(w / scale) * scale
    assert int8_grid_fraction(q) == 1.0
    assert precision_bits(_mat_fp(q)) == 8
    assert precision_bits(_mat_fp(q.astype(np.float16).astype(np.float32), "F16")) == 8
    assert int8_grid_fraction(w) == 0.0


def test_sketch_search_falls_back_to_exact_when_hnsw_recall_is_low(monkeypatch):
    """Above the exact limit the HNSW index is used only if its recall, measured on a
    sample of models, holds; a search that misses neighbours is replaced by exact."""
    import heritage.lineage.neighbours as nb

    monkeypatch.setattr(nb, "EXACT_SKETCH_LIMIT", 100)
    walk = _family_walk(3000, 256, seed=4).astype(np.float32)
    exact = nb.exact_neighbours(walk, 30)
    assert nb.sketch_recall(walk, exact, 10) == 1.0
    hnsw = nb.ann_neighbours(walk, 30)
    assert nb.sketch_recall(walk, hnsw, 10) >= nb.MIN_RECALL
    assert np.array_equal(nb.sketch_neighbours(walk, 30, want=10), hnsw)  # HNSW kept
    rng = np.random.default_rng(2)

    def poor(index, data, rows, k, ef):  # an index that answers arbitrary rows
        return rng.integers(0, len(data), size=(len(rows), k))

    monkeypatch.setattr(nb, "_hnsw_search", poor)
    assert nb.sketch_recall(walk, poor(None, walk, np.arange(len(walk)), 30, 0), 10) < 0.5
    assert np.array_equal(nb.sketch_neighbours(walk, 30, want=10), exact)
