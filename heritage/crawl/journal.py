"""Per-run journal of finished reads, so a killed run's fingerprinting is not lost.

The index is written once, at the end of a run; a run killed before that (SIGKILL, a
scheduler timeout) would otherwise throw away every model it had read. Each finished
:class:`ReadResult` is saved at once as one JSON file in ``<db>.journal/``, written to a
temporary name and renamed, so an entry is either whole or absent. The next run on the
same index reuses an entry only when the planned :class:`WorkItem` is exactly the one it
was made for (model id, path, file names, sizes, mtimes, known sha256s, rehash flag), and
reads everything else as usual. An entry that cannot be parsed or fails its checksum is
ignored with a one-line warning. The journal is deleted once the index is written.

No pickle: metadata is JSON, fingerprints go through the index's own row format
(:func:`heritage.index.frames.fingerprint_rows`), values as base64 float32 bytes.
Only the run holding ``<db>.lock`` touches the journal.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from heritage.crawl.plan import FileState, WorkItem
from heritage.crawl.read import ReadResult
from heritage.fingerprint import Fingerprint, FingerprintSettings
from heritage.index.frames import fingerprint_from_rows, fingerprint_rows, table_frame, tensor_rows
from heritage.summary import FileSummary, ModelSummary

log = logging.getLogger("heritage.crawl")
FORMAT = 1  # bump when the entry layout changes: older entries are then ignored
SUFFIX = ".json"


def journal_dir(db: str | os.PathLike[str]) -> Path:
    """``<db>.journal/``, beside the index file."""
    db = Path(db)
    return db.with_name(db.name + ".journal")


def _item_dict(item: WorkItem) -> dict[str, Any]:
    d = asdict(item)
    d["files"] = [asdict(f) for f in item.files]
    d["previous_sha256"] = [list(p) for p in item.previous_sha256]
    return d


def _item_from(d: dict[str, Any]) -> WorkItem:
    return WorkItem(
        model_id=d["model_id"],
        location=d["location"],
        path=d["path"],
        kind=d["kind"],
        files=tuple(FileState(**f) for f in d["files"]),
        rehash=bool(d["rehash"]),
        previous_sha256=tuple((n, s) for n, s in d["previous_sha256"]),
    )


def _fingerprint_dict(fp: Fingerprint) -> dict[str, Any]:
    rows = fingerprint_rows("m", fp)
    for r in rows:
        r["values"] = base64.b64encode(r["values"]).decode("ascii")
    return {"settings": asdict(fp.settings), "rows": rows, "tensors": tensor_rows("m", fp)}


def _fingerprint_from(d: dict[str, Any]) -> Fingerprint:
    rows = [{**r, "values": base64.b64decode(r["values"], validate=True)} for r in d["rows"]]
    fp = fingerprint_from_rows(
        table_frame("fingerprints", rows), table_frame("tensors", d["tensors"])
    )
    return Fingerprint(fp.tensors, FingerprintSettings(**d["settings"]))


def _summary_from(d: dict[str, Any]) -> ModelSummary:
    return ModelSummary(**{**d, "files": [FileSummary(**f) for f in d["files"]]})


def encode(item: WorkItem, result: ReadResult) -> bytes:
    """One journal entry: the item it answers and the result, with a checksum."""
    body = {
        "item": _item_dict(item),
        "result": {
            "model_id": result.model_id,
            "outcome": result.outcome,
            "files": [asdict(f) for f in result.files],
            "summary": None if result.summary is None else result.summary.to_dict(),
            "fingerprint": None
            if result.fingerprint is None
            else _fingerprint_dict(result.fingerprint),
            "error": result.error,
        },
    }
    text = json.dumps(body, sort_keys=True, allow_nan=True)
    check = hashlib.sha256(text.encode()).hexdigest()
    return json.dumps({"format": FORMAT, "sha256": check, "body": text}).encode()


def decode(data: bytes) -> tuple[WorkItem, ReadResult]:
    """Parse an entry; raises ValueError (or KeyError/TypeError) on anything wrong."""
    outer = json.loads(data)
    if outer.get("format") != FORMAT:
        raise ValueError(f"journal format {outer.get('format')!r}, expected {FORMAT}")
    text = outer["body"]
    if hashlib.sha256(text.encode()).hexdigest() != outer["sha256"]:
        raise ValueError("checksum mismatch")
    body = json.loads(text)
    r = body["result"]
    result = ReadResult(
        model_id=r["model_id"],
        outcome=r["outcome"],
        files=[FileState(**f) for f in r["files"]],
        summary=None if r["summary"] is None else _summary_from(r["summary"]),
        fingerprint=None if r["fingerprint"] is None else _fingerprint_from(r["fingerprint"]),
        error=r["error"],
    )  # bytes and seconds stay 0: this run read nothing for it
    return _item_from(body["item"]), result


class Journal:
    """The journal of one locked run on one index file."""

    def __init__(self, db: str | os.PathLike[str]) -> None:
        self.dir = journal_dir(db)

    def _path(self, model_id: str) -> Path:
        return self.dir / (hashlib.sha256(model_id.encode()).hexdigest()[:32] + SUFFIX)

    def record(self, item: WorkItem, result: ReadResult) -> None:
        """Save one finished result atomically (temp file, fsync, rename).

        A journal that cannot be written only costs the resume: warn and go on.
        """
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            data = encode(item, result)
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".tmp-", suffix=SUFFIX)
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self._path(item.model_id))
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except (OSError, ValueError, TypeError) as exc:
            log.warning("journal: cannot save %s: %s", item.model_id, exc)

    def split(self, items: Sequence[WorkItem]) -> tuple[dict[str, ReadResult], list[WorkItem]]:
        """Results reusable from the journal, and the items still to read.

        An entry is reused only if it was made for exactly this work item.
        """
        reused: dict[str, ReadResult] = {}
        todo: list[WorkItem] = []
        for item in items:
            path = self._path(item.model_id)
            entry = None
            if path.is_file():
                try:
                    entry = decode(path.read_bytes())
                except (OSError, ValueError, KeyError, TypeError) as exc:
                    msg = " ".join(str(exc).split()) or exc.__class__.__name__
                    log.warning("journal: ignoring corrupt entry %s: %s", path.name, msg)
            if entry is not None and entry[0] == item and entry[1].model_id == item.model_id:
                reused[item.model_id] = entry[1]
            else:
                todo.append(item)
        if reused:
            log.info(
                "journal: reusing %d of %d models from an interrupted run", len(reused), len(items)
            )
        return reused, todo

    def clear(self) -> None:
        """Delete the journal (after the index is written, or to start afresh)."""
        shutil.rmtree(self.dir, ignore_errors=True)
