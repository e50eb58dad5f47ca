"""Packed quantized layers (GPTQ, AWQ, bitsandbytes): the numpy unpacking in
``heritage.formats.packed`` against the test-side quantizers in ``quantizers.py``."""

from __future__ import annotations

import numpy as np
import pytest

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
from tests.formats import quantizers as Q


def _weights(out: int = 256, n_in: int = 512, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((out, n_in)) * 0.02).astype(np.float32)


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
