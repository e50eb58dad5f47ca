"""The reader interface every checkpoint format implements."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from heritage.errors import BadCheckpoint
from heritage.formats.dtypes import DTYPES, storage_bytes, to_float32
from heritage.formats.source import ByteSource, ReadBudget, ReadStats, read_planned


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as listed by a checkpoint, before any of its data is read."""

    name: str
    dtype: str  # safetensors dtype name (F32, BF16, I8, ...) or GGML block type (Q4_K, ...)
    shape: tuple[int, ...]
    file: str  # file name, relative to the checkpoint location
    start: int | None = None  # absolute byte range in ``file``; None where not range-addressable
    end: int | None = None

    @property
    def n_params(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return storage_bytes(self.dtype, self.n_params)

    @property
    def n_rows(self) -> int:
        """Rows are slices along the first axis; a 1-D tensor's rows are its elements."""
        return self.shape[0] if self.shape else 1

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.shape[1:]


@dataclass(frozen=True)
class RowSample:
    """Rows of a tensor, optionally cut to a window of each flattened row.

    A window keeps the bytes read per row bounded however wide the tensor is, which is
    what lets a fingerprint of a 70B model cost a few megabytes.
    """

    rows: Sequence[int]
    cols: tuple[int, int] | None = None  # [start, stop) over the flattened row


@dataclass(frozen=True)
class SampleLike:
    """Sample a tensor where fingerprints sample another one (``name`` of ``shape``).

    An adapter's tensors are sampled where their base's are, so the two line up entry for
    entry: ``part`` is ``same`` (the other's rows and column window: a tensor of the same
    shape), ``rows`` (the other's rows, whole: LoRA's B [out, r] on its base weight's
    rows) or ``cols`` (every row, the other's column window: LoRA's A [r, in]).
    """

    name: str
    shape: tuple[int, ...]
    part: str = "same"


@dataclass
class Checkpoint:
    """A model's tensors from one or more files, read lazily and as float32.

    Subclasses implement :meth:`_read_rows_many` and :meth:`read`; everything else is shared.
    """

    location: Path
    format: str
    files: list[Path]
    tensors: list[TensorInfo]
    config: dict[str, Any] | None = None  # config.json of a Hugging Face folder
    header_metadata: dict[str, str] = field(default_factory=dict)
    # tensors fingerprints sample where they sample another one (an adapter's, on its base)
    sample_like: dict[str, SampleLike] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._by_name = {t.name: t for t in self.tensors}

    def info(self, name: str) -> TensorInfo:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self.location}: no tensor named {name!r}") from None

    def read(self, name: str) -> np.ndarray:
        """The whole tensor as float32 in its own shape."""
        t = self.info(name)
        return self.read_rows(name, range(t.n_rows)).reshape(t.shape)

    def read_rows(
        self, name: str, rows: Iterable[int], cols: tuple[int, int] | None = None
    ) -> np.ndarray:
        """Rows of one tensor (first-axis slices) as float32.

        Shape (len(rows), *row_shape), or (len(rows), stop - start) with a column window.
        """
        return self.read_rows_many({name: RowSample(list(rows), cols)})[name]

    def read_rows_many(
        self, plan: Mapping[str, Sequence[int] | RowSample]
    ) -> dict[str, np.ndarray]:
        """Rows of many tensors at once, so a byte-range source can coalesce the requests."""
        checked: dict[str, RowSample] = {}
        for name, wanted in plan.items():
            t = self.info(name)
            sample = wanted if isinstance(wanted, RowSample) else RowSample(wanted)
            rows = [int(r) for r in sample.rows]
            bad = [r for r in rows if not 0 <= r < t.n_rows]
            if bad:
                raise IndexError(
                    f"{self.location}: rows {bad[:3]} out of range for {name} {t.shape}"
                )
            width = math.prod(t.row_shape)
            if sample.cols is not None and not 0 <= sample.cols[0] <= sample.cols[1] <= width:
                raise IndexError(
                    f"{self.location}: columns {sample.cols} out of range for {name} {t.shape}"
                )
            checked[name] = RowSample(rows, sample.cols)
        return self._read_rows_many(checked)

    def _read_rows_many(self, plan: dict[str, RowSample]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @property
    def bytes_read(self) -> int:
        """Bytes read from weight files so far (0 where the format cannot count them)."""
        return 0

    def close(self) -> None:
        """Release file handles; the checkpoint cannot be read afterwards."""

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SourcedCheckpoint(Checkpoint):
    """A checkpoint whose files are read through byte sources that count every read.

    Subclasses call ``_use_sources`` before ``Checkpoint.__init__``. ``read_budget``
    bounds the range requests of each batched row read (None: each source merges near
    ranges its own way), for all files or per file name; ``extra`` counts reads made for
    the checkpoint outside its weight files (a shard index fetched over HTTP).
    """

    def _use_sources(
        self,
        sources: Mapping[str, ByteSource],
        read_budget: ReadBudget | Mapping[str, ReadBudget] | None = None,
        extra: ReadStats | None = None,
    ) -> None:
        self._sources: dict[str, ByteSource] = dict(sources)
        self.read_budget = read_budget
        self.extra = extra if extra is not None else ReadStats()

    @property
    def sources(self) -> Mapping[str, ByteSource]:
        """The byte source of each weight file, by file name (read-only view)."""
        return MappingProxyType(self._sources)

    @property
    def bytes_read(self) -> int:
        """Bytes read from the weight files plus ``extra``."""
        return sum(s.stats.bytes_read for s in self._sources.values()) + self.extra.bytes_read

    @property
    def requests(self) -> int:
        """Requests sent for the weight files plus ``extra``, retries included."""
        return sum(s.stats.requests for s in self._sources.values()) + self.extra.requests

    @property
    def reads(self) -> int:
        """Requests the reader asked for, retries not counted: what a request budget spends."""
        return sum(s.stats.reads for s in self._sources.values()) + self.extra.reads

    def _gather(
        self, wanted: Mapping[str, list[tuple[Hashable, int, int]]]
    ) -> dict[Hashable, list[bytes]]:
        """The bytes of (key, offset, length) ranges per file, as one budgeted plan,
        joined back per key (a tensor name, or any label) in the order asked."""
        ranges = {file: [(off, n) for _, off, n in parts] for file, parts in wanted.items()}
        got = read_planned(self._sources, ranges, self.read_budget)
        raw: dict[Hashable, list[bytes]] = {}
        for file, parts in wanted.items():
            for (name, _, _), blob in zip(parts, got[file], strict=True):
                raw.setdefault(name, []).append(blob)
        return raw

    def _read_plain_rows(
        self, plan: dict[str, RowSample], row_start: Callable[[str, int], int]
    ) -> dict[str, np.ndarray]:
        """Sampled rows of tensors stored as plain values, each row one contiguous run
        that starts at byte ``row_start(name, row)`` of its file."""
        wanted: dict[str, list[tuple[Hashable, int, int]]] = {}
        self._plain_ranges(plan, row_start, wanted)
        return self._plain_values(plan, self._gather(wanted))

    def _plain_ranges(
        self,
        plan: dict[str, RowSample],
        row_start: Callable[[str, int], int],
        wanted: dict[str, list[tuple[Hashable, int, int]]],
    ) -> None:
        """Add the (name, offset, length) ranges of ``_read_plain_rows`` to ``wanted``."""
        for name, sample in plan.items():
            t = self.info(name)
            itemsize = DTYPES[t.dtype].itemsize
            lo, hi = sample.cols if sample.cols is not None else (0, math.prod(t.row_shape))
            for r in sample.rows:
                wanted.setdefault(t.file, []).append(
                    (name, row_start(name, r) + lo * itemsize, (hi - lo) * itemsize)
                )

    def _plain_values(
        self, plan: dict[str, RowSample], raw: Mapping[Hashable, list[bytes]]
    ) -> dict[str, np.ndarray]:
        """The rows ``_plain_ranges`` asked for, decoded from what ``_gather`` read."""
        out: dict[str, np.ndarray] = {}
        for name, sample in plan.items():
            t = self.info(name)
            values = to_float32(b"".join(raw.get(name, [])), t.dtype)
            shape = t.row_shape if sample.cols is None else (sample.cols[1] - sample.cols[0],)
            out[name] = values.reshape((len(sample.rows), *shape))
        return out

    def close(self) -> None:
        for s in self._sources.values():
            close = getattr(s, "close", None)
            if close is not None:
                close()


def check_shape(path: Path | str, name: str, shape: object) -> tuple[int, ...]:
    """A shape must be a list of non-negative integers."""
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise BadCheckpoint(path, f"tensor {name!r} has an invalid shape {shape!r}")
    return tuple(shape)


def read_json_object(path: Path) -> dict[str, Any]:
    """A small JSON file that must hold an object (config.json, adapter_config.json,
    quantize_config.json); BadCheckpoint naming the file when it cannot be read or is not
    one."""
    name = path.name
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadCheckpoint(path, f"cannot read {name}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadCheckpoint(path, f"{name} is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(raw, dict):
        raise BadCheckpoint(path, f"{name} is not a JSON object")
    return raw
