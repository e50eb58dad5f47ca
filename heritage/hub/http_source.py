"""A :class:`~heritage.formats.source.ByteSource` over HTTP range requests.

**Resolving.** The first request for a file is a ranged ``GET`` to its ``/resolve/`` URL,
sent without following redirects. The Hub answers weight files kept in LFS/Xet storage
with a ``302`` to a signed CDN URL (``Location``, with ``X-Linked-Size``,
``X-Linked-Etag`` and ``X-Repo-Commit``): that reply is the only resolver request the file
costs (the Hub's "resolvers" rate limit counts every URL containing ``/resolve/``), and
every range read, the header's included, then goes straight to the CDN location, as
huggingface_hub does "to save an extra redirect". Requests to the CDN never carry the
``Authorization`` header (nor cookies), whatever its host, and the signed URL never
appears in error text. A ``403`` or ``410`` from the CDN means the signed URL expired: the
file is resolved again (one ``HEAD``, a resolver request) and the read retried; a read
that is refused again by a URL it resolved itself fails, and a file is re-resolved at
most ``max_reresolves`` times. A resolver that answers the range itself (``206``: a file
kept in git such as a shard index, or a proxy or mirror without redirects) is read
directly, every read a resolver request.

**Replies.** Each read is one ``GET`` with a single ``Range`` header; the reply must be a
``206`` whose ``Content-Range`` matches the request exactly. A ``200`` with the whole body
is refused rather than downloaded. The file size comes from the ``Content-Range`` total of
the first read, which fetches the head of the file (where a safetensors header lives), so
no request is spent on it alone; an ``X-Linked-Size`` must agree with it. Transient
failures (5xx, timeouts, dropped connections) are retried with exponential backoff; a
``429`` waits until the reset its ``RateLimit`` or ``Retry-After`` header announces, never
longer than ``max_wait``. Tokens never appear in error text: the ``Authorization`` header
is redacted wherever a request is described.

A source may be read from several threads at once (a checkpoint's ``ReadBudget`` with
``concurrency`` > 1): counters and the CDN location are guarded by locks, and concurrent
reads that find the signed URL expired re-resolve it once between them.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

from heritage.errors import GatedRepo, HttpError, NotFound
from heritage.formats.safetensors_reader import HEADER_PROBE_BYTES
from heritage.formats.source import ReadStats, coalesce, split_spans

# Without a budget, ranges closer than this share a request (a round trip costs more).
HTTP_COALESCE_GAP = 64 * 1024
# First read of a file on the CDN: requests there do not spend the Hub's rate limit, so
# read less ahead (most shard headers fit) and fetch a longer header's rest in a second read.
CDN_HEADER_PROBE_BYTES = 16 * 1024
# Re-resolves of one file after its signed CDN URL expired (each is a resolver request).
MAX_RERESOLVES = 8
# Redirects from the resolver to another resolver URL on the same host (a renamed repo).
MAX_REDIRECTS = 5
RETRY_STATUSES = {408, 500, 502, 503, 504}
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
EXPIRED_STATUSES = {403, 410}  # what a CDN answers for an expired or revoked signed URL
_NOT_FOR_CDN = {"authorization", "cookie"}  # request headers never sent to a CDN location
RESOLVER, CDN = "resolver", "cdn"
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE = re.compile(r"^bytes \*/(\d+)$")
_RATELIMIT_RESET = re.compile(r"(?:^|;)\s*t=(\d+)")
_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)
_HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{6,}")


def redact(text: str, headers: Mapping[str, str] | None = None) -> str:
    """``text`` with bearer tokens, ``hf_…`` tokens and the given Authorization value removed."""
    for key, value in (headers or {}).items():
        if key.lower() == "authorization" and value:
            text = text.replace(value, "<redacted>")
            token = value.split(" ", 1)[-1]
            if token:
                text = text.replace(token, "<redacted>")
    text = _BEARER.sub(r"\1<redacted>", text)
    return _HF_TOKEN.sub("<redacted>", text)


def _default_session() -> Any:
    from huggingface_hub.utils import get_session

    return get_session()


def _default_headers() -> dict[str, str]:
    from huggingface_hub.utils import build_hf_headers

    return dict(build_hf_headers())


def reset_wait(headers: Mapping[str, str], default: float) -> float:
    """Seconds to wait after a 429, from ``RateLimit: …;t=<s>`` or ``Retry-After``."""
    rl = headers.get("ratelimit") or headers.get("RateLimit")
    if rl:
        m = _RATELIMIT_RESET.search(rl)
        if m:
            return float(m.group(1))
    ra = headers.get("retry-after") or headers.get("Retry-After")
    if ra:
        try:
            return float(ra)
        except ValueError:
            pass
    return default


@dataclass
class HttpStats(ReadStats):
    """Requests split by where they went: the Hub's resolver (rate limited) or the CDN.

    ``requests``, ``retries`` and ``bytes_read`` cover both. A re-resolve after an expired
    CDN URL is a resolver request of its own (not a retry); the CDN read it repeats is a
    CDN retry.
    """

    resolver_requests: int = 0
    resolver_retries: int = 0
    cdn_requests: int = 0
    cdn_retries: int = 0
    reresolves: int = 0

    @property
    def resolver_reads(self) -> int:
        """Resolver requests the reader asked for (retries not counted)."""
        return self.resolver_requests - self.resolver_retries

    @property
    def cdn_reads(self) -> int:
        """CDN requests the reader asked for (retries not counted)."""
        return self.cdn_requests - self.cdn_retries


class HttpRangeSource:
    """Random access to one remote file through HTTP ``Range`` requests.

    ``url`` is the file's resolve URL. Unless ``size`` is given, the constructor reads the
    first ``probe`` bytes (``cdn_probe`` once the resolver redirected to a CDN): the
    ``Content-Range`` total of that reply is the file size, and the bytes are kept, so a
    header that fits costs no further request. With ``size`` given, the file is resolved
    by its first read.
    """

    def __init__(
        self,
        url: str,
        session: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        size: int | None = None,
        probe: int = HEADER_PROBE_BYTES,
        cdn_probe: int = CDN_HEADER_PROBE_BYTES,
        coalesce_gap: int = HTTP_COALESCE_GAP,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_wait: float = 60.0,
        timeout: float = 30.0,
        max_reresolves: int = MAX_RERESOLVES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.name = url
        self.session = session if session is not None else _default_session()
        self.headers = dict(headers) if headers is not None else _default_headers()
        self._cdn_headers = {k: v for k, v in self.headers.items() if k.lower() not in _NOT_FOR_CDN}
        self.coalesce_gap = coalesce_gap
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_wait = max_wait
        self.timeout = timeout
        self.max_reresolves = max_reresolves
        self.stats = HttpStats()
        self._sleep = sleep
        self._lock = threading.Lock()  # counters and the location
        self._resolve_lock = threading.Lock()  # one resolution at a time
        self._resolver_url = url  # the resolve URL, after same-host resolver redirects
        self._resolved = False  # the resolver has said where the bytes are
        self._location: str | None = None  # signed CDN URL; None: read the resolver
        self._generation = 0  # bumped by every (re-)resolution
        self._worked = 0  # latest generation whose location served a read
        self._secrets: set[str] = set()  # signed URLs, scrubbed from error text
        self.linked_size: int | None = None  # X-Linked-Size of the redirect
        self.linked_etag: str | None = None  # X-Linked-Etag (else ETag) of the redirect
        self.commit: str | None = None  # X-Repo-Commit of the resolver's reply
        self._head = b""  # the first bytes of the file, kept from the probe
        if size is not None:
            self.size = size
            self.probe_bytes = probe
        else:
            self.size, self._head = self._probe(max(probe, 1), max(cdn_probe, 1))
            # what a header parser should ask for first: what the probe already holds
            self.probe_bytes = max(len(self._head), 8)

    @property
    def via_cdn(self) -> bool:
        """Whether range reads go to a CDN location (the resolver redirected there)."""
        return self._location is not None

    # -- requests -------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "<signed CDN URL>")
        return redact(text, self.headers)

    def _fail(
        self, reason: str, status: int | None = None, kind: type[HttpError] = HttpError
    ) -> HttpError:
        return kind(self.url, self._scrub(reason), status)

    def _count(self, kind: str, retry: bool) -> None:
        with self._lock:
            s = self.stats
            s.requests += 1
            s.retries += retry
            if kind == CDN:
                s.cdn_requests += 1
                s.cdn_retries += retry
            else:
                s.resolver_requests += 1
                s.resolver_retries += retry

    def _request(
        self,
        method: str,
        url: str,
        kind: str,
        extra: Mapping[str, str],
        *,
        retry: bool = False,
    ) -> Any:
        """One request with retries; returns the response of the first non-retryable status.

        Redirects are never followed here. ``kind`` picks the headers (no Authorization for
        the CDN) and the counter; ``retry`` marks the first attempt as a retry too.
        """
        base = self.headers if kind == RESOLVER else self._cdn_headers
        headers = {**base, "Accept-Encoding": "identity", **extra}
        what = f"{method} to the CDN" if kind == CDN else method
        delay = self.backoff
        last = ""
        for attempt in range(self.retries + 1):
            again = retry or attempt > 0
            try:
                resp = self.session.request(
                    method, url, headers=headers, timeout=self.timeout, follow_redirects=False
                )
                if method == "GET":
                    _ = resp.content  # a dropped connection surfaces here
            except Exception as exc:  # transport errors: timeouts, resets, truncated bodies
                if not _is_transport_error(exc):
                    if _is_http_error(exc):  # a bad URL or protocol: no retry, no URL shown
                        raise self._fail(f"{what} failed: {type(exc).__name__}") from None
                    raise
                self._count(kind, again)
                last = f"{type(exc).__name__}: {exc}"
            else:
                self._count(kind, again)
                if resp.status_code == 429:
                    wait = reset_wait(resp.headers, delay)
                    if wait > self.max_wait:
                        raise self._fail(f"rate limited (429) for {wait:.0f} s, over the limit")
                    last = "429 rate limited"
                    if attempt < self.retries:
                        self._sleep(max(wait, 0.0))
                    continue
                if resp.status_code not in RETRY_STATUSES:
                    return resp
                last = f"HTTP {resp.status_code}"
            if attempt < self.retries:
                self._sleep(delay)
                delay = min(delay * 2, self.max_backoff)
        raise self._fail(f"{what} failed after {self.retries + 1} attempts ({last})")

    def _resolve(self, method: str, extra: Mapping[str, str]) -> Any | None:
        """Ask the resolver. A redirect to a CDN is taken and gives None; any other reply
        (a 206 served directly, an error) is returned. Call with ``_resolve_lock`` held."""
        url = self._resolver_url
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._request(method, url, RESOLVER, extra)
            if resp.status_code not in REDIRECT_STATUSES:
                self._resolver_url = url
                return resp
            location = resp.headers.get("location")
            if not location:
                raise self._fail(f"HTTP {resp.status_code} redirect without a Location")
            target = urljoin(url, location)
            split = urlsplit(target)
            if split.scheme not in ("http", "https"):
                raise self._fail(f"redirect to a {split.scheme!r} URL refused")
            if _origin(target) == _origin(url) and "/resolve/" in split.path:
                url = target  # still the resolver (a renamed repo): same host, same token
                continue
            self._take_location(target, resp.headers)
            return None
        raise self._fail(f"more than {MAX_REDIRECTS} redirects between resolver URLs")

    def _take_location(self, target: str, headers: Mapping[str, str]) -> None:
        """Read ranges from ``target`` from now on: the CDN location of a redirect."""
        split = urlsplit(target)
        secrets = {target, split.path, f"{split.path}?{split.query}"}
        etag = _etag(headers.get("x-linked-etag") or headers.get("etag"))
        linked = headers.get("x-linked-size")
        with self._lock:
            self._secrets |= {s for s in secrets if len(s) > 1}
            if self.linked_etag is not None and etag is not None and etag != self.linked_etag:
                raise self._fail("the file changed while it was read (its linked ETag differs)")
            self.linked_etag = etag or self.linked_etag
            self.commit = headers.get("x-repo-commit") or self.commit
            if linked is not None:
                try:
                    self.linked_size = int(linked)
                except ValueError:
                    raise self._fail(f"bad X-Linked-Size {linked!r}") from None
            self._location = target
            self._generation += 1
            self._resolved = True

    def _reresolve(self, code: int) -> None:
        """A new CDN location after the CDN answered ``code`` (403/410): one resolver HEAD.

        Call with ``_resolve_lock`` held."""
        with self._lock:
            if self.stats.reresolves >= self.max_reresolves:
                raise self._fail(
                    f"the CDN refused the signed URL (HTTP {code}) after "
                    f"{self.stats.reresolves} re-resolves; gave up"
                )
            self.stats.reresolves += 1
        resp = self._resolve("HEAD", {})
        if resp is None:
            return
        self._check_status(resp, "HEAD")
        if 200 <= resp.status_code < 300:  # the resolver now serves the file itself
            with self._lock:
                self._location = None
                self._generation += 1
            return
        raise self._fail(
            f"re-resolving after HTTP {code} from the CDN returned HTTP {resp.status_code}"
        )

    def _get(self, rng: str) -> Any:
        """The reply to ``GET`` with ``Range: rng``: from the CDN once resolved there."""
        extra = {"Range": rng}
        if not self._resolved:
            with self._resolve_lock:
                if not self._resolved:
                    resp = self._resolve("GET", extra)
                    self._resolved = True
                    if resp is not None:  # served directly: no CDN for this file
                        return resp
        if self._location is None:
            return self._request("GET", self._resolver_url, RESOLVER, extra)
        return self._cdn_get(extra)

    def _cdn_get(self, extra: Mapping[str, str]) -> Any:
        """``GET`` from the CDN location, resolving it again if the signed URL expired.

        Concurrent reads that find the same location expired resolve it once between them.
        A read fails when a location it resolved itself is refused before serving any read
        (the CDN refuses the file, it is not an expiry); ``max_reresolves`` bounds the rest.
        """
        mine = -1  # generation of the location this read resolved itself
        retry = False
        while True:
            with self._lock:
                location, generation = self._location, self._generation
            if location is None:  # a re-resolve found the file served directly
                return self._request("GET", self._resolver_url, RESOLVER, extra, retry=retry)
            resp = self._request("GET", location, CDN, extra, retry=retry)
            code = resp.status_code
            if code not in EXPIRED_STATUSES:
                if code < 400:
                    with self._lock:
                        self._worked = max(self._worked, generation)
                return resp
            if generation == mine and self._worked < mine:  # it never served a read
                raise self._fail(f"the CDN refused a freshly resolved URL (HTTP {code})")
            with self._resolve_lock:
                if self._generation == generation:  # nobody re-resolved since: do it
                    self._reresolve(code)
                    mine = self._generation
            retry = True

    def _check_status(self, resp: Any, what: str) -> None:
        code = resp.status_code
        error_code = resp.headers.get("X-Error-Code", "")
        if code in (401, 403) or error_code == "GatedRepo":
            raise self._fail(f"gated or private: HTTP {code} on {what}", code, GatedRepo)
        if code == 404:
            why = f" ({error_code})" if error_code else ""
            raise self._fail(f"not found: HTTP 404 on {what}{why}", code, NotFound)

    def _range_reply(self, resp: Any) -> tuple[int, int, str]:
        """(start, stop, total) of a reply that must be a plain 206 with a Content-Range."""
        self._check_status(resp, "GET")
        if resp.status_code == 200:
            raise self._fail(
                "server ignored the Range header and sent the whole file (HTTP 200); refused"
            )
        if resp.status_code != 206:
            raise self._fail(f"range GET returned HTTP {resp.status_code}")
        encoding = resp.headers.get("content-encoding", "identity")
        if encoding != "identity":
            raise self._fail(f"206 reply is {encoding}-encoded; refused")
        m = _CONTENT_RANGE.match(resp.headers.get("content-range", ""))
        if not m:
            raise self._fail("206 reply without a valid Content-Range")
        return int(m.group(1)), int(m.group(2)), m.group(3)

    def _probe(self, n: int, cdn_n: int) -> tuple[int, bytes]:
        """(file size, first bytes): resolve the file with a ``bytes=0-(n-1)`` GET, which
        the resolver either serves or redirects; then ``bytes=0-(cdn_n-1)`` from the CDN."""
        rng = f"bytes=0-{n - 1}"
        with self._resolve_lock:
            resp = self._resolve("GET", {"Range": rng})
            self._resolved = True
        if resp is None:
            n = min(n, cdn_n)
            rng = f"bytes=0-{n - 1}"
            resp = self._cdn_get({"Range": rng})
        if resp.status_code == 416:  # an empty file has no byte 0
            m = _UNSATISFIED_RANGE.match(resp.headers.get("content-range", ""))
            if m and int(m.group(1)) == 0:
                return 0, b""
            raise self._fail("range GET of the first bytes returned HTTP 416")
        start, stop, total = self._range_reply(resp)
        if total == "*":
            raise self._fail("206 reply does not give the file size (Content-Range total '*')")
        size = int(total)
        if (start, stop) != (0, min(n, size) - 1):
            raise self._fail(
                f"Content-Range {resp.headers.get('content-range')!r} does not match {rng}"
            )
        if self.linked_size is not None and self.linked_size != size:
            raise self._fail(
                f"the CDN file is {size} bytes but the resolver said {self.linked_size}"
            )
        body = resp.content
        if len(body) != stop + 1:
            raise self._fail(f"206 body is {len(body)} bytes, expected {stop + 1}")
        with self._lock:
            self.stats.bytes_read += len(body)
        return size, body

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise self._fail(
                f"read of {length} bytes at offset {offset} is past end of file ({self.size} bytes)"
            )
        if length == 0:
            return b""
        head = len(self._head)
        if offset + length <= head:  # already fetched by the probe
            return self._head[offset : offset + length]
        if offset < head:
            return self._head[offset:] + self.read(head, offset + length - head)
        end = offset + length - 1
        resp = self._get(f"bytes={offset}-{end}")
        start, stop, total = self._range_reply(resp)
        if (start, stop) != (offset, end) or (total != "*" and int(total) != self.size):
            raise self._fail(
                f"Content-Range {resp.headers.get('content-range')!r} does not match "
                f"bytes={offset}-{end} of {self.size}"
            )
        body = resp.content
        if len(body) != length:
            raise self._fail(f"206 body is {len(body)} bytes, expected {length}")
        with self._lock:
            self.stats.bytes_read += length
        return body

    def read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """The bytes of each range; ranges within ``coalesce_gap`` share a request.

        A checkpoint with a ``read_budget`` plans its own spans instead (``plan_spans``).
        """
        spans = coalesce(ranges, self.coalesce_gap)
        blobs = [self.read(off, length) for off, length, _ in spans]
        return split_spans(ranges, spans, blobs)

    def close(self) -> None:
        """The session is shared and owned by the caller; nothing to release."""


def _origin(url: str) -> tuple[str, str]:
    split = urlsplit(url)
    return split.scheme.lower(), split.netloc.lower()


def _etag(value: str | None) -> str | None:
    """An ETag without ``W/`` and quotes, as huggingface_hub normalises it."""
    if not value:
        return None
    return value.removeprefix("W/").strip('"') or None


def _is_transport_error(exc: Exception) -> bool:
    try:
        from huggingface_hub.utils import httpx
    except ImportError:  # pragma: no cover
        return isinstance(exc, (ConnectionError, TimeoutError, OSError))
    return isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError))


def _is_http_error(exc: Exception) -> bool:
    """An HTTP client error that is not transient (bad URL, unsupported protocol, …)."""
    try:
        from huggingface_hub.utils import httpx
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError))
