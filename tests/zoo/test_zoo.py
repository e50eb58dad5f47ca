"""The zoo generator: truth file, published files, and the weight-space facts lineage needs."""

from __future__ import annotations

import copy
import hashlib
import json
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from heritage.zoo import build_zoo, load_truth, validate_truth
from heritage.zoo.__main__ import main as zoo_cli
from heritage.zoo.cache import MARKER, cached_zoo, generator_hash

Record = dict[str, Any]
TRAINING_OPS = {"pretrain", "finetune", "lora", "resize"}


@pytest.fixture(scope="module")
def truth(small_zoo: Path) -> dict[str, Any]:
    return load_truth(small_zoo)


@pytest.fixture(scope="module")
def models(truth: dict[str, Any]) -> dict[str, Record]:
    return {m["location"]: m for m in truth["models"]}


@pytest.fixture(scope="module")
def weights(small_zoo: Path, models: dict[str, Record]) -> dict[str, dict[str, np.ndarray]]:
    return {loc: load_weights(small_zoo, m) for loc, m in models.items()}


def load_weights(zoo: Path, m: Record) -> dict[str, np.ndarray]:
    """All tensors of a model as float32 numpy arrays, read with the reference libraries."""
    out: dict[str, np.ndarray] = {}
    for name in m["weight_files"]:
        path = zoo / m["location"] / name
        if name.endswith(".safetensors"):
            tensors = load_file(str(path))
        elif name.endswith(".json"):
            continue
        else:
            tensors = torch.load(path, weights_only=True, map_location="cpu")
        out.update({k: v.float().numpy() for k, v in tensors.items()})
    return out


def l2(a: dict[str, np.ndarray], b: dict[str, np.ndarray], names: list[str]) -> float:
    return float(np.sqrt(sum(float(((a[k] - b[k]) ** 2).sum()) for k in names)))


def shared(*ws: dict[str, np.ndarray]) -> list[str]:
    """Tensor names present with the same shape in every given model."""
    return [k for k in ws[0] if all(k in w and w[k].shape == ws[0][k].shape for w in ws[1:])]


def front_matter(readme: Path) -> dict[str, Any]:
    text = readme.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1]) or {}


def depth(models: dict[str, Record], loc: str) -> int:
    parents = models[loc]["parents"]
    return 0 if not parents else 1 + max(depth(models, p) for p in parents)


# ------------------------------------------------------------------------------------ truth


def test_truth_validates_and_matches_request(truth: dict[str, Any]) -> None:
    validate_truth(truth)
    assert truth["size"] == "small" and truth["seed"] == 0
    assert 30 <= len(truth["models"]) <= 50


def test_zoo_covers_every_derivation(
    models: dict[str, Record], weights: dict[str, dict[str, np.ndarray]]
) -> None:
    for arch in ("llama", "vit", "mlp"):
        ms = [m for m in models.values() if m["architecture"] == arch]
        ops = Counter(m["recipe"]["op"] for m in ms)
        roots = [m for m in ms if m["relation"] == "root"]
        assert len(roots) >= 2, arch
        layouts = {
            tuple(sorted((k, v.shape) for k, v in weights[m["location"]].items())) for m in roots
        }
        assert len(layouts) == 1, f"{arch} roots must share tensor names and shapes"
        for op in ("finetune", "checkpoint", "cast", "int8", "duplicate", "merge"):
            assert ops[op] >= 1, (arch, op)
        parents = Counter(m["parents"][0] for m in ms if m["recipe"]["op"] == "finetune")
        assert max(parents.values()) >= 3, f"{arch} needs a sweep of siblings"
        for root in roots:
            family = [m for m in ms if m["family"] == root["location"]]
            assert max(depth(models, m["location"]) for m in family) >= 3, root["location"]
    llama_ops = {m["recipe"]["op"] for m in models.values() if m["architecture"] == "llama"}
    assert {"lora", "resize", "merge", "checkpoint", "cast", "int8", "duplicate"} <= llama_ops
    assert {m["format"] for m in models.values()} == {
        "safetensors",
        "safetensors-sharded",
        "pt",
        "pth",
        "bin",
    }
    assert {m.get("pickle_container") for m in models.values()} == {None, "zip", "legacy"}


def test_leaves_and_cards(models: dict[str, Record]) -> None:
    used_as_parent = {p for m in models.values() for p in m["parents"]}
    for m in models.values():
        if m["relation"] in ("quantized", "duplicate"):
            assert m["location"] not in used_as_parent
    statuses = Counter(m["card"]["card_status"] for m in models.values())
    assert statuses["missing"] + statuses["wrong"] >= 2
    assert statuses["wrong"] >= 1 and statuses["missing"] >= 1


