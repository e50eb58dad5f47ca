"""The ``heritage`` command line: argument parsing only, work happens in the package."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from heritage import __version__
from heritage.formats import CheckpointError, open_checkpoint
from heritage.summary import ModelSummary, summarize


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

    truth = build_zoo(Path(args.out_dir), size=args.size, seed=args.seed, progress=print)
    print(f"wrote {len(truth['models'])} models and truth.json to {args.out_dir}")
    return 0


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
    p.add_argument("--size", choices=["small", "medium"], default="small")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_zoo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CheckpointError as exc:
        print(f"heritage: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("heritage: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
