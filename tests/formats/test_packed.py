"""Quantized safetensors checkpoints (GPTQ, AWQ, bitsandbytes) read as logical float32 weights.

Checkpoints are built by the test-side quantizers in ``tests/formats/quantizers.py`` and
written with the safetensors package; the reader must decode them exactly as those
quantizers dequantize, sampled rows and whole layers alike, read only the bytes behind
the sampled rows, and refuse corrupt layers naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from heritage.errors import BadCheckpoint
from heritage.fingerprint import fingerprint, sample_plan
from heritage.formats import open_checkpoint
from heritage.formats.dtypes import PACKED_TYPES
from heritage.formats.packed import (
    AWQ_REVERSE_ORDER,
    awq_positions,
    dequantize_4bit,
    dequantize_awq,
    dequantize_gptq,
    dequantize_int8,
    parse_quant_state,
    stream_values,
    stream_words,
)
from heritage.formats.packed_reader import MERGE_GAP
from heritage.formats.safetensors_reader import SafetensorsCheckpoint
from heritage.formats.source import LocalFileSource
from heritage.lineage.precision import precision_bits
from heritage.summary import summarize
from tests.formats import quantizers as Q

LAYER = "model.layers.0.mlp.up_proj"
OTHER = "model.layers.0.self_attn.q_proj"
NORM = "model.norm.weight"


def _weights(out: int = 256, n_in: int = 512, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((out, n_in)) * 0.02).astype(np.float32)


# case -> (quantizer of one layer, the model's quantization_config or None)
CASES = {
    "gptq4": (lambda w: Q.gptq(w, 4, 64), {"quant_method": "gptq", "bits": 4, "group_size": 64}),
    "gptq3": (lambda w: Q.gptq(w, 3, 64), {"quant_method": "gptq", "bits": 3, "group_size": 64}),
    "gptq2": (lambda w: Q.gptq(w, 2, 64), {"quant_method": "gptq", "bits": 2, "group_size": 64}),
    "gptq8": (lambda w: Q.gptq(w, 8, 64), {"quant_method": "gptq", "bits": 8, "group_size": 64}),
    "gptq4-sym": (
        lambda w: Q.gptq(w, 4, 64, sym=True),
        {"quant_method": "gptq", "bits": 4, "group_size": 64, "sym": True},
    ),
    "gptq4-act-order": (
        lambda w: Q.gptq(w, 4, 64, act_order=True),
        {"quant_method": "gptq", "bits": 4, "group_size": 64, "desc_act": True},
    ),
    "gptq4-v2": (
        lambda w: Q.gptq(w, 4, 64, v2=True),
        {"quant_method": "gptq", "bits": 4, "group_size": 64, "checkpoint_format": "gptq_v2"},
    ),
    "gptq3-no-config": (lambda w: Q.gptq(w, 3, 64), None),
    "awq": (lambda w: Q.awq(w, 64), {"quant_method": "awq", "bits": 4, "group_size": 64}),
    "awq-no-config": (lambda w: Q.awq(w, 64), None),
    "int8": (Q.int8, {"quant_method": "bitsandbytes", "load_in_8bit": True}),
    "nf4": (lambda w: Q.bnb4(w, "nf4"), {"quant_method": "bitsandbytes", "load_in_4bit": True}),
    "fp4": (lambda w: Q.bnb4(w, "fp4"), None),
    "nf4-nested": (lambda w: Q.bnb4(w, "nf4", nested=True), None),
}
DTYPE = {"int8": "BNB_INT8", "nf4": "BNB_NF4", "fp4": "BNB_FP4", "nf4-nested": "BNB_NF4"}
DTYPE |= {"awq": "AWQ_INT4", "awq-no-config": "AWQ_INT4", "gptq3-no-config": "GPTQ_INT3"}
DTYPE |= {k: f"GPTQ_INT{k[4]}" for k in CASES if k.startswith("gptq") and k not in DTYPE}
# the least cosine between a quantized fingerprint and its float original, by bits
MIN_COSINE = {8: 0.999, 4: 0.99, 3: 0.97, 2: 0.85}


def _write(
    folder: Path,
    layers: dict[str, dict[str, np.ndarray]],
    config: dict | None = None,
    *,
    shards: int = 1,
) -> Path:
    """A model folder: the layers' tensors under their prefixes, a float norm and an
    embedding, config.json with ``config`` as its quantization_config."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"{p}.{k}": v for p, parts in layers.items() for k, v in parts.items()}
    tensors[NORM] = np.ones(256, np.float16)
    tensors["model.embed_tokens.weight"] = _weights(300, 64, seed=9).astype(np.float16)
    if shards == 1:
        save_file(tensors, str(folder / "model.safetensors"))
    else:
        names = sorted(tensors)
        weight_map = {}
        for i in range(shards):
            part = names[i::shards]
            file = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            save_file({n: tensors[n] for n in part}, str(folder / file))
            weight_map |= dict.fromkeys(part, file)
        index = {"metadata": {}, "weight_map": weight_map}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    cfg = {"model_type": "llama"} | ({"quantization_config": config} if config else {})
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def _layer_parts(case: str, w: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    parts, deq = CASES[case][0](w)
    if case.startswith(("int8", "nf4", "fp4")):  # bitsandbytes names its parts after weight
        parts = {
            (k if k.startswith("weight") or k == "SCB" else f"weight.{k}"): v
            for k, v in parts.items()
        }
    return parts, deq


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# ------------------------------------------------------------------ bit streams


def test_three_bit_stream_is_autogptq_word_layout():
    """AutoGPTQ packs 32 three-bit values in 3 words: values 0-9 at bits 3j of word 0,
    value 10 across words 0 and 1, 11-20 at 3(j-11)+1 of word 1, value 21 across words
    1 and 2, 22-31 at 3(j-22)+2 of word 2: one little-endian bit stream."""
    v = np.random.default_rng(1).integers(0, 8, 32).astype(np.uint64)
    expect = [0, 0, 0]
    for j in range(10):
        expect[0] |= int(v[j]) << (3 * j)
    expect[0] |= (int(v[10]) << 30) & 0xFFFFFFFF
    expect[1] |= (int(v[10]) >> 2) & 1
    for j in range(11, 21):
        expect[1] |= int(v[j]) << (3 * (j - 11) + 1)
    expect[1] |= (int(v[21]) << 31) & 0xFFFFFFFF
    expect[2] |= (int(v[21]) >> 1) & 0x3
    for j in range(22, 32):
        expect[2] |= int(v[j]) << (3 * (j - 22) + 2)
    words = Q.pack_stream(v.reshape(32, 1), 3).view(np.uint32).ravel()
    assert words.tolist() == expect
    got = stream_values(words.view(np.int32), np.arange(3), np.arange(32), 3)
    assert got.tolist() == v.tolist()


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_stream_values_of_some_words_and_positions(bits):
    rng = np.random.default_rng(bits)
    values = rng.integers(0, 2**bits, (96, 5))
    words = Q.pack_stream(values, bits)
    positions = np.sort(rng.choice(96, 17, replace=False))
    index = stream_words(positions, bits)
    got = stream_values(words[index], index, positions, bits, axis=0)
    np.testing.assert_array_equal(got, values[positions])
    across = stream_values(words[index].T, index, positions, bits, axis=1)
    np.testing.assert_array_equal(across, values[positions].T)
    with pytest.raises(ValueError):
        stream_values(words[index[1:]], index[1:], positions, bits)


def test_awq_positions_follow_the_interleave():
    assert awq_positions(np.arange(16)).tolist() == [
        *AWQ_REVERSE_ORDER,
        *(8 + r for r in AWQ_REVERSE_ORDER),
    ]
    words = Q.awq_pack(np.arange(16).reshape(1, 16))  # output o holds the value o
    got = stream_values(words, np.arange(2), awq_positions(np.arange(16)), 4, axis=1)
    assert got.ravel().tolist() == list(range(16))


def test_whole_layer_functions_match_the_quantizers():
    w = _weights(64, 128)
    parts, deq = Q.gptq(w, 3, 32, act_order=True)
    got = dequantize_gptq(parts["qweight"], parts["qzeros"], parts["scales"], parts["g_idx"], 3)
    np.testing.assert_array_equal(got, deq)
    parts, deq = Q.gptq(w, 4, 32, v2=True)
    got = dequantize_gptq(
        parts["qweight"], parts["qzeros"], parts["scales"], None, 4, group_size=32, v2=True
    )
    np.testing.assert_array_equal(got, deq)
    parts, deq = Q.awq(w, 32)
    np.testing.assert_array_equal(
        dequantize_awq(parts["qweight"], parts["qzeros"], parts["scales"], 32), deq
    )
    parts, deq = Q.int8(w)
    np.testing.assert_array_equal(dequantize_int8(parts["weight"], parts["SCB"]), deq)
    parts, deq = Q.bnb4(w, "nf4", nested=True)
    spec = parse_quant_state(parts["weight.quant_state.bitsandbytes__nf4"].tobytes(), "nf4")
    assert (spec.shape, spec.blocksize, spec.nested.blocksize) == ((64, 128), 64, 256)
    got = dequantize_4bit(
        parts["weight"], parts["weight.absmax"], parts["weight.quant_map"], spec,
        parts["weight.nested_absmax"], parts["weight.nested_quant_map"],
    )  # fmt: skip
    np.testing.assert_array_equal(got, deq)


# ------------------------------------------------------------------ reading checkpoints


@pytest.fixture(scope="module")
def float_model(tmp_path_factory) -> Path:
    """The float original every quantized case is made from (two layers)."""
    folder = tmp_path_factory.mktemp("float")
    _write(folder, {LAYER: {"weight": _weights()}, OTHER: {"weight": _weights(256, 256, 1)}})
    return folder


@pytest.fixture(scope="module", params=list(CASES))
def quantized(request, tmp_path_factory) -> tuple[str, Path, dict[str, np.ndarray]]:
    """(case, folder, dequantized weight per logical name) for each format."""
    case = request.param
    layers, deq = {}, {}
    for prefix, w in ((LAYER, _weights()), (OTHER, _weights(256, 256, 1))):
        layers[prefix], deq[prefix + ".weight"] = _layer_parts(case, w)
    folder = _write(tmp_path_factory.mktemp(case), layers, CASES[case][1])
    return case, folder, deq


def test_lists_logical_weights_in_place_of_the_parts(quantized, float_model):
    case, folder, _ = quantized
    with open_checkpoint(folder) as ckpt, open_checkpoint(float_model) as ref:
        names = [t.name for t in ckpt.tensors]
        assert names == [t.name for t in ref.tensors]
        for name in (LAYER + ".weight", OTHER + ".weight"):
            t = ckpt.info(name)
            assert (t.dtype, t.shape) == (DTYPE[case], ref.info(name).shape)
        summary, plain = summarize(ckpt, hash_files=False), summarize(ref, hash_files=False)
    assert summary.structure_hash == plain.structure_hash
    assert summary.n_params == plain.n_params
    assert DTYPE[case] in summary.dtypes


def test_whole_layers_equal_the_quantizer_and_sit_within_a_step(quantized):
    case, folder, deq = quantized
    with open_checkpoint(folder) as ckpt:
        for name, expect in deq.items():
            got = ckpt.read(name)
            assert got.dtype == np.float32
            np.testing.assert_array_equal(got, expect)
    w = _weights()
    step = _step(case, w)
    assert np.all(np.abs(deq[LAYER + ".weight"] - w) <= step)


def _step(case: str, w: np.ndarray) -> np.ndarray:
    """One quantization step of each weight, as each format's quantizer sets it."""
    if case.startswith(("gptq", "awq")):
        bits = int(DTYPE[case][-1])
        groups = np.arange(w.shape[1]) // 64
        step = np.zeros_like(w)
        for g in range(groups.max() + 1):
            part = w[:, groups == g]
            lo, hi = np.minimum(part.min(1), 0), np.maximum(part.max(1), 0)
            if "sym" in case:
                hi = np.maximum(-lo, hi)
                lo = -hi
            step[:, groups == g] = ((hi - lo) / (2**bits - 1))[:, None]
        return step * 1.01  # the scale is stored in float16
    if case == "int8":
        return np.repeat(np.abs(w).max(1, keepdims=True) / 127, w.shape[1], axis=1)
    code = np.asarray(Q.NF4 if case.startswith("nf4") else Q.FP4)
    code = code / np.abs(code).max()
    gap = np.diff(np.sort(code)).max()
    absmax = np.abs(w.reshape(-1, 64)).max(1)
    return np.repeat(absmax * gap * 1.05, 64).reshape(w.shape)


def test_sampled_rows_equal_the_whole_layer(quantized):
    case, folder, deq = quantized
    with open_checkpoint(folder) as ckpt:
        expect = deq[LAYER + ".weight"]
        rows = [200, 3, 77, 3, 255, 0]  # unsorted, repeated
        for cols in [(0, 512), (5, 133), (64, 128), (511, 512), (100, 100)]:
            got = ckpt.read_rows(LAYER + ".weight", rows, cols)
            np.testing.assert_array_equal(got, expect[rows, cols[0] : cols[1]])
        assert ckpt.read_rows(LAYER + ".weight", []).shape == (0, 512)
        batch = ckpt.read_rows_many({LAYER + ".weight": [1, 2], NORM: [0, 5]})
        np.testing.assert_array_equal(batch[LAYER + ".weight"], expect[[1, 2]])
        np.testing.assert_array_equal(batch[NORM], [1.0, 1.0])


def test_fingerprint_is_close_to_the_float_original(quantized, float_model):
    case, folder, _ = quantized
    with open_checkpoint(folder) as ckpt, open_checkpoint(float_model) as ref:
        fq, ff = fingerprint(ckpt), fingerprint(ref)
    bits = PACKED_TYPES[DTYPE[case]]
    for name in (LAYER + ".weight", OTHER + ".weight"):
        a, b = fq.tensors[name], ff.tensors[name]
        assert a.rows.tolist() == b.rows.tolist() and a.cols == b.cols
        assert len(a.rows) == 32  # a sample, not the whole layer
        assert a.is_float
        cos = _cos(a.values, b.values)
        assert cos > MIN_COSINE[bits], (case, name, cos)
    assert precision_bits(fq) == bits
    np.testing.assert_array_equal(fq.tensors[NORM].values, ff.tensors[NORM].values)


def test_sharded_parts_of_one_layer_in_different_files(tmp_path):
    w = _weights()
    for case in ("gptq4-act-order", "awq", "nf4-nested", "int8"):
        parts, deq = _layer_parts(case, w)
        folder = _write(tmp_path / case, {LAYER: parts}, CASES[case][1], shards=3)
        with open_checkpoint(folder) as ckpt:
            files = {t.file for t in ckpt.stored.values() if t.name.startswith(LAYER)}
            assert len(files) > 1
            np.testing.assert_array_equal(ckpt.read(LAYER + ".weight"), deq)


# ------------------------------------------------------------------ bytes read


class RecordingSource(LocalFileSource):
    """A local file that merges no ranges and records every read (offset, length)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, coalesce_gap=0)
        self.log: list[tuple[int, int]] = []

    def read(self, offset: int, length: int) -> bytes:
        self.log.append((offset, length))
        return super().read(offset, length)


def _allowed(
    ckpt: SafetensorsCheckpoint, case: str, rows: list[int], lo: int, hi: int
) -> list[list[int]]:
    """Byte intervals the sampled rows of LAYER may read: per stored part, the rows (or
    elements) the format needs for those rows and the input window [lo, hi)."""
    layer = ckpt._packed[LAYER + ".weight"]
    spec, parts = layer.spec, layer.parts
    window = np.arange(lo, hi)
    out: list[tuple[int, int]] = []

    def rows_of(t, wanted):
        """Whole rows of a 2-D part; elements of a 1-D one (bytes of a 4-bit weight),
        those at most MERGE_GAP bytes apart read as one range."""
        if len(t.shape) == 2 and t.shape[1] > 1:
            width = t.nbytes // t.shape[0]
            out.extend((t.start + int(r) * width, t.start + (int(r) + 1) * width) for r in wanted)
            return
        size = t.nbytes // t.n_params if t.shape[-1] > 1 else 1
        runs: list[list[int]] = []
        for r in sorted(int(x) for x in wanted):
            a = t.start + r * size
            if runs and a - runs[-1][1] <= MERGE_GAP:
                runs[-1][1] = a + size
            else:
                runs.append([a, a + size])
        out.extend((a, b) for a, b in runs)

    if case.startswith("gptq"):
        groups = set((window // spec.group_size).tolist())
        if "g_idx" in parts:
            rows_of(parts["g_idx"], window)
            g = ckpt.stored[LAYER + ".g_idx"]
            raw = ckpt.sources["model.safetensors"]
            groups |= set(np.frombuffer(raw.read(g.start, g.end - g.start), "<i4")[lo:hi].tolist())
        rows_of(parts["qweight"], stream_words(window, spec.bits))
        rows_of(parts["qzeros"], sorted(groups))
        rows_of(parts["scales"], sorted(groups))
    elif case.startswith("awq"):
        rows_of(parts["qweight"], window)
        rows_of(parts["qzeros"], sorted(set((window // spec.group_size).tolist())))
        rows_of(parts["scales"], sorted(set((window // spec.group_size).tolist())))
    elif case == "int8":  # exactly the window of each sampled row
        w = parts["weight"]
        out.extend(
            (w.start + r * spec.in_features + lo, w.start + r * spec.in_features + hi) for r in rows
        )
        rows_of(parts["SCB"], rows)
    else:
        k = (np.asarray(rows)[:, None] * spec.in_features + window[None, :]).ravel()
        rows_of(parts["weight"], np.unique(k // 2))
        blocks = np.unique(k // spec.blocksize)
        rows_of(parts["absmax"], blocks)
        rows_of(parts["quant_map"], range(16))
        if spec.nested is not None:
            rows_of(parts["nested_absmax"], np.unique(blocks // spec.nested.blocksize))
            rows_of(parts["nested_quant_map"], range(256))
    merged: list[list[int]] = []
    for a, b in sorted(out):  # touching intervals join, as a range may span them
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged


@pytest.mark.parametrize("case", ["gptq4-act-order", "gptq3", "gptq8", "awq", "int8", "nf4-nested"])
def test_reads_only_the_bytes_behind_the_sampled_rows(tmp_path, case):
    w = _weights(1024, 2048, seed=3)
    parts, deq = _layer_parts(case, w)
    path = _write(tmp_path, {LAYER: parts}, CASES[case][1]) / "model.safetensors"
    source = RecordingSource(path)
    config = json.loads((tmp_path / "config.json").read_text())
    ckpt = SafetensorsCheckpoint(tmp_path, {path.name: source}, "safetensors", config)
    info = ckpt.info(LAYER + ".weight")
    opened = len(source.log)  # the header probe, and the quant states of bitsandbytes
    plan = sample_plan(info, fingerprint(ckpt).settings)
    source.log.clear()
    got = ckpt.read_rows(LAYER + ".weight", plan.rows, plan.cols)
    np.testing.assert_array_equal(got, deq[plan.rows, plan.cols[0] : plan.cols[1]])
    log = list(source.log)
    allowed = _allowed(ckpt, case, list(plan.rows), *plan.cols)
    for off, n in log:
        assert any(a <= off and off + n <= b for a, b in allowed), (off, n)
    read = sum(n for _, n in log)
    assert read < path.stat().st_size / 4
    assert opened <= 2
    ckpt.close()


# ------------------------------------------------------------------ corrupt layers


def _corrupt(tmp_path: Path, case: str, change, config: dict | None = None) -> Path:
    """A one-layer model of ``case`` with its parts passed through ``change``."""
    parts, _ = _layer_parts(case, _weights())
    parts = change(dict(parts))
    return _write(tmp_path / case, {LAYER: parts}, config or CASES[case][1])


def _refused(folder: Path, *words: str, read: bool = False) -> BadCheckpoint:
    with pytest.raises(BadCheckpoint) as info, open_checkpoint(folder) as ckpt:
        if read:
            fingerprint(ckpt)
    exc = info.value
    assert exc.path == str(folder / "model.safetensors"), str(exc)
    assert "\n" not in str(exc) and str(exc).startswith(exc.path)
    for w in words:
        assert w in str(exc), str(exc)
    return exc


def test_gptq_qweight_of_the_wrong_shape(tmp_path):
    _refused(
        _corrupt(tmp_path, "gptq4", lambda p: p | {"qweight": p["qweight"][:-1]}),
        "qweight", "rows",
    )  # fmt: skip
    _refused(  # the config says 4 bits, g_idx and qweight say 8
        _corrupt(tmp_path, "gptq8", lambda p: p, {"quant_method": "gptq", "bits": 4}),
        "qweight", "4 bits",
    )  # fmt: skip
    _refused(  # a GPTQ config over an AWQ layout
        _corrupt(tmp_path, "awq", lambda p: p, {"quant_method": "gptq", "bits": 4}),
        "GPTQ packs",
    )  # fmt: skip


def test_awq_qweight_of_the_wrong_shape(tmp_path):
    _refused(
        _corrupt(tmp_path, "awq", lambda p: p | {"qweight": p["qweight"][:, :-1]}),
        "qweight", "AWQ packs",
    )  # fmt: skip


def _without(word: str):
    return lambda parts: {k: v for k, v in parts.items() if word not in k}


def test_missing_parts(tmp_path):
    _refused(_corrupt(tmp_path, "gptq4", _without("scales")), "has no", "scales")
    _refused(_corrupt(tmp_path, "awq", _without("qzeros")), "has no", "qzeros")
    _refused(_corrupt(tmp_path, "int8", _without("weight")), "has no", "weight")
    _refused(_corrupt(tmp_path, "nf4-nested", _without("nested_absmax")), "nested_absmax")
    _refused(_corrupt(tmp_path, "fp4", _without("quant_state")), "absmax", "quant state")


def test_bad_values_in_the_parts(tmp_path):
    _refused(
        _corrupt(tmp_path, "int8", lambda p: p | {"SCB": p["SCB"][:-2]}), "SCB", "expected [256]"
    )
    _refused(
        _corrupt(tmp_path, "nf4", lambda p: p | {"weight.absmax": p["weight.absmax"][:-1]}),
        "absmax",
    )  # fmt: skip
    bad_json = np.frombuffer(b'{"quant_type": "nf4", "shape": [256', np.uint8).copy()
    _refused(
        _corrupt(tmp_path, "nf4", lambda p: p | {"weight.quant_state.bitsandbytes__nf4": bad_json}),
        "quant_state", "not valid JSON",
    )  # fmt: skip
    stray = np.full(512, 99, np.int32)  # act-order g_idx naming a group that is not there
    _refused(
        _corrupt(tmp_path, "gptq4-act-order", lambda p: p | {"g_idx": stray}),
        "g_idx", "group 99 of 8", read=True,
    )  # fmt: skip


def test_layouts_not_read_are_refused(tmp_path):
    marlin = {"quant_method": "gptq", "bits": 4, "checkpoint_format": "marlin"}
    _refused(_corrupt(tmp_path, "gptq4", lambda p: p, marlin), "marlin", "not read")
    gemv = {"quant_method": "awq", "bits": 4, "version": "gemv"}
    _refused(_corrupt(tmp_path, "awq", lambda p: p, gemv), "gemv", "not read")
    tiled = np.array([2], np.uint8)  # bitsandbytes' col_turing, say
    folder = _corrupt(tmp_path, "int8", lambda p: p)
    parts, _ = _layer_parts("int8", _weights())
    _write(folder, {LAYER: parts | {"weight_format": tiled}})
    _refused(folder, "weight_format", "tiled")


def test_truncated_file(tmp_path):
    for case in ("gptq4", "awq", "int8", "nf4"):
        folder = _corrupt(tmp_path, case, lambda p: p)
        path = folder / "model.safetensors"
        path.write_bytes(path.read_bytes()[:-100])
        _refused(folder, "truncated")


def test_weight_format_zero_is_read(tmp_path):
    parts, deq = _layer_parts("int8", _weights())
    folder = _write(tmp_path, {LAYER: parts | {"weight_format": np.array(0, np.uint8)}})
    with open_checkpoint(folder) as ckpt:
        assert LAYER + ".weight_format" not in [t.name for t in ckpt.tensors]
        np.testing.assert_array_equal(ckpt.read(LAYER + ".weight"), deq)


def test_tensors_of_other_layouts_stay_as_stored(tmp_path):
    """``qweight`` without scales or zero points, or an ``absmax`` beside a float weight,
    belong to no layout read here: they are listed as the plain tensors they are."""
    tensors = {
        "a.qweight": np.zeros((4, 8), np.int32),
        "a.lookup_table": np.zeros((8, 16), np.float16),
        "b.weight": _weights(8, 8),
        "b.weight.absmax": np.ones(1, np.float32),
    }
    save_file(tensors, str(tmp_path / "model.safetensors"))
    with open_checkpoint(tmp_path / "model.safetensors") as ckpt:
        assert {t.name: t.dtype for t in ckpt.tensors} == {
            "a.lookup_table": "F16",
            "a.qweight": "I32",
            "b.weight": "F32",
            "b.weight.absmax": "F32",
        }


# ------------------------------------------------------------------ bitsandbytes itself


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("nested", [False, True])
def test_bitsandbytes_own_quantization_reads_exactly(tmp_path, quant_type, nested):
    """Where bitsandbytes is installed (it is not a dependency), layers it quantizes
    itself, saved under transformers' names, read back as its own dequantization."""
    torch = pytest.importorskip("torch")
    functional = pytest.importorskip("bitsandbytes.functional")
    from safetensors.torch import save_file as save_torch

    w = torch.from_numpy(_weights(96, 200))
    q, state = functional.quantize_4bit(
        w, blocksize=64, quant_type=quant_type, compress_statistics=nested
    )
    tensors = {"m.lin.weight": q}
    tensors |= {f"m.lin.weight.{k}": v for k, v in state.as_dict(packed=True).items()}
    q8, stats, _ = functional.int8_vectorwise_quant(w.clone())
    tensors |= {"m.int8.weight": q8, "m.int8.SCB": stats}
    tensors["m.int8.weight_format"] = torch.tensor(0, dtype=torch.uint8)
    save_torch(tensors, str(tmp_path / "model.safetensors"))
    with open_checkpoint(tmp_path / "model.safetensors") as ckpt:
        got = ckpt.read("m.lin.weight")
        np.testing.assert_array_equal(got, functional.dequantize_4bit(q, state).numpy())
        expect = functional.int8_vectorwise_dequant(q8, stats).numpy()
        np.testing.assert_array_equal(ckpt.read("m.int8.weight"), expect)
