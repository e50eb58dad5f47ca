"""GGUF exports in a local index: each file (or split set) is a model, hashed and kept."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as Q
from safetensors.numpy import save_file

from heritage.crawl import run_index
from heritage.formats.gguf_reader import hf_name
from heritage.index import read_index
from tests.formats.test_gguf import write_gguf


def test_gguf_exports_are_indexed_beside_their_source(tmp_path: Path) -> None:
    repo = tmp_path / "lake" / "org" / "base"
    repo.mkdir(parents=True)
    rng = np.random.default_rng(0)
    w = {
        f"blk.{i}.ffn_down.weight": rng.normal(0, 0.05, (64, 256)).astype(np.float32)
        for i in range(3)
    }
    save_file({hf_name(k, "qwen2"): v for k, v in w.items()}, str(repo / "model.safetensors"))
    (repo / "config.json").write_text("{}")
    write_gguf(repo / "base-Q8_0.gguf", {k: (v, Q.Q8_0) for k, v in w.items()})
    write_gguf(repo / "base-F16.gguf", {k: (v, Q.F16) for k, v in w.items()}, split_max_tensors=2)
    db = tmp_path / "i.duckdb"
    report = run_index([tmp_path / "lake"], db)
    assert sorted(report.added) == [
        "org/base",
        "org/base/base-F16-00001-of-00002.gguf",
        "org/base/base-Q8_0.gguf",
    ]
    models = {r["model_id"]: r for r in read_index(db).models.iter_rows(named=True)}
    split = models["org/base/base-F16-00001-of-00002.gguf"]
    assert split["status"] == "ok" and split["format"] == "gguf"
    files = {f["name"]: f["sha256"] for f in split["files"]}
    for name, sha in files.items():
        assert sha == hashlib.sha256((repo / name).read_bytes()).hexdigest()
    assert sorted(files) == ["base-F16-00001-of-00002.gguf", "base-F16-00002-of-00002.gguf"]
    edges = read_index(db).edges
    pairs = set(zip(edges["parent_id"], edges["child_id"], strict=True))
    assert ("org/base", "org/base/base-Q8_0.gguf") in pairs
    again = run_index([tmp_path / "lake"], db)
    assert again.bytes_read == 0 and len(again.unchanged) == 3
