"""Indexing Hub repos: list, pin each repo's commit, read headers and samples over HTTP.

One listing call (``expand`` = sha, siblings, cardData, createdAt, …) describes every repo,
so there is no per-model API call; weights are read through :class:`HttpRangeSource`,
from the Hub's CDN when the resolver redirects there (one resolver request per file).
Repos whose commit sha is already in the index are not fetched again. The new Hub rows
are merged with the index's other models and lineage is recomputed over all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from heritage.crawl.progress import current
from heritage.errors import CheckpointError, GatedRepo, NotReadRemotely
from heritage.fingerprint import Fingerprint, fingerprint
from heritage.hub.http_source import redact
from heritage.hub.remote import (
    RemoteCheckpoint,
    gguf_models,
    open_remote,
    open_remote_gguf,
    open_remote_pickle,
    request_counts,
    weight_files,
    weight_folders,
)
from heritage.index import model_row, read_index, write_index
from heritage.index.runs import RunInfo, RunReport, index_lock, new_run_id, utcnow
from heritage.index.update import add_lineage, make_draft
from heritage.summary import summarize

log = logging.getLogger("heritage.hub")
ID_PREFIX = "hub:"  # Hub model ids never clash with local ones (those are relative paths)


def hub_model_id(repo: str) -> str:
    return ID_PREFIX + repo


EXPAND = [
    "sha",
    "siblings",
    "cardData",
    "createdAt",
    "lastModified",
    "gated",
    "private",
    "downloads",
    "likes",
    "tags",
]


class RepoReads(NamedTuple):
    """What reading one repo's models took, retries included."""

    bytes: int
    resolver: int  # requests to /resolve/ URLs: what the Hub's "resolvers" limit counts
    cdn: int  # range requests sent to CDN locations


@dataclass
class HubReport:
    """What a Hub run did, per repo."""

    db: str = ""
    read: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    not_fingerprinted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    bytes_read: int = 0
    requests: int = 0  # resolver + CDN
    resolver_requests: int = 0
    cdn_requests: int = 0
    per_repo: dict[str, RepoReads] = field(default_factory=dict)
    n_edges: int = 0
    n_families: int = 0
    n_edges_changed: int = 0  # edges added, removed or changed by the run
    run: RunReport | None = None  # the run as the runs table records it


def _get(info: Any, *names: str) -> Any:
    for n in names:
        v = info.get(n) if isinstance(info, dict) else getattr(info, n, None)
        if v is not None:
            return v
    return None


def _siblings(info: Any) -> list[str]:
    out = []
    for s in _get(info, "siblings") or []:
        name = s.get("rfilename") if isinstance(s, dict) else getattr(s, "rfilename", None)
        if name:
            out.append(name)
    return out


def _card(info: Any) -> dict[str, Any]:
    raw = _get(info, "card_data", "cardData")
    if raw is None:
        return {}
    if hasattr(raw, "to_dict"):
        raw = raw.to_dict()
    return dict(raw) if isinstance(raw, dict) else {}


def _created(info: Any) -> datetime | None:
    v = _get(info, "created_at", "createdAt")
    if isinstance(v, str):
        v = datetime.fromisoformat(v.replace("Z", "+00:00"))
    if isinstance(v, datetime):
        return v.astimezone(UTC).replace(tzinfo=None)
    return None


def _base_models(card: dict[str, Any]) -> list[str]:
    base = card.get("base_model")
    if isinstance(base, str):
        return [base]
    if isinstance(base, list):
        return [b for b in base if isinstance(b, str)]
    return []


def list_repos(
    api: Any,
    *,
    search: str | None = None,
    author: str | None = None,
    filter: Sequence[str] | None = None,
    sort: str | None = None,
    limit: int | None = None,
    repos: Sequence[str] | None = None,
    revision: str | None = None,
) -> list[Any]:
    """Model infos with sha, siblings and card data: one listing, or one call per ``repos``."""
    if repos:
        return [api.model_info(r, revision=revision, expand=EXPAND) for r in repos]
    return list(
        api.list_models(
            search=search,
            author=author,
            filter=list(filter) if filter else None,
            sort=sort,
            limit=limit,
            expand=EXPAND,
        )
    )


def _fields(info: Any, repo: str, sha: str | None, card: dict[str, Any]) -> dict[str, Any]:
    gated = _get(info, "gated")
    return {
        "name": repo,
        "source": "hub",
        "location": repo,
        "revision": sha,
        "declared_base_models": _base_models(card),
        "card": {
            "license": card.get("license"),
            "tags": _get(info, "tags") or card.get("tags") or [],
            "downloads": _get(info, "downloads"),
            "likes": _get(info, "likes"),
            "base_model": card.get("base_model"),
            "base_model_relation": card.get("base_model_relation"),
        },
        "created_at": _created(info),
        "gated": bool(gated) and gated != "false",
        "private": bool(_get(info, "private")),
    }


