"""Hand-built fingerprints with known relations, for unit tests of the engine."""

from __future__ import annotations

import ml_dtypes
import numpy as np

from heritage.fingerprint import Fingerprint, TensorPrint, tensor_stats

SHAPES = {f"layers.{i}.w": (64, 96) for i in range(6)} | {"layers.0.norm": (96,)}


def make(weights: dict[str, np.ndarray], dtype: str = "F32") -> Fingerprint:
    tensors = {}
    for name, w in weights.items():
        shape = SHAPES[name]
        values = w.reshape(1, -1) if w.ndim == 1 else w
        tensors[name] = TensorPrint(
            name,
            dtype,
            shape,
            np.arange(values.shape[0]),
            (0, values.shape[1]),
            values.astype(np.float32),
            tensor_stats(values),
        )
    return Fingerprint(tensors)


def root(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        n: (rng.standard_normal(s) * 0.1 if len(s) > 1 else np.ones(s)).astype(np.float32)
        for n, s in SHAPES.items()
    }


def finetune(
    parent: dict[str, np.ndarray], seed: int, scale: float = 0.02
) -> dict[str, np.ndarray]:
    """Training-like change: a random step that also grows the weights a little."""
    rng = np.random.default_rng(seed)
    return {
        n: (w * 1.01 + scale * rng.standard_normal(w.shape)).astype(np.float32)
        for n, w in parent.items()
    }


def bf16(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {n: w.astype(ml_dtypes.bfloat16).astype(np.float32) for n, w in weights.items()}


def int8(weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for n, w in weights.items():
        w2 = w.reshape(w.shape[0], -1) if w.ndim > 1 else w.reshape(1, -1)
        scale = np.abs(w2).max(axis=1, keepdims=True) / 127
        out[n] = (np.round(w2 / scale) * scale).reshape(w.shape).astype(np.float32)
    return out


def average(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], alpha: float
) -> dict[str, np.ndarray]:
    return {n: (alpha * a[n] + (1 - alpha) * b[n]).astype(np.float32) for n in a}


def forest(
    families: int, size: int, seed: int, root_seed: int, stride: int
) -> dict[str, dict[str, np.ndarray]]:
    """Random recursive trees: family f is ``root(root_seed + f)`` and ``size - 1``
    fine-tunes of random earlier members, named ``f{f}-root`` and ``f{f}-mNN``; member i
    of family f is ``finetune(..., 10 * root_seed + stride * f + i)``."""
    rng = np.random.default_rng(seed)
    out: dict[str, dict[str, np.ndarray]] = {}
    for f in range(families):
        names = [f"f{f}-root"]
        out[names[0]] = root(root_seed + f)
        for i in range(size - 1):
            name = f"f{f}-m{i:02d}"
            parent = out[names[int(rng.integers(len(names)))]]
            out[name] = finetune(parent, 10 * root_seed + stride * f + i)
            names.append(name)
    return out
