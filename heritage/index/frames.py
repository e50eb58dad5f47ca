"""The index as polars frames, and conversions between frames and the package's objects.

Column names and types come from ``schema.sql`` alone (read once through an in-memory
DuckDB), so the SQL file is the single source of truth: a frame built here always
inserts into the file without surprises, and a frame read back has the same dtypes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

import duckdb
import networkx as nx
import numpy as np
import polars as pl

from heritage.fingerprint import Fingerprint, FingerprintSettings, TensorPrint, tensor_stats
from heritage.lineage.types import Direction, Relation
from heritage.summary import FileSummary, ModelSummary

# Tables in the order they are written; views and macros live in schema.sql only.
TABLES = ("models", "tensors", "fingerprints", "families", "edges", "runs")
# Order rows are read back in, so reads are deterministic.
ORDER_BY = {
    "models": "model_id",
    "tensors": "model_id, position, name",
    "fingerprints": "model_id, position, tensor",
    "families": "family_id",
    "edges": "parent_id, child_id",
    "runs": "started_at NULLS FIRST, run_id",
    "meta": "key",
}
# Fingerprint statistics keys and the tensors-table columns that hold them.
STAT_COLUMNS = {
    "mean": "mean",
    "std": "std",
    "kurtosis": "kurtosis",
    "rms": "rms",
    "absmax": "absmax",
    "unique": "unique_ratio",
}
_JSON_COLUMNS = {"models": ("config", "card")}


# The enums schema.sql may name in braces: {Relation} is the SQL list of its values,
# {Relation.text} the same values as prose ("a, b or c").
SCHEMA_ENUMS: dict[str, type[StrEnum]] = {"Relation": Relation, "Direction": Direction}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_]\w*)(\.text)?\}")


def _enum_values(match: re.Match[str]) -> str:
    try:
        values = [str(v) for v in SCHEMA_ENUMS[match.group(1)]]
    except KeyError:
        raise ValueError(f"schema.sql: unknown enum placeholder {match.group(0)}") from None
    if match.group(2):
        return values[0] if len(values) == 1 else ", ".join(values[:-1]) + " or " + values[-1]
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


@cache
def schema_sql() -> str:
    """The DDL of the index (tables, comments, macros, views), enum values filled in."""
    text = resources.files("heritage.index").joinpath("schema.sql").read_text(encoding="utf-8")
    return _PLACEHOLDER.sub(_enum_values, text)


@cache
def _schemas() -> dict[str, pl.Schema]:
    con = duckdb.connect()
    try:
        con.execute(schema_sql())
        return {t: con.sql(f"SELECT * FROM {t} LIMIT 0").pl().schema for t in (*TABLES, "meta")}
    finally:
        con.close()


def table_schema(table: str) -> pl.Schema:
    """Polars schema of one index table, derived from schema.sql."""
    try:
        return _schemas()[table]
    except KeyError:
        raise ValueError(f"unknown index table {table!r}") from None


def empty_frame(table: str) -> pl.DataFrame:
    """A zero-row frame with the table's columns and dtypes."""
    return pl.DataFrame(schema=table_schema(table))


