"""GGUF files written by the gguf package's writer and quantizers, read back as rows."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q
from gguf import GGUFWriter
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize, quantize

from heritage.formats import BadCheckpoint, LocalFileSource, open_checkpoint
from heritage.formats.gguf_reader import NAMED_ARCHITECTURES, gguf_name, hf_name, parse_gguf

QUANTIZABLE = (Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.BF16)
# no quantizer in the gguf package: random blocks (any bytes decode)
RANDOM_BLOCKS = (Q.Q2_K, Q.Q3_K, Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.IQ4_NL, Q.IQ4_XS, Q.IQ2_XS)


def _stored(values: np.ndarray, qtype: Q, seed: int = 0) -> np.ndarray:
    """What the writer stores for ``values`` (float32, rows x cols) as ``qtype``."""
    if qtype == Q.F32:
        return values.astype(np.float32)
    if qtype == Q.F16:
        return values.astype(np.float16)
    if qtype in QUANTIZABLE:
        return quantize(values, qtype)
    block, size = GGML_QUANT_SIZES[qtype]
    rng = np.random.default_rng(seed)
    n = values.shape[1] // block * size
    return rng.integers(0, 256, (values.shape[0], n), dtype=np.uint8)


def write_gguf(
    path: Path,
    tensors: dict[str, tuple[np.ndarray, Q]],
    arch: str = "qwen2",
    meta: dict[str, object] | None = None,
    split_max_tensors: int = 0,
) -> dict[str, np.ndarray]:
    """Write a GGUF; returns each tensor's stored array (quantized bytes or floats)."""
    w = GGUFWriter(path, arch, split_max_tensors=split_max_tensors)
    for key, value in (meta or {}).items():
        if isinstance(value, str):
            w.add_string(key, value)
        else:
            w.add_uint32(key, int(value))
    stored = {}
    for name, (values, qtype) in tensors.items():
        data = _stored(values, qtype)
        plain = qtype in (Q.F32, Q.F16)
        w.add_tensor(name, data, raw_dtype=None if plain else qtype)
        stored[name] = data
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return stored


def _values(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.05, (rows, cols)).astype(np.float32)


@pytest.mark.parametrize("qtype", [Q.F32, Q.F16, *QUANTIZABLE, *RANDOM_BLOCKS], ids=str)
def test_sampled_rows_and_windows_match_the_whole_tensor(tmp_path, qtype):
    path = tmp_path / "m.gguf"
    stored = write_gguf(path, {"blk.0.ffn_down.weight": (_values(6, 512), qtype)})
    data = stored["blk.0.ffn_down.weight"]
    if qtype in (Q.F32, Q.F16):
        full = data.astype(np.float32)
    else:
        with np.errstate(all="ignore"):  # random scales may decode to inf or nan
            full = dequantize(data, qtype).astype(np.float32).reshape(6, 512)
    with open_checkpoint(path) as ckpt:
        name = "model.layers.0.mlp.down_proj.weight"
        info = ckpt.info(name)
        assert info.shape == (6, 512)
        assert info.dtype == {Q.F32: "F32", Q.F16: "F16", Q.BF16: "BF16"}.get(qtype, qtype.name)
        np.testing.assert_array_equal(ckpt.read_rows(name, [5, 0, 3]), full[[5, 0, 3]])
        window = ckpt.read_rows(name, [1, 4], cols=(37, 301))
        np.testing.assert_array_equal(window, full[[1, 4], 37:301])


def test_quantized_rows_are_close_to_the_weights(tmp_path):
    values = _values(4, 256, seed=3)
    write_gguf(tmp_path / "m.gguf", {"blk.0.attn_v.weight": (values, Q.Q8_0)})
    with open_checkpoint(tmp_path / "m.gguf") as ckpt:
        got = ckpt.read_rows("model.layers.0.self_attn.v_proj.weight", range(4))
    step = np.abs(values).reshape(4, -1, 32).max(axis=2) / 127  # Q8_0's block scale
    # half a step of rounding, plus the scale's own rounding to float16 (x 127)
    assert np.all(np.abs(got - values).reshape(4, -1, 32) <= 0.6 * step[..., None])
    assert np.abs(got - values).max() > 0  # it was rounded


def _llama_permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter's row order for q and k (facts from convert_hf_to_gguf)."""
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


def test_llama_query_and_key_rows_come_back_in_hugging_face_order(tmp_path):
    q, k = _values(32, 64, seed=1), _values(16, 64, seed=2)  # 4 heads of 8; 2 kv heads
    write_gguf(
        tmp_path / "m.gguf",
        {
            "blk.0.attn_q.weight": (_llama_permute(q, 4), Q.F32),
            "blk.0.attn_k.weight": (_llama_permute(k, 2), Q.F32),
        },
        arch="llama",
        meta={"llama.attention.head_count": 4, "llama.attention.head_count_kv": 2},
    )
    with open_checkpoint(tmp_path / "m.gguf") as ckpt:
        np.testing.assert_array_equal(
            ckpt.read_rows("model.layers.0.self_attn.q_proj.weight", range(32)), q
        )
        np.testing.assert_array_equal(
            ckpt.read_rows("model.layers.0.self_attn.k_proj.weight", [15, 2, 9]), k[[15, 2, 9]]
        )


