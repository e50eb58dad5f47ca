"""Random tensors written by the safetensors library read back bit-exactly by our reader."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from heritage.formats import open_checkpoint
from tests.formats.test_safetensors import TORCH_DTYPES


@st.composite
def tensors(draw):
    """Raw random bytes viewed as a dtype: covers NaN, inf, subnormals and every bit pattern."""
    name = draw(st.sampled_from(sorted(TORCH_DTYPES)))
    dtype = TORCH_DTYPES[name]
    shape = draw(st.lists(st.integers(0, 5), min_size=0, max_size=3))
    itemsize = torch.empty(0, dtype=dtype).element_size()
    raw = draw(
        st.binary(min_size=math.prod(shape) * itemsize, max_size=math.prod(shape) * itemsize)
    )
    t = (
        torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype)
        if raw
        else torch.empty(0, dtype=dtype)
    )
    if dtype == torch.bool:
        t = t.view(torch.uint8).bool()
    return name, t.reshape(shape)


def _bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    return bool(
        np.array_equal(nan_a, nan_b)
        and np.array_equal(a.view(np.uint32)[~nan_a], b.view(np.uint32)[~nan_b])
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(tensors(), min_size=1, max_size=4))
def test_safetensors_roundtrip_is_bit_exact(items):
    state = {f"t{i}.{name}": t for i, (name, t) in enumerate(items)}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "r.safetensors"
        save_file(state, path)
        with open_checkpoint(path) as ckpt:
            for key, t in state.items():
                info = ckpt.info(key)
                assert info.dtype == key.split(".", 1)[1]
                assert info.shape == tuple(t.shape)
                expected = t.to(torch.float32).numpy()
                assert _bits_equal(ckpt.read(key), expected), key
