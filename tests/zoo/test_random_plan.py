"""The random zoo plan: drawn from the seed, deterministic, consistent, and varied across seeds."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from heritage.lineage.types import Relation
from heritage.zoo import build_zoo, load_truth
from heritage.zoo.cache import zoo_dir_name
from heritage.zoo.merges import merge
from heritage.zoo.plan import Spec, make_plan
from heritage.zoo.randplan import FAMILY_KINDS, MERGE_METHODS, OPTIMIZERS, PROFILES, SCHEDULES
from heritage.zoo.train import OPTIMIZERS as TRAIN_OPTIMIZERS
from heritage.zoo.train import SCHEDULES as TRAIN_SCHEDULES
from heritage.zoo.train import lr_at
from heritage.zoo.truth import RELATIONS

DEV_SEEDS = range(10)
TRAINED = ("pretrain", "finetune", "lora", "resize", "checkpoint")


@pytest.fixture(scope="module")
def plans() -> dict[int, list[Spec]]:
    return {seed: make_plan("medium", seed, "random") for seed in DEV_SEEDS}


def _key(specs: list[Spec]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(s) for s in specs]


def _ancestors(by_loc: dict[str, Spec], loc: str) -> set[str]:
    out: set[str] = set()
    stack = list(by_loc[loc].parents)
    while stack:
        p = stack.pop()
        if p not in out:
            out.add(p)
            stack.extend(by_loc[p].parents)
    return out


def _family(by_loc: dict[str, Spec], loc: str) -> str:
    while by_loc[loc].parents:
        loc = by_loc[loc].parents[0]
    return loc


def test_random_plan_is_deterministic_and_drawn_from_the_seed(
    plans: dict[int, list[Spec]],
) -> None:
    assert _key(make_plan("medium", 3, "random")) == _key(plans[3])
    locations = [tuple(s.location for s in plans[seed]) for seed in DEV_SEEDS]
    assert len(set(locations)) == len(locations)
    shapes = [
        tuple(sorted(Counter(s.family_kind for s in plans[k] if not s.parents).items()))
        for k in DEV_SEEDS
    ]
    assert len(set(shapes)) > 5
    # the classic plan is still one tree for every seed
    assert _key(make_plan("medium", 0)) == _key(make_plan("medium", 7, "classic"))


def test_random_plan_relations_are_consistent(plans: dict[int, list[Spec]]) -> None:
    edge_relations = {str(r) for r in Relation}
    assert set(RELATIONS) == {"root"} | edge_relations
    for seed, specs in plans.items():
        prof = PROFILES["medium"]
        assert prof.models[0] <= len(specs) <= prof.models[1], seed
        roots = [s for s in specs if not s.parents]
        assert prof.families[0] <= len(roots) <= prof.families[1], seed
        assert {s.arch for s in roots} == {"llama", "vit", "mlp"}
        by_loc: dict[str, Spec] = {}
        for s in specs:
            assert s.location not in by_loc, s.location
            for p in s.parents:
                assert p in by_loc, f"{s.location}: parent {p} planned later"
                assert by_loc[p].op not in ("cast", "int8", "dup"), "copies are leaves"
                assert by_loc[p].arch == s.arch and by_loc[p].net == s.net
            if s.relation == "root":
                assert s.parents == [] and s.op == "pretrain"
            elif s.relation == "merge":
                assert len(s.parents) >= 2 and len(s.params["weights"]) == len(s.parents)
                assert all(w > 0 for w in s.params["weights"])
                assert len({_family({**by_loc}, p) for p in s.parents}) == 1
                if s.params["method"] in ("task-arithmetic", "ties", "dare"):
                    base = s.params["base"]
                    assert all(base in _ancestors(by_loc, p) for p in s.parents), s.location
            else:
                assert len(s.parents) == 1, s.location
                assert s.relation in edge_relations
            if s.op == "checkpoint":  # named after its run and step
                assert s.name == f"{s.params['run']}-step{s.params['marks'][s.params['index']]}"
            by_loc[s.location] = s
        # every family shares one network shape; some independent families share theirs
        nets = Counter(repr(sorted((s.net or {}).items())) + s.arch for s in roots)
        assert max(nets.values()) >= 2, seed
        kinds = Counter(s.family_kind for s in roots)
        assert kinds["pair"] >= 2 and kinds["star"] >= 1 and kinds["chain"] >= 1, seed
        for root in roots:
            family = [s for s in specs if _family(by_loc, s.location) == root.location]
            assert len({s.family_kind for s in family}) == 1
            if root.family_kind == "pair":
                assert len(family) == 2
        cards = Counter(s.card_status for s in specs)
        assert cards["missing"] + cards["wrong"] >= PROFILES["medium"].cards[0]


def test_random_plans_cover_every_kind_optimizer_and_merge(
    plans: dict[int, list[Spec]],
) -> None:
    specs = [s for seed in DEV_SEEDS for s in plans[seed]]
    assert {s.family_kind for s in specs} == set(FAMILY_KINDS)
    trained = [s for s in specs if s.op in TRAINED and s.op != "pretrain"]
    assert {s.params["optim"]["name"] for s in trained} == set(OPTIMIZERS)
    assert {s.params["optim"]["schedule"] for s in trained} == set(SCHEDULES)
    assert set(OPTIMIZERS) <= set(TRAIN_OPTIMIZERS) and set(SCHEDULES) <= set(TRAIN_SCHEDULES)
    assert {s.params["method"] for s in specs if s.op == "merge"} == set(MERGE_METHODS)
    assert {len(s.parents) for s in specs if s.op == "merge"} == {2, 3}
    assert {s.params["kin"] for s in specs if s.op == "merge"} == {
        "siblings",
        "cousins",
        "relatives",
        "with-parent",
    }
    assert {s.op for s in specs} >= {"lora", "resize", "checkpoint", "cast", "int8", "dup"}
    ranks = {s.params["rank"] for s in specs if s.op == "lora"}
    assert min(ranks) <= 2 and max(ranks) >= 32
    steps = [s.params["steps"] for s in trained if "steps" in s.params]
    assert max(steps) / min(steps) >= 30
    for name in OPTIMIZERS:  # learning rates spread over ~30x per optimiser
        lrs = [s.params["lr"] for s in trained if s.params["optim"]["name"] == name]
        assert max(lrs) / min(lrs) > 10, name
    assert any(s.params.get("stage") == "continued-pretraining" for s in specs)
    assert any("twin_group" in s.params for s in specs)
    assert len({s.params["run"] for s in specs if s.op == "checkpoint"}) >= 10
    chain_lengths = Counter(s.params["run"] for s in specs if s.op == "checkpoint")
    assert min(chain_lengths.values()) == 2 and max(chain_lengths.values()) >= 7


def test_sizes_scale() -> None:
    tiny = make_plan("tiny", 5, "random")
    small = make_plan("small", 5, "random")
    assert len(tiny) <= 12 < 30 <= len(small) <= 55
    with pytest.raises(ValueError, match="unknown zoo plan"):
        make_plan("tiny", 0, "bogus")


# ------------------------------------------------------------------------------ pieces


def test_schedules() -> None:
    total, peak = 100, 1.0
    for schedule in TRAIN_SCHEDULES:
        lrs = [lr_at(i, total, peak, schedule, 0.1) for i in range(total)]
        assert max(lrs) <= peak + 1e-12 and min(lrs) > 0, schedule
    assert lr_at(0, total, peak, "constant") == lr_at(99, total, peak, "constant") == peak
    rising = [lr_at(i, total, peak, "rising") for i in range(total)]
    assert rising == sorted(rising) and rising[-1] == pytest.approx(peak)
    assert lr_at(0, total, peak, "warmup-constant", 0.2) < lr_at(
        30, total, peak, "warmup-constant", 0.2
    )
    assert lr_at(99, total, peak, "cosine") == pytest.approx(0.1, abs=1e-3)


def test_merge_methods() -> None:
    gen = torch.Generator().manual_seed(0)
    base = {"w": torch.randn(8, 16, generator=gen), "b": torch.randn(8, generator=gen)}
    a = {k: v + 0.1 * torch.randn(v.shape, generator=gen) for k, v in base.items()}
    b = {k: v + 0.1 * torch.randn(v.shape, generator=gen) for k, v in base.items()}
    lin = merge("linear", [a, b], [0.25, 0.75])
    torch.testing.assert_close(lin["w"], 0.25 * a["w"] + 0.75 * b["w"])
    for t, want in ((0.0, a), (1.0, b)):
        out = merge("slerp", [a, b], [1 - t, t])
        torch.testing.assert_close(out["w"], want["w"], rtol=1e-5, atol=1e-5)
    mid = merge("slerp", [a, b], [0.5, 0.5])["w"]
    assert float(mid.norm()) >= 0.999 * min(float(a["w"].norm()), float(b["w"].norm()))
    ta = merge("task-arithmetic", [a, b], [1.0, 1.0], base)
    torch.testing.assert_close(ta["w"], a["w"] + b["w"] - base["w"])
    ties = merge("ties", [a, b], [1.0, 1.0], base, density=0.5)
    delta = ties["w"] - base["w"]
    assert (delta != 0).float().mean() < 0.8  # trimmed
    da, db = a["w"] - base["w"], b["w"] - base["w"]
    agree = torch.sign(da) == torch.sign(db)
    assert bool(((delta * torch.sign(da + db)) >= -1e-7)[agree].all())  # elected sign kept
    dare = merge("dare", [a], [1.0], base, density=0.5, gen=torch.Generator().manual_seed(1))
    kept = dare["w"] != base["w"]
    assert 0.3 < float(kept.float().mean()) < 0.7
    torch.testing.assert_close(dare["w"][kept], (base["w"] + 2 * da)[kept])
    with pytest.raises(ValueError, match="base"):
        merge("ties", [a, b], [1.0, 1.0])


def test_cache_names_keep_classic() -> None:
    assert zoo_dir_name("medium", 3) == "zoo-medium-seed3"
    assert zoo_dir_name("medium", 3, "random") == "zoo-medium-random-seed3"


# ------------------------------------------------------------------------------ building


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    zoo = tmp_path_factory.mktemp("random") / "tiny-11"
    build_zoo(zoo, size="tiny", seed=11, plan="random")
    return zoo


def test_tiny_random_zoo_builds_and_validates(tiny_zoo: Path) -> None:
    truth = load_truth(tiny_zoo)
    assert truth["schema_version"] == 2 and truth["plan"] == "random"
    models = {m["location"]: m for m in truth["models"]}
    relations = Counter(m["relation"] for m in models.values())
    assert relations["root"] == 3 and relations["merge"] == 1
    assert all(m["family_kind"] in FAMILY_KINDS and m["net"] for m in models.values())
    for m in models.values():
        if m["relation"] == "merge":
            assert m["merge_weights"] == m["recipe"]["weights"]
            assert m["recipe"]["method"] in MERGE_METHODS
        if m["relation"] in ("finetune", "adapter"):
            r = m["recipe"]
            assert r["optimizer"] in OPTIMIZERS and r["schedule"] in SCHEDULES and r["steps"] > 0
        for f in m["weight_files"]:
            assert (tiny_zoo / m["location"] / f).is_file()
    assert not [p for p in tiny_zoo.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_random_build_is_byte_for_byte_deterministic(tiny_zoo: Path, tmp_path: Path) -> None:
    truth = build_zoo(tmp_path / "again", size="tiny", seed=11, plan="random")
    assert truth == load_truth(tiny_zoo)
    assert _hashes(tmp_path / "again") == _hashes(tiny_zoo)


def test_weights_of_a_random_merge_follow_its_recipe(tiny_zoo: Path) -> None:
    """The merge's stored weights are its method applied to its parents' stored weights."""
    from safetensors.torch import load_file

    models = {m["location"]: m for m in load_truth(tiny_zoo)["models"]}

    def weights(loc: str) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for f in models[loc]["weight_files"]:
            path = tiny_zoo / loc / f
            if f.endswith(".safetensors"):
                out.update(load_file(str(path)))
            elif not f.endswith(".json"):
                out.update(torch.load(path, weights_only=True))
        return {k: v.float() for k, v in out.items()}

    (m,) = [m for m in models.values() if m["relation"] == "merge"]
    r = m["recipe"]
    base = weights(r["base"]) if "base" in r else None
    gen = torch.Generator().manual_seed(r["seed"]) if "seed" in r else None
    parents = [weights(p) for p in m["parents"]]
    want = merge(r["method"], parents, r["weights"], base, r.get("density", 1.0), gen)
    got = weights(m["location"])
    for k, v in want.items():
        np.testing.assert_allclose(got[k].numpy(), v.numpy(), rtol=1e-6, atol=1e-6)


def test_failed_build_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr("heritage.zoo.build._Builder.build", boom)
    with pytest.raises(RuntimeError):
        build_zoo(tmp_path / "zoo", size="tiny", plan="random")
    assert list(tmp_path.iterdir()) == []


def test_cli_defaults_to_random(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from heritage.cli import main

    seen: dict[str, Any] = {}

    def fake_build(out_dir: Path, **kwargs: Any) -> dict[str, Any]:
        seen.update(kwargs, out_dir=out_dir)
        return {"models": []}

    monkeypatch.setattr("heritage.zoo.build_zoo", fake_build)
    assert main(["zoo", str(tmp_path / "z"), "--size", "medium", "--seed", "4"]) == 0
    assert seen["plan"] == "random" and seen["seed"] == 4 and seen["size"] == "medium"
    assert main(["zoo", str(tmp_path / "z"), "--plan", "classic"]) == 0
    assert seen["plan"] == "classic"
