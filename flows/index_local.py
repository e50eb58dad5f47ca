"""Prefect flow ``index-local``: discover → plan → fingerprint (mapped) → store →
lineage families → plan each family (mapped) → lineage → write → publish.

Thin wiring only: every step calls a plain function of :mod:`heritage.crawl` or
:mod:`heritage.sources`. The mapped fingerprint and family tasks run on a thread pool bounded
by ``workers``, or on an existing Dask cluster when ``dask_address`` is given (a
family's lineage depends on its members only, and graphs merge in job order, so the
result does not depend on how many workers there are); each retries
twice on unexpected errors, and a model that still fails is recorded as ``failed`` while
the run goes on. The index is written once, atomically, at the end of the run; until then
each finished read is kept in ``<db>.journal/`` so a killed run's rerun does not redo it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import networkx as nx
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed
from prefect.runtime import flow_run
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from heritage.crawl import (
    Plan,
    ReadResult,
    WorkItem,
    build_tables,
    failed,
    load_hook,
    plan_run,
    read_model,
)
from heritage.crawl.journal import Journal
from heritage.crawl.progress import current
from heritage.crawl.run import DEFAULT_WORKERS, log_discovery, log_plan
from heritage.index import IndexData, read_index, write_index
from heritage.index.runs import RunInfo, RunReport, index_lock, new_run_id, utcnow
from heritage.index.update import Draft, LineageWork, add_lineage, draft_lineage_work
from heritage.lineage import FamilyJob, family_lineage
from heritage.sources import Discovery, discover

FINGERPRINT_RETRIES = 2


def make_task_runner(workers: int = DEFAULT_WORKERS, dask_address: str | None = None) -> TaskRunner:
    """Thread pool with ``workers`` threads, or the Dask cluster at ``dask_address``."""
    if dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=dask_address)
    return ThreadPoolTaskRunner(max_workers=max(1, workers))


@task(name="discover", cache_policy=NO_CACHE)
def discover_models(paths: Sequence[str]) -> Discovery:
    """Walk the roots; every skipped entry is logged with its reason."""
    discovery = discover(paths, on_folder=current().discovering)
    log_discovery(discovery, get_run_logger())
    return discovery


@task(name="plan", cache_policy=NO_CACHE)
def plan_models(discovery: Discovery, previous: IndexData, full: bool) -> Plan:
    """Compare file sizes and mtimes with the previous index: reuse, rehash or read."""
    plan = plan_run(discovery, previous, full=full)
    log_plan(plan, get_run_logger())
    return plan


@task(
    name="fingerprint",
    task_run_name="fingerprint {item.model_id}",
    retries=FINGERPRINT_RETRIES,
    retry_delay_seconds=1,
    cache_policy=NO_CACHE,
)
def fingerprint_model(item: WorkItem) -> ReadResult:
    """Hash and fingerprint one model (or only confirm its hashes); bad files fail here."""
    logger = get_run_logger()
    logger.info("%s %s", "rehashing" if item.rehash else "fingerprinting", item.path)
    result = read_model(item)
    if result.outcome == "failed":
        logger.warning("failed %s", result.error)
    return result


@task(name="store", cache_policy=NO_CACHE)
def store_models(
    plan: Plan,
    results: dict[str, ReadResult],
    previous: IndexData,
    run: RunInfo,
    n_skipped: int,
) -> Draft:
    """Models, fingerprints and tensors tables: fresh rows and reused ones."""
    return build_tables(plan, results, previous, run, n_skipped)


@task(name="lineage-families", cache_policy=NO_CACHE)
def find_lineage_work(draft: Draft, previous: IndexData) -> LineageWork:
    """The families this run touched (all of them on a first run), one job each."""
    work = draft_lineage_work(draft, previous)
    get_run_logger().info(
        "lineage: %d families to plan (%d models), %d large families with new leaves "
        "attached; the others are kept",
        len(work.jobs),
        work.replanned,
        len(work.attached),
    )
    if work.adapters:
        get_run_logger().info(
            "lineage: PEFT adapters: %(attached)d attached (%(verified)d verified by a merged "
            "copy), %(unattached)d left unattached; %(placed)d placed again",
            work.adapter_counts(),
        )
    return work


@task(
    name="lineage-family",
    task_run_name="lineage {job.family.id}",
    cache_policy=NO_CACHE,
)
def plan_family_task(job: FamilyJob) -> nx.DiGraph:
    """One family's lineage graph (heritage.lineage.family_lineage)."""
    return family_lineage(job)


