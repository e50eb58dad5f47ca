"""``heritage inspect``: summarise checkpoint files or model folders without indexing them."""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from heritage.cli.options import add_json, human_bytes, print_error, print_json
from heritage.errors import CheckpointError
from heritage.summary import ModelSummary

NAME = "inspect"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help="summarise one checkpoint file or model folder")
    p.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="a .safetensors/.gguf/.pt/.pth/.bin file or a Hugging Face model folder",
    )
    add_json(p, "the summary (a list for several PATHs)")
    p.add_argument("--tensors", action="store_true", help="also list every tensor")
    p.add_argument("--no-hash", action="store_true", help="skip the sha256 of each file")
    p.set_defaults(func=run)


def print_summary(s: ModelSummary, out: TextIO) -> None:
    """The summary as aligned ``key  value`` lines, then one line per file."""
    rows = [
        ("location", s.location),
        ("format", s.format),
        ("parameters", f"{s.n_params:,}"),
        ("tensors", str(s.n_tensors)),
        ("layers", str(s.n_layers)),
        ("dtypes", ", ".join(s.dtypes)),
        ("bytes", f"{s.bytes:,} ({human_bytes(s.bytes)})"),
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


def _inspect_one(path: str, args: argparse.Namespace) -> dict[str, Any] | None:
    from heritage.formats import open_checkpoint
    from heritage.summary import summarize

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
    print_summary(summary, sys.stdout)
    if args.tensors:
        print()
        for t in tensors:
            print(f"{t['name']}  {t['dtype']}  {t['shape']}")
    print()
    return None


def run(args: argparse.Namespace) -> int:
    """Summarise each path; a bad one is reported in one line and the rest go on (exit 1)."""
    results, failed = [], 0
    for path in args.paths:
        try:
            results.append(_inspect_one(path, args))
        except CheckpointError as exc:
            print_error(exc)
            failed += 1
    if args.json:
        print_json(results[0] if len(args.paths) == 1 and results else results)
    return 1 if failed else 0