def test_names_map_back_per_architecture():
    assert hf_name("token_embd.weight", "llama") == "model.embed_tokens.weight"
    assert (
        hf_name("blk.3.attn_output.weight", "mistral") == "model.layers.3.self_attn.o_proj.weight"
    )
    assert hf_name("blk.0.attn_q.bias", "qwen2") == "model.layers.0.self_attn.q_proj.bias"
    assert hf_name("blk.1.ffn_up.weight", "gemma") == "model.layers.1.mlp.up_proj.weight"
    assert hf_name("blk.1.ffn_up.weight", "phi3") == "model.layers.1.mlp.gate_up_proj.weight"
    assert hf_name("blk.1.attn_qkv.weight", "phi3") == "model.layers.1.self_attn.qkv_proj.weight"
    assert hf_name("output.weight", "llama") == "lm_head.weight"
    assert hf_name("blk.0.attn_q.weight", "mamba") == "blk.0.attn_q.weight"
    for name in ("token_embd.weight", "blk.3.attn_q.weight", "blk.1.ffn_down.weight"):
        for arch in NAMED_ARCHITECTURES:
            assert gguf_name(hf_name(name, arch), arch) == name
    assert gguf_name("model.layers.0.mlp.experts.0.weight", "llama") is None


def test_declared_base_model_is_kept_and_token_lists_are_not(tmp_path):
    path = tmp_path / "m.gguf"
    w = GGUFWriter(path, "llama")
    w.add_string("general.base_model.0.name", "Llama 3 8B")
    w.add_string(
        "general.base_model.0.repo_url", "https://huggingface.co/meta-llama/Meta-Llama-3-8B"
    )
    w.add_array("tokenizer.ggml.tokens", [f"t{i}" for i in range(5000)])
    w.add_tensor("output_norm.weight", np.ones(8, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open_checkpoint(path) as ckpt:
        assert ckpt.header_metadata["general.base_model.0.name"] == "Llama 3 8B"
        assert "tokenizer.ggml.tokens" not in ckpt.header_metadata
        np.testing.assert_array_equal(ckpt.read_rows("model.norm.weight", [0, 7]), [1.0, 1.0])


def test_a_split_gguf_reads_as_one_model(tmp_path):
    tensors = {f"blk.{i}.ffn_down.weight": (_values(4, 64, seed=i), Q.F32) for i in range(3)}
    write_gguf(tmp_path / "m.gguf", tensors, split_max_tensors=1)
    files = sorted(p.name for p in tmp_path.glob("*.gguf"))
    assert files == [f"m-0000{k}-of-00003.gguf" for k in (1, 2, 3)]
    with open_checkpoint(tmp_path / files[0]) as ckpt:
        assert len(ckpt.tensors) == 3
        np.testing.assert_array_equal(
            ckpt.read_rows("model.layers.2.mlp.down_proj.weight", [1]),
            tensors["blk.2.ffn_down.weight"][0][[1]],
        )
    (tmp_path / files[1]).unlink()
    with pytest.raises(BadCheckpoint, match="split GGUF is missing m-00002-of-00003.gguf"):
        open_checkpoint(tmp_path / files[0])


def test_only_the_sampled_blocks_are_read(tmp_path):
    path = tmp_path / "m.gguf"
    write_gguf(path, {"blk.0.ffn_down.weight": (_values(512, 4096), Q.Q8_0)})
    with open_checkpoint(path) as ckpt:
        header = ckpt.bytes_read
        ckpt.read_rows("model.layers.0.mlp.down_proj.weight", [0, 100, 511], cols=(0, 128))
        assert ckpt.bytes_read - header == 3 * 4 * 34  # 4 blocks of 34 bytes per row
    assert path.stat().st_size > 2_000_000


def _header(kv: bytes = b"", n_kv: int = 0, tensors: bytes = b"", n_tensors: int = 0) -> bytes:
    return b"GGUF" + struct.pack("<IQQ", 3, n_tensors, n_kv) + kv + tensors


def _string(s: str) -> bytes:
    return struct.pack("<Q", len(s)) + s.encode()


def _bad(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "bad.gguf"
    path.write_bytes(data + b"\0" * 64)
    return path


def test_bad_files_get_one_line_errors(tmp_path):
    cases = {
        "not a GGUF file": b"GGML" + b"\0" * 40,
        "unsupported GGUF version 7": b"GGUF" + struct.pack("<IQQ", 7, 0, 0),
        "GGUF array of absurd length": _header(
            _string("tokenizer.ggml.tokens") + struct.pack("<IIQ", 9, 8, 2**61), 1
        ),
        "unknown GGML type 99": _header(
            tensors=_string("w") + struct.pack("<IQQIQ", 2, 32, 2, 99, 0), n_tensors=1
        ),
        "past end of file": _header(
            tensors=_string("w") + struct.pack("<IQQIQ", 2, 4096, 4096, 0, 0), n_tensors=1
        ),
        "metadata value of unknown type 42": _header(_string("k") + struct.pack("<I", 42), 1),
    }
    for reason, data in cases.items():
        with pytest.raises(BadCheckpoint, match=reason) as err:
            open_checkpoint(_bad(tmp_path, data))
        assert str(err.value).startswith(str(tmp_path / "bad.gguf")) and "\n" not in str(err.value)


def test_truncated_and_oversized_headers_are_refused(tmp_path):
    path = tmp_path / "m.gguf"
    write_gguf(
        path, {"blk.0.ffn_down.weight": (_values(4, 64), Q.F32)}, meta={"general.name": "x" * 5000}
    )
    whole = path.read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[:3000])
    with pytest.raises(BadCheckpoint, match="header runs past end of file"):
        open_checkpoint(cut)
    with pytest.raises(BadCheckpoint, match="metadata runs past the 0 MB limit"):
        parse_gguf(LocalFileSource(path), max_metadata=4096)
