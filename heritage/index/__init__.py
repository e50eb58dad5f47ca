"""The DuckDB lineage index: one file holding models, fingerprints, families and edges.

``frames`` turns fingerprints, summaries and lineage graphs into polars frames (and back);
``store`` writes those frames to a DuckDB file atomically and reads them again. The
schema, with a comment on every table and column, lives in ``schema.sql``.
"""

from heritage.index.frames import (
    SCHEMA_ENUMS,
    TABLES,
    IndexData,
    StoredPrints,
    combined_sha256,
    edges_frame,
    empty_frame,
    families_frame,
    family_ids,
    fingerprint_from_rows,
    fingerprint_rows,
    fingerprints_frame,
    fingerprints_from_frame,
    model_row,
    models_frame,
    schema_sql,
    table_frame,
    table_schema,
    tensor_rows,
    tensors_frame,
    to_timestamp,
)
from heritage.index.prints import PrintReader, read_fingerprints
from heritage.index.store import (
    SCHEMA_VERSION,
    STORAGE_VERSION,
    IndexVersionError,
    backup_path,
    check_schema_version,
    connect_readonly,
    read_index,
    read_meta,
    upgrade_index,
    write_index,
)

__all__ = [
    "SCHEMA_ENUMS",
    "SCHEMA_VERSION",
    "STORAGE_VERSION",
    "TABLES",
    "IndexData",
    "IndexVersionError",
    "PrintReader",
    "StoredPrints",
    "backup_path",
    "check_schema_version",
    "combined_sha256",
    "connect_readonly",
    "edges_frame",
    "empty_frame",
    "families_frame",
    "family_ids",
    "fingerprint_from_rows",
    "fingerprint_rows",
    "fingerprints_frame",
    "fingerprints_from_frame",
    "model_row",
    "models_frame",
    "read_fingerprints",
    "read_index",
    "read_meta",
    "schema_sql",
    "table_frame",
    "table_schema",
    "tensor_rows",
    "tensors_frame",
    "to_timestamp",
    "upgrade_index",
    "write_index",
]
