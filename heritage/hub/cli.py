"""The ``heritage hub`` subcommand: index Hub repos into the lineage index."""

from __future__ import annotations

import argparse
import json
import sys


def add_hub_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "hub",
        help="index models on the Hugging Face Hub (headers and samples only, no downloads)",
        description="List Hub repos (or take --repo ids), pin each commit, read safetensors "
        "headers and fingerprint samples with HTTP range requests, and merge them into the "
        "index. Repos whose commit is already indexed are skipped. HF_TOKEN and HF_ENDPOINT "
        "are honoured.",
    )
    p.add_argument("--search", help="substring of the repo id")
    p.add_argument("--author", help="user or organisation")
    p.add_argument("--filter", nargs="+", metavar="TAG", help="tags every repo must have")
    p.add_argument(
        "--sort", choices=["created_at", "downloads", "last_modified", "likes", "trending_score"]
    )
    p.add_argument("--limit", type=int, help="at most N repos from the listing")
    p.add_argument("--repo", nargs="+", metavar="ID", help="index these repos (no listing)")
    p.add_argument("--revision", help="branch, tag or commit for --repo (default main)")
    p.add_argument("--endpoint", help="Hub URL (default HF_ENDPOINT or huggingface.co)")
    p.add_argument("--full", action="store_true", help="re-read repos whose commit is indexed")
    p.add_argument("--db", default="lineage.duckdb", help="index file (default lineage.duckdb)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=cmd_hub)


def cmd_hub(args: argparse.Namespace) -> int:
    from huggingface_hub.errors import HfHubHTTPError

    from heritage.hub.crawl import run_hub
    from heritage.hub.http_source import redact

    try:
        report = run_hub(
            args.db,
            endpoint=args.endpoint,
            search=args.search,
            author=args.author,
            filter=args.filter,
            sort=args.sort,
            limit=args.limit,
            repos=args.repo,
            revision=args.revision,
            full=args.full,
        )
    except HfHubHTTPError as exc:  # the listing itself failed: nothing was written
        print(f"heritage: error: {redact(' '.join(str(exc).split()))}", file=sys.stderr)
        return 1
    if args.json:
        json.dump(report.__dict__, sys.stdout, indent=2, default=str)
        print()
    else:
        print(
            f"{len(report.read)} read, {len(report.unchanged)} unchanged, "
            f"{len(report.not_fingerprinted)} not fingerprinted, {len(report.failed)} failed; "
            f"{report.bytes_read:,} bytes in {report.resolver_requests} resolver and "
            f"{report.cdn_requests} CDN requests; "
            f"{report.n_edges} edges, {report.n_families} families -> {report.db}"
        )
        for repo, err in report.failed:
            print(f"  failed {repo}: {err}", file=sys.stderr)
    return 0  # failed repos are recorded in the index; the run itself succeeded
