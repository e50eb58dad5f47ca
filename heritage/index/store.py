"""Reading and writing the index file: always whole, always atomic.

A write builds a complete new DuckDB file beside the target, checkpoints and fsyncs it,
keeps the previous index as ``<path>.bak`` and renames the new file into place. Readers
therefore see either the old index or the new one, never a half-written file, and a
crash at any point leaves the last good index where it was.

The file is written in DuckDB's v1.4.0 storage format (pinned at ATTACH time), so
DuckDB 1.4 and every newer release can open it even when a newer DuckDB writes it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl

from heritage import __version__
from heritage.errors import IndexVersionError
from heritage.index.frames import (
    ORDER_BY,
    TABLES,
    IndexData,
    StoredPrints,
    empty_frame,
    schema_sql,
    table_schema,
)

# Bump on any change to schema.sql; readers refuse files from a newer schema.
SCHEMA_VERSION = 5
# Version 2 changed only the declared_vs_inferred view; version 3 added edges.direction
# (and CHECKs on edges.relation and edges.direction); version 4 added edges.verified;
# version 5 changed only the declared_vs_inferred view (PEFT adapters' compatible and
# incompatible verdicts) and comments. Older files are read as if they had the added
# columns (see ADDED_COLUMNS); the next write stores them under the current schema,
# views and all.
OLDEST_READABLE_VERSION = 1
# Columns added by each schema version: table -> column -> SQL value the rows of an older
# file take. Every edge written before version 3 was oriented by the weights.
ADDED_COLUMNS: dict[int, dict[str, dict[str, str]]] = {
    3: {"edges": {"direction": "'inferred'"}},
    4: {"edges": {"verified": "CAST(NULL AS BOOLEAN)"}},
}
# Oldest DuckDB release that must be able to open the file.
STORAGE_VERSION = "v1.4.0"
RESERVED_META = ("schema_version", "tool_version", "storage_version", "written_at")
CATALOG = "heritage"  # catalog name of the index in connections from connect_readonly
_NEW = "heritage_new"  # catalog name of the file being written
_FRAME = "heritage_frame"  # name a frame is registered under while it is inserted
IDS_RELATION = (
    "heritage_ids"  # (model_id, stored_id) of fingerprint rows read or copied from a file
)
_OLD = "heritage_old"  # catalog name of the file stored fingerprint rows are copied from


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def backup_path(path: Path) -> Path:
    """Where the previous index is kept after a successful write."""
    return path.with_name(path.name + ".bak")


def _remove(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _fsync(path: Path, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:  # some platforms cannot open directories; the rename still happened
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:
            raise
    finally:
        os.close(fd)


def read_meta(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The meta table as a dict; raises IndexVersionError when the file is not an index."""
    try:
        rows = con.execute("SELECT key, value FROM meta").fetchall()
    except duckdb.CatalogException:
        raise IndexVersionError("not a heritage index (no meta table)") from None
    return {k: v for k, v in rows}


def check_schema_version(meta: dict[str, str], where: object = "index") -> int:
    """The file's schema version, or a clear error when this code cannot read it."""
    raw = meta.get("schema_version")
    try:
        version = int(raw) if raw is not None else None
    except ValueError:
        version = None
    if version is None:
        raise IndexVersionError(f"{where}: not a heritage index (no valid schema_version)")
    if version > SCHEMA_VERSION:
        raise IndexVersionError(
            f"{where}: index schema version {version} is newer than this heritage "
            f"{__version__} understands ({SCHEMA_VERSION}); upgrade heritage to read it"
        )
    if version < OLDEST_READABLE_VERSION:
        raise IndexVersionError(
            f"{where}: index schema version {version} is older than {OLDEST_READABLE_VERSION} "
            "and cannot be migrated; rebuild the index"
        )
    return version


def _attach_readonly(path: Path) -> duckdb.DuckDBPyConnection:
    # A fresh in-memory DuckDB that ATTACHes the file, rather than duckdb.connect(path):
    # connect() shares one cached instance per path inside a process, so a reader opened
    # before a write would hand later readers the replaced (old) file.
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH {_sql_string(str(path))} AS {CATALOG} (READ_ONLY)")
        con.execute(f"USE {CATALOG}")
    except BaseException:
        con.close()
        raise
    return con


def _added_since(version: int) -> dict[str, dict[str, str]]:
    """Columns the current schema has that a file of ``version`` lacks, by table."""
    added: dict[str, dict[str, str]] = {}
    for since, tables in sorted(ADDED_COLUMNS.items()):
        if since > version:
            for table, columns in tables.items():
                added.setdefault(table, {}).update(columns)
    return added


