"""A small hand-made index: five models with a known lineage and random fingerprints.

Lineage: a -> b -> c, a -> d, and e merged from c and d. ``a``, ``b``, ``c``, ``e`` and the
failed ``f`` declare bases; ``d`` declares none.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import networkx as nx
import numpy as np

from heritage.fingerprint import Fingerprint, FingerprintSettings, TensorPrint, tensor_stats
from heritage.index import (
    IndexData,
    connect_readonly,
    edges_frame,
    families_frame,
    family_ids,
    fingerprints_frame,
    model_row,
    models_frame,
    table_frame,
    tensors_frame,
)
from heritage.summary import FileSummary, ModelSummary

IDS = ("a", "b", "c", "d", "e")


def declared_vs_inferred(path: Path, columns: str) -> dict[str, tuple]:
    """The declared_vs_inferred view of the index at ``path``: model id -> ``columns``."""
    con = connect_readonly(path)
    try:
        rows = con.execute(f"SELECT model_id, {columns} FROM declared_vs_inferred").fetchall()
    finally:
        con.close()
    return {r[0]: r[1:] for r in rows}


NAMES = {i: f"org/model-{i}" for i in IDS}


def random_fingerprint(seed: int) -> Fingerprint:
    """A fingerprint by hand: a matrix, an embedding, a 1-D vector, a scalar and an int buffer."""
    rng = np.random.default_rng(seed)
    settings = FingerprintSettings(rows=4, cols=6)

    def tp(name, dtype, shape, rows, cols, values):
        values = np.asarray(values, dtype=np.float32)
        return TensorPrint(
            name, dtype, shape, np.asarray(rows, np.int64), cols, values, tensor_stats(values)
        )

    special = rng.standard_normal((4, 6)).astype(np.float32)
    special[0, :3] = [np.nan, np.inf, -0.0]
    tensors = [
        tp("layers.0.attn.weight", "BF16", (10, 6), [1, 3, 4, 8], (0, 6), special),
        tp("embed.weight", "F32", (50, 3, 4), [0, 7, 20, 49], (2, 8), rng.random((4, 6))),
        tp("norm.weight", "F16", (16,), [0], (5, 11), rng.standard_normal((1, 6))),
        tp("scale", "F32", (), [0], (0, 1), [[rng.random()]]),
        tp("empty.weight", "F32", (0, 6), [], (0, 6), np.zeros((0, 6))),
        tp("buffer", "I64", (3,), [0], (0, 3), [[1, 2, 3]]),
    ]
    return Fingerprint({t.name: t for t in tensors}, settings)


def sample_graph() -> nx.DiGraph:
    """What recover_lineage would return for the sample models."""
    g = nx.DiGraph(method="heritage-lineage/1")
    for i in IDS:
        g.add_node(i, family="fam-1", family_confidence=0.9, architecture="arch-1")
    g.nodes["a"]["root_confidence"] = 0.8
    g.nodes["c"]["family_confidence"] = 0.7
    g.add_node("z", family="fam-2", family_confidence=1.0, architecture="arch-2")
    g.nodes["z"]["root_confidence"] = 1.0
    common = {"method": "heritage-lineage/1"}
    g.add_edge("a", "b", relation="finetune", confidence=0.9, distance=0.1, **common)
    g.add_edge("b", "c", relation="finetune", confidence=0.8, distance=0.2, **common)
    g.add_edge("a", "d", relation="quantized", confidence=0.95, distance=0.01, **common)
    g.add_edge("c", "e", relation="merge", confidence=0.7, distance=0.3, weight=0.4, **common)
    g.add_edge("d", "e", relation="merge", confidence=0.7, distance=0.2, weight=0.6, **common)
    return g


def sample_index() -> IndexData:
    """Every table filled, as a crawl flow would build it."""
    fps = {i: random_fingerprint(k) for k, i in enumerate(IDS)}
    graph = sample_graph()
    fams = family_ids(graph)
    declared = {
        "a": ["someone/else"],  # not indexed
        "b": ["org/model-a"],  # its parent
        "c": ["org/model-d"],  # indexed, but not its parent
        "e": ["ORG/MODEL-D", "x/y"],  # one of its parents (case-insensitive) and an unknown
    }
    rows = []
    for k, i in enumerate(IDS):
        summary = ModelSummary(
            location=f"zoo/{i}",
            format="safetensors",
            n_params=1000 + k,
            n_tensors=6,
            n_layers=1,
            dtypes=["BF16", "F32"],
            bytes=4096,
            structure_hash="s" * 64,
            files=[FileSummary("model.safetensors", 4096, f"{k:064x}")],
            config={"architectures": ["Toy"], "hidden": 6},
        )
        rows.append(
            model_row(
                i,
                summary,
                name=NAMES[i],
                source="hub",
                location=NAMES[i],
                revision="main",
                family_id=fams[i],
                declared_base_models=declared.get(i),
                created_at=1_700_000_000.0 + k,
                indexed_at=datetime(2025, 1, 2, 3, 4, 5),
                card={"license": "mit", "tags": ["toy"]},
            )
        )
    rows.append(
        model_row(
            "f",
            name="broken",
            source="local",
            location="zoo/broken.safetensors",
            status="failed",
            error="zoo/broken.safetensors: empty file",
            declared_base_models=["org/model-a"],
        )
    )
    runs = table_frame(
        "runs",
        [
            {
                "run_id": "run-1",
                "flow": "crawl-local",
                "started_at": datetime(2025, 1, 2, 3, 0, 0),
                "finished_at": datetime(2025, 1, 2, 3, 5, 0),
                "source": "zoo",
                "n_seen": 6,
                "n_added": 6,
                "n_changed": 0,
                "n_unchanged": 0,
                "n_failed": 1,
                "n_edges_changed": 5,
                "bytes_read": 123456,
                "errors": ["zoo/broken.safetensors: empty file"],
                "status": "partial",
            }
        ],
    )
    return IndexData(
        models=models_frame(rows),
        tensors=tensors_frame(fps),
        fingerprints=fingerprints_frame(fps),
        families=families_frame(graph),
        edges=edges_frame(graph),
        runs=runs,
        meta={"crawl_root": "zoo"},
    )
