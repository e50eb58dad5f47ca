"""Adapters: a merged LoRA changes its target matrices at low rank on the sampled rows."""

from __future__ import annotations

import numpy as np

from heritage.fingerprint import Fingerprint, TensorPrint, tensor_stats
from heritage.lineage.adapters import step_rank


def _print(weights: dict[str, np.ndarray]) -> Fingerprint:
    """Every row sampled; a vector (a norm, a bias) is one row of values."""
    return Fingerprint(
        {
            name: TensorPrint(
                name,
                "F32",
                w.shape,
                np.arange(w.reshape(-1, w.shape[-1]).shape[0]),
                (0, w.shape[-1]),
                w.reshape(-1, w.shape[-1]).astype(np.float32),
                tensor_stats(w.reshape(-1, w.shape[-1])),
            )
            for name, w in weights.items()
        }
    )


def _net(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "body.weight": rng.normal(0, 0.1, (64, 96)),
        "head.weight": rng.normal(0, 0.1, (10, 96)),
    }


def test_a_lora_that_also_touches_a_ten_class_head_is_still_low_rank():
    """Any change to a 10-row head has rank 10 at most: that matrix cannot tell a LoRA
    from a fine-tune, so the rank is read on the body alone."""
    rng = np.random.default_rng(1)
    base = _net(0)
    lora = {
        "body.weight": base["body.weight"]
        + rng.normal(0, 0.05, (64, 10)) @ rng.normal(0, 0.05, (10, 96)),
        "head.weight": base["head.weight"]
        + rng.normal(0, 0.05, (10, 10)) @ rng.normal(0, 0.05, (10, 96)),
    }
    got = step_rank(_print(base), _print(lora))
    assert got.low_rank
    assert got.rank == 10


def test_a_full_fine_tune_is_not_low_rank():
    rng = np.random.default_rng(2)
    base = _net(0)
    tuned = {k: w + rng.normal(0, 0.01, w.shape) for k, w in base.items()}
    assert not step_rank(_print(base), _print(tuned)).low_rank


def _blocks(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {
        "embed.weight": rng.normal(0, 0.1, (32, 48)),
        "pooler.weight": rng.normal(0, 0.1, (48, 48)),
    }
    for layer in range(2):
        for module in ("q", "k", "v", "o"):
            out[f"layers.{layer}.attn.{module}.weight"] = rng.normal(0, 0.1, (32, 48))
        out[f"layers.{layer}.attn.k.bias"] = rng.normal(0, 0.1, 32)
        out[f"layers.{layer}.norm.weight"] = 1.0 + rng.normal(0, 0.01, 48)
    return out


def test_a_lora_above_the_sampled_rank_is_an_adapter_by_the_modules_it_left_alone():
    """Rank 40 on 32 sampled rows is full-rank there; but the LoRA changed q and v of
    each layer and left k and o exactly as they were, which training never does."""
    rng = np.random.default_rng(3)
    base = _blocks(0)
    lora = dict(base)

    def merge_rank_40(modules: tuple[str, ...]) -> None:
        for layer in range(2):
            for module in modules:
                name = f"layers.{layer}.attn.{module}.weight"
                step = rng.normal(0, 0.05, (32, 40)) @ rng.normal(0, 0.05, (40, 48))
                lora[name] = base[name] + step

    merge_rank_40(("q", "v"))
    got = step_rank(_print(base), _print(lora))
    assert not got.low_rank and got.partial_block and got.adapter
    # on every matrix of its blocks, it still leaves their norms and biases alone
    merge_rank_40(("k", "o"))
    got = step_rank(_print(base), _print(lora))
    assert not got.low_rank and got.partial_block and got.adapter


def test_a_fine_tune_that_leaves_heads_and_embeddings_alone_is_no_adapter():
    """Real fine-tunes leave a pooler or a head the loss never reaches, and embedding
    rows of unseen tokens, exactly as they were; inside the layers every matrix moves."""
    rng = np.random.default_rng(4)
    base = _blocks(0)
    tuned = {
        k: w + rng.normal(0, 0.01, w.shape) if k.startswith("layers.") else w
        for k, w in base.items()
    }
    for layer in range(2):  # an attention key bias gets no gradient at all
        tuned[f"layers.{layer}.attn.k.bias"] = base[f"layers.{layer}.attn.k.bias"]
    got = step_rank(_print(base), _print(tuned))
    assert not got.partial_block and not got.adapter
    # a fine-tune that froze a matrix inside a block reads as an adapter: the rule
    # cannot tell it from a LoRA that skipped that module
    tuned["layers.1.attn.o.weight"] = base["layers.1.attn.o.weight"]
    assert step_rank(_print(base), _print(tuned)).partial_block
