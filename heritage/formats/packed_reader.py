"""Quantized linear layers of a safetensors checkpoint, read as logical float32 weights.

A GPTQ, AWQ or bitsandbytes checkpoint stores each quantized ``X.weight`` as several
packed tensors (``X.qweight``, ``X.qzeros``, ``X.scales``, ...; the layouts are in
``heritage.formats.packed``). ``find_layers`` groups them from the header listing and
checks their shapes against each other and the model's quantization settings; the
checkpoint then lists one tensor ``X.weight`` of shape [out, in] in their place, its
dtype naming the method and bits (``GPTQ_INT4``, ``AWQ_INT4``, ``BNB_INT8``,
``BNB_NF4``, ...), and ``layer_read`` plans the byte ranges behind sampled rows of it.

What a sample of rows ``O`` over the input window ``[lo, hi)`` costs, per layer:

- bitsandbytes int8: per row, its window of int8 values and its float32 ``SCB``.
- bitsandbytes 4-bit: per row, ``(hi - lo) / 2`` bytes and the absmax of the blocks
  they span (with double quantization, their nested absmax too), plus both quant maps
  (64 bytes and 1 KiB).
- GPTQ packs along the input: the window of output ``o`` is ``(hi - lo) * bits / 32``
  words (plus one) down column ``o``, one word per packed row, rows ``out * 4`` bytes
  apart. Ranges closer than ``MERGE_GAP`` (4 KiB, the gap every byte source merges
  anyway) are asked for as one, so with 32 sampled rows of a layer a few thousand wide
  each packed row under the window is read whole: about ``(hi - lo) * bits / 8 * out``
  bytes, 256 KiB for 128 inputs of a 4096-wide layer at 4 bits (the same sample costs
  8 KiB in float16). Zero words and scales of the sampled outputs in the window's
  groups, and ``g_idx`` over the window, are small beside it.
- AWQ packs along the output: each input row of the window holds every output, so
  ``hi - lo`` rows of ``out / 2`` bytes are read, the same 256 KiB.

A GPTQ layer with ``g_idx`` is read assuming its groups are ``i // group_size``; when
``g_idx`` over the window names other groups (quantized in activation order), their zero
points and scales are read in a second batch.

Opening a bitsandbytes checkpoint reads the small tensors that say how to read it: each
4-bit layer's quant state (JSON of its shape and block sizes) and each int8 layer's
``weight_format``, in one batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from heritage.errors import BadCheckpoint
from heritage.formats.checkpoint import RowSample, TensorInfo
from heritage.formats.dtypes import DTYPES, to_float32
from heritage.formats.packed import (
    GPTQ_BITS,
    AWQSpec,
    Bnb4Spec,
    GPTQSpec,
    Int8Spec,
    QuantSettings,
    awq_positions,
    bnb4_absmax,
    int8_values,
    nibbles,
    parse_quant_state,
    scaled,
    stream_values,
    stream_words,
)
from heritage.formats.source import DEFAULT_COALESCE_GAP

__all__ = ["MERGE_GAP", "LayerRead", "PackedLayer", "find_layers", "layer_read"]

MERGE_GAP = DEFAULT_COALESCE_GAP
Spec = GPTQSpec | AWQSpec | Int8Spec | Bnb4Spec
_WORDS = ("I32", "U32")
_FLOATS = ("F16", "BF16", "F32")
_STATE = ".quant_state.bitsandbytes__"
_AWQ_OTHER_LAYOUTS = ("gemv", "gemv_fast", "marlin")


@dataclass(frozen=True)
class PackedLayer:
    """One quantized linear layer: its logical weight and the stored tensors behind it."""

    name: str  # the logical weight, "X.weight"
    dtype: str  # GPTQ_INT4, AWQ_INT4, BNB_INT8, BNB_NF4, ...
    spec: Spec
    parts: Mapping[str, TensorInfo]  # role ("qweight", "scales", "SCB", ...) -> stored tensor

    @property
    def shape(self) -> tuple[int, int]:
        return (self.spec.out_features, self.spec.in_features)

    def info(self) -> TensorInfo:
        """The logical tensor as the checkpoint lists it (file and range: of the packed
        values)."""
        main = self.parts["qweight" if "qweight" in self.parts else "weight"]
        return TensorInfo(self.name, self.dtype, self.shape, main.file, main.start, main.end)


# ------------------------------------------------------------------ finding layers

Where = Callable[[TensorInfo], str]  # the file name an error should name
ReadSmall = Callable[[Sequence[TensorInfo]], list[bytes]]  # whole small tensors, one batch


def find_layers(
    tensors: Sequence[TensorInfo],
    settings: QuantSettings,
    where: Where,
    read_small: ReadSmall,
) -> tuple[list[PackedLayer], set[str]]:
    """The quantized layers among a checkpoint's stored tensors, and the names of every
    stored tensor they take up (to be listed no more).

    Raises ``BadCheckpoint`` naming the file for parts that are missing, of the wrong
    dtype or of shapes that do not fit together or the settings.
    """
    by_name = {t.name: t for t in tensors}
    layers: list[PackedLayer] = []
    used: set[str] = set()
    states: list[tuple[str, str, TensorInfo]] = []  # (weight, quant type, state tensor)
    formats: list[TensorInfo] = []  # int8 layers' weight_format
    for name, t in by_name.items():
        prefix = name.rpartition(".")[0]
        if name.endswith(".qweight") and (
            prefix + ".scales" in by_name or prefix + ".qzeros" in by_name
        ):  # (qweight with other companions is another layout, left as it is stored)
            layers.append(_gptq_or_awq(prefix, by_name, settings, where))
        elif name.endswith(".SCB"):
            layer, fmt = _int8(name[: -len(".SCB")], t, by_name, where)
            layers.append(layer)
            if fmt is not None:
                formats.append(fmt)
        elif _STATE in name:
            weight, _, quant_type = name.partition(_STATE)
            states.append((weight, quant_type, t))
        elif name.endswith(".qzeros") and prefix + ".qweight" not in by_name:
            raise BadCheckpoint(where(t), f"{name!r} has no {prefix + '.qweight'!r}")
    for layer in layers:
        used.update(t.name for t in layer.parts.values())
    used.update(t.name for t in formats)
    small = [t for _, _, t in states] + formats
    blobs = read_small(small) if small else []
    for (weight, quant_type, t), raw in zip(states, blobs[: len(states)], strict=True):
        layer = _bnb4(weight, quant_type, t, raw, by_name, where)
        layers.append(layer)
        used.update(p.name for p in layer.parts.values())
    for t, raw in zip(formats, blobs[len(states) :], strict=True):
        value = int.from_bytes(raw, "little") if raw else 0
        if value != 0:
            raise BadCheckpoint(
                where(t), f"{t.name!r} is {value}: int8 weights in a tiled layout are not read"
            )
    for name, t in by_name.items():  # the parts of a 4-bit weight whose quant state is gone
        base = by_name.get(name.rpartition(".")[0])
        if (
            name.endswith((".absmax", ".quant_map"))
            and base is not None
            and base.dtype == "U8"
            and base.name not in used
        ):
            raise BadCheckpoint(where(t), f"{name!r} belongs to no 4-bit weight with a quant state")
    for layer in layers:
        clash = by_name.get(layer.name)
        if clash is not None and clash.name not in used:
            raise BadCheckpoint(
                where(clash), f"{layer.name!r} is stored both plain and {layer.dtype}"
            )
    seen: set[str] = set()
    for layer in layers:
        if layer.name in seen:
            raise BadCheckpoint(where(layer.info()), f"{layer.name!r} is packed twice")
        seen.add(layer.name)
    return layers, used


def _part(
    by_name: Mapping[str, TensorInfo],
    name: str,
    owner: TensorInfo,
    where: Where,
    dtypes: tuple[str, ...],
    ndim: int,
) -> TensorInfo:
    t = by_name.get(name)
    if t is None:
        raise BadCheckpoint(where(owner), f"{owner.name!r} has no {name!r}")
    if t.dtype not in dtypes:
        raise BadCheckpoint(where(t), f"{name!r} is {t.dtype}, expected {' or '.join(dtypes)}")
    if len(t.shape) != ndim:
        raise BadCheckpoint(where(t), f"{name!r} has shape {list(t.shape)}, expected {ndim}-D")
    return t


def _gptq_or_awq(
    prefix: str, by_name: Mapping[str, TensorInfo], s: QuantSettings, where: Where
) -> PackedLayer:
    qweight = by_name[prefix + ".qweight"]
    qweight = _part(by_name, qweight.name, qweight, where, _WORDS, 2)
    scales = _part(by_name, prefix + ".scales", qweight, where, _FLOATS, 2)
    qzeros = _part(by_name, prefix + ".qzeros", qweight, where, _WORDS, 2)
    rows, cols = qweight.shape
    n_groups, out = scales.shape
    if s.method == "awq" or (s.method != "gptq" and out != cols and out == 8 * cols):
        return _awq(prefix, qweight, qzeros, scales, s, where)
    if out != cols:
        raise BadCheckpoint(
            where(qweight),
            f"{qweight.name!r} has shape {list(qweight.shape)}, but GPTQ packs "
            f"[in * bits / 32, {out}] for the {out} outputs of {scales.name!r}",
        )
    parts = {"qweight": qweight, "qzeros": qzeros, "scales": scales}
    g_name = prefix + ".g_idx"
    if g_name in by_name:
        g_idx = _part(by_name, g_name, qweight, where, ("I32", "I64"), 1)
        parts["g_idx"] = g_idx
        n_in = g_idx.shape[0]
        if n_in == 0 or (rows * 32) % n_in or rows * 32 // n_in not in GPTQ_BITS:
            raise BadCheckpoint(
                where(qweight),
                f"{qweight.name!r} has {rows} rows, which packs no GPTQ bit width for the "
                f"{n_in} inputs of {g_name!r}",
            )
        bits = rows * 32 // n_in
        if s.bits is not None and s.bits != bits:
            raise BadCheckpoint(
                where(qweight),
                f"{qweight.name!r} has {rows} rows, but {n_in} inputs at {s.bits} bits "
                f"need {n_in * s.bits // 32}",
            )
    else:
        bits = s.bits if s.bits is not None else 4
        if bits not in GPTQ_BITS or (rows * 32) % bits:
            raise BadCheckpoint(
                where(qweight), f"{qweight.name!r} has {rows} rows, not whole {bits}-bit inputs"
            )
        n_in = rows * 32 // bits
    if qzeros.shape[0] != n_groups or qzeros.shape[1] * 32 < out * bits:
        raise BadCheckpoint(
            where(qzeros),
            f"{qzeros.name!r} has shape {list(qzeros.shape)}, but {n_groups} groups of "
            f"{out} {bits}-bit zero points need [{n_groups}, {-(-out * bits // 32)}]",
        )
    group_size = _group_size(s, n_in, n_groups, "g_idx" in parts, scales, where)
    fmt = s.checkpoint_format or "gptq"
    if fmt not in ("gptq", "gptq_v2"):
        raise BadCheckpoint(
            where(qweight), f"GPTQ checkpoint_format {fmt!r} is not read (gptq and gptq_v2 are)"
        )
    spec = GPTQSpec(out, n_in, bits, group_size, 0 if fmt == "gptq_v2" else 1, s.sym)
    return PackedLayer(prefix + ".weight", f"GPTQ_INT{bits}", spec, parts)


def _group_size(
    s: QuantSettings, n_in: int, n_groups: int, has_g_idx: bool, scales: TensorInfo, where: Where
) -> int:
    """Inputs per group: from the settings, else the one size that makes ``n_groups``."""
    if s.group_size is not None:
        size = n_in if s.group_size <= 0 else s.group_size
    elif n_groups == 1:
        size = n_in
    elif -(-n_in // 128) == n_groups:
        size = 128
    else:
        size = -(-n_in // max(n_groups, 1))
    if n_groups == 0 or (-(-n_in // size) != n_groups and not has_g_idx):
        raise BadCheckpoint(
            where(scales),
            f"{scales.name!r} has {n_groups} groups, but {n_in} inputs in groups of {size} "
            f"make {-(-n_in // size)}",
        )
    return size


def _awq(
    prefix: str,
    qweight: TensorInfo,
    qzeros: TensorInfo,
    scales: TensorInfo,
    s: QuantSettings,
    where: Where,
) -> PackedLayer:
    bits = s.bits if s.bits is not None else 4
    if bits != 4:
        raise BadCheckpoint(where(qweight), f"AWQ at {bits} bits is not read (4-bit GEMM only)")
    if s.version in _AWQ_OTHER_LAYOUTS:
        raise BadCheckpoint(where(qweight), f"AWQ version {s.version!r} is not read (GEMM only)")
    n_in, cols = qweight.shape
    n_groups, out = scales.shape
    if out != 8 * cols:
        raise BadCheckpoint(
            where(qweight),
            f"{qweight.name!r} has shape {list(qweight.shape)}, but AWQ packs "
            f"[in, {out} / 8] for the {out} outputs of {scales.name!r}",
        )
    if qzeros.shape != (n_groups, cols):
        raise BadCheckpoint(
            where(qzeros),
            f"{qzeros.name!r} has shape {list(qzeros.shape)}, expected [{n_groups}, {cols}]",
        )
    group_size = _group_size(s, n_in, n_groups, False, scales, where)
    spec = AWQSpec(out, n_in, group_size)
    parts = {"qweight": qweight, "qzeros": qzeros, "scales": scales}
    return PackedLayer(prefix + ".weight", "AWQ_INT4", spec, parts)


def _int8(
    prefix: str, scb: TensorInfo, by_name: Mapping[str, TensorInfo], where: Where
) -> tuple[PackedLayer, TensorInfo | None]:
    """LLM.int8: ``X.SCB`` beside ``X.weight`` (bitsandbytes), or ``X.weight.SCB``."""
    name = prefix if prefix.endswith(".weight") else prefix + ".weight"
    module = name[: -len(".weight")]
    weight = _part(by_name, name, scb, where, ("I8",), 2)
    scb = _part(by_name, scb.name, scb, where, _FLOATS, 1)
    out, n_in = weight.shape
    if scb.shape != (out,):
        raise BadCheckpoint(
            where(scb), f"{scb.name!r} has shape {list(scb.shape)}, expected [{out}]"
        )
    fmt = by_name.get(module + ".weight_format")
    if fmt is not None and (fmt.dtype not in ("U8", "I8", "I32", "I64") or fmt.n_params != 1):
        raise BadCheckpoint(where(fmt), f"{fmt.name!r} is not one integer")
    layer = PackedLayer(name, "BNB_INT8", Int8Spec(out, n_in), {"weight": weight, "SCB": scb})
    return layer, fmt


def _bnb4(
    weight_name: str,
    quant_type: str,
    state: TensorInfo,
    raw: bytes,
    by_name: Mapping[str, TensorInfo],
    where: Where,
) -> PackedLayer:
    if quant_type not in ("nf4", "fp4"):
        raise BadCheckpoint(where(state), f"{state.name!r}: unknown 4-bit type {quant_type!r}")
    try:
        spec = parse_quant_state(raw, quant_type)
    except ValueError as exc:
        raise BadCheckpoint(where(state), f"{state.name!r}: {exc}") from None
    weight = by_name.get(weight_name)
    if weight is None:
        raise BadCheckpoint(where(state), f"{state.name!r} has no {weight_name!r}")
    need = -(-spec.n_values // 2)
    size = DTYPES[weight.dtype].itemsize
    if not need <= weight.nbytes < need + size:
        raise BadCheckpoint(
            where(weight),
            f"{weight_name!r} holds {weight.nbytes} bytes, but {spec.n_values} 4-bit values "
            f"of shape {[spec.out_features, spec.in_features]} need {need}",
        )
    parts = {"weight": weight, "state": state}
    if spec.nested is not None:
        parts["absmax"] = _part(by_name, weight_name + ".absmax", state, where, ("U8",), 1)
        parts["nested_absmax"] = _part(
            by_name, weight_name + ".nested_absmax", state, where, _FLOATS, 1
        )
        parts["nested_quant_map"] = _part(
            by_name, weight_name + ".nested_quant_map", state, where, _FLOATS, 1
        )
    else:
        parts["absmax"] = _part(by_name, weight_name + ".absmax", state, where, _FLOATS, 1)
    parts["quant_map"] = _part(by_name, weight_name + ".quant_map", state, where, _FLOATS, 1)
    counts = {"absmax": spec.n_blocks, "quant_map": 16}
    if spec.nested is not None:
        counts["nested_absmax"] = -(-spec.n_blocks // spec.nested.blocksize)
        counts["nested_quant_map"] = 256
    for role, n in counts.items():
        t = parts[role]
        if t.shape != (n,):
            raise BadCheckpoint(where(t), f"{t.name!r} has shape {list(t.shape)}, expected [{n}]")
    return PackedLayer(weight_name, f"BNB_{quant_type.upper()}", spec, parts)


# ------------------------------------------------------------------ reading rows


@dataclass
class _Grid:
    """Rows × columns of one stored tensor (a 1-D tensor is one row; ``raw`` reads a
    tensor as a row of bytes), asked for as byte ranges: per row, the wanted columns in
    runs with gaps of at most ``MERGE_GAP`` bytes."""

    t: TensorInfo
    rows: np.ndarray  # sorted, unique
    cols: np.ndarray  # sorted, unique
    raw: bool = False
    _pos: np.ndarray = field(init=False, repr=False)
    _width: int = field(init=False, default=0)

    @property
    def itemsize(self) -> int:
        return 1 if self.raw else DTYPES[self.t.dtype].itemsize

    @property
    def n_cols(self) -> int:
        if self.raw:
            return self.t.nbytes
        return self.t.shape[-1] if self.t.shape else 1

    def ranges(self) -> list[tuple[int, int]]:
        assert self.t.start is not None
        size = self.itemsize
        cols = self.cols
        if not cols.size or not self.rows.size:
            self._pos, self._width = np.zeros(0, np.int64), 0
            return []
        gaps = (np.diff(cols) - 1) * size
        cut = np.nonzero(gaps > MERGE_GAP)[0]
        first = cols[np.concatenate([[0], cut + 1])]
        last = cols[np.concatenate([cut, [cols.size - 1]])] + 1
        widths = last - first
        run = np.searchsorted(first, cols, side="right") - 1
        self._pos = np.concatenate([[0], np.cumsum(widths)[:-1]])[run] + cols - first[run]
        self._width = int(widths.sum())
        out: list[tuple[int, int]] = []
        for r in self.rows.tolist():
            base = self.t.start + r * self.n_cols * size
            for a, w in zip(first.tolist(), widths.tolist(), strict=True):
                off, n = base + a * size, w * size
                if out and out[-1][0] + out[-1][1] == off:  # exactly adjacent: one range
                    out[-1] = (out[-1][0], out[-1][1] + n)
                else:
                    out.append((off, n))
        return out

    def decode(self, data: bytes) -> np.ndarray:
        """The wanted values, [rows, cols]: float32 for float tensors, else integers."""
        if self.raw:
            flat = np.frombuffer(data, dtype=np.uint8)
        elif self.t.dtype in _FLOATS:
            flat = to_float32(data, self.t.dtype)
        else:
            flat = np.frombuffer(data, dtype=DTYPES[self.t.dtype].storage)
        table = flat.reshape(len(self.rows), self._width)
        return table[:, self._pos]


def _all(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


class LayerRead:
    """Sampled rows of one packed layer: ``grids`` to read first, ``more`` to read once
    those are in (GPTQ in activation order), then ``values``."""

    def __init__(self, layer: PackedLayer, rows: np.ndarray, lo: int, hi: int, where: Where):
        self.layer, self.lo, self.hi, self.where = layer, lo, hi, where
        self.rows, self.inverse = np.unique(rows, return_inverse=True)
        self.inputs = np.arange(lo, hi, dtype=np.int64)
        self.grids: dict[str, _Grid] = {}
        self.empty = not (self.rows.size and hi > lo)
        if not self.empty:
            self._plan()

    def _grid(self, role: str, rows: np.ndarray, cols: np.ndarray, raw: bool = False) -> None:
        self.grids[role] = _Grid(self.layer.parts[role], rows, cols, raw)

    def _plan(self) -> None:
        spec, p = self.layer.spec, self.layer.parts
        one = np.zeros(1, np.int64)
        if isinstance(spec, GPTQSpec):
            b = spec.bits
            self._grid("qweight", stream_words(self.inputs, b), self.rows)
            if "g_idx" in p:
                self._grid("g_idx", one, self.inputs)
            self.groups = np.unique(self.inputs // spec.group_size)
            self._grid("qzeros", self.groups, stream_words(self.rows, b))
            self._grid("scales", self.groups, self.rows)
        elif isinstance(spec, AWQSpec):
            words = np.unique(self.rows // 8)
            self.groups = np.unique(self.inputs // spec.group_size)
            self._grid("qweight", self.inputs, words)
            self._grid("qzeros", self.groups, words)
            self._grid("scales", self.groups, self.rows)
        elif isinstance(spec, Int8Spec):
            self._grid("weight", self.rows, self.inputs)
            self._grid("SCB", one, self.rows)
        else:
            k = (self.rows[:, None] * spec.in_features + self.inputs[None, :]).ravel()
            self.k = k
            self.blocks = np.unique(k // spec.blocksize)
            self._grid("weight", one, np.unique(k // 2), raw=True)
            self._grid("absmax", one, self.blocks)
            self._grid("quant_map", one, _all(16))
            if spec.nested is not None:
                self.nested = np.unique(self.blocks // spec.nested.blocksize)
                self._grid("nested_absmax", one, self.nested)
                self._grid("nested_quant_map", one, _all(256))

    def more(self, got: Mapping[str, np.ndarray]) -> dict[str, _Grid]:
        """Grids a second batch must read, given the first batch's values."""
        spec = self.layer.spec
        if self.empty or not isinstance(spec, GPTQSpec) or "g_idx" not in got:
            return {}
        g = got["g_idx"][0].astype(np.int64)
        n_groups = self.layer.parts["scales"].shape[0]
        if g.size and (g.min() < 0 or g.max() >= n_groups):
            t = self.layer.parts["g_idx"]
            raise BadCheckpoint(
                self.where(t), f"{t.name!r} names group {int(g.max())} of {n_groups}"
            )
        self.g = g
        self.missing = missing = np.setdiff1d(g, self.groups)
        if not missing.size:
            return {}
        return {
            "qzeros+": _Grid(
                self.layer.parts["qzeros"], missing, stream_words(self.rows, spec.bits)
            ),
            "scales+": _Grid(self.layer.parts["scales"], missing, self.rows),
        }

    def values(self, got: Mapping[str, np.ndarray]) -> np.ndarray:
        """The sampled rows, float32 [len(rows asked), hi - lo], in the order asked."""
        spec = self.layer.spec
        if self.empty:
            return np.zeros((self.inverse.size, max(self.hi - self.lo, 0)), np.float32)
        if isinstance(spec, GPTQSpec):
            w = self._gptq(spec, got)
        elif isinstance(spec, AWQSpec):
            pos = awq_positions(self.rows)
            q = stream_values(got["qweight"], self.grids["qweight"].cols, pos, 4, 1)
            z = stream_values(got["qzeros"], self.grids["qzeros"].cols, pos, 4, 1)
            at = np.searchsorted(self.groups, self.inputs // spec.group_size)
            w = scaled(q, z[at], got["scales"][at]).T
        elif isinstance(spec, Int8Spec):
            w = int8_values(got["weight"], got["SCB"][0][:, None])
        else:
            w = self._bnb4(spec, got)
        return np.ascontiguousarray(w[self.inverse], dtype=np.float32)

    def _gptq(self, spec: GPTQSpec, got: Mapping[str, np.ndarray]) -> np.ndarray:
        b = spec.bits
        q = stream_values(got["qweight"], self.grids["qweight"].rows, self.inputs, b, 0)
        zero_words = self.grids["qzeros"].cols
        groups, zeros, scales = self.groups, got["qzeros"], got["scales"]
        if "qzeros+" in got:
            groups = np.concatenate([groups, self.missing])
            zeros = np.concatenate([zeros, got["qzeros+"]])
            scales = np.concatenate([scales, got["scales+"]])
            order = np.argsort(groups)
            groups, zeros, scales = groups[order], zeros[order], scales[order]
        z = stream_values(zeros, zero_words, self.rows, b, 1)
        g = self.g if "g_idx" in got else self.inputs // spec.group_size
        at = np.searchsorted(groups, g)
        return scaled(q, z[at] + spec.zero_offset, scales[at]).T

    def _bnb4(self, spec: Bnb4Spec, got: Mapping[str, np.ndarray]) -> np.ndarray:
        absmax = got["absmax"][0]
        if spec.nested is not None:
            at = np.searchsorted(self.nested, self.blocks // spec.nested.blocksize)
            absmax = bnb4_absmax(
                absmax, got["nested_absmax"][0][at], got["nested_quant_map"][0], spec.nested.offset
            )
        nib = nibbles(got["weight"][0], self.grids["weight"].cols, self.k)
        table = got["quant_map"][0].astype(np.float32)
        values = table[nib] * absmax[np.searchsorted(self.blocks, self.k // spec.blocksize)]
        return values.reshape(self.rows.size, self.inputs.size)


def layer_read(layer: PackedLayer, sample: RowSample, where: Where) -> LayerRead:
    """Plan the reads behind ``sample`` (rows of the logical weight, window of inputs)."""
    lo, hi = sample.cols if sample.cols is not None else (0, layer.spec.in_features)
    return LayerRead(layer, np.asarray(sample.rows, dtype=np.int64), lo, hi, where)
