"""Discovery: what is one model, model ids, and what is skipped (with a reason)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import heritage.sources.local as local
from heritage.sources import DiscoveryError, discover
from heritage.zoo import load_truth


def st(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"w": torch.zeros(2, 2)}, path)
    return path


def pt(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"w": torch.zeros(2)}, path)
    return path


def ids(d) -> list[str]:
    return [m.model_id for m in d.models]


def reasons(d) -> dict[str, str]:
    return {s.path: s.reason for s in d.skipped}


def test_zoo_models_are_found_by_their_locations(small_zoo: Path):
    d = discover([small_zoo])
    assert ids(d) == sorted(m["location"] for m in load_truth(small_zoo)["models"])
    assert all(m.kind == "folder" and m.location == m.model_id for m in d.models)
    assert reasons(d)[str(small_zoo / "truth.json")] == "not a model file"


def test_layouts(tmp_path: Path):
    st(tmp_path / "hf/model.safetensors")
    (tmp_path / "hf/config.json").write_text("{}")
    st(tmp_path / "hf/sub/model.safetensors")  # inside a model folder: not searched
    st(tmp_path / "sharded/model-00001-of-00002.safetensors")
    st(tmp_path / "sharded/model-00002-of-00002.safetensors")
    pt(tmp_path / "carded/weights.pt")
    (tmp_path / "carded/README.md").write_text("---\nname: c\n---\n")
    pt(tmp_path / "loose/a.pt")
    st(tmp_path / "loose/b.safetensors")
    (tmp_path / "loose/README.md").write_text("just notes\n")
    (tmp_path / "config-only").mkdir()
    (tmp_path / "config-only/config.json").write_text("{}")
    st(tmp_path / "org/child/model.safetensors")
    (tmp_path / "org/config.json").write_text("{}")
    st(tmp_path / "top.safetensors")
    (tmp_path / ".hidden").mkdir()
    st(tmp_path / ".hidden/model.safetensors")
    d = discover([tmp_path])
    assert ids(d) == [
        "carded",
        "config-only",
        "hf",
        "loose/a.pt",
        "loose/b.safetensors",
        "org/child",
        "sharded",
        "top.safetensors",
    ]
    kinds = {m.model_id: m.kind for m in d.models}
    assert kinds["loose/a.pt"] == "file" and kinds["hf"] == "folder"
    r = reasons(d)
    assert r[str(tmp_path / "loose/README.md")] == "not a model file"
    assert r[str(tmp_path / ".hidden")] == "hidden"
    assert "holds other models" in r[str(tmp_path / "org/config.json")]


def test_every_gguf_file_is_a_model(tmp_path: Path):
    st(tmp_path / "hf/model.safetensors")  # a model folder that also holds GGUF exports
    (tmp_path / "hf/config.json").write_text("{}")
    for name in ("hf/m-Q4_K_M.gguf", "hf/m-Q8_0.gguf", "g/config.json", "g/only.gguf"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"{}" if name.endswith(".json") else b"GGUF")
    for part in (1, 2):
        (tmp_path / f"split/big-0000{part}-of-00002.gguf").parent.mkdir(exist_ok=True)
        (tmp_path / f"split/big-0000{part}-of-00002.gguf").write_bytes(b"GGUF")
    d = discover([tmp_path])
    assert ids(d) == [
        "g/only.gguf",
        "hf",
        "hf/m-Q4_K_M.gguf",
        "hf/m-Q8_0.gguf",
        "split/big-00001-of-00002.gguf",
    ]
    assert {m.model_id: m.kind for m in d.models}["g/only.gguf"] == "file"
    r = reasons(d)
    assert r[str(tmp_path / "split/big-00002-of-00002.gguf")] == (
        "part of the split GGUF big-00001-of-00002.gguf"
    )


def test_roots_prefixes_and_root_models(tmp_path: Path):
    st(tmp_path / "one/x/model.safetensors")
    st(tmp_path / "two/model.safetensors")  # a root that is itself a model
    single = pt(tmp_path / "three.pt")
    assert ids(discover([tmp_path / "one"])) == ["x"]
    d = discover([tmp_path / "one", tmp_path / "two", single])
    assert ids(d) == ["one/x", "three.pt", "two"]
    assert {m.model_id: m.location for m in d.models} == {
        "one/x": "x",
        "two": "two",
        "three.pt": "three.pt",
    }


def test_unusable_roots_are_usage_errors(tmp_path: Path):
    (tmp_path / "a/m").mkdir(parents=True)
    (tmp_path / "b/m").mkdir(parents=True)
    with pytest.raises(DiscoveryError, match="no such file"):
        discover([tmp_path / "missing"])
    with pytest.raises(DiscoveryError, match="inside another root"):
        discover([tmp_path / "a", tmp_path / "a/m"])
    with pytest.raises(DiscoveryError, match="same folder name"):
        discover([tmp_path / "a/m", tmp_path / "b/m"])
    with pytest.raises(DiscoveryError, match="given twice"):
        discover([tmp_path / "a", tmp_path / "a/"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DiscoveryError, match="not a model file"):
        discover([tmp_path / "notes.txt"])


def test_symlinks_loops_broken_links_and_unreadable_files(tmp_path: Path, monkeypatch):
    real = st(tmp_path / "store/blob.safetensors")
    (tmp_path / "snap").mkdir()
    os.symlink(real, tmp_path / "snap/model.safetensors")  # HF cache style: followed
    os.symlink(tmp_path, tmp_path / "store/loop")
    os.symlink(tmp_path / "gone.safetensors", tmp_path / "dangling.safetensors")
    os.symlink(tmp_path / "snap", tmp_path / "again")
    locked = st(tmp_path / "locked/x.safetensors")
    monkeypatch.setattr(
        local, "_readable", lambda p: "unreadable: Permission denied" if p == locked else None
    )
    d = discover([tmp_path])
    assert ids(d) == ["snap", "store/blob.safetensors"]
    r = reasons(d)
    assert r[str(tmp_path / "store/loop")].startswith("symlink loop")
    assert r[str(tmp_path / "dangling.safetensors")] == "broken symlink"
    assert r[str(tmp_path / "again")] == f"already searched as {tmp_path / 'snap'}"
    assert r[str(locked)] == "unreadable: Permission denied"
    severity = {s.path: s.severity for s in d.skipped}
    assert (
        severity[str(locked)] == "warning" and severity[str(tmp_path / "store/loop")] == "warning"
    )


def test_progress_callback_counts_folders(tmp_path: Path):
    st(tmp_path / "a/model.safetensors")
    st(tmp_path / "b/c/model.safetensors")
    calls = []
    discover([tmp_path], on_folder=lambda folders, models: calls.append((folders, models)))
    assert calls[-1][1] == 2 and calls[-1][0] >= 3


def test_index_json_marks_a_sharded_folder(tmp_path: Path):
    st(tmp_path / "m/part-a.safetensors")
    st(tmp_path / "m/part-b.safetensors")
    (tmp_path / "m/model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "part-a.safetensors"}})
    )
    assert ids(discover([tmp_path])) == ["m"]
