"""The run journal: finished reads survive a killed run and are not read again."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import heritage.crawl.read as read_mod
import heritage.crawl.run as run_mod
from flows.index_local import index_local
from heritage.crawl import run_index
from heritage.crawl.journal import SUFFIX, decode, encode, journal_dir
from heritage.crawl.plan import plan_run
from heritage.index import IndexData, backup_path
from heritage.sources import discover

from .helpers import assert_same_index, copy_models

# Run the plain pipeline with every read slowed down, so the test can kill it mid-way.
SLOW_RUN = """
import sys, time
import heritage.crawl.run as run
real = run.read_model
def slow(item, settings=None):
    time.sleep(0.15)
    return real(item, settings)
run.read_model = slow
run.run_index([sys.argv[1]], sys.argv[2], workers=1)
"""


def entries(db: Path) -> list[Path]:
    """Finished journal entries (temporary files excluded)."""
    d = journal_dir(db)
    return (
        sorted(p for p in d.glob("*" + SUFFIX) if not p.name.startswith(".")) if d.is_dir() else []
    )


def assert_like_a_clean_run(db: Path, models: Path, tmp_path: Path) -> None:
    """The resumed index equals a clean run's, and the journal is gone."""
    clean = tmp_path / "clean.duckdb"
    run_index([models], clean, workers=2)
    assert_same_index(db, clean, ignore_indexed_at=True)
    assert not journal_dir(db).exists()


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Paths of every checkpoint the reader opens."""
    paths: list[str] = []
    real = read_mod.open_checkpoint

    def counting(path, *args, **kwargs):
        paths.append(str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(read_mod, "open_checkpoint", counting)
    return paths


@pytest.fixture
def some_models(small_zoo: Path, tmp_path: Path) -> Path:
    return copy_models(small_zoo, tmp_path / "models")


def crash_before_write(monkeypatch: pytest.MonkeyPatch, root: Path, db: Path) -> None:
    """A run that reads every model, then dies before the index is written."""

    def boom(*args, **kwargs):
        raise RuntimeError("killed before the write")

    with monkeypatch.context() as m:
        m.setattr(run_mod, "write_index", boom)
        with pytest.raises(RuntimeError, match="killed before the write"):
            run_index([root], db, workers=2)
    assert not db.exists()


def test_entry_roundtrip_is_exact(some_models: Path):
    plan = plan_run(discover([some_models]), IndexData())
    for item in plan.work()[:3]:
        result = read_mod.read_model(item)
        item2, back = decode(encode(item, result))
        assert item2 == item
        assert (back.model_id, back.outcome, back.files) == (
            result.model_id,
            result.outcome,
            result.files,
        )
        assert back.summary == result.summary and back.error == result.error
        assert back.fingerprint.settings == result.fingerprint.settings
        assert list(back.fingerprint.tensors) == list(result.fingerprint.tensors)
        for name, t in result.fingerprint.tensors.items():
            b = back.fingerprint.tensors[name]
            assert (b.dtype, b.shape, b.cols) == (t.dtype, t.shape, t.cols)
            np.testing.assert_array_equal(b.rows, t.rows)
            assert b.values.tobytes() == np.asarray(t.values, dtype="<f4").tobytes()


def test_sigkill_after_some_models_rerun_reads_only_the_rest(
    small_zoo: Path, tmp_path: Path, opened: list[str]
):
    root = tmp_path / "models"
    shutil.copytree(small_zoo, root, ignore=shutil.ignore_patterns("truth.json", ".*"))
    clean = tmp_path / "clean.duckdb"
    clean_report = run_index([root], clean, workers=2)
    n_models = len(opened)
    assert n_models > 10
    opened.clear()

    db = tmp_path / "killed.duckdb"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(root), str(db)])
    try:
        deadline = time.monotonic() + 120
        while len(entries(db)) < 3:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no journal entries appeared"
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert not db.exists() and not backup_path(db).exists()
    done = len(entries(db))
    assert 3 <= done < n_models

    report = run_index([root], db, workers=2)
    assert len(opened) == n_models - done  # only the models not in the journal were read
    assert report.status == clean_report.status and report.n_seen == clean_report.n_seen
    assert report.bytes_read < clean_report.bytes_read
    assert_same_index(db, clean, ignore_indexed_at=True)
    assert not journal_dir(db).exists()


def test_corrupt_entry_is_ignored_with_a_warning_and_reread(
    some_models: Path,
    tmp_path: Path,
    opened: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
):
    db = tmp_path / "index.duckdb"
    crash_before_write(monkeypatch, some_models, db)
    n_models = len(opened)
    files = entries(db)
    assert len(files) == n_models
    torn = files[0]
    torn.write_bytes(torn.read_bytes()[: len(torn.read_bytes()) // 2])  # a torn entry
    flipped = files[1]
    data = flipped.read_bytes()
    changed = data.replace(b'\\"outcome\\": \\"read\\"', b'\\"outcome\\": \\"same\\"')
    assert changed != data
    flipped.write_bytes(changed)  # valid JSON, wrong content
    opened.clear()

    with caplog.at_level(logging.WARNING, logger="heritage.crawl"):
        run_index([some_models], db, workers=2)
    assert len(opened) == 2
    warnings = [r.getMessage() for r in caplog.records if "journal" in r.getMessage()]
    assert len(warnings) == 2 and all("\n" not in w for w in warnings)
    assert any(torn.name in w for w in warnings) and any(flipped.name in w for w in warnings)
    assert any("checksum" in w for w in warnings)
    assert_like_a_clean_run(db, some_models, tmp_path)


def test_changed_file_invalidates_its_entry(
    some_models: Path, tmp_path: Path, opened: list[str], monkeypatch: pytest.MonkeyPatch
):
    db = tmp_path / "index.duckdb"
    crash_before_write(monkeypatch, some_models, db)
    opened.clear()
    touched = some_models / "northwind/mlp-a"
    weights = sorted(p for p in touched.rglob("*") if p.suffix in (".safetensors", ".pt", ".bin"))
    st = os.stat(weights[0])
    os.utime(weights[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # mtime only
    grown = some_models / "northwind/vit-tiny-a"
    big = max((p for p in grown.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    with open(big, "ab") as fh:  # size only (the model may now fail to read: still re-read)
        fh.write(b"\0" * 8)

    run_index([some_models], db, workers=2)
    assert sorted(opened) == sorted({str(touched), str(grown)})
    assert_like_a_clean_run(db, some_models, tmp_path)


def test_full_ignores_the_journal(
    some_models: Path, tmp_path: Path, opened: list[str], monkeypatch: pytest.MonkeyPatch
):
    db = tmp_path / "index.duckdb"
    crash_before_write(monkeypatch, some_models, db)
    n_models = len(opened)
    opened.clear()
    run_index([some_models], db, workers=2, full=True)
    assert len(opened) == n_models
    assert not journal_dir(db).exists()


def test_flow_reuses_the_journal(
    some_models: Path, tmp_path: Path, opened: list[str], monkeypatch: pytest.MonkeyPatch
):
    db = tmp_path / "index.duckdb"
    crash_before_write(monkeypatch, some_models, db)
    n_models = len(opened)
    assert len(entries(db)) == n_models
    opened.clear()
    report = index_local(paths=[str(some_models)], db=str(db), workers=2)
    assert opened == [] and report["bytes_read"] == 0
    clean = tmp_path / "clean.duckdb"
    index_local(paths=[str(some_models)], db=str(clean), workers=2)
    assert len(opened) == n_models
    assert_same_index(db, clean, ignore_indexed_at=True)
    assert not journal_dir(db).exists()
    # and the flow journals its own reads: a crash before its write leaves them behind
    other = tmp_path / "other.duckdb"
    with monkeypatch.context() as m:
        m.setattr("flows.index_local.write_index", lambda *a, **k: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            index_local(paths=[str(some_models)], db=str(other), workers=2)
    assert len(entries(other)) == n_models
