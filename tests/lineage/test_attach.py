"""Attaching new models to a large family as leaves, without planning it again."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from heritage.index import IndexData, fingerprints_frame, model_row, models_frame, tensors_frame
from heritage.index.update import LineageWork, lineage_work, relate_work
from heritage.lineage import LineageSettings, ModelInput, family_lineage, recover_lineage
from heritage.lineage.attach import ATTACH_MIN
from heritage.lineage.incremental import update_lineage
from heritage.lineage.kinship import family_id
from heritage.lineage.types import Relation

from .synthetic import average, bf16, finetune, make, root

SETTINGS = LineageSettings(use_times=False)
SIZE = ATTACH_MIN + 20


def _star(size: int = SIZE) -> dict[str, dict[str, np.ndarray]]:
    base = root(31)
    return {"base": base} | {f"c{i:03d}": finetune(base, 5000 + i) for i in range(size - 1)}


def _inputs(w: dict[str, dict[str, np.ndarray]]) -> list[ModelInput]:
    return [ModelInput(k, make(v)) for k, v in w.items()]


@pytest.fixture(scope="module")
def star() -> tuple[dict, object]:
    w = _star()
    return w, recover_lineage(_inputs(w), SETTINGS)


def _edges(g, without: set[str] = frozenset()) -> list:
    return sorted((u, v, sorted(d.items())) for u, v, d in g.edges(data=True) if v not in without)


def test_new_fine_tunes_join_a_large_star_as_leaves_and_nothing_else_moves(star):
    w, before = star
    assert all(before.has_edge("base", c) for c in w if c != "base")
    w = dict(w)
    w["new-a"] = finetune(w["base"], 1)
    w["new-b"] = finetune(w["base"], 2)
    w["new-a-child"] = finetune(w["new-a"], 3)
    new = {"new-a", "new-b", "new-a-child"}
    update = update_lineage(before, _inputs(w), new, SETTINGS)
    g = update.graph
    assert update.planned == frozenset()  # nothing was planned again
    assert {(u, v) for u, v in g.edges if v in new} == {
        ("base", "new-a"),
        ("base", "new-b"),
        ("new-a", "new-a-child"),
    }
    # every edge of the family stays as it was; its id is the hash of its new members
    assert _edges(g, new) == _edges(before)
    assert {d["family"] for _, d in g.nodes(data=True)} == {family_id(list(w))}
    siblings = [d["confidence"] for _, _, d in before.out_edges("base", data=True)]
    assert g.edges["base", "new-a"]["confidence"] == pytest.approx(np.median(siblings), abs=1e-4)
    assert g.edges["base", "new-a"]["relation"] == Relation.FINETUNE
    # planning everything from scratch puts them in the same places
    full = recover_lineage(_inputs(w), SETTINGS)
    assert {(u, v) for u, v in full.edges if v in new} == {(u, v) for u, v in g.edges if v in new}


def test_attaching_does_not_depend_on_names(star):
    w, before = star
    w = dict(w)
    w["zz-new"] = finetune(w["base"], 1)
    w["aa-new"] = finetune(w["zz-new"], 3)
    g = update_lineage(before, _inputs(w), {"zz-new", "aa-new"}, SETTINGS).graph
    assert set(g.in_edges("zz-new")) == {("base", "zz-new")}
    assert set(g.in_edges("aa-new")) == {("zz-new", "aa-new")}


@pytest.mark.parametrize("kind", ["copy", "merge", "missing base"])
def test_what_a_leaf_cannot_explain_plans_the_family_again(kind):
    w = _star()
    if kind == "missing base":  # the base arrives after its fine-tunes
        base = w.pop("base")
        before = recover_lineage(_inputs(w), SETTINGS)
        w["base"] = base
        new = "base"
    else:
        before = recover_lineage(_inputs(w), SETTINGS)
        new = "new"
        w[new] = bf16(w["c007"]) if kind == "copy" else average(w["c007"], w["c100"], 0.5)
    update = update_lineage(before, _inputs(w), {new}, SETTINGS)
    assert update.planned == frozenset(w)  # the whole family, as a full run plans it
    parents = {u: d["relation"] for u, _, d in update.graph.in_edges(new, data=True)}
    if kind == "copy":
        assert parents == {"c007": Relation.QUANTIZED}
    elif kind == "merge":
        assert parents == {"c007": Relation.MERGE, "c100": Relation.MERGE}
    else:
        assert update.graph.in_degree("base") == 0
        assert update.graph.out_degree("base") == len(w) - 1


def test_small_families_are_planned_again():
    w = _star(ATTACH_MIN - 1)
    before = recover_lineage(_inputs(w), SETTINGS)
    w["new"] = finetune(w["base"], 1)
    update = update_lineage(before, _inputs(w), {"new"}, SETTINGS)
    assert update.planned == frozenset(w)
    assert update.graph.has_edge("base", "new")


def _index_run(
    w: dict, previous: IndexData, changed: list[str], full: bool = False
) -> tuple[IndexData, LineageWork]:
    """The lineage part of an index run over fingerprints ``w`` (as the flows run it)."""
    prints = {k: make(v) for k, v in w.items()}
    models = models_frame([model_row(k, status="ok", source="local") for k in w])
    fps, tensors = fingerprints_frame(prints), tensors_frame(prints)
    work = lineage_work(models, fps, tensors, previous, changed, everything=full)
    models, edges, fams = relate_work(
        models, previous, work, [family_lineage(j, SETTINGS) for j in work.jobs]
    )
    return IndexData(models, tensors, fps, fams, edges), work


def test_an_index_run_attaches_a_new_fine_tune_from_the_stored_rows():
    w = _star()
    first, _ = _index_run(w, IndexData(), list(w))
    w["new"] = finetune(w["base"], 1)
    after, work = _index_run(w, first, ["new"])
    assert work.jobs == [] and work.replanned == 0 and len(work.attached) == 1
    new_edge = after.edges.filter(pl.col("child_id") == "new").row(0, named=True)
    assert (new_edge["parent_id"], new_edge["relation"]) == ("base", "finetune")
    old = after.edges.filter(pl.col("child_id") != "new")
    assert old.sort("child_id").equals(first.edges.sort("child_id"))
    (fam,) = after.families.iter_rows(named=True)
    (was,) = first.families.iter_rows(named=True)
    assert fam["family_id"] == family_id(list(w)) and fam["n_models"] == len(w)
    for key in ("architecture", "root_model_id", "root_confidence", "confidence"):
        assert fam[key] == was[key]
    assert set(after.models["family_id"]) == {fam["family_id"]}

    # a full run plans the family again, as a clean run does
    again, work = _index_run(w, after, [], full=True)
    clean, _ = _index_run(w, IndexData(), list(w))
    assert len(work.jobs) == 1 and work.attached == []
    assert again.edges.sort("child_id").equals(clean.edges.sort("child_id"))
