"""The SQL surface of the index: ancestry macros, declared-vs-inferred, the docs' examples."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import polars as pl
import pytest

from heritage.index import IndexData, connect_readonly, edges_frame, write_index
from heritage.lineage.types import Direction, Relation

from .sample import declared_vs_inferred, sample_graph, sample_index

# The example queries live in docs/indexing.md, section "The index" (moved from the README).
INDEXING_DOC = Path(__file__).resolve().parents[2] / "docs" / "indexing.md"


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    path = tmp_path_factory.mktemp("sql") / "heritage.duckdb"
    write_index(path, sample_index())
    con = connect_readonly(path)
    yield con
    con.close()


def depths(con: duckdb.DuckDBPyConnection, query: str) -> set[tuple]:
    return set(con.execute(f"SELECT model_id, depth, parent_id, child_id FROM {query}").fetchall())


def test_ancestors_by_id_and_by_name(con: duckdb.DuckDBPyConnection) -> None:
    expected = {
        ("c", 1, "c", "e"),
        ("d", 1, "d", "e"),
        ("b", 2, "b", "c"),
        ("a", 2, "a", "d"),
        ("a", 3, "a", "b"),  # a is also reached through b, one hop further
    }
    assert depths(con, "ancestors('e')") == expected
    assert depths(con, "ancestors('org/model-e')") == expected
    assert depths(con, "ancestors('c')") == {("b", 1, "b", "c"), ("a", 2, "a", "b")}
    assert depths(con, "ancestors('a')") == set()
    assert depths(con, "ancestors('no-such-model')") == set()


def test_descendants_by_id_and_by_name(con: duckdb.DuckDBPyConnection) -> None:
    expected = {
        ("b", 1, "a", "b"),
        ("d", 1, "a", "d"),
        ("c", 2, "b", "c"),
        ("e", 2, "d", "e"),
        ("e", 3, "c", "e"),
    }
    assert depths(con, "descendants('a')") == expected
    assert depths(con, "descendants('org/model-a')") == expected
    assert depths(con, "descendants('e')") == set()


def test_ancestor_rows_carry_names_and_relations(con: duckdb.DuckDBPyConnection) -> None:
    rows = con.execute(
        "SELECT model_id, name, relation, weight FROM ancestors('e') WHERE depth = 1"
    ).fetchall()
    assert rows == [("c", "org/model-c", "merge", 0.4), ("d", "org/model-d", "merge", 0.6)]
    nearest = con.execute("SELECT model_id, min(depth) FROM ancestors('e') GROUP BY ALL")
    assert dict(nearest.fetchall()) == {"a": 2, "b": 2, "c": 1, "d": 1}


def test_declared_vs_inferred_statuses(con: duckdb.DuckDBPyConnection) -> None:
    rows = con.execute(
        "SELECT model_id, status, declared_base_ids, inferred_parents, matched_bases "
        "FROM declared_vs_inferred ORDER BY model_id"
    ).fetchall()
    assert rows == [
        ("a", "unknown_base", [], [], []),  # someone/else is not in the index
        ("b", "agrees", ["a"], ["org/model-a"], ["org/model-a"]),
        ("c", "disagrees", ["d"], ["org/model-b"], []),
        ("d", "proposed", [], ["org/model-a"], []),
        ("e", "agrees", ["d"], ["org/model-c", "org/model-d"], ["ORG/MODEL-D"]),
        ("f", "unverified", ["a"], [], []),  # failed: the weights cannot tell
    ]


def test_declared_vs_inferred_proposes_the_most_confident_parent(
    con: duckdb.DuckDBPyConnection,
) -> None:
    rows = con.execute(
        "SELECT model_id, proposed_base, proposed_base_id, proposed_relation, proposed_confidence "
        "FROM declared_vs_inferred ORDER BY model_id"
    ).fetchall()
    assert rows == [
        ("a", None, None, None, None),  # a root: nothing to propose
        ("b", None, None, None, None),  # agrees: the declared base stands
        ("c", "org/model-b", "b", "finetune", 0.8),
        ("d", "org/model-a", "a", "quantized", 0.95),
        ("e", None, None, None, None),
        ("f", None, None, None, None),
    ]


def test_declared_vs_inferred_edge_cases(tmp_path: Path) -> None:
    """A card naming its own model, a base without fingerprint, equally confident parents."""
    data = sample_index()
    declared = {
        "c": ["org/model-a"],  # indexed but not fingerprinted, and not c's parent
        "d": ["org/model-d", "A"],  # itself (ignored), and a by model_id
        "e": None,  # nothing declared: two parents of equal confidence
    }
    models = data.models.with_columns(
        pl.Series(
            [
                declared.get(i, d)
                for i, d in zip(
                    data.models["model_id"], data.models["declared_base_models"], strict=True
                )
            ],
            dtype=pl.List(pl.String),
        ).alias("declared_base_models"),
        pl.when(pl.col("model_id") == "a")
        .then(pl.lit("not_fingerprinted"))
        .otherwise(pl.col("status"))
        .alias("status"),
    )
    edges = data.edges.with_columns(pl.lit(0.5).alias("confidence"))
    path = tmp_path / "edge.duckdb"
    write_index(path, IndexData(models=models, edges=edges, families=data.families))
    got = declared_vs_inferred(
        path, "status, declared_base_ids, proposed_base_id, proposed_confidence"
    )
    assert got["b"] == ("agrees", ["a"], None, None)  # the parent, fingerprint or not
    assert got["c"] == ("unverified", ["a"], "b", 0.5)  # a has no fingerprint to compare
    assert got["d"] == ("agrees", ["a"], None, None)
    assert got["e"] == ("proposed", [], "c", 0.5)  # a tie goes to the lowest parent id
    assert "f" in got and got["f"][0] == "unverified"


def test_lineage_view_names_both_ends(con: duckdb.DuckDBPyConnection) -> None:
    row = con.execute(
        "SELECT parent_name, child_name, family_id FROM lineage WHERE child_id = 'b'"
    ).fetchone()
    assert row == ("org/model-a", "org/model-b", "fam-1")


def check_lists(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """column -> the values its CHECK (column IN (...)) constraint allows, as written."""
    rows = con.execute(
        "SELECT constraint_column_names[1], expression FROM duckdb_constraints() "
        "WHERE database_name = current_database() AND table_name = 'edges' "
        "AND constraint_type = 'CHECK'"
    ).fetchall()
    out = {}
    for column, expression in rows:
        m = re.fullmatch(rf"\(?{column} IN \((.*)\)\)?", expression)
        assert m, expression
        out[column] = re.findall(r"'((?:[^']|'')*)'", m.group(1))
    return out


def test_check_lists_are_the_enums(con: duckdb.DuckDBPyConnection) -> None:
    """The written file allows exactly the Relation and Direction values, in enum order."""
    assert check_lists(con) == {
        "relation": [r.value for r in Relation],
        "direction": [d.value for d in Direction],
    }


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("relation", "sibling", "CHECK constraint"),
        ("direction", "sideways", "CHECK constraint"),
        ("direction", None, "NOT NULL"),
    ],
)
def test_edges_refuse_values_outside_the_enums(
    tmp_path: Path, column: str, value: str | None, message: str
) -> None:
    path = tmp_path / "bad.duckdb"
    edges = edges_frame(sample_graph()).with_columns(
        pl.when(pl.col("child_id") == "b")
        .then(pl.lit(value, dtype=pl.String))
        .otherwise(pl.col(column))
        .alias(column)
    )
    with pytest.raises(duckdb.ConstraintException, match=message):
        write_index(path, IndexData(edges=edges))
    assert not path.exists()


def test_views_carry_the_direction(tmp_path: Path) -> None:
    data = sample_index()
    uncertain = (pl.col("parent_id") == "a") & (pl.col("child_id") == "d")
    data.edges = data.edges.with_columns(
        pl.when(uncertain).then(pl.lit("uncertain")).otherwise("direction").alias("direction"),
        pl.when(uncertain).then(pl.lit(0.55)).otherwise("confidence").alias("confidence"),
    )
    path = tmp_path / "direction.duckdb"
    write_index(path, data)
    got = declared_vs_inferred(path, "directions, proposed_base_id, proposed_direction")
    assert got["d"] == (["uncertain"], "a", "uncertain")
    assert got["c"] == (["inferred"], "b", "inferred")
    con = connect_readonly(path)
    try:
        lineage = con.execute(
            "SELECT child_id, direction FROM lineage WHERE parent_id = 'a' ORDER BY child_id"
        ).fetchall()
        up = con.execute(
            "SELECT model_id, direction FROM ancestors('e') WHERE depth = 2 ORDER BY model_id"
        ).fetchall()
        down = con.execute(
            "SELECT model_id, direction FROM descendants('a') WHERE depth = 1 ORDER BY model_id"
        ).fetchall()
    finally:
        con.close()
    assert lineage == [("b", "inferred"), ("d", "uncertain")]
    assert up == [("a", "uncertain"), ("b", "inferred")]
    assert down == [("b", "inferred"), ("d", "uncertain")]


def test_docs_examples_run_as_printed(con: duckdb.DuckDBPyConnection) -> None:
    text = INDEXING_DOC.read_text()
    section = text[text.index("## The index\n") :]
    section = section[: section.index("\n## ", 1)]
    blocks = re.findall(r"```sql\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 6
    results = [con.execute(sql).fetchall() for sql in blocks]
    assert results[0][0][:3] == ("fam-1", 5, "org/model-a")
    assert results[1][0][:3] == (1, "org/model-c", "merge")
    assert results[2] == [("org/model-c", ["org/model-d"], ["org/model-b"])]
    assert results[3] == [("org/model-d", "org/model-a", 0.95)]
    assert results[4] == []  # every sample edge is oriented
    assert [(row[1], row[-1]) for row in results[5]] == [("crawl-local", "partial")]