# ------------------------------------------------------------------------------------ files


def test_published_files(small_zoo: Path, models: dict[str, Record]) -> None:
    for loc, m in models.items():
        folder = small_zoo / loc
        assert folder.is_dir(), loc
        for name in m["weight_files"]:
            assert (folder / name).is_file(), (loc, name)
        fm = front_matter(folder / "README.md")
        assert fm.get("base_model") == m["card"]["declared_base_model"], loc
        if m["architecture"] == "mlp":
            assert m["weight_files"] == sorted(
                p.name for p in folder.iterdir() if p.name != "README.md"
            )
            continue
        config = json.loads((folder / "config.json").read_text())
        assert config["model_type"] == m["architecture"]
        assert config["torch_dtype"] == m["dtype"]
        if m["architecture"] == "llama":
            assert config["architectures"] == ["LlamaForCausalLM"]
        if m["format"] == "safetensors":
            assert m["weight_files"] == ["model.safetensors"]
        shards = [f for f in m["weight_files"] if f.endswith(".safetensors")]
        for shard in shards:
            with safe_open(str(folder / shard), "pt") as f:
                assert f.metadata() == {"format": "pt"}
        if m["format"] == "safetensors-sharded":
            index = json.loads((folder / "model.safetensors.index.json").read_text())
            assert sorted(set(index["weight_map"].values())) == sorted(shards)
            assert len(shards) == 2 and shards[0] == "model-00001-of-00002.safetensors"
            tensors = {k: v for s in shards for k, v in load_file(str(folder / s)).items()}
            assert set(index["weight_map"]) == set(tensors)
            total = sum(t.numel() * t.element_size() for t in tensors.values())
            assert index["metadata"]["total_size"] == total


def test_llama_tensor_names(
    weights: dict[str, dict[str, np.ndarray]], models: dict[str, Record]
) -> None:
    root = next(
        m for m in models.values() if m["architecture"] == "llama" and m["relation"] == "root"
    )
    names = set(weights[root["location"]])
    expected = {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}
    for proj in ("q", "k", "v", "o"):
        expected.add(f"model.layers.0.self_attn.{proj}_proj.weight")
    for proj in ("gate", "up", "down"):
        expected.add(f"model.layers.1.mlp.{proj}_proj.weight")
    expected |= {
        "model.layers.0.input_layernorm.weight",
        "model.layers.0.post_attention_layernorm.weight",
    }
    assert expected <= names


def test_pickle_containers(small_zoo: Path, models: dict[str, Record]) -> None:
    for loc, m in models.items():
        if m["pickle_container"] is None:
            continue
        (name,) = m["weight_files"]
        assert name.rsplit(".", 1)[-1] == m["format"]
        is_zip = zipfile.is_zipfile(small_zoo / loc / name)
        assert is_zip == (m["pickle_container"] == "zip"), loc


# ------------------------------------------------------------------------------------ weights


def test_children_differ_from_parents(
    small_zoo: Path, models: dict[str, Record], weights: dict[str, dict[str, np.ndarray]]
) -> None:
    for loc, m in models.items():
        for parent in m["parents"]:
            names = shared(weights[loc], weights[parent])
            assert names, loc
            if m["relation"] == "duplicate":
                for f in m["weight_files"]:
                    assert (small_zoo / loc / f).read_bytes() == (
                        small_zoo / parent / f
                    ).read_bytes(), loc
            else:
                diff = max(float(np.abs(weights[loc][k] - weights[parent][k]).max()) for k in names)
                assert diff > 0, f"{loc} is identical to its parent {parent}"


def test_finetunes_closer_to_parent_than_to_unrelated_roots(
    models: dict[str, Record], weights: dict[str, dict[str, np.ndarray]]
) -> None:
    roots = [m for m in models.values() if m["relation"] == "root"]
    for loc, m in models.items():
        if m["relation"] not in ("finetune", "adapter"):
            continue
        (parent,) = m["parents"]
        others = [
            r["location"]
            for r in roots
            if r["architecture"] == m["architecture"] and r["location"] != m["family"]
        ]
        assert others
        names = shared(weights[loc], weights[parent], *(weights[o] for o in others))
        d_parent = l2(weights[loc], weights[parent], names)
        d_other = min(l2(weights[loc], weights[o], names) for o in others)
        assert d_parent < 0.5 * d_other, (loc, d_parent, d_other)


