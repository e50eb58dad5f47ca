"""A small threaded Hugging Face Hub emulator serving a folder of model folders.

Each ``<root>/<author>/<name>/`` folder is served as repo ``author/name``: the model API
(list with ``Link`` pagination and ``search``/``author`` filters, info by revision) and
``HEAD``/``GET /{repo}/resolve/{rev}/{file}`` with ranges.

Like the Hub, the resolver serves small (git) files itself but answers LFS-like weight
files (``cdn_suffixes``, ``*.safetensors`` and pickles by default) with a ``302`` to a
signed CDN URL on the same server, ``/cdn/<token>/<sha256>/<file>``, carrying
``X-Repo-Commit``, ``X-Linked-Size``, ``X-Linked-Etag`` and ``ETag``; the CDN path serves
the ranges. ``HubEmulator(root, cdn=False)`` (or ``emu.cdn_suffixes = ()``) serves every
file from the resolver, as a proxy without redirects would. Signed URLs can be made to
expire (:class:`Faults` ``cdn_expire_after_*``). Faults are switched per test through
:class:`Faults`; every request and byte served is counted, resolver (any path containing
``/resolve/``, what the Hub's "resolvers" rate limit counts) and CDN separately, and the
``Authorization`` header of every request is recorded with its path.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import yaml

TOKEN_HEADER = "authorization"
# Files the Hub keeps in LFS/Xet storage and serves through its CDN.
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".onnx", ".h5")


@dataclass
class Faults:
    every_nth: int = 0  # every Nth request (API, resolver or CDN) fails with ``status``
    status: int = 429  # 429 (with RateLimit reset) or 500
    drop_once_per_repo: bool = False  # cut one ranged body short per repo (resolver or CDN)
    full_body_repos: set[str] = field(default_factory=set)  # 200 instead of 206
    gated_repos: set[str] = field(default_factory=set)  # 401 without a token (resolver)
    # A signed CDN URL expires once it has served this many requests (0: never) ...
    cdn_expire_after_requests: int = 0
    # ... or this many seconds after it was issued (0: never).
    cdn_expire_after_seconds: float = 0.0
    cdn_expired_status: int = 403  # what an expired URL answers (CloudFront: 403; or 410)


@dataclass
class Counters:
    requests: int = 0  # every request, injected faults included
    bytes: int = 0  # every body byte sent
    resolver_requests: int = 0  # paths containing /resolve/, injected faults included
    cdn_requests: int = 0  # /cdn/ paths, injected faults included
    api_requests: int = 0  # /api/ paths
    expired: int = 0  # CDN requests refused because their signed URL had expired
    # per repo, requests that reached the repo (injected faults are not)
    per_repo_resolver: dict[str, int] = field(default_factory=dict)
    per_repo_cdn: dict[str, int] = field(default_factory=dict)
    per_repo_bytes: dict[str, int] = field(default_factory=dict)  # file bytes, both paths
    log: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, range)
    auth: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization or "")

    def resolver(self, repo: str) -> int:
        return self.per_repo_resolver.get(repo, 0)

    def cdn(self, repo: str) -> int:
        return self.per_repo_cdn.get(repo, 0)


@dataclass
class Grant:
    """One signed CDN URL: what it opens, when it was issued and how often it was used."""

    repo: str
    file: str
    issued: float
    uses: int = 0


def front_matter(readme: Path) -> dict:
    if not readme.is_file():
        return {}
    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    parts = text.split("---", 2)
    try:
        data = yaml.safe_load(parts[1]) if len(parts) == 3 else {}
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


class HubEmulator:
    def __init__(
        self, root: Path, token: str | None = None, page_size: int = 10, cdn: bool = True
    ) -> None:
        self.root = Path(root)
        self.token = token
        self.page_size = page_size
        # files whose name ends so are redirected to the CDN; () serves everything directly
        self.cdn_suffixes: tuple[str, ...] = LFS_SUFFIXES if cdn else ()
        self.faults = Faults()
        self.counters = Counters()
        self._lock = threading.Lock()
        self._dropped: set[str] = set()
        self._grants: dict[str, Grant] = {}  # signed URL token -> grant
        self.repos: dict[str, Path] = {}
        self.extra_sha: dict[str, str] = {}  # bump a repo's commit
        self.moved: dict[str, str] = {}  # old repo id -> served repo: resolve answers 307
        self.rescan()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cdn(self) -> bool:
        return bool(self.cdn_suffixes)

    @cdn.setter
    def cdn(self, on: bool) -> None:
        self.cdn_suffixes = LFS_SUFFIXES if on else ()

    def rescan(self) -> None:
        self.repos = {
            f"{a.name}/{m.name}": m
            for a in sorted(self.root.iterdir())
            if a.is_dir()
            for m in sorted(a.iterdir())
            if m.is_dir()
        }

    def start(self) -> HubEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def dropped(self) -> set[str]:
        """Repos whose connection was dropped mid-body."""
        return set(self._dropped)

    def reset_counters(self) -> None:
        with self._lock:
            self.counters = Counters()

    def expire_cdn_urls(self) -> None:
        """Make every signed CDN URL issued so far answer as expired."""
        with self._lock:
            for g in self._grants.values():
                g.issued = float("-inf")

    # -- repo data ------------------------------------------------------------------------

    def files(self, repo: str) -> list[str]:
        base = self.repos[repo]
        return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())

    def sha(self, repo: str) -> str:
        h = hashlib.sha1(repo.encode())
        h.update(self.extra_sha.get(repo, "").encode())
        for f in self.files(repo):
            st = (self.repos[repo] / f).stat()
            h.update(f"{f}:{st.st_size}".encode())
        return h.hexdigest()

    def info(self, repo: str) -> dict:
        card = front_matter(self.repos[repo] / "README.md")
        mtime = max((self.repos[repo] / f).stat().st_mtime for f in self.files(repo))
        return {
            "id": repo,
            "modelId": repo,
            "author": repo.split("/")[0],
            "sha": self.sha(repo),
            "siblings": [{"rfilename": f} for f in self.files(repo)],
            "cardData": card,
            "tags": list(card.get("tags") or []),
            "createdAt": "2025-01-01T00:00:00.000Z",
            "lastModified": _iso(mtime),
            "gated": "auto" if repo in self.faults.gated_repos else False,
            "private": False,
            "downloads": 7,
            "likes": 1,
        }

    # -- HTTP -----------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        emu = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms stall

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                emu._serve(self, head=True)

            def do_GET(self) -> None:
                emu._serve(self, head=False)

        return Handler

    def _send(self, h: BaseHTTPRequestHandler, code: int, body: bytes, headers: dict, head: bool):
        h.send_response(code)
        headers.setdefault("Content-Length", str(len(body)))
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if not head:
            h.wfile.write(body)
            with self._lock:
                self.counters.bytes += len(body)

    def _json(self, h, obj, head, extra=None):
        body = json.dumps(obj).encode()
        self._send(h, 200, body, {"Content-Type": "application/json", **(extra or {})}, head)

    def _error(self, h, code, msg, head, extra=None):
        body = json.dumps({"error": msg}).encode()
        self._send(h, code, body, {"Content-Type": "application/json", **(extra or {})}, head)

    def _serve(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        split = urlsplit(h.path)
        path = unquote(split.path)
        query = parse_qs(split.query)
        rng = h.headers.get("Range", "")
        with self._lock:
            c = self.counters
            c.requests += 1
            n = c.requests
            c.log.append(("HEAD" if head else "GET", path, rng))
            c.auth.append((path, h.headers.get(TOKEN_HEADER, "")))
            if "/resolve/" in path:
                c.resolver_requests += 1
            elif path.startswith("/cdn/"):
                c.cdn_requests += 1
            elif path.startswith("/api/"):
                c.api_requests += 1
        f = self.faults
        if f.every_nth and n % f.every_nth == 0:
            if f.status == 429:
                bucket = "resolvers" if "/resolve/" in path else "api"
                extra = {"RateLimit": f'"{bucket}";r=0;t=0', "Retry-After": "0"}
                return self._error(h, 429, "rate limited", head, extra)
            return self._error(h, f.status, "server error", head)
        if path == "/api/models":
            return self._list(h, query, head)
        if path.startswith("/api/models/"):
            rest = path[len("/api/models/") :]
            repo, _, rev = rest.partition("/revision/")
            if repo not in self.repos:
                return self._error(
                    h, 404, "Repository not found", head, {"X-Error-Code": "RepoNotFound"}
                )
            return self._json(h, self.info(repo), head)
        if path.startswith("/cdn/"):
            return self._cdn(h, path, rng, head)
        if "/resolve/" in path:
            repo, _, tail = path.lstrip("/").partition("/resolve/")
            rev, _, file = tail.partition("/")
            return self._resolve(h, repo, file, rng, head, rev)
        self._error(h, 404, "not found", head)

    def _list(self, h, query, head) -> None:
        repos = list(self.repos)
        if "search" in query:
            repos = [r for r in repos if query["search"][0].lower() in r.lower()]
        if "author" in query:
            repos = [r for r in repos if r.split("/")[0] == query["author"][0]]
        offset = int(query.get("offset", ["0"])[0])
        page = repos[offset : offset + self.page_size]
        extra = {}
        if offset + self.page_size < len(repos):
            q = {k: v for k, v in query.items() if k != "offset"}
            nxt = urlencode(
                [*((k, x) for k, vs in q.items() for x in vs), ("offset", offset + self.page_size)]
            )
            extra["Link"] = f'<{self.url}/api/models?{nxt}>; rel="next"'
        self._json(h, [self.info(r) for r in page], head, extra)

    def _etags(self, repo: str, file: str) -> tuple[str, str]:
        """(git blob oid of the LFS pointer, sha256 of the content), made up from the stat."""
        st = (self.repos[repo] / file).stat()
        key = f"{repo}/{file}:{st.st_size}:{st.st_mtime_ns}".encode()
        return hashlib.sha1(key).hexdigest(), hashlib.sha256(key).hexdigest()

    def _resolve(self, h, repo, file, rng, head, rev: str = "main") -> None:
        if repo in self.moved:  # a renamed repo: the Hub redirects to its new resolve URL
            new = self.moved[repo]
            with self._lock:
                c = self.counters
                c.per_repo_resolver[new] = c.per_repo_resolver.get(new, 0) + 1
            location = f"/{new}/resolve/{quote(rev, safe='')}/{quote(file)}"
            return self._send(h, 307, b"", {"Location": location}, head)
        if repo not in self.repos:
            return self._error(
                h, 404, "Repository not found", head, {"X-Error-Code": "RepoNotFound"}
            )
        with self._lock:
            c = self.counters
            c.per_repo_resolver[repo] = c.per_repo_resolver.get(repo, 0) + 1
        if repo in self.faults.gated_repos:
            auth = h.headers.get(TOKEN_HEADER, "")
            if not self.token or auth != f"Bearer {self.token}":
                return self._error(h, 401, "gated repo", head, {"X-Error-Code": "GatedRepo"})
        target = self.repos[repo] / file
        if not file or ".." in file.split("/") or not target.is_file():
            return self._error(h, 404, "Entry not found", head, {"X-Error-Code": "EntryNotFound"})
        size = target.stat().st_size
        oid, sha256 = self._etags(repo, file)
        if file.endswith(self.cdn_suffixes):
            token = secrets.token_urlsafe(16)
            with self._lock:
                self._grants[token] = Grant(repo, file, time.monotonic())
            extra = {
                "Location": f"{self.url}/cdn/{token}/{sha256}/{quote(file)}",
                "X-Repo-Commit": self.sha(repo),
                "X-Linked-Size": str(size),
                "X-Linked-Etag": f'"{sha256}"',
                "ETag": f'"{oid}"',
                "Accept-Ranges": "bytes",
            }
            return self._send(h, 302, b"", extra, head)
        base = {"X-Repo-Commit": self.sha(repo), "ETag": f'"{oid}"', "Accept-Ranges": "bytes"}
        self._body(h, repo, target, size, rng, head, base)

    def _cdn(self, h, path, rng, head) -> None:
        token, _, rest = path[len("/cdn/") :].partition("/")
        _sha, _, file = rest.partition("/")
        now = time.monotonic()
        f = self.faults
        with self._lock:
            grant = self._grants.get(token)
            if grant is not None:
                grant.uses += 1
                self.counters.per_repo_cdn[grant.repo] = (
                    self.counters.per_repo_cdn.get(grant.repo, 0) + 1
                )
                expired = (
                    f.cdn_expire_after_requests and grant.uses > f.cdn_expire_after_requests
                ) or (
                    f.cdn_expire_after_seconds and now - grant.issued > f.cdn_expire_after_seconds
                )
                expired = expired or grant.issued == float("-inf")
                if expired:
                    self.counters.expired += 1
        if grant is None or grant.file != file:
            return self._error(h, 403, "AccessDenied: bad signature", head)
        if expired:
            return self._error(h, f.cdn_expired_status, "AccessDenied: Request has expired", head)
        target = self.repos[grant.repo] / grant.file
        if not target.is_file():
            return self._error(h, 404, "NoSuchKey", head)
        _oid, sha256 = self._etags(grant.repo, grant.file)
        base = {"ETag": f'"{sha256}"', "Accept-Ranges": "bytes", "Cache-Control": "private"}
        self._body(h, grant.repo, target, target.stat().st_size, rng, head, base)

    def _body(self, h, repo: str, target: Path, size: int, rng: str, head: bool, base: dict):
        """The file, or the one range asked for (206), with the faults that apply to bodies."""
        if not rng or repo in self.faults.full_body_repos:
            body = b"" if head else target.read_bytes()
            base["Content-Length"] = str(size)
            return self._send(h, 200, body, base, head)
        start_s, _, end_s = rng.removeprefix("bytes=").partition("-")
        start = int(start_s)
        end = min(int(end_s) if end_s else size - 1, size - 1)
        if start >= size or end < start:
            return self._error(
                h, 416, "range not satisfiable", head, {"Content-Range": f"bytes */{size}"}
            )
        with open(target, "rb") as fh:
            fh.seek(start)
            body = fh.read(end - start + 1)
        base["Content-Range"] = f"bytes {start}-{end}/{size}"
        with self._lock:
            c = self.counters
            c.per_repo_bytes[repo] = c.per_repo_bytes.get(repo, 0) + (0 if head else len(body))
            drop = self.faults.drop_once_per_repo and repo not in self._dropped and not head
            if drop:
                self._dropped.add(repo)
        if drop:
            h.send_response(206)
            for k, v in {**base, "Content-Length": str(len(body))}.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return
        self._send(h, 206, body, base, head)


def _iso(ts: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
