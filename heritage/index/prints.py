"""Fingerprint rows left in an index file, read by model or by tensor sample.

A run reads the previous index with ``read_index(path, fingerprints=False)``: every
table but the fingerprints, whose rows (the bulk of a large index) stay in the file as
``StoredPrints``. Lineage then reads only what each step needs through a
``PrintReader``: the architecture keys that place models in groups (hashed inside DuckDB),
the sampled values of a few tensors for the kin search (stacked straight from the
stored bytes, no object per row), and whole fingerprints of the families it plans.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType

import duckdb
import numpy as np
import polars as pl

from heritage.fingerprint import Fingerprint
from heritage.index.frames import ORDER_BY, StoredPrints, fingerprints_from_frame, table_schema
from heritage.index.store import IDS_RELATION, connect_readonly, register_ids
from heritage.lineage.evidence import ARCHITECTURE_KEY_CHARS

__all__ = ["PrintReader", "read_fingerprints"]

_SAMPLES = "heritage_samples"  # (tensor, rows, n_rows, n_cols) wanted by a sample read


class PrintReader:
    """Reads the rows of ``stored`` over one read-only connection (opened on first use;
    use as a context manager, or ``close``)."""

    def __init__(self, stored: StoredPrints) -> None:
        self.stored = stored
        self._con: duckdb.DuckDBPyConnection | None = None

    def __enter__(self) -> PrintReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def _connection(self, ids: Sequence[str]) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            self._con = connect_readonly(self.stored.path)
        register_ids(self._con, self.stored, ids)
        return self._con

    def fingerprints(self, ids: Sequence[str]) -> dict[str, Fingerprint]:
        """The Fingerprints of ``ids`` (ids in the index being built), by model id."""
        if not ids:
            return {}
        con = self._connection(ids)
        rows, stats = (
            con.sql(
                f"SELECT i.model_id AS model_id, t.* EXCLUDE (model_id) FROM {table} t "
                f"JOIN {IDS_RELATION} i ON t.model_id = i.stored_id ORDER BY {ORDER_BY[table]}"
            )
            .pl()
            .cast(table_schema(table))
            for table in ("fingerprints", "tensors")
        )
        return fingerprints_from_frame(rows, stats)

    def architectures(self) -> dict[str, str]:
        """Every stored model's ``evidence.architecture_key``, computed inside DuckDB
        from the names and shapes of its fingerprinted tensors (no values read): the
        same text is hashed the same way."""
        if not self.stored.ids:
            return {}
        line = "t.tensor || chr(9) || array_to_string(t.shape[2:], ',') || chr(9) || len(t.shape)"
        rows = (
            self._connection(list(self.stored.ids))
            .sql(
                f"SELECT i.model_id, left(sha256(string_agg({line} || chr(10), '' "
                f"ORDER BY t.tensor)), {ARCHITECTURE_KEY_CHARS}) FROM fingerprints t "
                f"JOIN {IDS_RELATION} i ON t.model_id = i.stored_id GROUP BY i.model_id"
            )
            .fetchall()
        )
        return dict(rows)

    def samples(
        self, ids: Sequence[str], samples: Sequence[tuple[str, np.ndarray, tuple[int, ...]]]
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """For each (tensor name, sampled row indices, values shape (rows, columns)): the
        positions in ``ids`` of the models whose tensor was sampled exactly so, and their
        sampled values stacked, float32 of shape (models, rows, columns), read-only."""
        if not ids or not samples:
            return {}
        con = self._connection(ids)
        wanted = pl.DataFrame(
            {
                "tensor": [name for name, _, _ in samples],
                "rows": [[int(r) for r in rows] for _, rows, _ in samples],
                "n_rows": [int(shape[0]) for _, _, shape in samples],
                "n_cols": [int(shape[1]) for _, _, shape in samples],
            },
            schema={
                "tensor": pl.String,
                "rows": pl.List(pl.Int64),
                "n_rows": pl.Int64,
                "n_cols": pl.Int64,
            },
        )
        con.register(_SAMPLES, wanted)
        try:
            found = con.sql(
                f"SELECT i.pos, t.tensor, t.values FROM fingerprints t "
                f"JOIN {IDS_RELATION} i ON t.model_id = i.stored_id "
                f"JOIN {_SAMPLES} s ON t.tensor = s.tensor AND t.n_rows = s.n_rows "
                f"AND t.n_cols = s.n_cols AND t.rows = s.rows "
                f"ORDER BY t.tensor, i.pos"
            ).pl()
        finally:
            con.unregister(_SAMPLES)
        out = {}
        shapes = {name: shape for name, _, shape in samples}
        for (name,), part in found.partition_by("tensor", as_dict=True).items():
            values = np.frombuffer(b"".join(part["values"].to_list()), dtype="<f4")
            out[name] = (part["pos"].to_numpy(), values.reshape(part.height, *shapes[name]))
        return out


def read_fingerprints(stored: StoredPrints, ids: Sequence[str]) -> dict[str, Fingerprint]:
    """The Fingerprints of ``ids`` from the rows left in ``stored.path``, by model id."""
    with PrintReader(stored) as reader:
        return reader.fingerprints(ids)
