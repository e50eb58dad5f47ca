"""The engine on the small classic zoo: what must always hold, and floors for the rest.

heritage-lineage/4 scored F1 1.0 here with tree rules tuned to this one plan (its
learning-rate sweeps read as chains by any spanning tree); /5 fits its direction model
on random-plan development zoos and says "uncertain" where the weights cannot tell, so
it scores F1 0.605 (undirected 0.750) here at the time of writing. The floors guard
against regressions; the goals are measured by bench/lineage.py on the random-plan test
seeds and reported in README.
"""

from __future__ import annotations

import numpy as np
import pytest

from heritage.fingerprint import fingerprint
from heritage.formats import open_checkpoint
from heritage.lineage import LineageSettings, ModelInput, TruthModel, recover_lineage, score
from heritage.zoo import load_truth


@pytest.fixture(scope="module")
def zoo_result(small_zoo):
    truth = load_truth(small_zoo)
    inputs = []
    for m in truth["models"]:
        with open_checkpoint(small_zoo / m["location"]) as ckpt:
            inputs.append(ModelInput(m["location"], fingerprint(ckpt)))
    tm = {
        m["location"]: TruthModel(m["location"], tuple(m["parents"]), m["relation"], m["family"])
        for m in truth["models"]
    }
    graph = recover_lineage(inputs, LineageSettings(use_times=False))
    return graph, score(graph, tm), inputs


def test_families_copies_and_merges_are_exact(zoo_result):
    graph, s, _ = zoo_result
    assert s.family_ari == 1.0
    assert s.cross_family_edges == 0
    assert s.copies_found == 1.0
    assert s.merge_recall == 1.0


def test_edges_floor_and_top_confidence_is_right(zoo_result):
    graph, s, _ = zoo_result
    assert s.f1 >= 0.55 and s.undirected_f1 >= 0.7
    n, acc = s.calibration[">=0.9"]
    assert n >= 5 and acc >= 0.9
    # what the weights cannot orient is said so, never stated above 0.6
    unsure = [d for *_, d in graph.edges(data=True) if d["direction"] == "uncertain"]
    assert unsure and all(d["confidence"] <= 0.6 for d in unsure)


def test_non_finite_values_do_not_break_the_engine(zoo_result):
    _, _, inputs = zoo_result
    broken = inputs[0].fingerprint
    name = next(n for n, t in broken.tensors.items() if t.values.ndim == 2 and t.values.size > 8)
    broken.tensors[name].values = broken.tensors[name].values.copy()
    broken.tensors[name].values[0, 0] = np.nan
    graph = recover_lineage(inputs[:8], LineageSettings(use_times=False))
    assert graph.number_of_nodes() == 8