class Read(NamedTuple):
    """One model of a repo: its row, its fingerprint (None unless read), the cost, and
    whether the Hub refused it as gated or private (then the repo's other models are too)."""

    row: dict[str, Any]
    fingerprint: Fingerprint | None
    cost: RepoReads = RepoReads(0, 0, 0)
    gated: bool = False


def read_repo(
    endpoint: str,
    info: Any,
    session: Any,
    headers: dict[str, str],
    source_options: dict[str, Any] | None = None,
) -> list[Read]:
    """(models row, fingerprint or None, bytes, resolver and CDN requests) per model of a repo.

    The repo root is always the first model (``hub:ORG/NAME``); each subfolder holding
    safetensors weights (an adapter, a diffusers component) follows as a model of its own,
    ``hub:ORG/NAME/FOLDER``, named ``ORG/NAME/FOLDER`` with its files under their repo
    paths, and so does each GGUF file or split set, ``hub:ORG/NAME/FILE.gguf``. The
    card's declared base models belong to the root model only.
    """
    repo = _get(info, "id", "modelId")
    sha = _get(info, "sha")
    common = _fields(info, repo, sha, _card(info))
    files = _siblings(info)
    reads = [
        _read_weights(endpoint, repo, sha, files, "", common, session, headers, source_options)
    ]
    if reads[0].gated:
        return reads  # no token for this repo: its subfolders would be refused the same way
    folders, more = weight_folders(files)
    if more:
        log.warning("%s: %d more subfolders with weights left unread", repo, more)
    for folder in folders:
        sub = {**common, "name": f"{repo}/{folder}", "location": f"{repo}/{folder}"}
        sub["declared_base_models"] = []
        reads.append(
            _read_weights(endpoint, repo, sha, files, folder, sub, session, headers, source_options)
        )
    for paths in gguf_models(files):  # each GGUF file (or split set) is a model of its own
        sub = {**common, "name": f"{repo}/{paths[0]}", "location": f"{repo}/{paths[0]}"}
        sub["declared_base_models"] = []

        def opener(paths: list[str] = paths) -> RemoteCheckpoint:
            assert sha is not None
            return open_remote_gguf(
                endpoint,
                repo,
                sha,
                paths,
                session=session,
                headers=headers,
                **(source_options or {}),
            )

        mid = hub_model_id(f"{repo}/{paths[0]}")
        reads.append(_read_model(mid, repo, sha, sub, opener, headers))
    return reads


def _read_weights(
    endpoint: str,
    repo: str,
    sha: str | None,
    files: list[str],
    folder: str,
    common: dict[str, Any],
    session: Any,
    headers: dict[str, str],
    source_options: dict[str, Any] | None,
) -> Read:
    """One model: the weights directly in ``folder`` of the repo ("" for its root)."""
    mid = hub_model_id(f"{repo}/{folder}" if folder else repo)
    now = utcnow()
    kind, picked = weight_files(files, folder)
    if kind == "none":
        row = model_row(mid, **common, status="not_fingerprinted", error=None, indexed_at=now)
        return Read(row, None)

    def opener() -> RemoteCheckpoint:
        assert sha is not None
        if kind == "pickle":
            return open_remote_pickle(
                endpoint,
                repo,
                sha,
                picked,
                session=session,
                headers=headers,
                repo_files=files,
                **(source_options or {}),
            )
        return open_remote(
            endpoint,
            repo,
            sha,
            files,
            session=session,
            headers=headers,
            folder=folder,
            **(source_options or {}),
        )

    return _read_model(mid, repo, sha, common, opener, headers)


def _read_model(
    mid: str,
    repo: str,
    sha: str | None,
    common: dict[str, Any],
    opener: Callable[[], RemoteCheckpoint],
    headers: dict[str, str],
) -> Read:
    """One model's row and fingerprint from the checkpoint ``opener`` opens remotely."""
    now = utcnow()
    if not sha:
        err = f"{repo}: listing gave no commit sha"
        return Read(model_row(mid, **common, status="failed", error=err, indexed_at=now), None)
    try:
        ckpt = opener()
        fp = fingerprint(ckpt)
    except NotReadRemotely as exc:
        text = redact(" ".join(str(exc).split()), headers)
        row = model_row(mid, **common, status="not_fingerprinted", error=text, indexed_at=now)
        return Read(row, None)
    except CheckpointError as exc:
        text = redact(" ".join(str(exc).split()), headers)
        row = model_row(mid, **common, status="failed", error=text, indexed_at=now)
        return Read(row, None, gated=isinstance(exc, GatedRepo))
    summary = summarize(ckpt, hash_files=False)  # hashing would read every byte
    row = model_row(mid, summary, **common, status="ok", error=None, indexed_at=now)
    return Read(row, fp, RepoReads(ckpt.bytes_read, *request_counts(ckpt)))


