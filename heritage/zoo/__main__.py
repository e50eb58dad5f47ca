"""``python -m heritage.zoo OUT_DIR [--size tiny|small|medium] [--seed N] [--plan random|classic]``:
build a zoo (like ``heritage zoo``)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from heritage.zoo.truth import PLANS, SIZES


def main(argv: list[str] | None = None) -> int:
    """Build a zoo from the command line, printing progress lines as models are made."""
    parser = argparse.ArgumentParser(prog="python -m heritage.zoo", description=__doc__)
    parser.add_argument("out_dir", type=Path, help="empty or new directory for the zoo")
    parser.add_argument("--size", choices=SIZES, default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--plan",
        choices=PLANS,
        default="random",
        help="random: the tree drawn from the seed (default); classic: one tree for every seed",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="delete OUT_DIR first if it is not empty"
    )
    args = parser.parse_args(argv)
    from heritage.zoo.build import build_zoo

    try:
        truth = build_zoo(
            args.out_dir,
            size=args.size,
            seed=args.seed,
            progress=lambda msg: print(msg, flush=True),
            overwrite=args.overwrite,
            plan=args.plan,
        )
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    counts = Counter(m["relation"] for m in truth["models"])
    print("relations: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
