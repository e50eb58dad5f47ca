"""PEFT LoRA adapters attached to their base: verified by a merged copy, else by their
saved modules, else the one model that fits; never by names."""

from __future__ import annotations

import random
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from heritage.fingerprint import Fingerprint, fingerprint
from heritage.formats import open_checkpoint, peft
from heritage.lineage import ModelInput, Relation, recover_lineage
from heritage.lineage.incremental import update_lineage
from heritage.lineage.peft import AdapterInput, Basis, attach_adapters
from tests.formats.peft_builders import (
    State,
    base_state,
    fine_tune,
    lora,
    write_adapter,
    write_model,
)


def _print(folder: Path) -> tuple[Fingerprint, dict | None]:
    with open_checkpoint(folder) as ckpt:
        return fingerprint(ckpt), ckpt.config


class Zoo:
    """A base, two fine-tunes of it, LoRAs on the first fine-tune and merged copies."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.models: dict[str, ModelInput] = {}
        base = base_state(0)
        tuned = fine_tune(base, 1)
        self.states = {"base": base, "ft1": tuned, "ft2": fine_tune(base, 2)}
        # with a trained classification head saved whole, and without
        self.head = lora(tuned, 3, save=("score",))
        self.plain = lora(tuned, 4, r=8, alpha=16)
        self.rs = lora(self.states["ft2"], 5, rslora=True)
        self.states |= {"merged": self.head[2], "merged-plain": self.plain[2]}
        self.states["merged-rs"] = self.rs[2]
        for name, state in self.states.items():
            self.add_model(name, state)
        for name, (tensors, config, _) in {
            "lora-head": self.head,
            "lora-plain": self.plain,
            "lora-rs": self.rs,
        }.items():
            self.add_adapter(name, tensors, config)
        other = base_state(9)
        other["model.layers.0.mlp.up_proj.weight"] = other["model.layers.0.mlp.up_proj.weight"][
            :100
        ]
        self.add_model("other-shapes", other)

    def add_model(self, name: str, state: State, f16: bool = False) -> None:
        if f16:
            state = {k: v.astype(np.float16) for k, v in state.items()}
        fp, _ = _print(write_model(self.root / name, state))
        self.models[name] = ModelInput(name, fp)

    def add_adapter(self, name: str, tensors: State, config: dict) -> None:
        fp, cfg = _print(write_adapter(self.root / name, tensors, config))
        shapes = [(n, t.shape) for n, t in fp.tensors.items()]
        self.models[name] = ModelInput(name, fp, adapter=peft.layout_of(cfg, shapes))

    def pick(self, *names: str) -> list[ModelInput]:
        return [self.models[n] for n in names]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    return Zoo(tmp_path_factory.mktemp("peft-zoo"))


def place(zoo: Zoo, adapter: str, *models: str):
    a = zoo.models[adapter]
    (p,) = attach_adapters(
        [AdapterInput(a.id, a.fingerprint, a.adapter)],
        [(m, zoo.models[m].fingerprint) for m in models],
    )
    return p


FULL = ("base", "ft1", "ft2")


def test_a_merged_copy_verifies_the_base(zoo: Zoo) -> None:
    p = place(zoo, "lora-head", *FULL, "merged", "other-shapes")
    assert (p.base, p.basis, p.verified, p.confidence) == ("ft1", Basis.VERIFIED, True, 1.0)
    assert p.merged == ("merged",) and p.candidates == 4  # other-shapes does not fit
    assert 0 < p.distance < 1
    p = place(zoo, "lora-plain", *FULL, "merged-plain")
    assert (p.base, p.verified, p.merged) == ("ft1", True, ("merged-plain",))
    # rsLoRA scales by alpha / sqrt(r): verified only with that scale
    p = place(zoo, "lora-rs", *FULL, "merged-rs")
    assert (p.base, p.verified) == ("ft2", True)


def test_a_merged_copy_of_another_adapter_verifies_nothing(zoo: Zoo) -> None:
    p = place(zoo, "lora-plain", *FULL, "merged")
    assert not p.verified and p.basis == Basis.AMBIGUOUS and p.base is None


def test_a_half_precision_merged_copy_verifies_too(zoo: Zoo, tmp_path: Path) -> None:
    fp, _ = _print(
        write_model(
            tmp_path / "m16",
            {k: v.astype(np.float16) for k, v in zoo.states["merged-plain"].items()},
        )
    )
    a = zoo.models["lora-plain"]
    (p,) = attach_adapters(
        [AdapterInput(a.id, a.fingerprint, a.adapter)],
        [*((m, zoo.models[m].fingerprint) for m in FULL), ("m16", fp)],
    )
    assert (p.base, p.verified, p.merged) == ("ft1", True, ("m16",))


def test_a_tampered_merged_copy_is_not_proof(zoo: Zoo, tmp_path: Path) -> None:
    state = dict(zoo.states["merged-plain"])
    k = "model.layers.1.self_attn.k_proj.weight"  # not a LoRA target
    state[k] = state[k] * 1.01
    fp, _ = _print(write_model(tmp_path / "tampered", state))
    a = zoo.models["lora-plain"]
    (p,) = attach_adapters(
        [AdapterInput(a.id, a.fingerprint, a.adapter)],
        [*((m, zoo.models[m].fingerprint) for m in FULL), ("tampered", fp)],
    )
    assert not p.verified and p.base is None


def test_saved_modules_pick_the_nearest_base(zoo: Zoo) -> None:
    p = place(zoo, "lora-head", *FULL)
    assert (p.base, p.basis, p.verified) == ("ft1", Basis.NEAREST_SAVED, False)
    assert 0.55 < p.confidence < 0.95
    # the merged copy holds the trained head exactly: a copy, never the base
    p = place(zoo, "lora-head", "ft1", "merged-plain", "merged")
    assert p.base in ("ft1", "merged-plain") and p.base != "merged"
    p = place(zoo, "lora-head", "merged")
    assert (p.base, p.basis) == (None, Basis.AMBIGUOUS)


def test_one_fit_or_none(zoo: Zoo) -> None:
    p = place(zoo, "lora-plain", *FULL)
    assert (p.base, p.basis, p.confidence) == (None, Basis.AMBIGUOUS, 0.0)
    assert p.candidates == 3
    p = place(zoo, "lora-plain", "ft2", "other-shapes")
    assert (p.base, p.basis, p.confidence) == ("ft2", Basis.ONLY_FIT, 0.5)
    p = place(zoo, "lora-plain", "other-shapes")
    assert (p.base, p.basis, p.candidates) == (None, Basis.NO_FIT, 0)


def _summary(graph: nx.DiGraph, rename: dict[str, str]) -> tuple:
    back = {v: k for k, v in rename.items()}
    edges = sorted(
        (back[u], back[v], str(d["relation"]), d["confidence"], d.get("verified"))
        for u, v, d in graph.edges(data=True)
    )
    families: dict[str, set[str]] = {}
    for n, d in graph.nodes(data=True):
        families.setdefault(d["family"], set()).add(back[n])
    return edges, sorted(sorted(f) for f in families.values())


def test_recover_lineage_attaches_adapters_whatever_the_ids(zoo: Zoo) -> None:
    names = [*FULL, "merged", "merged-plain", "lora-head", "lora-plain", "lora-rs"]
    results = []
    for seed in range(3):
        rng = random.Random(seed)
        fresh = [f"m{rng.randrange(10**6):06d}-{k}" for k in range(len(names))]
        rng.shuffle(fresh)
        rename = dict(zip(names, fresh, strict=True)) if seed else {n: n for n in names}
        models = [
            ModelInput(rename[m.id], m.fingerprint, adapter=m.adapter) for m in zoo.pick(*names)
        ]
        rng.shuffle(models)
        graph = recover_lineage(models)
        results.append(_summary(graph, rename))
    assert results[0] == results[1] == results[2]
    edges, families = results[0]
    adapter_edges = {(u, v): (c, ver) for u, v, rel, c, ver in edges if v.startswith("lora")}
    assert adapter_edges == {("ft1", "lora-head"): (1.0, True), ("ft1", "lora-plain"): (1.0, True)}
    assert all(rel == str(Relation.ADAPTER) for u, v, rel, *_ in edges if v.startswith("lora"))
    # lora-rs fits all five full models and nothing tells them apart: no edge, a family
    # of its own; the others join the base's family
    assert ["lora-rs"] in families
    assert any({"ft1", "lora-head", "lora-plain", "merged"} <= set(f) for f in families)


def test_unattached_adapter_says_so(zoo: Zoo) -> None:
    graph = recover_lineage(zoo.pick(*FULL, "lora-plain"))
    node = graph.nodes["lora-plain"]
    assert graph.in_degree("lora-plain") == 0
    assert node["adapter_basis"] == "ambiguous" and node["adapter_candidates"] == 3
    assert node["root_confidence"] == 0.0 and node["family"] not in {
        graph.nodes[m]["family"] for m in FULL
    }


def test_adding_an_adapter_changes_no_other_edge(zoo: Zoo) -> None:
    core = zoo.pick(*FULL, "merged-plain")
    before = recover_lineage(core)
    after = update_lineage(before, [*core, zoo.models["lora-plain"]], ["lora-plain"])
    old = {(u, v): d for u, v, d in before.edges(data=True)}
    new = {(u, v): d for u, v, d in after.graph.edges(data=True)}
    assert set(new) - set(old) == {("ft1", "lora-plain")}
    assert all(new[e] == old[e] for e in old)
    assert after.planned == {"lora-plain"}
    assert after.graph.nodes["lora-plain"]["family"] == before.nodes["ft1"]["family"]
    # and removing it again leaves the rest as it was
    again = update_lineage(after.graph, core, [])
    assert {(u, v): d for u, v, d in again.graph.edges(data=True)} == old
