"""``heritage hub``: index Hugging Face Hub repos into the lineage index."""

from __future__ import annotations

import argparse

from heritage.cli.options import add_db, add_json, human_bytes, print_json
from heritage.errors import HttpError

NAME = "hub"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        NAME,
        help="index models on the Hugging Face Hub (headers and samples only, no downloads)",
        description="List Hub repos (or take --repo ids), pin each commit, read safetensors "
        "and GGUF headers and fingerprint samples with HTTP range requests, and merge them "
        "into the index. Repos whose commit is already indexed are skipped. HF_TOKEN and "
        "HF_ENDPOINT are honoured.",
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
    add_db(p)
    add_json(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Crawl; failed repos are recorded in the index and listed, the run itself succeeds."""
    from huggingface_hub import constants
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
        status = exc.response.status_code if exc.response is not None else None
        endpoint = args.endpoint or constants.ENDPOINT
        raise HttpError(endpoint, redact(" ".join(str(exc).split())), status) from None
    if args.json:
        print_json(report.__dict__)
        return 0
    print(
        f"{len(report.read)} read, {len(report.unchanged)} unchanged, "
        f"{len(report.not_fingerprinted)} not fingerprinted, {len(report.failed)} failed; "
        f"{human_bytes(report.bytes_read)} in {report.resolver_requests} resolver and "
        f"{report.cdn_requests} CDN requests; "
        f"{report.n_edges} edges, {report.n_families} families -> {report.db}"
    )
    for repo, err in report.failed:
        print(f"failed: {repo}: {err}")
    return 0
