"""The index run as plain Python: discover → plan → read (thread pool) → assemble → write.

``flows/index_local.py`` wires the same steps as Prefect tasks; this module is what they
call, and also runs on its own (``heritage index --no-prefect``, benchmarks, tests).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from heritage.crawl.assemble import build_tables
from heritage.crawl.journal import Journal
from heritage.crawl.plan import Plan, WorkItem, plan_run
from heritage.crawl.progress import current
from heritage.crawl.read import ReadResult, failed, read_model
from heritage.index import IndexData, read_index, write_index
from heritage.index.runs import RunInfo, RunReport, index_lock, new_run_id, utcnow
from heritage.index.update import add_lineage
from heritage.sources import Discovery, discover

log = logging.getLogger("heritage.crawl")
DEFAULT_WORKERS = 4


def log_discovery(discovery: Discovery, logger: logging.Logger | logging.LoggerAdapter) -> None:
    """One log line per skipped entry (hidden files at debug level) and one for the total."""
    levels = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
    for s in discovery.skipped:
        logger.log(levels.get(s.severity, logging.INFO), "skipped %s: %s", s.path, s.reason)
    logger.info(
        "found %d models under %s (%d entries skipped)",
        len(discovery.models),
        ", ".join(map(str, discovery.roots)),
        len(discovery.skipped),
    )


def log_plan(plan: Plan, logger: logging.Logger | logging.LoggerAdapter) -> None:
    """Card problems and the counts of each action."""
    counts: dict[str, int] = {}
    for e in plan.entries:
        counts[e.action] = counts.get(e.action, 0) + 1
        for p in e.meta.problems:
            logger.info("card: %s", p)
        if e.action == "fail":
            logger.warning("failed %s", e.error)
    logger.info("plan: %s", ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "no models")


def log_result(result: ReadResult, logger: logging.Logger | logging.LoggerAdapter) -> None:
    if result.outcome == "failed":
        logger.warning("failed %s", result.error)


def load_hook(spec: str) -> Callable[..., Any]:
    """Import a ``module:function`` publish hook."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(f"publish hook {spec!r} is not of the form module:function")
    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"publish hook {spec!r} is not callable")
    return target


def read_all(
    items: Sequence[WorkItem],
    workers: int = DEFAULT_WORKERS,
    journal: Journal | None = None,
) -> dict[str, ReadResult]:
    """Read models on a thread pool; an unexpected exception fails that model only.

    Each result read is saved to ``journal`` as it finishes (not the failures made here
    from exceptions: they may be transient and deserve another try).
    """
    progress = current()
    progress.start_reading(len(items))
    results: dict[str, ReadResult] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(read_model, item): item for item in items}
        for fut in as_completed(futures):
            item = futures[fut]
            try:
                result = fut.result()
            except Exception as exc:  # a reader bug or I/O error: the model fails, the run goes on
                result = failed(item, exc)
            else:
                if journal is not None:
                    journal.record(item, result)
            log_result(result, log)
            results[item.model_id] = result
            progress.model_done(item.model_id)
    return results


def run_index(
    paths: Sequence[str | Path],
    db: str | Path,
    *,
    workers: int = DEFAULT_WORKERS,
    full: bool = False,
    publish_hook: str | None = None,
) -> RunReport:
    """Index ``paths`` into ``db`` without Prefect; returns the run's report."""
    db = Path(db)
    run = RunInfo(run_id=new_run_id(), started_at=utcnow(), flow="index-local-plain")
    with index_lock(db):
        previous: IndexData = read_index(db, fingerprints=False)
        discovery = discover(paths, on_folder=current().discovering)
        log_discovery(discovery, log)
        plan = plan_run(discovery, previous, full=full)
        log_plan(plan, log)
        journal = Journal(db)
        if full:
            journal.clear()
        results, todo = journal.split(plan.work())
        results.update(read_all(todo, workers, journal))
        draft = build_tables(plan, results, previous, run, len(discovery.skipped))
        data, report = add_lineage(draft, previous, progress=current())
        report.db = str(db)
        write_index(db, data)
        journal.clear()
    if publish_hook:
        load_hook(publish_hook)(os.fspath(db), report.to_dict())
    return report
