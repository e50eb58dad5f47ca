"""Incremental indexing of local models: plan from file stats, read what changed, assemble.

Plain functions; ``flows/`` wires them into Prefect tasks and ``heritage.crawl.run`` runs
them without Prefect.
"""

from heritage.crawl.assemble import (
    FLOW_NAME,
    Draft,
    EdgeChanges,
    LineageWork,
    RunInfo,
    RunReport,
    add_lineage,
    assemble,
    build_tables,
    diff_edges,
    draft_lineage_work,
    lineage_graph,
)
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
from heritage.crawl.run import IndexBusy, index_lock, load_hook, run_index

__all__ = [
    "FLOW_NAME",
    "Draft",
    "EdgeChanges",
    "Entry",
    "FileState",
    "IndexBusy",
    "LineageWork",
    "ModelMeta",
    "Plan",
    "ReadResult",
    "RunInfo",
    "RunReport",
    "WorkItem",
    "add_lineage",
    "assemble",
    "build_tables",
    "diff_edges",
    "draft_lineage_work",
    "failed",
    "index_lock",
    "lineage_graph",
    "load_hook",
    "plan_run",
    "previous_roots",
    "read_model",
    "run_index",
]
