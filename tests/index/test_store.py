"""Writing and reading the index file: round-trip, atomic replace, versions."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import duckdb
import polars as pl
import pytest

import heritage
from heritage.index import (
    SCHEMA_VERSION,
    STORAGE_VERSION,
    TABLES,
    IndexData,
    IndexVersionError,
    PrintReader,
    backup_path,
    connect_readonly,
    read_fingerprints,
    read_index,
    store,
    upgrade_index,
    write_index,
)
from heritage.lineage.evidence import architecture_key

from .sample import sample_index
from .test_frames import assert_same_fingerprint

# DuckDB's file header keeps the storage version number at byte 12; v1.4.0 writes 67.
STORAGE_NUMBER_V1_4 = 67
SCHEMA_V2 = Path(__file__).with_name("schema_v2.sql")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def data() -> IndexData:
    return sample_index()


@pytest.fixture
def index(tmp_path: Path, data: IndexData) -> Path:
    path = tmp_path / "heritage.duckdb"
    write_index(path, data)
    return path


def test_every_table_round_trips(index: Path, data: IndexData) -> None:
    back = read_index(index)
    for table in TABLES:
        written, read = getattr(data, table), getattr(back, table)
        assert read.schema == written.schema, table
        key = read.columns[:2]
        assert read.sort(key).equals(written.sort(key)), table
    assert back.models.height == 6 and back.fingerprints.height == 30


def test_fingerprints_round_trip_through_the_file(index: Path, data: IndexData) -> None:
    back = read_index(index)
    for model_id, fp in data.all_fingerprints().items():
        assert_same_fingerprint(fp, back.fingerprint(model_id))


def test_fingerprints_can_stay_in_the_file(index: Path, data: IndexData) -> None:
    lazy = read_index(index, fingerprints=False)
    assert lazy.fingerprints.is_empty()
    assert lazy.stored_prints is not None
    assert sorted(lazy.stored_prints.ids) == sorted(data.all_fingerprints())
    wanted = sorted(lazy.stored_prints.ids)[:2]
    got = read_fingerprints(lazy.stored_prints, wanted)
    assert sorted(got) == wanted
    for model_id in wanted:
        assert_same_fingerprint(data.fingerprint(model_id), got[model_id])
        assert_same_fingerprint(data.fingerprint(model_id), lazy.fingerprint(model_id))
    with PrintReader(lazy.stored_prints) as reader:
        keys = reader.architectures()
        for model_id, fp in data.all_fingerprints().items():
            assert keys[model_id] == architecture_key(fp)
            for name, t in fp.tensors.items():
                sample = (name, t.rows, t.values.shape)
                pos, values = reader.samples([model_id], [sample])[name]
                assert pos.tolist() == [0] and values[0].tobytes() == t.values.tobytes()
    with pytest.raises(KeyError, match="nope"):
        read_fingerprints(lazy.stored_prints, ["nope"])


def test_stored_fingerprint_rows_are_copied_file_to_file(
    tmp_path: Path, index: Path, data: IndexData
) -> None:
    lazy = read_index(index, fingerprints=False)
    assert lazy.stored_prints is not None
    old = sorted(lazy.stored_prints.ids)
    renames = {old[0]: "renamed", old[1]: old[1]}  # the rest are dropped
    lazy.stored_prints = lazy.stored_prints.renamed(renames)
    write_index(index, lazy)  # reads the rows from the file it replaces
    back = read_index(index)
    assert sorted(set(back.fingerprints["model_id"])) == sorted([old[1], "renamed"])
    assert_same_fingerprint(data.fingerprint(old[0]), back.fingerprint("renamed"))
    assert_same_fingerprint(data.fingerprint(old[1]), back.fingerprint(old[1]))


def test_meta_records_versions(index: Path, data: IndexData) -> None:
    meta = read_index(index).meta
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert meta["tool_version"] == heritage.__version__
    assert meta["storage_version"] == STORAGE_VERSION
    assert meta["written_at"] and meta["crawl_root"] == "zoo"


def test_storage_version_is_pinned(index: Path) -> None:
    """Whatever DuckDB writes the file, it reports the pinned (v1.4.0) storage format."""
    con = connect_readonly(index)
    try:
        (tags,) = con.execute(
            "SELECT tags FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchone()
    finally:
        con.close()
    assert tags["storage_version"] == f"{STORAGE_VERSION}+"
    header = index.read_bytes()[:13]
    assert header[8:12] == b"DUCK" and header[12] == STORAGE_NUMBER_V1_4


def test_json_and_nested_columns_are_queryable(index: Path) -> None:
    con = connect_readonly(index)
    try:
        got = con.execute(
            "SELECT card->>'license', config->>'$.hidden', files[1].bytes, typeof(config) "
            "FROM models WHERE model_id = 'a'"
        ).fetchone()
    finally:
        con.close()
    assert got == ("mit", "6", 4096, "JSON")


def test_every_table_and_column_has_a_comment(index: Path) -> None:
    con = connect_readonly(index)
    try:
        columns = con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() "
            "WHERE database_name = current_database() AND comment IS NULL"
        ).fetchall()
        tables = con.execute(
            "SELECT table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() AND comment IS NULL"
        ).fetchall()
        views = con.execute(
            "SELECT view_name FROM duckdb_views() "
            "WHERE database_name = current_database() AND NOT internal AND comment IS NULL"
        ).fetchall()
        macros = con.execute(
            "SELECT function_name, comment FROM duckdb_functions() "
            "WHERE function_name IN ('ancestors', 'descendants')"
        ).fetchall()
        n = con.execute(
            "SELECT count(*) FROM duckdb_columns() WHERE database_name = current_database()"
        ).fetchone()[0]
    finally:
        con.close()
    assert columns == [] and tables == [] and views == []
    assert len(macros) == 2 and all(c for _, c in macros)
    assert n > 90


def test_missing_file_reads_as_empty_frames(tmp_path: Path) -> None:
    data = read_index(tmp_path / "none.duckdb")
    assert all(f.is_empty() for f in data.frames().values())
    with pytest.raises(FileNotFoundError):
        connect_readonly(tmp_path / "none.duckdb")


def test_empty_index_writes_and_reads(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "empty.duckdb"
    write_index(path, IndexData())
    back = read_index(path)
    assert all(f.is_empty() for f in back.frames().values())


def test_replace_keeps_previous_as_bak(index: Path, data: IndexData) -> None:
    before = digest(index)
    smaller = IndexData(models=data.models.head(2), runs=data.runs)
    write_index(index, smaller)
    assert digest(backup_path(index)) == before
    assert read_index(index).models.height == 2
    assert read_index(backup_path(index)).models.height == 6
    write_index(index, data)  # a second replace rotates the .bak
    assert read_index(backup_path(index)).models.height == 2
    leftovers = sorted(p.name for p in index.parent.iterdir())
    assert leftovers == ["heritage.duckdb", "heritage.duckdb.bak"]


def test_failure_mid_write_leaves_old_index_intact(
    index: Path, data: IndexData, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = digest(index)
    real_insert = store._insert

    def failing_insert(con, table, frame):
        if table == "edges":
            raise OSError("disk full (simulated)")
        real_insert(con, table, frame)

    monkeypatch.setattr(store, "_insert", failing_insert)
    with pytest.raises(OSError, match="simulated"):
        write_index(index, IndexData(models=data.models.head(1)))
    assert digest(index) == before
    assert not backup_path(index).exists()
    assert sorted(p.name for p in index.parent.iterdir()) == ["heritage.duckdb"]
    assert read_index(index).models.height == 6


def test_failure_at_publish_leaves_old_index_intact(
    index: Path, data: IndexData, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = digest(index)

    def failing_replace(src, dst):
        raise OSError("rename failed (simulated)")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        write_index(index, IndexData())
    monkeypatch.undo()
    assert digest(index) == before and read_index(index).models.height == 6
    assert not list(index.parent.glob("*.tmp-*"))


def test_bad_frame_column_is_refused_before_publish(index: Path, data: IndexData) -> None:
    before = digest(index)
    bad = IndexData(edges=data.edges.with_columns(pl.lit(1).alias("colour")))
    with pytest.raises(ValueError, match="colour"):
        write_index(index, bad)
    assert digest(index) == before


def test_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.duckdb"
    write_index(path, IndexData())
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION + 1)])
    con.close()
    before = digest(path)
    with pytest.raises(IndexVersionError, match="newer"):
        read_index(path)
    with pytest.raises(IndexVersionError, match="newer"):
        connect_readonly(path)
    with pytest.raises(IndexVersionError, match="newer"):
        write_index(path, IndexData())
    assert digest(path) == before


def test_version_1_file_is_read_and_rewritten_as_current(tmp_path: Path, data: IndexData) -> None:
    """A file marked version 1 reads (its edges as oriented) and is rewritten as current."""
    path = tmp_path / "v1.duckdb"
    write_index(path, data)
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.close()
    back = read_index(path)
    assert back.models.height == data.models.height
    write_index(path, back)
    assert read_index(path).meta["schema_version"] == str(SCHEMA_VERSION) == "5"
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(IndexVersionError, match="older than 1"):
        read_index(path)


def test_file_without_meta_is_not_an_index(tmp_path: Path) -> None:
    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE t AS SELECT 1 AS x")
    con.close()
    with pytest.raises(IndexVersionError, match="not a heritage index"):
        read_index(path)


def test_open_reader_keeps_its_snapshot_and_new_readers_see_the_write(
    index: Path, data: IndexData
) -> None:
    old = connect_readonly(index)
    try:
        write_index(index, IndexData(models=data.models.head(1)))
        assert old.execute("SELECT count(*) FROM models").fetchone() == (6,)
        assert read_index(index).models.height == 1
    finally:
        old.close()


def write_version_2(path: Path, data: IndexData) -> None:
    """A genuine version-2 index (v2 schema.sql, no edges.direction or edges.verified)
    holding ``data``."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute(f"ATTACH '{path}' AS old (STORAGE_VERSION '{STORAGE_VERSION}')")
        con.execute("USE old")
        con.execute(SCHEMA_V2.read_text())
        for table, frame in data.frames().items():
            frame = frame.drop("direction", "verified", strict=False)
            con.register("frame", frame)
            con.execute(f"INSERT INTO {table} SELECT * FROM frame")
            con.unregister("frame")
        meta = {**data.meta, "schema_version": "2", "storage_version": STORAGE_VERSION}
        con.executemany("INSERT INTO meta VALUES (?, ?)", list(meta.items()))
        con.execute("USE memory")
        con.execute("DETACH old")
    finally:
        con.close()


