"""``heritage zoo``: train model trees with known lineage (the engine's test data)."""

from __future__ import annotations

import argparse
from pathlib import Path

from heritage.errors import UsageError

NAME = "zoo"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(NAME, help="generate model trees with known lineage by real training")
    p.add_argument("out_dir", metavar="OUT", help="folder to write the models and truth.json into")
    p.add_argument("--size", choices=["tiny", "small", "medium"], default="small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--plan",
        choices=["random", "classic"],
        default="random",
        help="random: families, shapes and recipes drawn from the seed (default); "
        "classic: the same tree for every seed, only training noise differs",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