def _read_as_current(con: duckdb.DuckDBPyConnection, version: int) -> None:
    """Let an older file's tables read with the current columns, in the current order.

    A TEMP view named like the table shadows it (temp objects come first in DuckDB's
    search path), so ``SELECT * FROM edges`` and the file's own views and macros see the
    added columns with the values ADDED_COLUMNS gives. The file itself is not touched.
    """
    for table, columns in _added_since(version).items():
        select = ", ".join(
            f'{columns[c]} AS "{c}"' if c in columns else f'"{c}"'
            for c in table_schema(table).names()
        )
        con.execute(f"CREATE TEMP VIEW {table} AS SELECT {select} FROM {CATALOG}.main.{table}")


def connect_readonly(path: Path | str) -> duckdb.DuckDBPyConnection:
    """A read-only connection whose current database is the index (schema version checked).

    Each call sees the file as it is now; an open connection keeps reading the index it
    opened, even after a write replaces it. The tables of a file from an older schema
    read with the columns added since (edges.direction is 'inferred' in a version 1 or 2
    file); its views are the ones it was written with.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no index file")
    con = _attach_readonly(path)
    try:
        version = check_schema_version(read_meta(con), path)
        if version < SCHEMA_VERSION:
            _read_as_current(con, version)
    except BaseException:
        con.close()
        raise
    return con


def read_index(path: Path | str, *, fingerprints: bool = True) -> IndexData:
    """Every table of an index as polars frames; empty frames when there is no file yet.

    With ``fingerprints=False`` the fingerprint rows (the bulk of a large index) stay in
    the file: the frame is empty and ``stored_prints`` names them, so lineage loads them
    by family (``read_fingerprints``) and ``write_index`` copies them file to file. A
    file from an older schema is read whole.
    """
    path = Path(path)
    if not path.exists():
        return IndexData()
    con = connect_readonly(path)
    try:
        meta = read_meta(con)
        lazy = not fingerprints and check_schema_version(meta, path) == SCHEMA_VERSION
        frames = {
            t: con.sql(f"SELECT * FROM {t} ORDER BY {ORDER_BY[t]}").pl().cast(table_schema(t))
            for t in TABLES
            if not (lazy and t == "fingerprints")
        }
        stored = None
        if lazy:
            ids = con.sql("SELECT DISTINCT model_id FROM fingerprints ORDER BY model_id")
            stored = StoredPrints(str(path.absolute()), {m: m for (m,) in ids.fetchall()})
        return IndexData(**frames, meta=meta, stored_prints=stored)
    finally:
        con.close()


def upgrade_index(path: Path | str) -> int:
    """Rewrite an index of an older schema under the current one, atomically (old as .bak).

    Every row is kept; columns added since take the values ADDED_COLUMNS gives. Returns
    the schema version the file had; a current file is left untouched.
    """
    path = Path(path)
    con = connect_readonly(path)
    try:
        version = check_schema_version(read_meta(con), path)
    finally:
        con.close()
    if version < SCHEMA_VERSION:
        write_index(path, read_index(path))
    return version


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pl.DataFrame) -> None:
    """Insert a whole frame in one set-based statement (Arrow scan, no per-row work)."""
    columns = table_schema(table).names()
    unknown = [c for c in frame.columns if c not in columns]
    if unknown:
        raise ValueError(f"frame for table {table!r} has unknown column(s) {', '.join(unknown)}")
    if frame.width == 0 or frame.height == 0:
        return
    con.register(_FRAME, frame)
    try:
        names = ", ".join(f'"{c}"' for c in frame.columns)
        con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {_FRAME}")
    finally:
        con.unregister(_FRAME)


def register_ids(con: duckdb.DuckDBPyConnection, stored: StoredPrints, ids: Sequence[str]) -> None:
    """Register (model_id, stored_id, pos) of ``ids`` as the relation ``IDS_RELATION``:
    their ids in the index being built, in ``stored.path``, and their place in ``ids``."""
    missing = [i for i in ids if i not in stored.ids]
    if missing:
        raise KeyError(f"{stored.path}: no fingerprint stored for model {missing[0]!r}")
    frame = pl.DataFrame(
        {
            "model_id": list(ids),
            "stored_id": [stored.ids[i] for i in ids],
            "pos": list(range(len(ids))),
        },
        schema={"model_id": pl.String, "stored_id": pl.String, "pos": pl.Int64},
    )
    con.register(IDS_RELATION, frame)


def _insert_with_stored(
    con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, stored: StoredPrints
) -> None:
    """The fingerprints table: the stored rows of ``stored.path`` (under their new ids),
    copied inside DuckDB without passing through Python, then the frame's rows. Rows are
    not sorted in the file (readers order them); kept rows keep their file order."""
    if not stored.ids:
        _insert(con, "fingerprints", frame)
        return
    columns = table_schema("fingerprints").names()
    frame = frame.select(columns) if frame.width else empty_frame("fingerprints")
    names = ", ".join(f'"{c}"' for c in columns)
    rest = ", ".join(f't."{c}"' for c in columns if c != "model_id")
    con.execute(f"ATTACH {_sql_string(stored.path)} AS {_OLD} (READ_ONLY)")
    try:
        register_ids(con, stored, list(stored.ids))
        con.register(_FRAME, frame)
        # rows whose id stays (the usual case) need no payload from the join
        con.execute(
            f"INSERT INTO fingerprints ({names}) SELECT t.model_id, {rest} FROM {_OLD}.main.fingerprints t SEMI JOIN "
            f"(SELECT stored_id FROM {IDS_RELATION} WHERE model_id = stored_id) i "
            f"ON t.model_id = i.stored_id"
        )
        con.execute(
            f"INSERT INTO fingerprints ({names}) "
            f"SELECT i.model_id, {rest} FROM {_OLD}.main.fingerprints t "
            f"JOIN {IDS_RELATION} i ON t.model_id = i.stored_id AND i.model_id <> i.stored_id"
        )
        con.execute(f"INSERT INTO fingerprints ({names}) SELECT {names} FROM {_FRAME}")
    finally:
        for name in (_FRAME, IDS_RELATION):
            with contextlib.suppress(duckdb.Error):
                con.unregister(name)
        con.execute(f"DETACH {_OLD}")


def _meta_frame(extra: dict[str, str]) -> pl.DataFrame:
    meta = {str(k): str(v) for k, v in extra.items() if k not in RESERVED_META}
    meta.update(
        schema_version=str(SCHEMA_VERSION),
        tool_version=__version__,
        storage_version=STORAGE_VERSION,
        written_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    return pl.DataFrame(
        {"key": list(meta), "value": list(meta.values())}, schema=table_schema("meta")
    )


def _build(tmp: Path, data: IndexData) -> None:
    """Write the complete index into ``tmp`` and make it durable."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")  # tz-aware timestamps land as UTC wall time
        con.execute(
            f"ATTACH {_sql_string(str(tmp))} AS {_NEW} "
            f"(STORAGE_VERSION {_sql_string(STORAGE_VERSION)})"
        )
        con.execute(f"USE {_NEW}")
        con.execute(schema_sql())
        for table, frame in data.frames().items():
            if table == "fingerprints" and data.stored_prints is not None:
                _insert_with_stored(con, frame, data.stored_prints)
            else:
                _insert(con, table, frame)
        _insert(con, "meta", _meta_frame(data.meta))
        con.execute(f"CHECKPOINT {_NEW}")
        con.execute("USE memory")
        con.execute(f"DETACH {_NEW}")
    finally:
        con.close()
    if _wal(tmp).exists():  # everything must be in the main file before it is published
        raise RuntimeError(f"{tmp}: DuckDB left a write-ahead log after checkpoint")
    _fsync(tmp)


