"""Planning range reads to a budget: fewest bytes for the requests allowed."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from heritage.formats.source import ReadBudget, coalesce, plan_spans, read_spans, split_spans

KB = 1024


def _cost(spans: dict) -> tuple[int, int]:
    """(requests, bytes) a plan reads."""
    return sum(len(s) for s in spans.values()), sum(n for s in spans.values() for _, n, _ in s)


def _covers(ranges: dict, spans: dict) -> None:
    """Every range lies inside the span that lists it, and the bytes cut back out."""
    for k, r in ranges.items():
        data = bytes(range(256)) * 64  # 16 KB, offsets below are inside it
        blobs = [data[o : o + n] for o, n, _ in spans[k]]
        assert split_spans(r, spans[k], blobs) == [data[o : o + n] for o, n in r]
        assert sorted(i for _, _, m in spans[k] for i in m) == list(range(len(r)))


def test_near_ranges_always_merge_and_no_budget_means_no_more() -> None:
    ranges = {"a": [(0, 10), (10 + 4 * KB, 10), (100 * KB, 10)]}
    spans = plan_spans(ranges, ReadBudget(merge_gap=4 * KB))
    assert [(o, n) for o, n, _ in spans["a"]] == [(0, 4 * KB + 20), (100 * KB, 10)]


def test_smallest_gaps_merge_first_until_the_budget_fits() -> None:
    # gaps: 20 KB, 5 KB, 50 KB, 8 KB between five ranges of 100 bytes
    starts = [0, 20 * KB, 25 * KB, 75 * KB, 83 * KB]
    ranges = {"a": [(s, 100) for s in starts]}
    spans = plan_spans(ranges, ReadBudget(max_requests=2, merge_gap=1 * KB))
    # the 50 KB gap is the one left open; everything else merges
    assert [(o, o + n) for o, n, _ in spans["a"]] == [(0, 25 * KB + 100), (75 * KB, 83 * KB + 100)]
    spans = plan_spans(ranges, ReadBudget(max_requests=3, merge_gap=1 * KB))
    assert [o for o, _, _ in spans["a"]] == [0, 20 * KB, 75 * KB]


def test_gaps_merge_across_files_by_size_but_spans_stay_in_their_file() -> None:
    ranges = {
        "x": [(0, 10), (1 * 10**6, 10)],  # one 1 MB gap
        "y": [(0, 10), (30 * KB, 10), (60 * KB, 10)],  # two 30 KB gaps
    }
    spans = plan_spans(ranges, ReadBudget(max_requests=3, merge_gap=0))
    assert len(spans["x"]) == 2 and len(spans["y"]) == 1  # the big gap is kept, small ones merge
    _covers({"y": ranges["y"]}, {"y": spans["y"]})


def test_every_file_keeps_a_span_even_over_budget() -> None:
    ranges = {f: [(0, 10), (10 * KB, 10)] for f in "abc"}
    spans = plan_spans(ranges, ReadBudget(max_requests=1, merge_gap=0))
    assert {k: len(s) for k, s in spans.items()} == {"a": 1, "b": 1, "c": 1}


def test_the_byte_cap_wins_over_the_request_budget() -> None:
    # 4 MB between rows, as in a wide matrix: merging would read megabytes for one request
    ranges = {"big": [(k * 4 * 2**20, 512) for k in range(10)]}
    spans = plan_spans(ranges, ReadBudget(max_requests=2, max_extra_bytes=2**20))
    assert len(spans["big"]) == 10
    # with room for two gaps, exactly two merge (all gaps are equal)
    spans = plan_spans(ranges, ReadBudget(max_requests=2, max_extra_bytes=8 * 2**20))
    assert len(spans["big"]) == 8
    assert _cost(spans)[1] - 10 * 512 <= 8 * 2**20


def _best_bytes(ranges: dict, max_requests: int, merge_gap: int) -> int:
    """Fewest bytes any choice of split points reads in at most ``max_requests`` requests."""
    base = {k: coalesce(r, merge_gap) for k, r in ranges.items()}
    gaps = [s[i + 1][0] - s[i][0] - s[i][1] for s in base.values() for i in range(len(s) - 1)]
    data = sum(n for s in base.values() for _, n, _ in s)
    keep = max(max_requests - len(base), 0)  # gaps left open beyond one span per file
    best = None
    for open_gaps in itertools.combinations(range(len(gaps)), min(keep, len(gaps))):
        merged = sum(g for i, g in enumerate(gaps) if i not in open_gaps)
        best = merged if best is None else min(best, merged)
    return data + (best or 0)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from("abc"),
        st.lists(st.tuples(st.integers(0, 16000), st.integers(1, 300)), min_size=1, max_size=7),
        min_size=1,
    ),
    st.integers(1, 8),
    st.sampled_from([0, 64, 512]),
)
def test_plan_reads_the_fewest_bytes_the_budget_allows(ranges, max_requests, merge_gap) -> None:
    ranges = {k: [(o, min(n, 16 * KB - o)) for o, n in r if o < 16 * KB] for k, r in ranges.items()}
    ranges = {k: r for k, r in ranges.items() if r}
    budget = ReadBudget(max_requests=max_requests, max_extra_bytes=10**9, merge_gap=merge_gap)
    spans = plan_spans(ranges, budget)
    _covers(ranges, spans)
    n_requests, n_bytes = _cost(spans)
    assert n_requests <= max(max_requests, len(ranges))
    assert n_bytes == _best_bytes(ranges, max_requests, merge_gap)


class _SlowSource:
    """A source whose reads take a while and record how many ran at once."""

    def __init__(self, fail_at: int | None = None) -> None:
        import threading

        self.lock = threading.Lock()
        self.running = self.most = self.calls = 0
        self.fail_at = fail_at

    def read(self, offset: int, length: int) -> bytes:
        import time

        with self.lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(0.02)
            if offset == self.fail_at:
                raise OSError(f"read at {offset} failed")
            return bytes([offset % 256]) * length
        finally:
            with self.lock:
                self.running -= 1


def test_read_spans_keeps_order_and_bounds_concurrency() -> None:
    src = _SlowSource()
    jobs = [("a" if i % 2 else "b", i, 3) for i in range(20)]
    sources = {"a": src, "b": src}
    assert read_spans(sources, jobs, concurrency=4) == [bytes([i]) * 3 for i in range(20)]
    assert 1 < src.most <= 4
    serial = _SlowSource()
    assert read_spans({"a": serial, "b": serial}, jobs) == [bytes([i]) * 3 for i in range(20)]
    assert serial.most == 1


def test_read_spans_raises_the_first_failure_and_stops() -> None:
    import pytest

    src = _SlowSource(fail_at=2)
    with pytest.raises(OSError, match="read at 2 failed"):
        read_spans({"a": src}, [("a", i, 1) for i in range(200)], concurrency=4)
    assert src.calls < 200  # the reads not yet started were cancelled
