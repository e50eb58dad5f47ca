"""Incremental lineage: only the families a change reaches are planned again."""

from __future__ import annotations

import numpy as np

from heritage.lineage import LineageSettings, ModelInput, recover_lineage
from heritage.lineage.incremental import find_touched, kin_of, update_lineage

from .synthetic import finetune, forest, make, root


def _forest(families: int = 3, size: int = 12) -> dict[str, dict[str, np.ndarray]]:
    return forest(families, size, seed=11, root_seed=900, stride=50)


SETTINGS = LineageSettings(use_times=False)


def _inputs(w: dict[str, dict[str, np.ndarray]]) -> list[ModelInput]:
    return [ModelInput(k, make(v)) for k, v in w.items()]


def _family_part(g, family: str) -> tuple[list, list]:
    nodes = sorted((n, sorted(d.items())) for n, d in g.nodes(data=True) if d["family"] == family)
    names = {n for n, _ in nodes}
    edges = sorted((u, v, sorted(d.items())) for u, v, d in g.edges(data=True) if v in names)
    return nodes, edges


def test_a_new_fine_tune_replans_its_family_only():
    w = _forest()
    before = recover_lineage(_inputs(w), SETTINGS)
    w["f1-new"] = finetune(w["f1-m03"], 12345)
    update = update_lineage(before, _inputs(w), {"f1-new"}, SETTINGS)
    fam = {n: d["family"] for n, d in before.nodes(data=True)}
    assert update.touched.families == {fam["f1-root"]}
    assert update.touched.models == {n for n in w if n.startswith("f1-")}
    g = update.graph
    assert ("f1-m03", "f1-new") in g.edges
    for other in ("f0-root", "f2-root"):  # untouched: nodes, edges and ids exactly kept
        assert _family_part(g, fam[other]) == _family_part(before, fam[other])
    # the replanned family agrees with planning everything from scratch
    full = recover_lineage(_inputs(w), SETTINGS)
    f1 = {n for n in w if n.startswith("f1-")}
    assert {frozenset(e) for e in g.edges if e[1] in f1} == {
        frozenset(e) for e in full.edges if e[1] in f1
    }


def test_removing_a_model_touches_its_family_and_no_change_touches_nothing():
    w = _forest()
    before = recover_lineage(_inputs(w), SETTINGS)
    fam = {n: d["family"] for n, d in before.nodes(data=True)}
    same = update_lineage(before, _inputs(w), set(), SETTINGS)
    assert same.touched.families == frozenset() and same.touched.models == frozenset()
    assert sorted(same.graph.edges(data=True)) == sorted(before.edges(data=True))
    del w["f2-m05"]
    gone = update_lineage(before, _inputs(w), set(), SETTINGS)
    assert gone.touched.families == {fam["f2-root"]}
    assert "f2-m05" not in gone.graph
    assert sorted(gone.graph.nodes) == sorted(w)


def test_an_unrelated_new_model_touches_no_family():
    w = _forest()
    before = recover_lineage(_inputs(w), SETTINGS)
    w["stranger"] = root(4242)
    update = update_lineage(before, _inputs(w), {"stranger"}, SETTINGS)
    assert update.touched.families == frozenset()
    assert update.touched.models == {"stranger"}
    assert update.graph.nodes["stranger"]["family"] not in {
        d["family"] for n, d in before.nodes(data=True)
    }
    assert sorted(update.graph.edges) == sorted(before.edges)


def test_kin_search_finds_relatives_and_not_strangers():
    w = _forest(2, 6)
    w["stranger"] = root(77)
    inputs = _inputs(w)
    ids = [m.id for m in inputs]
    kin = kin_of(inputs, [ids.index("f0-m02")], 0.2)[ids.index("f0-m02")]
    assert {ids[i] for i in kin} == {n for n in w if n.startswith("f0-")} - {"f0-m02"}
    touched = find_touched({}, inputs, set())
    assert touched.models == set(w)  # nothing placed before: everything is new