def _refuse_newer(path: Path) -> None:
    """Never let an older heritage overwrite an index written by a newer schema."""
    try:
        con = _attach_readonly(path)
    except duckdb.Error:
        return  # unreadable: it is kept as .bak, the new index replaces it
    try:
        version = read_meta(con).get("schema_version", "")
    except (IndexVersionError, duckdb.Error):
        return
    finally:
        con.close()
    if version.isdigit() and int(version) > SCHEMA_VERSION:
        check_schema_version({"schema_version": version}, path)


def _keep_backup(path: Path) -> None:
    """Make ``<path>.bak`` the current index while ``path`` stays in place for readers."""
    bak = backup_path(path)
    _remove(bak, _wal(bak))
    try:
        os.link(path, bak)  # same bytes, no copy; survives the rename onto path
    except OSError:
        partial = bak.with_name(bak.name + f".tmp-{os.getpid()}")
        shutil.copy2(path, partial)
        os.replace(partial, bak)
    if _wal(path).exists():  # a WAL belongs to the old file; never pair it with the new one
        os.replace(_wal(path), _wal(bak))


def write_index(path: Path | str, data: IndexData) -> None:
    """Atomically replace the index at ``path`` with ``data`` (previous one kept as .bak)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        _refuse_newer(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    _remove(tmp, _wal(tmp))
    try:
        _build(tmp, data)
        if path.exists():
            _keep_backup(path)
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp, _wal(tmp))
        raise
    _fsync(path.parent, directory=True)
