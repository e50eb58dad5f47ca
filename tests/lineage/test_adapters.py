"""Adapters: a merged LoRA changes its target matrices at low rank on the sampled rows."""

from __future__ import annotations

import numpy as np

from heritage.fingerprint import Fingerprint, TensorPrint, tensor_stats
from heritage.lineage.adapters import step_rank


def _print(weights: dict[str, np.ndarray]) -> Fingerprint:
    return Fingerprint(
        {
            name: TensorPrint(
                name,
                "F32",
                w.shape,
                np.arange(w.shape[0]),
                (0, w.shape[1]),
                w.astype(np.float32),
                tensor_stats(w),
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
