"""Byte-range sources: the one way readers touch checkpoint bytes.

Readers ask for ranges, never for whole files, so the same parsing code serves a local
file (``pread``) and an HTTP range reader, and every byte read is counted.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar, runtime_checkable

from heritage.errors import BadCheckpoint

# Ranges closer than this are read in one request: a small over-read beats a round trip.
# Local reads are cheap, so only ranges within a page merge; HTTP sources merge wider.
DEFAULT_COALESCE_GAP = 4 * 1024


@runtime_checkable
class ByteSource(Protocol):
    """Random access to the bytes of one file."""

    name: str
    size: int
    stats: ReadStats

    def read(self, offset: int, length: int) -> bytes: ...

    def read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]: ...


@dataclass
class ReadStats:
    """What a source has read so far, for benchmarks and incremental crawls."""

    bytes_read: int = 0
    requests: int = 0  # every request sent, retries included
    retries: int = 0  # requests that repeated a failed one

    def add(self, n: int) -> None:
        self.bytes_read += n
        self.requests += 1

    @property
    def reads(self) -> int:
        """Requests the reader asked for (retries not counted): what a request budget spends."""
        return self.requests - self.retries


def coalesce(
    ranges: list[tuple[int, int]], gap: int = DEFAULT_COALESCE_GAP
) -> list[tuple[int, int, list[int]]]:
    """Merge (offset, length) ranges whose gaps are at most ``gap`` bytes.

    Returns (offset, length, member indices) for each merged span, in file order.
    """
    order = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
    spans: list[tuple[int, int, list[int]]] = []
    for i in order:
        off, length = ranges[i]
        if spans:
            s_off, s_len, members = spans[-1]
            if off <= s_off + s_len + gap:
                end = max(s_off + s_len, off + length)
                spans[-1] = (s_off, end - s_off, members + [i])
                continue
        spans.append((off, length, [i]))
    return spans


Span = tuple[int, int, list[int]]
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class ReadBudget:
    """How many range requests one batch of reads may take, and what over-read that may cost.

    Remote requests are slow and rate limited, so neighbouring ranges are merged until the
    batch fits ``max_requests``, closest neighbours first, which keeps the unwanted bytes
    read in between as small as the request count allows. ``max_extra_bytes`` bounds those
    unwanted bytes, so on a large file the byte limit wins over the request count.
    ``concurrency`` is how many of the batch's requests may be in flight at once.
    """

    max_requests: int | None = None  # None: no request limit, only gaps <= merge_gap merge
    max_extra_bytes: int = 1024 * 1024
    merge_gap: int = DEFAULT_COALESCE_GAP  # gaps this small always merge
    concurrency: int = 1  # reads in flight at once (the source must be thread-safe if > 1)


def plan_spans(
    ranges: Mapping[K, list[tuple[int, int]]], budget: ReadBudget
) -> dict[K, list[Span]]:
    """Merge each file's (offset, length) ranges into spans that fit the budget.

    Gaps up to ``budget.merge_gap`` always merge. Then, while the spans of all files
    together exceed ``budget.max_requests``, the smallest remaining gap (in any file) is
    merged, unless that would take the unwanted bytes past ``budget.max_extra_bytes``.
    Merging smallest-first keeps the largest gaps as the split points, which reads the
    fewest bytes for a given number of requests. Spans never cross files; a file with
    ranges gets at least one span. Returns (offset, length, member indices) per span.
    """
    spans = {k: coalesce(r, budget.merge_gap) for k, r in ranges.items()}
    total = sum(len(s) for s in spans.values())
    if budget.max_requests is None or total <= budget.max_requests:
        return spans
    gaps = sorted(
        (s[i + 1][0] - (s[i][0] + s[i][1]), n, i)
        for n, s in enumerate(spans.values())
        for i in range(len(s) - 1)
    )
    keys = list(spans)
    merge: dict[int, set[int]] = {}  # file number -> indices i whose gap to i + 1 is merged
    extra = 0
    for gap, n, i in gaps:
        if total <= budget.max_requests or extra + gap > budget.max_extra_bytes:
            break
        merge.setdefault(n, set()).add(i)
        extra += gap
        total -= 1
    out: dict[K, list[Span]] = {}
    for n, k in enumerate(keys):
        merged: list[Span] = []
        joined = merge.get(n, set())
        for i, (off, length, members) in enumerate(spans[k]):
            if merged and i - 1 in joined:
                p_off, _p_len, p_members = merged[-1]
                merged[-1] = (p_off, off + length - p_off, p_members + members)
            else:
                merged.append((off, length, list(members)))
        out[k] = merged
    return out


def read_spans(
    sources: Mapping[K, ByteSource], jobs: list[tuple[K, int, int]], concurrency: int = 1
) -> list[bytes]:
    """The bytes of each (file, offset, length) job, in job order.

    With ``concurrency`` > 1 up to that many reads are in flight at once (threads); the
    first failure is raised once the reads already running have ended, and the reads not
    yet started are cancelled.
    """
    if concurrency <= 1 or len(jobs) <= 1:
        return [sources[k].read(off, n) for k, off, n in jobs]
    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(jobs)))
    try:
        futures = [pool.submit(sources[k].read, off, n) for k, off, n in jobs]
        return [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def split_spans(
    ranges: list[tuple[int, int]],
    spans: list[tuple[int, int, list[int]]],
    blobs: list[bytes],
) -> list[bytes]:
    """Cut the bytes of coalesced spans back into the requested ranges, in request order."""
    out: list[bytes] = [b""] * len(ranges)
    for (s_off, _s_len, members), blob in zip(spans, blobs, strict=True):
        view = memoryview(blob)
        for i in members:
            off, length = ranges[i]
            out[i] = bytes(view[off - s_off : off - s_off + length])
    return out


@dataclass
class LocalFileSource:
    """A local file read with ``pread``: no whole-file reads, no shared file position."""

    path: Path
    coalesce_gap: int = DEFAULT_COALESCE_GAP
    stats: ReadStats = field(default_factory=ReadStats)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.name = str(self.path)
        try:
            self._fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise BadCheckpoint(self.path, f"cannot open: {exc.strerror}") from None
        self.size = os.fstat(self._fd).st_size

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise BadCheckpoint(
                self.path,
                f"read of {length} bytes at offset {offset} is past end of file ({self.size} bytes)",
            )
        chunks = []
        done = 0
        while done < length:
            chunk = os.pread(self._fd, length - done, offset + done)
            if not chunk:
                raise BadCheckpoint(
                    self.path, f"file shrank while reading at offset {offset + done}"
                )
            chunks.append(chunk)
            done += len(chunk)
        self.stats.add(length)
        return b"".join(chunks)

    def read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        spans = coalesce(ranges, self.coalesce_gap)
        blobs = [self.read(off, length) for off, length, _ in spans]
        return split_spans(ranges, spans, blobs)

    def close(self) -> None:
        if getattr(self, "_fd", -1) >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


def read_planned(
    sources: Mapping[str, ByteSource],
    ranges: Mapping[str, list[tuple[int, int]]],
    budget: ReadBudget | Mapping[str, ReadBudget] | None = None,
) -> dict[str, list[bytes]]:
    """The bytes of each file's (offset, length) ranges, in request order.

    Without a budget each source merges near ranges its own way; with one (for all files,
    or per file name, a file left out getting ``ReadBudget()``), files of equal budgets
    share one plan, so the requests go where they save the most bytes.
    """
    if budget is None:
        return {file: sources[file].read_ranges(r) for file, r in ranges.items()}
    groups: dict[ReadBudget, dict[str, list[tuple[int, int]]]] = {}
    for file, r in ranges.items():
        b = budget.get(file, ReadBudget()) if isinstance(budget, Mapping) else budget
        groups.setdefault(b, {})[file] = r
    got: dict[str, list[bytes]] = {}
    for b, group in groups.items():
        spans = plan_spans(group, b)
        jobs = [(f, off, length) for f in group for off, length, _ in spans[f]]
        blobs = iter(read_spans(sources, jobs, b.concurrency))
        for file, r in group.items():
            got[file] = split_spans(r, spans[file], [next(blobs) for _ in spans[file]])
    return got


class WholeFileSource:
    """A small file read whole from ``origin`` in one request, then served from memory;
    ``stats`` stay the origin's, so what was fetched is still counted."""

    def __init__(self, origin: ByteSource) -> None:
        self.name = origin.name
        self.size = origin.size
        self.stats = origin.stats
        self._data = origin.read(0, origin.size)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise BadCheckpoint(
                self.name,
                f"read of {length} bytes at offset {offset} is past end of file ({self.size} bytes)",
            )
        return self._data[offset : offset + length]

    def read_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        return [self.read(off, n) for off, n in ranges]
