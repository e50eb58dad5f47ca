"""Serve the index-local flow on a schedule without a work pool.

    python -m flows.serve --paths models lake --db lineage.duckdb --cron "0 2 * * *"

Needs a Prefect API (``prefect server start`` and ``PREFECT_API_URL``); the process
stays up, runs the flow on the schedule, and also runs it on demand from the UI.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from flows.index_local import index_local


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the schedule and parameters, then serve until interrupted."""
    p = argparse.ArgumentParser(prog="python -m flows.serve", description=__doc__.split("\n")[0])
    p.add_argument("--paths", nargs="+", required=True, help="folders to index")
    p.add_argument("--db", default="lineage.duckdb")
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--dask-address", default=None)
    p.add_argument("--cron", default="0 2 * * *", help="cron schedule, UTC (default nightly)")
    p.add_argument("--name", default="nightly-local-served")
    args = p.parse_args(argv)
    index_local.serve(
        name=args.name,
        cron=args.cron,
        parameters={
            "paths": args.paths,
            "db": args.db,
            "workers": args.workers,
            "dask_address": args.dask_address,
        },
        tags=["model-heritage", "local"],
    )


if __name__ == "__main__":
    main()
