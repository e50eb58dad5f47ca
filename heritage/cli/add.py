"""``heritage add``: upload one checkpoint into the lake folder, then index the lake."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from heritage.cli.runs import add_run_options, preflight, print_report, run_index_flow
from heritage.errors import HeritageError, UsageError

NAME = "add"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="upload a checkpoint into the lake folder and index it",
        description="Check FILE's format and size, copy it into LAKE/NAME/, verify the "
        "copy's sha256, then index the lake (with the folders the index already covers).",
    )
    p.add_argument(
        "file", metavar="FILE", help=".safetensors, .gguf, .pt, .pth, .bin or .ckpt file"
    )
    p.add_argument("--name", required=True, help="model name: 'model' or 'org/model'")
    p.add_argument("--description", help="one-paragraph description for the model card")
    p.add_argument("--lake", default="lake", help="folder uploads go into (default ./lake)")
    p.add_argument(
        "--max-size", default="5GB", help="largest accepted file, e.g. 5GB, 500MB (default 5GB)"
    )
    add_run_options(p)
    p.set_defaults(func=run)


def lake_roots(stored: list[str], lake: Path) -> list[str]:
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


def run(args: argparse.Namespace) -> int:
    """Upload (checked, copied, verified), index, and say under which id the model landed."""
    import polars as pl

    from heritage.crawl import previous_roots
    from heritage.index import read_index
    from heritage.sources import add_to_lake, parse_size

    try:
        max_bytes = parse_size(args.max_size)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    previous = read_index(args.db, fingerprints=False)
    taken = set(previous.models["name"].drop_nulls().to_list())
    upload = add_to_lake(
        args.file,
        args.name,
        args.lake,
        description=args.description,
        max_bytes=max_bytes,
        taken=taken,
    )
    print(f"copied {args.file} to {upload.file} ({upload.bytes:,} bytes, sha256 {upload.sha256})")
    roots = lake_roots(previous_roots(previous), Path(args.lake))
    preflight(roots, args.db)
    report = run_index_flow(args, roots)
    print_report(report, sys.stdout)
    row = read_index(args.db, fingerprints=False).models.filter(pl.col("name") == args.name)
    if row.is_empty():
        raise HeritageError(f"{args.name} was copied but not indexed")
    status, model_id = row["status"][0], row["model_id"][0]
    if status != "ok":
        raise HeritageError(row["error"][0])
    print(f"added {args.name} as model {model_id}")
    return 0