def table_frame(table: str, rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Rows (dicts) as a frame of the table's schema; missing keys become NULL.

    Unknown keys raise, so a misspelt column fails here rather than vanishing.
    """
    schema = table_schema(table)
    rows = list(rows)
    unknown = sorted({k for r in rows for k in r} - set(schema.names()))
    if unknown:
        raise ValueError(f"table {table!r} has no column(s) {', '.join(unknown)}")
    if not rows:
        return empty_frame(table)
    return pl.DataFrame(rows, schema=schema)


@dataclass(frozen=True)
class StoredPrints:
    """Fingerprint rows left in an index file instead of memory (a model lake's
    fingerprints outgrow RAM): loaded by model when lineage needs them
    (``heritage.index.prints``), copied file to file when the index is written.

    ``ids`` maps each model's id in the index being built to its id in ``path``.
    """

    path: str
    ids: Mapping[str, str] = field(default_factory=dict)

    def renamed(self, renames: Mapping[str, str]) -> StoredPrints:
        """The rows of the models in ``renames`` (id now -> id next) only, under their
        next ids."""
        return StoredPrints(self.path, {renames[k]: v for k, v in self.ids.items() if k in renames})

    def only(self, model_ids: Iterable[str]) -> StoredPrints:
        """The rows of ``model_ids`` only."""
        keep = set(model_ids)
        return StoredPrints(self.path, {k: v for k, v in self.ids.items() if k in keep})


@dataclass
class IndexData:
    """Everything the index file holds, one polars frame per table.

    ``meta`` carries extra key/value facts; the store adds and overrides its reserved
    keys (schema_version, tool_version, storage_version, written_at) on write.
    ``stored_prints`` names fingerprint rows that stay in a file (``read_index`` with
    ``fingerprints=False``); the frame then holds only the rows not among them.
    """

    models: pl.DataFrame = field(default_factory=lambda: empty_frame("models"))
    tensors: pl.DataFrame = field(default_factory=lambda: empty_frame("tensors"))
    fingerprints: pl.DataFrame = field(default_factory=lambda: empty_frame("fingerprints"))
    families: pl.DataFrame = field(default_factory=lambda: empty_frame("families"))
    edges: pl.DataFrame = field(default_factory=lambda: empty_frame("edges"))
    runs: pl.DataFrame = field(default_factory=lambda: empty_frame("runs"))
    meta: dict[str, str] = field(default_factory=dict)
    stored_prints: StoredPrints | None = None

    def frames(self) -> dict[str, pl.DataFrame]:
        """The table frames by table name, in write order."""
        return {t: getattr(self, t) for t in TABLES}

    def fingerprint(self, model_id: str) -> Fingerprint:
        """Rebuild one model's Fingerprint from the stored rows."""
        rows = self.fingerprints.filter(pl.col("model_id") == model_id)
        if rows.is_empty():
            if self.stored_prints is not None and model_id in self.stored_prints.ids:
                from heritage.index.prints import read_fingerprints

                return read_fingerprints(self.stored_prints, [model_id])[model_id]
            raise KeyError(f"no fingerprint stored for model {model_id!r}")
        tensors = self.tensors.filter(pl.col("model_id") == model_id)
        return fingerprint_from_rows(rows, tensors)

    def all_fingerprints(self) -> dict[str, Fingerprint]:
        """Every stored Fingerprint by model_id (those left in a file too, all read)."""
        prints = fingerprints_from_frame(self.fingerprints, self.tensors)
        if self.stored_prints is not None:
            from heritage.index.prints import read_fingerprints

            prints.update(read_fingerprints(self.stored_prints, list(self.stored_prints.ids)))
        return dict(sorted(prints.items()))


# ---------------------------------------------------------------- fingerprints and tensors


def fingerprint_rows(model_id: str, fp: Fingerprint) -> list[dict[str, Any]]:
    """One fingerprints-table row per tensor; values as float32 little-endian bytes."""
    rows = []
    for pos, t in enumerate(fp.tensors.values()):
        values = np.asarray(t.values)
        if values.ndim != 2:
            raise ValueError(f"tensor {t.name!r}: fingerprint values must be 2-D")
        rows.append(
            {
                "model_id": model_id,
                "tensor": t.name,
                "position": pos,
                "dtype": t.dtype,
                "shape": [int(s) for s in t.shape],
                "rows": [int(r) for r in np.asarray(t.rows, dtype=np.int64)],
                "col_start": int(t.cols[0]),
                "col_stop": int(t.cols[1]),
                "n_rows": values.shape[0],
                "n_cols": values.shape[1],
                "values": np.ascontiguousarray(values, dtype="<f4").tobytes(),
                "sample_rows": fp.settings.rows,
                "sample_cols": fp.settings.cols,
            }
        )
    return rows


def tensor_rows(model_id: str, fp: Fingerprint) -> list[dict[str, Any]]:
    """One tensors-table row per tensor: shape, size and the fingerprint's statistics."""
    rows = []
    for pos, t in enumerate(fp.tensors.values()):
        row: dict[str, Any] = {
            "model_id": model_id,
            "name": t.name,
            "position": pos,
            "dtype": t.dtype,
            "shape": [int(s) for s in t.shape],
            "n_params": math.prod(t.shape),
        }
        for key, col in STAT_COLUMNS.items():
            value = t.stats.get(key)
            row[col] = None if value is None else float(value)
        rows.append(row)
    return rows


def fingerprints_frame(fps: Mapping[str, Fingerprint]) -> pl.DataFrame:
    """The fingerprints table for many models (model_id -> Fingerprint)."""
    return table_frame(
        "fingerprints", (r for m, fp in fps.items() for r in fingerprint_rows(m, fp))
    )


def tensors_frame(fps: Mapping[str, Fingerprint]) -> pl.DataFrame:
    """The tensors table for many models (model_id -> Fingerprint)."""
    return table_frame("tensors", (r for m, fp in fps.items() for r in tensor_rows(m, fp)))


def _stats_by_tensor(tensors: pl.DataFrame | None) -> dict[tuple[str, str], dict[str, float]]:
    """(model_id, tensor name) -> the statistics its tensors row stores."""
    if tensors is None or tensors.is_empty():
        return {}
    columns = ["model_id", "name", *STAT_COLUMNS.values()]
    return {
        (r[0], r[1]): {k: v for k, v in zip(STAT_COLUMNS, r[2:], strict=True) if v is not None}
        for r in tensors.select(columns).iter_rows()
    }


def _tensor_print(row: Mapping[str, Any], stats: Mapping[str, float] | None) -> TensorPrint:
    n_rows, n_cols = int(row["n_rows"]), int(row["n_cols"])
    blob = row["values"] or b""
    if len(blob) != 4 * n_rows * n_cols:
        raise ValueError(
            f"tensor {row['tensor']!r}: {len(blob)} value bytes for a {n_rows}x{n_cols} matrix"
        )
    values = np.frombuffer(blob, dtype="<f4").reshape(n_rows, n_cols).astype(np.float32)
    return TensorPrint(
        name=row["tensor"],
        dtype=row["dtype"],
        shape=tuple(int(s) for s in row["shape"]),
        rows=np.asarray(row["rows"], dtype=np.int64),
        cols=(int(row["col_start"]), int(row["col_stop"])),
        values=values,
        stats=dict(stats) if stats is not None else tensor_stats(values),
    )


def _fingerprints(rows: pl.DataFrame, tensors: pl.DataFrame | None) -> dict[str, Fingerprint]:
    """Every model's Fingerprint in one pass over the rows (no per-model frame work)."""
    if rows.is_empty():
        return {}
    stats = _stats_by_tensor(tensors)
    if "position" in rows.columns:
        rows = rows.sort("model_id", "position", nulls_last=True, maintain_order=True)
    else:
        rows = rows.sort("model_id", maintain_order=True)
    prints: dict[str, dict[str, TensorPrint]] = {}
    settings: dict[str, FingerprintSettings] = {}
    for row in rows.iter_rows(named=True):
        model = row.get("model_id") or ""
        name = row["tensor"]
        prints.setdefault(model, {})[name] = _tensor_print(row, stats.get((model, name)))
        settings.setdefault(model, FingerprintSettings())
        if row.get("sample_rows") is not None and row.get("sample_cols") is not None:
            settings[model] = FingerprintSettings(int(row["sample_rows"]), int(row["sample_cols"]))
    return {m: Fingerprint(prints[m], settings[m]) for m in sorted(prints)}


def fingerprint_from_rows(rows: pl.DataFrame, tensors: pl.DataFrame | None = None) -> Fingerprint:
    """Rebuild one model's Fingerprint; values, rows, cols, dtype and shape are bit-exact.

    Statistics come from the model's ``tensors`` rows when given (exactly what was
    stored), otherwise they are recomputed from the values.
    """
    ids = rows.get_column("model_id").unique().to_list() if "model_id" in rows.columns else []
    if len(ids) > 1:
        raise ValueError(f"rows of several models given: {sorted(ids)[:3]}...")
    rows = rows.with_columns(pl.lit("").alias("model_id"))  # one model, whatever its id
    if tensors is not None:
        tensors = tensors.with_columns(pl.lit("").alias("model_id"))
    found = _fingerprints(rows, tensors)
    return next(iter(found.values())) if found else Fingerprint({}, FingerprintSettings())


def fingerprints_from_frame(
    rows: pl.DataFrame, tensors: pl.DataFrame | None = None
) -> dict[str, Fingerprint]:
    """Rebuild every model's Fingerprint from the fingerprints (and tensors) tables."""
    return _fingerprints(rows, tensors)


# ---------------------------------------------------------------- models


def combined_sha256(files: Iterable[FileSummary]) -> str | None:
    """One hash per model: the single file's sha256, else sha256 of the sorted file hashes.

    NULL when any file was not hashed, so a partial hash is never mistaken for a full one.
    """
    hashes = [f.sha256 for f in files]
    if not hashes or any(h is None for h in hashes):
        return None
    if len(hashes) == 1:
        return hashes[0]
    return hashlib.sha256("\n".join(sorted(hashes)).encode()).hexdigest()


def to_timestamp(value: datetime | float | int | None) -> datetime | None:
    """Naive UTC datetime for a TIMESTAMP column from epoch seconds or any datetime."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    return datetime.fromtimestamp(float(value), UTC).replace(tzinfo=None)


def model_row(model_id: str, summary: ModelSummary | None = None, **fields: Any) -> dict[str, Any]:
    """A models-table row: filled from a ModelSummary, then overridden by ``fields``.

    ``config`` and ``card`` may be dicts (JSON-encoded here); ``created_at`` and
    ``indexed_at`` may be epoch seconds or datetimes (stored as naive UTC).
    """
    row: dict[str, Any] = {"model_id": model_id}
    if summary is not None:
        row.update(
            location=summary.location,
            format=summary.format,
            files=[
                {"name": f.name, "bytes": f.bytes, "sha256": f.sha256, "mtime": None}
                for f in summary.files
            ],
            bytes=summary.bytes,
            sha256=combined_sha256(summary.files),
            n_params=summary.n_params,
            n_tensors=summary.n_tensors,
            n_layers=summary.n_layers,
            dtypes=list(summary.dtypes),
            structure_hash=summary.structure_hash,
            config=summary.config,
            status="ok",
        )
    row.update(fields)
    for col in _JSON_COLUMNS["models"]:
        if row.get(col) is not None and not isinstance(row[col], str):
            row[col] = json.dumps(row[col], sort_keys=True, default=str)
    for col in ("created_at", "indexed_at"):
        if col in row:
            row[col] = to_timestamp(row[col])
    row.setdefault("private", False)
    row.setdefault("gated", False)
    unknown = set(row) - set(table_schema("models").names())
    if unknown:
        raise ValueError(f"table 'models' has no column(s) {', '.join(sorted(unknown))}")
    return row


def models_frame(rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """The models table from rows made by :func:`model_row`."""
    return table_frame("models", rows)


# ---------------------------------------------------------------- lineage graph


def edges_frame(graph: nx.DiGraph) -> pl.DataFrame:
    """The edges table from a recovered lineage graph (one row per directed edge)."""
    rows = [
        {
            "parent_id": str(u),
            "child_id": str(v),
            "relation": d.get("relation"),
            # An edge without a direction (graphs from before lineage set one) is oriented.
            "direction": Direction(d.get("direction", Direction.INFERRED)).value,
            "confidence": d.get("confidence"),
            "distance": d.get("distance"),
            "method": d.get("method", graph.graph.get("method")),
            "weight": d.get("weight"),
            "verified": d.get("verified"),
        }
        for u, v, d in sorted(graph.edges(data=True), key=lambda e: (str(e[0]), str(e[1])))
    ]
    return table_frame("edges", rows)


def family_ids(graph: nx.DiGraph) -> dict[str, str]:
    """model_id -> family_id for every node that lineage placed in a family."""
    return {str(n): d["family"] for n, d in graph.nodes(data=True) if d.get("family")}


def _family_root(graph: nx.DiGraph, members: list[str]) -> tuple[str | None, float | None]:
    rooted = [m for m in members if graph.nodes[m].get("root_confidence") is not None]
    if rooted:
        root = min(rooted, key=lambda m: (-graph.nodes[m]["root_confidence"], m))
        return root, float(graph.nodes[root]["root_confidence"])
    sources = [m for m in members if graph.in_degree(m) == 0]
    return (min(sources) if sources else None), None


def families_frame(graph: nx.DiGraph) -> pl.DataFrame:
    """The families table: members, architecture, root and confidence of each family."""
    members: dict[str, list[str]] = {}
    for node, fam in family_ids(graph).items():
        members.setdefault(fam, []).append(node)
    rows = []
    for fam in sorted(members):
        nodes = sorted(members[fam])
        root, root_conf = _family_root(graph, nodes)
        confs = [graph.nodes[n].get("family_confidence") for n in nodes]
        confs = [float(c) for c in confs if c is not None]
        rows.append(
            {
                "family_id": fam,
                "architecture": graph.nodes[nodes[0]].get("architecture"),
                "n_models": len(nodes),
                "root_model_id": root,
                "confidence": min(confs) if confs else None,
                "root_confidence": root_conf,
            }
        )
    return table_frame("families", rows)