def test_quantized_copies_close_but_not_equal(
    models: dict[str, Record], weights: dict[str, dict[str, np.ndarray]]
) -> None:
    for loc, m in models.items():
        if m["relation"] != "quantized":
            continue
        (parent,) = m["parents"]
        w, p = weights[loc], weights[parent]
        assert list(w) == list(p) or set(w) == set(p)
        names = shared(w, p)
        assert len(names) == len(p)
        err = l2(w, p, names)
        norm = l2(p, {k: np.zeros_like(v) for k, v in p.items()}, names)
        assert 0 < err < 0.02 * norm, (loc, err, norm)
        assert m["dtype"] in ("bfloat16", "float16") or m["recipe"]["op"] == "int8"


def test_merge_is_weighted_average(
    models: dict[str, Record], weights: dict[str, dict[str, np.ndarray]]
) -> None:
    merges = [m for m in models.values() if m["relation"] == "merge"]
    assert merges
    for m in merges:
        assert len(m["parents"]) == 2 and len(m["merge_weights"]) == 2
        a, b = (weights[p] for p in m["parents"])
        wa, wb = m["merge_weights"]
        for k, v in weights[m["location"]].items():
            np.testing.assert_allclose(v, wa * a[k] + wb * b[k], rtol=1e-5, atol=1e-6)


def test_vocab_resize_adds_rows_and_keeps_old_ones(
    models: dict[str, Record], weights: dict[str, dict[str, np.ndarray]]
) -> None:
    resized = [m for m in models.values() if m["recipe"]["op"] == "resize"]
    assert resized
    for m in resized:
        w, p = weights[m["location"]], weights[m["parents"][0]]
        others = [
            r["location"]
            for r in models.values()
            if r["relation"] == "root"
            and r["architecture"] == "llama"
            and r["location"] != m["family"]
        ]
        for name in ("model.embed_tokens.weight", "lm_head.weight"):
            old = p[name].shape[0]
            assert m["recipe"]["old_vocab"] == old < m["recipe"]["new_vocab"]
            assert w[name].shape == (m["recipe"]["new_vocab"], p[name].shape[1])
            d_parent = float(np.linalg.norm(w[name][:old] - p[name]))
            for o in others:
                assert d_parent < 0.5 * float(np.linalg.norm(w[name][:old] - weights[o][name]))


def test_training_really_reduces_loss(models: dict[str, Record]) -> None:
    runs: dict[str, list[Record]] = {}
    for m in models.values():
        r = m["recipe"]
        if r["op"] in TRAINING_OPS:
            assert r["loss_end"] < r["loss_start"], m["location"]
        if r["op"] == "checkpoint":
            runs.setdefault(r["run"], []).append(r)
    assert runs
    for ckpts in runs.values():
        ckpts.sort(key=lambda r: r["checkpoint_index"])
        assert ckpts[-1]["loss_end"] < ckpts[0]["loss_start"]
    pre = [m["recipe"] for m in models.values() if m["recipe"]["op"] == "pretrain"]
    assert all(r["loss_end"] < 0.6 * r["loss_start"] for r in pre)


def test_models_open_with_project_reader(
    small_zoo: Path, models: dict[str, Record], weights: dict[str, dict[str, np.ndarray]]
) -> None:
    formats = pytest.importorskip("heritage.formats")
    for loc in models:
        with formats.open_checkpoint(small_zoo / loc) as ckpt:
            names = {t.name for t in ckpt.tensors}
            assert names == set(weights[loc]), loc
            first = sorted(names)[0]
            np.testing.assert_array_equal(ckpt.read(first), weights[loc][first])


# ------------------------------------------------------------------------------------ cache


def test_cache_marker_matches_generator(small_zoo: Path) -> None:
    assert (small_zoo / MARKER).read_text().strip() == generator_hash()


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_build_is_byte_for_byte_deterministic(tmp_path: Path) -> None:
    lines: list[str] = []
    done: list[tuple[int, int]] = []
    t1 = build_zoo(
        tmp_path / "one",
        size="tiny",
        seed=3,
        progress=lines.append,
        on_model=lambda i, n: done.append((i, n)),
    )
    t2 = build_zoo(tmp_path / "two", size="tiny", seed=3)
    assert t1 == t2
    assert lines[-1].startswith("zoo of ")
    n = len(t1["models"])
    assert done == [(i, n) for i in range(1, n + 1)]  # one tick per model, for a bar
    h1, h2 = _hashes(tmp_path / "one"), _hashes(tmp_path / "two")
    assert h1 == h2
    assert any(k.endswith(".pth") or k.endswith(".bin") for k in h1)
    assert json.loads((tmp_path / "one" / "truth.json").read_text()) == t1
    t3 = build_zoo(tmp_path / "three", size="tiny", seed=4)
    assert _hashes(tmp_path / "three")["truth.json"] != h1["truth.json"]
    assert [m["location"] for m in t3["models"]] == [m["location"] for m in t1["models"]]


