"""A :class:`~heritage.formats.source.ByteSource` over HTTP range requests.

Each read is one ``GET`` with a single ``Range`` header; the reply must be a ``206`` whose
``Content-Range`` matches the request exactly. A ``200`` with the whole body is refused
rather than downloaded. The file size comes from the ``Content-Range`` total of the first
read, which fetches the head of the file (where a safetensors header lives), so no ``HEAD``
request is spent on it. Transient failures (5xx, timeouts, dropped connections) are
retried with exponential backoff; a ``429`` waits until the reset its ``RateLimit`` or
``Retry-After`` header announces, never longer than ``max_wait``. Tokens never appear in
error text: the ``Authorization`` header is redacted wherever a request is described.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from heritage.formats.errors import CheckpointError
from heritage.formats.safetensors_reader import HEADER_PROBE_BYTES
from heritage.formats.source import ReadStats, coalesce, split_spans

# Without a budget, ranges closer than this share a request (a round trip costs more).
HTTP_COALESCE_GAP = 64 * 1024
RETRY_STATUSES = {408, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")
_UNSATISFIED_RANGE = re.compile(r"^bytes \*/(\d+)$")
_RATELIMIT_RESET = re.compile(r"(?:^|;)\s*t=(\d+)")
_BEARER = re.compile(r"(Bearer\s+)\S+", re.IGNORECASE)
_HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{6,}")


class HttpSourceError(CheckpointError):
    """A remote file that could not be read: names the URL and the reason."""


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


class HttpRangeSource:
    """Random access to one remote file through HTTP ``Range`` requests.

    Unless ``size`` is given, the constructor reads the first ``probe`` bytes: the
    ``Content-Range`` total of that reply is the file size, and the bytes are kept, so a
    header that fits costs no further request.
    """

    def __init__(
        self,
        url: str,
        session: Any = None,
        headers: Mapping[str, str] | None = None,
        *,
        size: int | None = None,
        probe: int = HEADER_PROBE_BYTES,
        coalesce_gap: int = HTTP_COALESCE_GAP,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        max_wait: float = 60.0,
        timeout: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.name = url
        self.session = session if session is not None else _default_session()
        self.headers = dict(headers) if headers is not None else _default_headers()
        self.coalesce_gap = coalesce_gap
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_wait = max_wait
        self.timeout = timeout
        self.stats = ReadStats()
        self._sleep = sleep
        self._head = b""  # the first bytes of the file, kept from the probe
        if size is not None:
            self.size = size
        else:
            self.size, self._head = self._probe(max(probe, 1))

    # -- requests -------------------------------------------------------------------------

    def _fail(self, reason: str) -> HttpSourceError:
        return HttpSourceError(self.url, redact(reason, self.headers))

    def _request(self, method: str, extra: Mapping[str, str]) -> Any:
        """One request with retries; returns the response of the first non-retryable status."""
        headers = {**self.headers, "Accept-Encoding": "identity", **extra}
        delay = self.backoff
        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self.stats.retries += 1
            try:
                resp = self.session.request(
                    method,
                    self.url,
                    headers=headers,
                    timeout=self.timeout,
                    follow_redirects=True,  # the Hub redirects LFS files to a CDN
                )
                if method == "GET":
                    _ = resp.content  # a dropped connection surfaces here
            except Exception as exc:  # transport errors: timeouts, resets, truncated bodies
                if not _is_transport_error(exc):
                    raise
                self.stats.requests += 1
                last = f"{type(exc).__name__}: {exc}"
            else:
                self.stats.requests += 1
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
        raise self._fail(f"{method} failed after {self.retries + 1} attempts ({last})")

    def _check_status(self, resp: Any, what: str) -> None:
        code = resp.status_code
        if code in (401, 403):
            raise self._fail(f"gated or private: HTTP {code} on {what}")
        if code == 404:
            raise self._fail(f"not found: HTTP 404 on {what}")

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

    def _probe(self, n: int) -> tuple[int, bytes]:
        """(file size, first bytes) from one ``bytes=0-(n-1)`` GET."""
        resp = self._request("GET", {"Range": f"bytes=0-{n - 1}"})
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
                f"Content-Range {resp.headers.get('content-range')!r} does not match bytes=0-{n - 1}"
            )
        body = resp.content
        if len(body) != stop + 1:
            raise self._fail(f"206 body is {len(body)} bytes, expected {stop + 1}")
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
        resp = self._request("GET", {"Range": f"bytes={offset}-{end}"})
        start, stop, total = self._range_reply(resp)
        if (start, stop) != (offset, end) or (total != "*" and int(total) != self.size):
            raise self._fail(
                f"Content-Range {resp.headers.get('content-range')!r} does not match "
                f"bytes={offset}-{end} of {self.size}"
            )
        body = resp.content
        if len(body) != length:
            raise self._fail(f"206 body is {len(body)} bytes, expected {length}")
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


def _is_transport_error(exc: Exception) -> bool:
    try:
        from huggingface_hub.utils import httpx
    except ImportError:  # pragma: no cover
        return isinstance(exc, (ConnectionError, TimeoutError, OSError))
    return isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError))
