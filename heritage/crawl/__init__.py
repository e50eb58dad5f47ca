"""Incremental indexing of local models: plan from file stats, read what changed, draft.

Plain functions; ``flows/`` wires them into Prefect tasks and ``heritage.crawl.run`` runs
them without Prefect. What a draft becomes (lineage, edge diff, runs row) is shared with
the Hub crawl: heritage.index.update and heritage.index.runs.
"""

from heritage.crawl.assemble import FLOW_NAME, build_tables
from heritage.crawl.plan import (
    Entry,
    FileState,
    ModelMeta,
    Plan,
    WorkItem,
    plan_run,
    previous_roots,
)
from heritage.crawl.read import ReadResult, failed, read_model
from heritage.crawl.run import load_hook, run_index

__all__ = [
    "FLOW_NAME",
    "Entry",
    "FileState",
    "ModelMeta",
    "Plan",
    "ReadResult",
    "WorkItem",
    "build_tables",
    "failed",
    "load_hook",
    "plan_run",
    "previous_roots",
    "read_model",
    "run_index",
]
