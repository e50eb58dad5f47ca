"""Adding one model to a large index: time and peak memory of the run's index work.

    python bench/index_add.py [--models 20000] [--shape forest] [--keep DIR]

Builds an index file of ``--models`` models (bench/shapes.py's fingerprints: one
architecture, families of 100, 4 x 8 x 128 float32 per model; lineage from
``recover_lineage``), then, each in a fresh process so its peak RSS is its own, adds one
model (a fine-tune of the first family's root) the way an index run does after reading
it: read the previous index, find the families it touches (``lineage_work``), plan them,
keep the rest (``relate_work``) and write the new file. Two ways of reading:

- ``all in memory``: every fingerprint row read into polars and rebuilt (``read_index``
  as runs did before fingerprints were read by family);
- ``by family``: fingerprint rows stay in the file (``read_index(fingerprints=False)``);
  the kin search reads them a chunk at a time, planning reads the touched family only,
  and the write copies the kept rows file to file.

Both must give the same tables; the script checks that. Peak RSS is shown before the
write (reading and lineage) and overall: while it builds the new file DuckDB caches the
blocks it writes, up to its default memory limit. Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def build(db: Path, shape: str, n: int) -> None:
    sys.path.insert(0, str(HERE))
    from heritage.index import (
        IndexData,
        edges_frame,
        families_frame,
        family_ids,
        fingerprints_frame,
        model_row,
        models_frame,
        tensors_frame,
        write_index,
    )
    from heritage.lineage import LineageSettings, recover_lineage
    from shapes import shape_prints

    inputs, _ = shape_prints(shape, n)
    t0 = time.perf_counter()
    graph = recover_lineage(inputs, LineageSettings(use_times=False))
    print(f"built lineage of {n:,} models in {time.perf_counter() - t0:.1f} s", flush=True)
    fam = family_ids(graph)
    prints = {m.id: m.fingerprint for m in inputs}
    rows = [
        model_row(m.id, name=m.id, source="local", status="ok", family_id=fam.get(m.id))
        for m in inputs
    ]
    write_index(
        db,
        IndexData(
            models=models_frame(rows),
            tensors=tensors_frame(prints),
            fingerprints=fingerprints_frame(prints),
            families=families_frame(graph),
            edges=edges_frame(graph),
        ),
    )


def peak_rss_gib() -> float:
    """This process's peak RSS since it started. (``ru_maxrss`` would not do: Linux
    carries the parent's high-water mark across fork and exec.)"""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def add_one(db: Path, lazy: bool) -> dict:
    import polars as pl

    from heritage.index import (
        IndexData,
        fingerprints_frame,
        model_row,
        models_frame,
        read_index,
        tensors_frame,
        write_index,
    )
    from heritage.index.update import lineage_work, relate_work
    from heritage.lineage import family_lineage
    from shapes import finetune_print

    t0 = time.perf_counter()
    previous = read_index(db, fingerprints=not lazy)
    t_read = time.perf_counter() - t0
    base = previous.fingerprint(previous.families["root_model_id"].sort()[0])
    new = {"added-one": finetune_print(base)}
    schema = models_frame([]).schema
    models = pl.concat(
        [
            previous.models.select(list(schema)),
            models_frame([model_row("added-one", name="added-one", source="local", status="ok")]),
        ]
    )
    fps = pl.concat([previous.fingerprints, fingerprints_frame(new)])
    tensors = pl.concat([previous.tensors, tensors_frame(new)])
    stored = previous.stored_prints
    t1 = time.perf_counter()
    work = lineage_work(models, fps, tensors, previous, ["added-one"], stored=stored)
    graphs = [family_lineage(job) for job in work.jobs]
    models, edges, fam = relate_work(models, previous, work, graphs)
    t_lineage = time.perf_counter() - t1
    rss_lineage = peak_rss_gib()
    t2 = time.perf_counter()
    out = db.with_name(f"{db.stem}-{'lazy' if lazy else 'eager'}.duckdb")
    write_index(
        out,
        IndexData(
            models=models.sort("model_id"),
            tensors=tensors.sort("model_id", "position", "name"),
            fingerprints=fps.sort("model_id", "position", "tensor"),
            families=fam.sort("family_id"),
            edges=edges.sort("parent_id", "child_id"),
            stored_prints=stored,
        ),
    )
    t_write = time.perf_counter() - t2
    parent = edges.filter(pl.col("child_id") == "added-one")["parent_id"].to_list()
    return {
        "mode": "by family" if lazy else "all in memory",
        "read_s": t_read,
        "lineage_s": t_lineage,
        "write_s": t_write,
        "total_s": time.perf_counter() - t0,
        "replanned": work.replanned,
        "parent": parent,
        "peak_rss_lineage_gib": rss_lineage,
        "peak_rss_gib": peak_rss_gib(),
        "file": str(out),
    }


def same_tables(a: str, b: str) -> bool:
    from heritage.index import TABLES, read_index

    x, y = read_index(a), read_index(b)
    return all(getattr(x, t).equals(getattr(y, t)) for t in TABLES if t != "runs")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", type=int, default=20_000)
    ap.add_argument("--shape", default="forest", choices=("star", "forest", "chains"))
    ap.add_argument("--keep", type=Path, help="build the index here and keep it")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(add_one(Path(args.child[0]), args.child[1] == "lazy")))
        return
    tmp = args.keep or Path(tempfile.mkdtemp())
    tmp.mkdir(parents=True, exist_ok=True)
    db = tmp / f"{args.shape}-{args.models}.duckdb"
    if not db.exists():
        build(db, args.shape, args.models)
    size = db.stat().st_size
    print(f"index: {args.models:,} models ({args.shape}), {size / 2**20:,.0f} MiB on disk")
    print(
        "| reading | read (s) | lineage (s) | write (s) | total (s) | "
        "peak RSS before the write (GiB) | peak RSS (GiB) |"
    )
    print("|---|---|---|---|---|---|---|")
    results = []
    for mode in ("eager", "lazy"):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(db), mode],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(
            f"| {r['mode']} | {r['read_s']:.1f} | {r['lineage_s']:.1f} | {r['write_s']:.1f} | "
            f"{r['total_s']:.1f} | {r['peak_rss_lineage_gib']:.2f} | {r['peak_rss_gib']:.2f} |",
            flush=True,
        )
    same = same_tables(results[0]["file"], results[1]["file"])
    print(
        f"models planned again: {results[1]['replanned']}; new model's parent "
        f"{results[1]['parent']}; both ways give the same tables: {same}"
    )


if __name__ == "__main__":
    main()
