"""A run killed (SIGKILL) while fingerprinting leaves no trace; the rerun is complete."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from flows.index_local import index_local
from heritage.index import backup_path, read_index

from .helpers import assert_same_index, last_run

MARKER = "fingerprinting "


def test_sigkill_during_fingerprinting_then_rerun_equals_clean_run(
    small_zoo: Path, tmp_path: Path, prefect_harness: str
):
    root = tmp_path / "models"
    shutil.copytree(small_zoo, root, ignore=shutil.ignore_patterns("truth.json", ".*"))
    db = tmp_path / "killed.duckdb"
    env = {**os.environ, "PREFECT_API_URL": prefect_harness, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "heritage", "index", str(root), "--db", str(db)]
    proc = subprocess.Popen(
        [*cmd, "--workers", "1", "--no-progress"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    watchdog = threading.Timer(180, proc.kill)
    watchdog.start()
    seen = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            seen.append(line)
            if MARKER in line:
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.wait(timeout=60)
    finally:
        watchdog.cancel()
        proc.kill()
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:])
    # killed before the single atomic write: no index, no backup, no temporary file
    assert not db.exists() and not backup_path(db).exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("killed.duckdb.tmp")]

    report = index_local(paths=[str(root)], db=str(db), workers=2)  # the lock was released
    assert report["status"] == "ok" and report["n_seen"] == 46
    clean = tmp_path / "clean.duckdb"
    index_local(paths=[str(root)], db=str(clean), workers=2)
    assert_same_index(db, clean, ignore_indexed_at=True)
    assert read_index(db).runs.height == 1 and last_run(db)["n_added"] == 46
    assert not db.with_name(db.name + ".journal").exists()  # deleted after the write