def test_version_2_file_reads_with_direction_inferred(tmp_path: Path, data: IndexData) -> None:
    path = tmp_path / "v2.duckdb"
    write_version_2(path, data)
    before = digest(path)
    con = connect_readonly(path)
    try:
        rows = con.execute("SELECT DISTINCT direction FROM edges").fetchall()
        walked = con.execute("SELECT count(*) FROM ancestors('e')").fetchone()
    finally:
        con.close()
    assert rows == [("inferred",)] and walked == (5,)
    back = read_index(path)
    assert back.edges.schema == data.edges.schema
    assert back.edges.equals(data.edges.sort("parent_id", "child_id"))
    assert digest(path) == before  # reading never writes


def test_upgrade_from_version_2_keeps_every_row(tmp_path: Path, data: IndexData) -> None:
    path = tmp_path / "v2.duckdb"
    write_version_2(path, data)
    old = digest(path)
    assert upgrade_index(path) == 2
    assert digest(backup_path(path)) == old  # the version-2 file is kept as .bak
    back = read_index(path)
    assert back.meta["schema_version"] == str(SCHEMA_VERSION) == "5"
    assert back.meta["crawl_root"] == "zoo"
    for table in TABLES:
        written, read = getattr(data, table), getattr(back, table)
        assert read.schema == written.schema, table
        key = read.columns[:2]
        assert read.sort(key).equals(written.sort(key)), table
    assert back.edges["direction"].to_list() == ["inferred"] * 5
    con = connect_readonly(path)
    try:
        (comment,) = con.execute(
            "SELECT comment FROM duckdb_columns() WHERE database_name = current_database() "
            "AND table_name = 'edges' AND column_name = 'direction'"
        ).fetchone()
        lineage = con.execute("SELECT DISTINCT direction FROM lineage").fetchall()
    finally:
        con.close()
    assert "uncertain" in comment and lineage == [("inferred",)]
    assert path.read_bytes()[12] == STORAGE_NUMBER_V1_4  # still the pinned storage format
    current = digest(path)
    assert upgrade_index(path) == 5 and digest(path) == current  # a current file stays put