def _repo_id(model_id: str) -> str:
    """``hub:ORG/NAME`` of a Hub model id, also of a subfolder model ``hub:ORG/NAME/FOLDER``."""
    return "/".join(model_id.split("/", 2)[:2])


def run_hub(
    db: str | Path,
    *,
    endpoint: str | None = None,
    token: str | bool | None = None,
    search: str | None = None,
    author: str | None = None,
    filter: Sequence[str] | None = None,
    sort: str | None = None,
    limit: int | None = None,
    repos: Sequence[str] | None = None,
    revision: str | None = None,
    full: bool = False,
    source_options: dict[str, Any] | None = None,
    flow: str = "index-hub-plain",
) -> HubReport:
    """Index Hub repos into ``db``, merged with its other models; returns the report.

    ``source_options`` go to every :class:`HttpRangeSource` (retries, backoff, sleep, …);
    ``flow`` names the caller in the runs row (the ``index-hub`` flow passes its name).
    The runs row counts models: seen in the crawled repos, new, re-read, reused, failed,
    and the edges the run added, removed or changed.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.utils import build_hf_headers, get_session

    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    api = HfApi(endpoint=endpoint, token=token)
    headers = dict(build_hf_headers(token=token))
    session = get_session()
    db = Path(db)
    report = HubReport(db=str(db))
    run = RunInfo(run_id=new_run_id(), started_at=utcnow(), flow=flow, source=endpoint)
    with index_lock(db):
        previous = read_index(db, fingerprints=False)
        infos = list_repos(
            api,
            search=search,
            author=author,
            filter=filter,
            sort=sort,
            limit=limit,
            repos=repos,
            revision=revision,
        )
        by_repo: dict[str, list[dict[str, Any]]] = {}  # previous Hub rows per repo id
        for r in previous.models.iter_rows(named=True):
            if r["source"] == "hub" and r["model_id"].startswith(ID_PREFIX):
                by_repo.setdefault(_repo_id(r["model_id"]), []).append(r)
        rows: list[dict[str, Any]] = []
        fresh: dict[str, Fingerprint] = {}
        reused: list[str] = []
        for info in infos:
            repo = _get(info, "id", "modelId")
            old = by_repo.get(hub_model_id(repo), [])
            if (
                not full
                and any(r["model_id"] == hub_model_id(repo) for r in old)
                and all(r["revision"] == _get(info, "sha") for r in old)
                and all(r["status"] in ("ok", "not_fingerprinted") for r in old)
            ):
                rows.extend({k: v for k, v in r.items() if k != "family_id"} for r in old)
                reused.extend(r["model_id"] for r in old)
                report.unchanged.append(repo)
                continue
            reads = read_repo(endpoint, info, session, headers, source_options)
            cost = RepoReads(*(sum(col) for col in zip(*(r.cost for r in reads), strict=True)))
            report.bytes_read += cost.bytes
            report.resolver_requests += cost.resolver
            report.cdn_requests += cost.cdn
            report.requests += cost.resolver + cost.cdn
            report.per_repo[repo] = cost
            for row, fp, *_ in reads:
                rows.append(row)
                if fp is not None:
                    fresh[row["model_id"]] = fp
                    report.read.append(row["name"])
                elif row["status"] == "not_fingerprinted":
                    report.not_fingerprinted.append(row["name"])
                else:
                    report.failed.append((row["name"], row["error"]))
                    log.warning("failed %s", row["error"])
        crawled = {hub_model_id(_get(info, "id", "modelId")) for info in infos}
        seen = {r["model_id"] for r in rows}
        gone = {r["model_id"] for repo_id in crawled for r in by_repo.get(repo_id, [])} - seen
        others = previous.models.filter(~pl.col("model_id").is_in(list(seen | gone)))
        before = set(previous.models["model_id"].to_list())
        run_report = RunReport(
            run_id=run.run_id,
            db=str(db),
            n_seen=len(rows),
            added=[m for m in fresh if m not in before],
            changed=[m for m in fresh if m in before],
            unchanged=reused,
            failed=[(r["model_id"], r["error"] or "") for r in rows if r["status"] == "failed"],
            removed=sorted(gone),
            bytes_read=report.bytes_read,
        )
        keep = {m: m for m in [*others["model_id"].to_list(), *reused]}
        draft = make_draft(run, run_report, rows, fresh, previous, others, keep, full=full)
        data, run_report = add_lineage(draft, previous, progress=current())
        report.run = run_report
        report.n_edges, report.n_families = run_report.n_edges, run_report.n_families
        report.n_edges_changed = run_report.edges.count
        write_index(db, data)
    return report
