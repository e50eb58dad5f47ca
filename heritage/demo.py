"""``make demo``: index the small sample zoo and run the README's example queries on it.

    python -m heritage.demo [OUT_DIR]      (default .cache/demo)

The zoo is generated once and cached in ``.cache/``; the index goes to
``OUT_DIR/lineage.duckdb``. Running the demo again is an incremental run that reads no
weights. The queries below are the ones README.md shows, word for word.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import duckdb

# (what it shows, SQL) — copied verbatim into the README; a test keeps them in sync.
QUERIES: tuple[tuple[str, str], ...] = (
    (
        "Families, largest first, with the model inferred to be their root",
        "SELECT f.family_id, f.n_models, r.name AS root,\n"
        "       round(f.root_confidence, 2) AS root_confidence\n"
        "FROM families f LEFT JOIN models r ON r.model_id = f.root_model_id\n"
        "ORDER BY f.n_models DESC, f.family_id;",
    ),
    (
        "Everything one checkpoint descends from, nearest first",
        "SELECT depth, name, relation, round(confidence, 2) AS confidence\n"
        "FROM ancestors('longrun/tinyllama-a-continued-step150')\n"
        "ORDER BY depth, name;",
    ),
    (
        "Model cards whose declared base model the weights do not support",
        "SELECT name, array_to_string(declared_base_models, ', ') AS card_says,\n"
        "       array_to_string(inferred_parents, ', ') AS weights_say\n"
        "FROM declared_vs_inferred\n"
        "WHERE status = 'disagrees'\n"
        "ORDER BY name;",
    ),
)


def run_queries(db: Path, out: TextIO | None = None) -> None:
    """Print each query as written, then its result table."""
    from heritage.index import connect_readonly

    out = out or sys.stdout
    con = connect_readonly(db)
    try:
        for title, sql in QUERIES:
            print(f"\n-- {title}\n{sql}", file=out)
            print(_render(con.sql(sql)), file=out)
    finally:
        con.close()


def _render(rel: duckdb.DuckDBPyRelation) -> str:
    """The result as a plain text table (no truncation of names)."""
    cols = rel.columns
    rows = [["" if v is None else str(v) for v in row] for row in rel.fetchall()]
    widths = [
        max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(cols)
    ]
    line = "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join([line, rule, *body, f"({len(rows)} rows)"])


def _zoo_with_progress() -> Path:
    """The small zoo, with a bar per model trained (and the time left) while it builds;
    a line every few models when the output is not a terminal (a log, CI)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from heritage.zoo.cache import cached_zoo

    if not sys.stdout.isatty():
        started = time.monotonic()

        def on_line(done: int, total: int) -> None:
            if done % 5 and done != total:
                return
            spent = time.monotonic() - started
            left = spent / done * (total - done)
            print(
                f"  trained {done}/{total} zoo models, {spent:.0f} s so far, "
                f"about {left:.0f} s left",
                flush=True,
            )

        return cached_zoo("small", 0, on_model=on_line)

    columns = (
        TextColumn("training the zoo"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task("zoo", total=None, visible=False)

        def on_model(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, visible=True)

        return cached_zoo("small", 0, on_model=on_model)


def main(argv: Sequence[str] | None = None) -> int:
    """Build (or reuse) the small zoo, index it, and show where the index is and what it holds."""
    from heritage.cli import main as cli_main

    # Prefect's per-task INFO lines would drown the demo; warnings and errors still show.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    args = list(sys.argv[1:] if argv is None else argv)
    out_dir = Path(args[0] if args else ".cache/demo")
    print("Generating (or reusing) the small sample zoo in .cache/ ...", flush=True)
    zoo = _zoo_with_progress()
    db = out_dir / "lineage.duckdb"
    code = cli_main(["index", str(zoo), "--db", str(db)])
    if code != 0:
        return code
    print(f"\nThe index is {db.resolve()}")
    print(f"Open it with:  duckdb -readonly {db}")
    print("Three example queries from the README, and what they return:")
    run_queries(db)
    site = out_dir / "site"
    code = cli_main(["publish", "--db", str(db), "--out", str(site)])
    if code == 0:
        print(f"\nThe catalog site is {(site / 'index.html').resolve()} (open it in a browser)")
    return code


if __name__ == "__main__":
    sys.exit(main())
