from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import save_file

from heritage.fingerprint import FingerprintSettings, fingerprint, fingerprint_nbytes, sample_plan
from heritage.formats import TensorInfo, open_checkpoint


def llama_listing(layers: int, hidden: int, inter: int, vocab: int) -> list[TensorInfo]:
    out = [TensorInfo("model.embed_tokens.weight", "BF16", (vocab, hidden), "f")]
    for i in range(layers):
        p = f"model.layers.{i}."
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            out.append(TensorInfo(f"{p}self_attn.{n}.weight", "BF16", (hidden, hidden), "f"))
        out.append(TensorInfo(f"{p}mlp.gate_proj.weight", "BF16", (inter, hidden), "f"))
        out.append(TensorInfo(f"{p}mlp.up_proj.weight", "BF16", (inter, hidden), "f"))
        out.append(TensorInfo(f"{p}mlp.down_proj.weight", "BF16", (hidden, inter), "f"))
        out.append(TensorInfo(f"{p}input_layernorm.weight", "BF16", (hidden,), "f"))
        out.append(TensorInfo(f"{p}post_attention_layernorm.weight", "BF16", (hidden,), "f"))
    out.append(TensorInfo("model.norm.weight", "BF16", (hidden,), "f"))
    out.append(TensorInfo("lm_head.weight", "BF16", (vocab, hidden), "f"))
    return out


def test_seven_billion_parameter_fingerprint_is_under_4_mb():
    listing = llama_listing(32, 4096, 11008, 32000)
    assert sum(t.n_params for t in listing) > 6.7e9
    assert fingerprint_nbytes(listing) < 4 * 1024 * 1024


def test_plan_is_deterministic_and_shared_across_vocab_sizes():
    s = FingerprintSettings()
    a = sample_plan(TensorInfo("model.embed_tokens.weight", "F32", (32000, 4096), "f"), s)
    b = sample_plan(TensorInfo("model.embed_tokens.weight", "F32", (32000, 4096), "x"), s)
    assert a == b and len(a.rows) == s.rows and a.cols[1] - a.cols[0] == s.cols
    grown = sample_plan(TensorInfo("model.embed_tokens.weight", "F32", (32768, 4096), "f"), s)
    assert len(set(a.rows) & set(grown.rows)) >= 0.9 * s.rows
    other = sample_plan(
        TensorInfo("model.layers.0.mlp.up_proj.weight", "F32", (32000, 4096), "f"), s
    )
    assert other.rows != a.rows  # positions depend on the tensor's name


def test_small_tensors_are_read_whole(tmp_path):
    t = torch.randn(64, 100)
    save_file({"w": t, "b": torch.randn(7)}, tmp_path / "m.safetensors")
    with open_checkpoint(tmp_path / "m.safetensors") as ckpt:
        fp = fingerprint(ckpt)
    np.testing.assert_array_equal(fp.tensors["w"].values, t.numpy())
    assert fp.tensors["b"].values.shape == (1, 7)


def test_fingerprint_samples_match_the_weights(tmp_path):
    t = torch.randn(1024, 512).to(torch.bfloat16)
    save_file({"w": t}, tmp_path / "m.safetensors")
    with open_checkpoint(tmp_path / "m.safetensors") as ckpt:
        fp = fingerprint(ckpt)
        assert ckpt.bytes_read < 64 * 1024 + 32 * 128 * 2 * 2
    tp = fp.tensors["w"]
    lo, hi = tp.cols
    np.testing.assert_array_equal(tp.values, t.float().numpy()[tp.rows, lo:hi])
    assert tp.values.shape == (32, 128)
    v = tp.values.astype(np.float64).ravel()
    assert abs(tp.stats["std"] - v.std()) < 1e-9
    assert abs(tp.stats["rms"] - np.sqrt((v**2).mean())) < 1e-9


def test_larger_models_sample_fewer_rows_from_the_same_stream():
    big = llama_listing(80, 8192, 28672, 32000)  # 70B
    assert sum(t.n_params for t in big) > 6.5e10
    settings = FingerprintSettings().for_tensors(big)
    assert 8 <= settings.rows < FingerprintSettings().rows
    assert fingerprint_nbytes(big) <= 4 * settings.max_entries
    # fewer rows are a prefix of the same stream: still comparable with a full print
    t = big[1]
    few, full = sample_plan(t, settings), sample_plan(t, FingerprintSettings())
    assert set(few.rows) < set(full.rows) and few.cols == full.cols
    # a small model keeps the full sample
    small = llama_listing(4, 1024, 2816, 32000)  # ~0.3B
    assert FingerprintSettings().for_tensors(small).rows == 32
