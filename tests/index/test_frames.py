"""Frames built from package objects, and the exact fingerprint round-trip."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from heritage.fingerprint import Fingerprint
from heritage.index import (
    TABLES,
    IndexData,
    combined_sha256,
    edges_frame,
    families_frame,
    fingerprint_from_rows,
    fingerprint_rows,
    fingerprints_frame,
    fingerprints_from_frame,
    model_row,
    schema_sql,
    table_frame,
    table_schema,
    tensors_frame,
)
from heritage.lineage.types import Direction, Relation
from heritage.summary import FileSummary

from .sample import random_fingerprint, sample_graph


def assert_same_fingerprint(a: Fingerprint, b: Fingerprint) -> None:
    assert a.settings == b.settings
    assert list(a.tensors) == list(b.tensors)
    for name, ta in a.tensors.items():
        tb = b.tensors[name]
        assert (ta.name, ta.dtype, ta.shape, ta.cols) == (tb.name, tb.dtype, tb.shape, tb.cols)
        assert isinstance(tb.shape, tuple)
        assert tb.rows.dtype == np.int64 and np.array_equal(ta.rows, tb.rows)
        assert tb.values.dtype == np.float32 and tb.values.shape == ta.values.shape
        assert ta.values.tobytes() == tb.values.tobytes()  # bit-identical, NaN and -0.0 too
        assert ta.stats.keys() == tb.stats.keys()
        for k, v in ta.stats.items():
            assert np.float64(v).tobytes() == np.float64(tb.stats[k]).tobytes()


def test_fingerprint_rows_round_trip_exactly() -> None:
    fp = random_fingerprint(7)
    rows = table_frame("fingerprints", fingerprint_rows("m", fp))
    tensors = tensors_frame({"m": fp})
    assert_same_fingerprint(fp, fingerprint_from_rows(rows, tensors))


def test_stats_recomputed_without_tensors_table() -> None:
    fp = random_fingerprint(3)
    back = fingerprint_from_rows(fingerprints_frame({"m": fp}))
    for name, t in fp.tensors.items():
        assert back.tensors[name].stats == pytest.approx(t.stats, nan_ok=True)


def test_one_dimensional_and_scalar_tensors_keep_their_shape() -> None:
    fp = random_fingerprint(1)
    back = fingerprint_from_rows(fingerprints_frame({"m": fp}))
    assert back.tensors["norm.weight"].shape == (16,)
    assert back.tensors["norm.weight"].values.shape == (1, 6)
    assert back.tensors["scale"].shape == ()
    assert back.tensors["empty.weight"].values.shape == (0, 6)


def test_many_models_round_trip_and_data_helpers() -> None:
    fps = {f"m{i}": random_fingerprint(i) for i in range(3)}
    data = IndexData(fingerprints=fingerprints_frame(fps), tensors=tensors_frame(fps))
    back = data.all_fingerprints()
    assert list(back) == ["m0", "m1", "m2"]
    for k, fp in fps.items():
        assert_same_fingerprint(fp, back[k])
    assert_same_fingerprint(fps["m1"], data.fingerprint("m1"))
    with pytest.raises(KeyError):
        data.fingerprint("nope")
    assert fingerprints_from_frame(data.fingerprints.clear()) == {}


def test_rows_of_several_models_or_bad_blobs_are_refused() -> None:
    fps = {"a": random_fingerprint(0), "b": random_fingerprint(1)}
    with pytest.raises(ValueError, match="several models"):
        fingerprint_from_rows(fingerprints_frame(fps))
    bad = fingerprints_frame({"a": fps["a"]}).with_columns(pl.lit(b"\x00").alias("values"))
    with pytest.raises(ValueError, match="value bytes"):
        fingerprint_from_rows(bad)


def test_tensor_rows_hold_sizes_and_stats() -> None:
    fp = random_fingerprint(0)
    t = tensors_frame({"m": fp}).filter(pl.col("name") == "embed.weight").row(0, named=True)
    assert t["shape"] == [50, 3, 4] and t["n_params"] == 600 and t["position"] == 1
    assert t["unique_ratio"] == fp.tensors["embed.weight"].stats["unique"]


def test_frames_match_table_schemas() -> None:
    assert all(len(table_schema(t)) > 0 for t in TABLES)
    data = IndexData()
    for table, frame in data.frames().items():
        assert frame.schema == table_schema(table) and frame.is_empty()
    with pytest.raises(ValueError, match="no column"):
        table_frame("edges", [{"parent": "a"}])
    with pytest.raises(ValueError, match="unknown index table"):
        table_schema("nope")


def test_model_row_from_summary_and_fields() -> None:
    files = [FileSummary("b.safetensors", 2, "bb"), FileSummary("a.safetensors", 1, "aa")]
    from heritage.summary import ModelSummary

    s = ModelSummary("x", "safetensors", 10, 2, 1, ["F32"], 3, "h", files, {"k": 1})
    row = model_row("id", s, name="x", created_at=0.0, card={"license": "mit"})
    assert row["sha256"] == combined_sha256(files) != combined_sha256(files[:1]) == "bb"
    assert row["config"] == '{"k": 1}' and row["card"] == '{"license": "mit"}'
    assert row["created_at"].year == 1970 and row["status"] == "ok"
    assert row["private"] is False and row["gated"] is False
    assert combined_sha256([FileSummary("a", 1, None)]) is None
    with pytest.raises(ValueError, match="no column"):
        model_row("id", colour="red")


def test_edges_and_families_from_graph() -> None:
    g = sample_graph()
    edges = edges_frame(g)
    assert edges.height == 5
    merge = edges.filter(pl.col("child_id") == "e").sort("parent_id")
    assert merge["weight"].to_list() == [0.4, 0.6]
    assert edges.filter(pl.col("relation") != "merge")["weight"].null_count() == 3
    fams = families_frame(g).sort("family_id")
    assert fams["family_id"].to_list() == ["fam-1", "fam-2"]
    fam1 = fams.row(0, named=True)
    assert fam1["n_models"] == 5 and fam1["root_model_id"] == "a"
    assert fam1["confidence"] == 0.7 and fam1["root_confidence"] == 0.8
    assert fam1["architecture"] == "arch-1"


def test_edge_direction_comes_from_the_graph_and_defaults_to_inferred() -> None:
    g = sample_graph()
    g.edges["b", "c"].update(direction=Direction.UNCERTAIN, confidence=0.55)
    g.edges["a", "d"]["direction"] = "inferred"  # plain strings are fine too
    edges = edges_frame(g)
    got = dict(zip(edges["child_id"], edges["direction"], strict=True))
    assert got == {"b": "inferred", "c": "uncertain", "d": "inferred", "e": "inferred"}
    g.edges["a", "b"]["direction"] = "sideways"
    with pytest.raises(ValueError, match="sideways"):
        edges_frame(g)


def test_schema_placeholders_take_the_enum_values() -> None:
    sql = schema_sql()
    assert "{Relation" not in sql and "{Direction" not in sql
    listed = "', '".join(Relation)
    assert f"relation IN ('{listed}')" in sql
    prose = ", ".join(list(Relation)[:-1]) + " or " + list(Relation)[-1]
    assert f"How the child was derived: {prose}." in sql
