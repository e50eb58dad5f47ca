"""The ``heritage`` command line: argument parsing only, work happens in the package."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from heritage import __version__
from heritage.formats import CheckpointError, open_checkpoint
from heritage.publish import add_publish_arguments
from heritage.summary import ModelSummary, summarize

if TYPE_CHECKING:
    from heritage.crawl.progress import CrawlProgress


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _print_summary(s: ModelSummary, out) -> None:
    rows = [
        ("location", s.location),
        ("format", s.format),
        ("parameters", f"{s.n_params:,}"),
        ("tensors", str(s.n_tensors)),
        ("layers", str(s.n_layers)),
        ("dtypes", ", ".join(s.dtypes)),
        ("bytes", f"{s.bytes:,} ({_human_bytes(s.bytes)})"),
        ("structure hash", s.structure_hash),
    ]
    if s.config and s.config.get("architectures"):
        rows.append(("architecture", ", ".join(map(str, s.config["architectures"]))))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}", file=out)
    print(file=out)
    name_w = max(len("file"), *(len(f.name) for f in s.files))
    print(f"{'file':<{name_w}}  {'bytes':>14}  sha256", file=out)
    for f in s.files:
        print(f"{f.name:<{name_w}}  {f.bytes:>14,}  {f.sha256 or '-'}", file=out)


def _inspect_one(path: str, args: argparse.Namespace) -> dict | None:
    with open_checkpoint(path) as ckpt:
        summary = summarize(ckpt, hash_files=not args.no_hash)
        tensors = [
            {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "file": t.file}
            for t in ckpt.tensors
        ]
    if args.json:
        data = summary.to_dict()
        if args.tensors:
            data["tensors"] = tensors
        return data
    _print_summary(summary, sys.stdout)
    if args.tensors:
        print()
        for t in tensors:
            print(f"{t['name']}  {t['dtype']}  {t['shape']}")
    print()
    return None


def cmd_inspect(args: argparse.Namespace) -> int:
    """Summarise each path; a bad one is reported in one line and the rest go on."""
    results, failed = [], 0
    for path in args.paths:
        try:
            results.append(_inspect_one(path, args))
        except CheckpointError as exc:
            print(f"heritage: error: {exc}", file=sys.stderr)
            failed += 1
    if args.json:
        json.dump(results[0] if len(args.paths) == 1 and results else results, sys.stdout, indent=2)
        print()
    return 1 if failed else 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from heritage.zoo import build_zoo

    try:
        truth = build_zoo(
            Path(args.out_dir),
            size=args.size,
            seed=args.seed,
            progress=lambda msg: print(msg, flush=True),
            plan=args.plan,
        )
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {len(truth['models'])} models and truth.json to {args.out_dir}")
    return 0


class UsageError(Exception):
    """A bad command line (paths, names, sizes): exit status 2."""


class _QuietTaskLogs(logging.Filter):
    """Drop Prefect's per-task "Finished in state Completed()" lines (and, under a progress
    bar, the per-model "fingerprinting" lines the bar already shows)."""

    def __init__(self, bar: bool) -> None:
        super().__init__()
        self.prefixes = ("Finished in state Completed",) + (
            ("fingerprinting ", "rehashing ") if bar else ()
        )

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefixes)


def _progress(args: argparse.Namespace) -> CrawlProgress:
    from heritage.crawl.progress import NoProgress, RichProgress

    if args.no_progress or not sys.stdout.isatty():
        return NoProgress()
    return RichProgress()


def _preflight(paths: Sequence[str], db: str) -> None:
    """Fail fast, before any flow starts, on unusable roots or an unreadable index."""
    from heritage.index import connect_readonly
    from heritage.sources import DiscoveryError, check_roots

    try:
        check_roots([Path(p) for p in paths])
    except DiscoveryError as exc:
        raise UsageError(str(exc)) from None
    if Path(db).exists():
        connect_readonly(db).close()  # raises IndexVersionError for a newer/foreign file


def _run_index(args: argparse.Namespace, paths: Sequence[str]) -> dict:
    """Run the index flow (or the plain pipeline with --no-prefect); the report as a dict."""
    from heritage.crawl.orchestration import orchestration_problem
    from heritage.crawl.progress import RichProgress, reporting

    if args.no_prefect and args.dask_address:
        raise UsageError("--dask-address needs Prefect; drop --no-prefect")
    plain = args.no_prefect
    if not plain:
        problem = orchestration_problem()
        if problem is not None:
            if args.dask_address:
                raise UsageError(f"--dask-address needs Prefect, which cannot start ({problem})")
            print(
                f"heritage: warning: Prefect cannot start ({problem}); "
                "indexing without it (same index)",
                file=sys.stderr,
            )
            plain = True
    progress = _progress(args)
    with reporting(progress):
        if plain:
            from heritage.crawl import run_index

            if not logging.getLogger().handlers:
                logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
            return run_index(
                paths,
                args.db,
                workers=args.workers,
                full=getattr(args, "full", False),
                publish_hook=getattr(args, "publish_hook", None),
            ).to_dict()
        from flows.index_local import index_local

        quiet = _QuietTaskLogs(bar=isinstance(progress, RichProgress))
        task_logger = logging.getLogger("prefect.task_runs")
        task_logger.addFilter(quiet)
        try:
            return index_local(
                paths=list(paths),
                db=args.db,
                workers=args.workers,
                dask_address=args.dask_address,
                full=getattr(args, "full", False),
                publish_hook=getattr(args, "publish_hook", None),
            )
        finally:
            task_logger.removeFilter(quiet)


def _print_report(report: dict, out) -> None:
    print(
        f"{report['n_seen']} models: {len(report['added'])} added, "
        f"{len(report['changed'])} changed, {report['n_unchanged']} unchanged, "
        f"{len(report['failed'])} failed, {len(report['removed'])} removed",
        file=out,
    )
    n_changed = (
        len(report["edges_added"]) + len(report["edges_removed"]) + len(report["edges_changed"])
    )
    print(
        f"lineage: {report['n_edges']} edges in {report['n_families']} families "
        f"({n_changed} changed)",
        file=out,
    )
    print(
        f"read {_human_bytes(report['bytes_read'])} of checkpoints, hashed "
        f"{_human_bytes(report['bytes_hashed'])}, in {report['seconds']:.1f} s",
        file=out,
    )
    for f in report["failed"]:
        print(f"failed: {f['error']}", file=out)
    print(f"index: {report['db']}", file=out)


def cmd_index(args: argparse.Namespace) -> int:
    """Index every model under PATHs; failed models are reported, not fatal (exit 0)."""
    _preflight(args.paths, args.db)
    report = _run_index(args, args.paths)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        _print_report(report, sys.stdout)
    return 0


def _lake_roots(stored: list[str], lake: Path) -> list[str]:
    """The roots the previous run indexed, plus the lake unless one of them contains it."""
    lake = Path(os.path.abspath(lake))
    roots = []
    for r in stored:
        p = Path(r)
        if not p.exists() or p == lake or lake in p.parents:
            continue  # a vanished root, or one inside the lake (the lake covers it)
        roots.append(r)
    if not any(Path(r) == lake or Path(r) in lake.parents for r in roots):
        roots.append(str(lake))
    return roots


def cmd_add(args: argparse.Namespace) -> int:
    """Upload one checkpoint into the lake (checked, copied, verified) and index it."""
    import polars as pl

    from heritage.crawl import previous_roots
    from heritage.index import read_index
    from heritage.sources import UploadError, add_to_lake, parse_size

    try:
        max_bytes = parse_size(args.max_size)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    previous = read_index(args.db, fingerprints=False)
    taken = set(previous.models["name"].drop_nulls().to_list())
    try:
        upload = add_to_lake(
            args.file,
            args.name,
            args.lake,
            description=args.description,
            max_bytes=max_bytes,
            taken=taken,
        )
    except UploadError as exc:
        print(f"heritage: error: {exc}", file=sys.stderr)
        return 1
    print(f"copied {args.file} to {upload.file} ({upload.bytes:,} bytes, sha256 {upload.sha256})")
    roots = _lake_roots(previous_roots(previous), Path(args.lake))
    _preflight(roots, args.db)
    report = _run_index(args, roots)
    _print_report(report, sys.stdout)
    row = read_index(args.db, fingerprints=False).models.filter(pl.col("name") == args.name)
    if row.is_empty():
        print(f"heritage: error: {args.name} was copied but not indexed", file=sys.stderr)
        return 1
    status, model_id = row["status"][0], row["model_id"][0]
    if status != "ok":
        print(f"heritage: error: {row['error'][0]}", file=sys.stderr)
        return 1
    print(f"added {args.name} as model {model_id}")
    return 0


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", default="lineage.duckdb", help="index file (default lineage.duckdb)")
    p.add_argument(
        "--workers", type=int, default=4, help="fingerprint tasks run at once (default 4)"
    )
    p.add_argument(
        "--dask-address",
        metavar="tcp://HOST:PORT",
        help="run the fingerprint tasks on this existing Dask cluster",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--no-prefect",
        action="store_true",
        help="run the same steps without Prefect (no flow run, no artifacts)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heritage",
        description="Recover the family tree of ML models from their weights alone.",
    )
    parser.add_argument("--version", action="version", version=f"heritage {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("inspect", help="summarise one checkpoint file or model folder")
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="a .safetensors/.pt/.pth/.bin file or a Hugging Face model folder",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--tensors", action="store_true", help="also list every tensor")
    p.add_argument("--no-hash", action="store_true", help="skip the sha256 of each file")
    p.set_defaults(func=cmd_inspect)

    p = sub.add_parser("zoo", help="generate model trees with known lineage by real training")
    p.add_argument("out_dir", help="folder to write the models and truth.json into")
    p.add_argument("--size", choices=["tiny", "small", "medium"], default="small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--plan",
        choices=["random", "classic"],
        default="random",
        help="random: families, shapes and recipes drawn from the seed (default); "
        "classic: the same tree for every seed, only training noise differs",
    )
    p.set_defaults(func=cmd_zoo)

    p = sub.add_parser(
        "index",
        help="find, fingerprint and relate every model under folders (incremental)",
        description="Find every model under PATHs, fingerprint what changed since the last "
        "run, recompute lineage and write the DuckDB index. Models that cannot be read are "
        "recorded as failed and reported; the exit status is still 0.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="folder or checkpoint file")
    _add_run_options(p)
    p.add_argument(
        "--full",
        action="store_true",
        help="re-read every model, changed or not, and plan every family's lineage again",
    )
    p.add_argument(
        "--publish-hook",
        metavar="MODULE:FUNCTION",
        help="call FUNCTION(db_path, report) after the index is written",
    )
    p.add_argument("--json", action="store_true", help="print the run report as JSON")
    p.set_defaults(func=cmd_index)

    p = sub.add_parser(
        "add",
        help="upload a checkpoint into the lake folder and index it",
        description="Check FILE's format and size, copy it into LAKE/NAME/, verify the "
        "copy's sha256, then index the lake (with the folders the index already covers).",
    )
    p.add_argument("file", metavar="FILE", help=".safetensors, .pt, .pth, .bin or .ckpt file")
    p.add_argument("--name", required=True, help="model name: 'model' or 'org/model'")
    p.add_argument("--description", help="one-paragraph description for the model card")
    p.add_argument("--lake", default="lake", help="folder uploads go into (default ./lake)")
    p.add_argument(
        "--max-size", default="5GB", help="largest accepted file, e.g. 5GB, 500MB (default 5GB)"
    )
    _add_run_options(p)
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("publish", help="publish the static catalog site from the index")
    add_publish_arguments(p)

    from heritage.hub.cli import add_hub_parser

    add_hub_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Offline machines cannot reach Prefect's telemetry endpoint; opt in explicitly instead.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        parser.error("--workers must be at least 1")
    from heritage.crawl import IndexBusy
    from heritage.index import IndexVersionError

    try:
        return args.func(args)
    except UsageError as exc:
        print(f"heritage: error: {exc}", file=sys.stderr)
        return 2
    except (CheckpointError, IndexBusy, IndexVersionError) as exc:
        print(f"heritage: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the index cannot be written
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"heritage: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("heritage: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
