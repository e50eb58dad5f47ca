"""``heritage index`` and ``heritage add`` from the command line (flow and plain paths)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
from prefect.settings import PREFECT_API_URL, temporary_settings

from heritage.cli import main
from heritage.index import read_index
from heritage.summary import file_sha256

from .helpers import SOME_MODELS, copy_models, last_run


def test_index_cli_flow_then_plain_rerun(small_zoo: Path, tmp_path: Path, capsys):
    root = copy_models(small_zoo, tmp_path / "models", SOME_MODELS[3:6])
    db = tmp_path / "i.duckdb"
    assert main(["index", str(root), "--db", str(db), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "3 models: 3 added" in out and f"index: {db}" in out
    assert main(["index", str(root), "--db", str(db), "--no-prefect", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["n_unchanged"] == 3 and report["bytes_read"] == 0
    assert last_run(db)["flow"] == "index-local-plain"


def test_index_goes_on_without_prefect_when_it_cannot_start(
    small_zoo: Path, tmp_path: Path, capsys
):
    """An orchestrator that does not answer costs a one-line warning, not the run."""
    root = copy_models(small_zoo, tmp_path / "models", SOME_MODELS[3:5])
    db = tmp_path / "i.duckdb"
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # nothing listens
        assert main(["index", str(root), "--db", str(db), "--no-progress"]) == 0
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("heritage: warning: Prefect cannot start")
        assert "indexing without it (same index)" in err
        assert last_run(db)["flow"] == "index-local-plain"
        assert read_index(db).models.height == 2
        dask = ["--dask-address", "tcp://127.0.0.1:9"]
        assert main(["index", str(root), "--db", str(db), *dask]) == 2
        assert "--dask-address needs Prefect, which cannot start" in capsys.readouterr().err


def test_index_cli_usage_errors_are_one_line(tmp_path: Path, capsys):
    missing = tmp_path / "nope"
    assert main(["index", str(missing), "--db", str(tmp_path / "i.duckdb")]) == 2
    assert capsys.readouterr().err == f"heritage: error: {missing}: no such file or folder\n"
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").mkdir()
    assert main(["index", str(tmp_path / "a"), str(tmp_path / "a" / "b")]) == 2
    assert "inside another root" in capsys.readouterr().err


def test_add_copies_verifies_and_indexes(small_zoo: Path, tmp_path: Path, capsys):
    root = copy_models(small_zoo, tmp_path / "models", SOME_MODELS[3:5])
    db = tmp_path / "i.duckdb"
    lake = tmp_path / "lake"
    assert main(["index", str(root), "--db", str(db), "--no-progress"]) == 0
    upload = tmp_path / "upload.safetensors"
    shutil.copy(small_zoo / "northwind/vit-tiny-a/model.safetensors", upload)
    args = ["--lake", str(lake), "--db", str(db), "--no-progress"]
    assert main(["add", str(upload), "--name", "org/new", "--description", "A test.", *args]) == 0
    out = capsys.readouterr().out
    copy = lake / "org/new/upload.safetensors"
    assert file_sha256(copy) == file_sha256(upload) and "added org/new as model" in out
    models = read_index(db).models
    row = models.filter(pl.col("name") == "org/new").row(0, named=True)
    assert row["status"] == "ok" and row["description"] == "A test."
    assert row["model_id"] == "lake/org/new" and row["location"] == "org/new"
    run = last_run(db)
    assert run["n_added"] == 1 and run["n_unchanged"] == 2  # the others were not re-read
    assert sorted(models["model_id"]) == [
        "lake/org/new",
        "models/alice/mlp-a-instruct",
        "models/northwind/mlp-a",
    ]

    # refusals: a taken name, an oversize file, a non-checkpoint
    assert main(["add", str(upload), "--name", "org/new", *args, "--no-prefect"]) == 1
    assert "already exists" in capsys.readouterr().err
    big = ["add", str(upload), "--name", "other", "--max-size", "1KB", *args, "--no-prefect"]
    assert main(big) == 1
    assert "over the 1,000 byte upload limit" in capsys.readouterr().err
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["add", str(text), "--name", "x", *args, "--no-prefect"]) == 1
    assert "unsupported format '.txt'" in capsys.readouterr().err
    assert sorted(p.name for p in lake.iterdir()) == ["org"]  # nothing half-copied left
