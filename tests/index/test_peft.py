"""PEFT LoRA adapters in the index: an adapter edge to the base, the base's family, the
declared base's verdict, and incremental runs that give what a full run gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from heritage.crawl.run import run_index
from heritage.index import read_index
from heritage.publish.data import load_site
from tests.formats.peft_builders import base_state, fine_tune, lora, write_adapter, write_model
from tests.index.sample import declared_vs_inferred


def _edges(db: Path) -> dict[tuple[str, str], dict]:
    edges = read_index(db).edges
    return {(r["parent_id"], r["child_id"]): r for r in edges.iter_rows(named=True)}


def _family(db: Path) -> dict[str, str]:
    models = read_index(db).models
    return dict(zip(models["model_id"], models["family_id"], strict=True))


def test_adapters_in_the_index(tmp_path: Path) -> None:
    root = tmp_path / "models"
    base = base_state(0)
    ft1, ft2 = fine_tune(base, 1), fine_tune(base, 2)
    for name, state in {"base": base, "ft1": ft1, "ft2": ft2}.items():
        write_model(root / "org" / name, state)
    other = base_state(7)
    other["score.weight"] = np.zeros((9, 48), np.float32)  # another head: no adapter fits
    write_model(root / "org" / "other", other)
    head_tensors, head_config, merged = lora(ft1, 3, save=("score",), base_name="org/ft1")
    write_adapter(root / "org" / "lora-head", head_tensors, head_config)
    plain = lora(ft1, 4, base_name="ORG/BASE")  # fits all three: not attached
    write_adapter(root / "org" / "lora-plain", plain[0], plain[1])
    wrong = lora(ft2, 5, save=("score",), base_name="org/other")  # names a model it cannot fit
    write_adapter(root / "org" / "lora-wrong", wrong[0], wrong[1])
    db = tmp_path / "index.duckdb"

    run_index([root], db, workers=1)
    models = read_index(db).models
    formats = dict(zip(models["model_id"], models["format"], strict=True))
    assert formats["org/lora-head"] == "peft-lora" and formats["org/ft1"] == "safetensors"
    row = models.filter(pl.col("model_id") == "org/lora-plain").row(0, named=True)
    assert row["declared_base_models"] == ["ORG/BASE"] and '"lora_alpha": 8' in row["config"]
    edges, family = _edges(db), _family(db)
    head = edges[("org/ft1", "org/lora-head")]
    assert head["relation"] == "adapter" and head["verified"] is None
    assert 0.55 < head["confidence"] < 0.95
    assert family["org/lora-head"] == family["org/ft1"]
    assert not any(child == "org/lora-plain" for _, child in edges)
    assert family["org/lora-plain"] not in {family["org/ft1"], family["org/base"]}
    assert edges[("org/ft2", "org/lora-wrong")]["relation"] == "adapter"
    families = read_index(db).families
    size = dict(zip(families["family_id"], families["n_models"], strict=True))
    assert size[family["org/ft1"]] == 5  # base, ft1, ft2 and two adapters
    alone = families.filter(pl.col("family_id") == family["org/lora-plain"]).row(0, named=True)
    assert (alone["n_models"], alone["root_model_id"], alone["root_confidence"]) == (
        1,
        "org/lora-plain",
        0.0,
    )
    verdicts = declared_vs_inferred(db, "status, declared_base_ids")
    assert verdicts["org/lora-head"] == ("agrees", ["org/ft1"])
    assert verdicts["org/lora-plain"] == ("compatible", ["org/base"])
    assert verdicts["org/lora-wrong"] == ("incompatible", ["org/other"])
    site = load_site(db, include_private=True)  # the site judges as the view does
    view = declared_vs_inferred(db, "status, matched_bases, declared_base_ids")
    ours = {m.id: (m.agreement, m.matched, m.declared_ids) for m in site.models if m.agreement}
    assert ours == view

    # adding an adapter adds its edge and changes no other
    before = _edges(db)
    rs = lora(ft2, 6, rslora=True, save=("score",))
    write_adapter(root / "org" / "lora-rs", rs[0], rs[1])
    report = run_index([root], db, workers=1)
    after = _edges(db)
    assert set(after) - set(before) == {("org/ft2", "org/lora-rs")}
    assert {k: after[k] for k in before} == before
    assert report.edges.added == [("org/ft2", "org/lora-rs", "adapter")]
    assert not report.edges.changed and not report.edges.removed

    # a merged copy proves the first adapter's base
    write_model(root / "org" / "merged", merged)
    run_index([root], db, workers=1)
    head = _edges(db)[("org/ft1", "org/lora-head")]
    assert (head["confidence"], head["verified"]) == (1.0, True)
    assert _family(db)["org/merged"] == _family(db)["org/ft1"]

    # an unchanged run changes nothing; a fresh index of the same folder gives the same
    report = run_index([root], db, workers=1)
    assert report.edges.count == 0
    fresh = tmp_path / "fresh.duckdb"
    run_index([root], fresh, workers=1)
    x, y = read_index(db), read_index(fresh)
    for table in ("edges", "families"):
        assert_frame_equal(getattr(x, table), getattr(y, table), check_exact=True)
    assert_frame_equal(
        x.models.select("model_id", "family_id"), y.models.select("model_id", "family_id")
    )

    # removing the adapter's base lets it go; removing an adapter shrinks the family
    (root / "org" / "lora-rs" / "adapter_config.json").unlink()
    (root / "org" / "lora-rs" / "adapter_model.safetensors").unlink()
    run_index([root], db, workers=1)
    families = read_index(db).families
    size = dict(zip(families["family_id"], families["n_models"], strict=True))
    assert size[_family(db)["org/ft1"]] == 6  # base, ft1, ft2, merged, lora-head, lora-wrong