def test_build_refuses_non_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError):
        build_zoo(tmp_path, size="tiny")
    assert zoo_cli([str(tmp_path), "--size", "tiny"]) == 2
    assert (tmp_path / "keep.txt").read_text() == "x"


def test_cached_zoo_reuses_and_regenerates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Path, str, int]] = []

    def fake_build(out_dir: Path, size: str, seed: int, plan: str, on_model=None) -> dict[str, Any]:
        assert plan == "classic"
        calls.append((out_dir, size, seed))
        out_dir.mkdir(parents=True)
        (out_dir / "truth.json").write_text("{}")
        return {}

    monkeypatch.setattr("heritage.zoo.build.build_zoo", fake_build)
    first = cached_zoo("tiny", 7, root=tmp_path)
    assert first == tmp_path / "zoo-tiny-seed7" and (first / "truth.json").is_file()
    assert cached_zoo("tiny", 7, root=tmp_path) == first and len(calls) == 1
    (first / MARKER).write_text("stale generator\n")
    assert cached_zoo("tiny", 7, root=tmp_path) == first and len(calls) == 2
    assert (first / MARKER).read_text().strip() == generator_hash()


# ------------------------------------------------------------------------------------ validator


def _breakers() -> list[tuple[str, Any]]:
    def first_child(t: dict[str, Any]) -> Record:
        return next(m for m in t["models"] if m["relation"] == "finetune")

    def first_merge(t: dict[str, Any]) -> Record:
        return next(m for m in t["models"] if m["relation"] == "merge")

    def root(t: dict[str, Any]) -> Record:
        return t["models"][0]

    def reparent(t: dict[str, Any], parent: str) -> None:
        first_child(t)["parents"] = [parent]
        first_child(t)["card"]["declared_base_model"] = parent

    def leaf_parent(t: dict[str, Any]) -> None:
        reparent(t, next(m for m in t["models"] if m["relation"] == "quantized")["location"])

    def cycle(t: dict[str, Any]) -> None:
        child = first_child(t)
        r = root(t)
        r["parents"], r["relation"] = [child["location"]], "finetune"
        r["card"] = {"declared_base_model": None, "card_status": "missing"}

    return [
        ("schema_version", lambda t: t.update(schema_version=99)),
        ("missing top-level key 'models'", lambda t: t.pop("models")),
        ("missing required key 'family'", lambda t: first_child(t).pop("family")),
        ("relation", lambda t: first_child(t).update(relation="distilled")),
        ("format", lambda t: first_child(t).update(format="gguf")),
        ("not in the zoo", lambda t: reparent(t, "nowhere/model")),
        ("no parents", lambda t: root(t).update(parents=["x"])),
        ("only roots may have no parents", lambda t: first_child(t).update(parents=[])),
        (
            "merge needs at least 2 parents",
            lambda t: first_merge(t).update(parents=first_merge(t)["parents"][:1]),
        ),
        ("one merge weight per parent", lambda t: first_merge(t).update(merge_weights=None)),
        ("merge_weights must be null", lambda t: first_child(t).update(merge_weights=[1.0])),
        ("duplicate location", lambda t: t["models"].append(copy.deepcopy(t["models"][-1]))),
        ("relative posix path", lambda t: first_child(t).update(location="/abs/path")),
        ("a leaf", leaf_parent),
        ("cycle", cycle),
        ("family", lambda t: first_child(t).update(family="somewhere/else")),
        (
            "card_status 'correct'",
            lambda t: first_child(t)["card"].update(declared_base_model="other/model"),
        ),
        ("card_status", lambda t: first_child(t)["card"].update(card_status="fine")),
    ]


@pytest.mark.parametrize(("message", "breaker"), _breakers(), ids=[m for m, _ in _breakers()])
def test_validate_truth_rejects_broken_truths(
    truth: dict[str, Any], message: str, breaker: Any
) -> None:
    broken = copy.deepcopy(truth)
    breaker(broken)
    with pytest.raises(ValueError, match="invalid truth") as info:
        validate_truth(broken)
    assert message in str(info.value)


def test_validate_truth_rejects_non_dict() -> None:
    with pytest.raises(ValueError):
        validate_truth([])  # type: ignore[arg-type]