@task(name="lineage", cache_policy=NO_CACHE)
def recompute_lineage(
    draft: Draft, previous: IndexData, work: LineageWork, graphs: list[nx.DiGraph]
) -> tuple[IndexData, RunReport]:
    """The planned families beside the kept ones; edges diffed with the last run."""
    data, report = add_lineage(draft, previous, work, graphs)
    get_run_logger().info(
        "lineage: %d edges in %d families, %d changed",
        report.n_edges,
        report.n_families,
        report.edges.count,
    )
    return data, report


def plan_families(
    jobs: Sequence[FamilyJob], workers: int, dask_address: str | None
) -> list[nx.DiGraph]:
    """The family jobs as mapped tasks (threads, or the Dask cluster), graphs back in job
    order: one worker or many give the same graph. A bar ticks per family planned."""
    if not jobs:
        return []
    progress = current()
    progress.start_lineage(len(jobs))
    if len(jobs) == 1 and not dask_address:
        graph = plan_family_task(jobs[0])
        progress.family_done(len(jobs[0].models))
        return [graph]
    with make_task_runner(workers, dask_address) as runner:
        futures = [runner.submit(plan_family_task, {"job": job}) for job in jobs]
        size = {id(f): len(job.models) for f, job in zip(futures, jobs, strict=True)}
        for fut in as_completed(futures):
            progress.family_done(size[id(fut)])
        return [f.result() for f in futures]


@task(name="write", cache_policy=NO_CACHE)
def write_db(db: str, data: IndexData) -> None:
    """Atomically replace the index file (the previous one is kept as .bak)."""
    write_index(db, data)


@task(name="publish", cache_policy=NO_CACHE)
def publish(report: RunReport, publish_hook: str | None) -> None:
    """The run artifact (markdown summary, failures table) and the optional publish hook."""
    create_markdown_artifact(
        markdown=report.to_markdown(), key="index-local-run", description=report.summary_line()
    )
    if report.failed:
        create_table_artifact(
            table=[{"model_id": m, "error": e} for m, e in report.failed],
            key="index-local-failures",
            description="Models that could not be read in this run",
        )
    if publish_hook:
        get_run_logger().info("publish hook %s", publish_hook)
        load_hook(publish_hook)(report.db, report.to_dict())


def fingerprint_all(
    items: Sequence[WorkItem],
    workers: int,
    dask_address: str | None,
    journal: Journal | None = None,
) -> dict[str, ReadResult]:
    """Run the mapped fingerprint tasks; a task that still fails after retries fails its model.

    Results are saved to ``journal`` here, in the flow's process, as tasks finish: a Dask
    worker may not see the index's folder.
    """
    progress = current()
    progress.start_reading(len(items))
    results: dict[str, ReadResult] = {}
    if not items:
        return results
    logger = get_run_logger()
    with make_task_runner(workers, dask_address) as runner:
        futures = {}
        for item in items:
            futures[runner.submit(fingerprint_model, {"item": item})] = item
        for fut in as_completed(list(futures)):
            item = futures[fut]
            try:
                result = fut.result()
            except Exception as exc:
                result = failed(item, exc)
                logger.warning("failed %s", result.error)
            else:
                if journal is not None:
                    journal.record(item, result)
            results[item.model_id] = result
            progress.model_done(item.model_id)
    return results


@flow(name="index-local")
def index_local(
    paths: list[str],
    db: str = "lineage.duckdb",
    workers: int = DEFAULT_WORKERS,
    dask_address: str | None = None,
    full: bool = False,
    publish_hook: str | None = None,
) -> dict[str, Any]:
    """Index the models under ``paths`` into the DuckDB file ``db``, incrementally.

    Unchanged models (same file sizes and mtimes) are not read; ``full`` re-reads all.
    Returns the run report as a dict (also published as the ``index-local-run`` artifact).
    """
    run_id = flow_run.id or new_run_id()
    run = RunInfo(run_id=str(run_id), started_at=utcnow())
    db_path = Path(os.path.abspath(db))
    with index_lock(db_path):
        previous = read_index(db_path, fingerprints=False)
        discovery = discover_models(paths)
        plan = plan_models(discovery, previous, full)
        journal = Journal(db_path)
        if full:
            journal.clear()
        results, todo = journal.split(plan.work())
        results.update(fingerprint_all(todo, workers, dask_address, journal))
        draft = store_models(plan, results, previous, run, len(discovery.skipped))
        work = find_lineage_work(draft, previous)
        graphs = plan_families(work.jobs, workers, dask_address)
        data, report = recompute_lineage(draft, previous, work, graphs)
        report.db = str(db_path)
        write_db(str(db_path), data)
        journal.clear()
    publish(report, publish_hook)
    get_run_logger().info("%s", report.summary_line())
    return report.to_dict()
