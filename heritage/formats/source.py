"""Byte-range sources: the one way readers touch checkpoint bytes.

Readers ask for ranges, never for whole files, so the same parsing code serves a local
file (``pread``) and an HTTP range reader, and every byte read is counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from heritage.formats.errors import BadCheckpoint

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
    requests: int = 0

    def add(self, n: int) -> None:
        self.bytes_read += n
        self.requests += 1


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
