"""Training loops and weight transforms that produce each relation kind of the zoo.

Everything takes and returns float32 ``{name: tensor}`` dicts; randomness comes only from
explicitly seeded ``torch.Generator`` objects so a zoo is reproducible bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from heritage.zoo.nets import Net, Weights
from heritage.zoo.tasks import dataset

BATCH_SIZES = {"llama": 16, "vit": 32, "mlp": 128}


@dataclass
class TrainResult:
    """Trained weights plus loss bookkeeping (recorded in the recipe as evidence of learning)."""

    weights: Weights
    loss_start: float
    loss_end: float
    #: weights snapshotted after the given step counts (a "snake" of checkpoints)
    checkpoints: dict[int, Weights] = field(default_factory=dict)
    #: loss averaged over the last steps before each checkpoint
    checkpoint_losses: dict[int, float] = field(default_factory=dict)


@dataclass(frozen=True)
class LoraSpec:
    """Low-rank adapter settings; adapters are merged into the base weights after training."""

    rank: int
    alpha: float


def _lr_at(step: int, total: int, peak: float) -> float:
    """Linear warm-up over 10 % of the run, then cosine decay to 10 % of the peak."""
    warm = max(1, total // 10)
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def _window_mean(values: list[float], n: int = 10) -> float:
    window = values[:n] if n > 0 else values[n:]
    return round(sum(window) / len(window), 5)


def train(
    net: Net,
    init: Weights,
    task: dict[str, Any],
    *,
    steps: int,
    lr: float,
    seed: int,
    zoo_seed: int,
    weight_decay: float = 0.01,
    lora: LoraSpec | None = None,
    checkpoints: tuple[int, ...] = (),
) -> TrainResult:
    """Run AdamW on next-token / classification loss from ``init`` and return the new weights.

    With ``lora`` only rank-r adapters on the net's LoRA targets are trained; the result has
    ``W + (alpha / r) * B @ A`` merged in, as people do before publishing a merged adapter.
    """
    data = dataset(task, zoo_seed)
    n_examples = data[0].shape[0]
    batch_size = BATCH_SIZES[net.name]
    gen = torch.Generator().manual_seed(seed)

    params = {k: v.detach().clone() for k, v in init.items()}
    adapters: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    if lora is None:
        for v in params.values():
            v.requires_grad_(True)
        decay = [v for v in params.values() if v.ndim >= 2]
        no_decay = [v for v in params.values() if v.ndim < 2]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
    else:
        for name in net.lora_targets(params):
            out_dim, in_dim = params[name].shape
            a = torch.randn((lora.rank, in_dim), generator=gen) / math.sqrt(in_dim)
            b = torch.zeros((out_dim, lora.rank))
            adapters[name] = (a.requires_grad_(True), b.requires_grad_(True))
        groups = [{"params": [t for ab in adapters.values() for t in ab], "weight_decay": 0.0}]
    scaling = lora.alpha / lora.rank if lora else 0.0

    def effective() -> Weights:
        if not adapters:
            return params
        out = dict(params)
        for name, (a, b) in adapters.items():
            out[name] = params[name] + scaling * (b @ a)
        return out

    def snapshot() -> Weights:
        with torch.no_grad():
            return {k: v.detach().clone() for k, v in effective().items()}

    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), foreach=False)
    trainable = [t for g in groups for t in g["params"]]
    losses: list[float] = []
    result = TrainResult(weights={}, loss_start=0.0, loss_end=0.0)
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = _lr_at(step, steps, lr)
        idx = torch.randint(0, n_examples, (batch_size,), generator=gen)
        loss = net.loss(effective(), tuple(t[idx] for t in data))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        losses.append(float(loss.detach()))
        if step + 1 in checkpoints:
            result.checkpoints[step + 1] = snapshot()
            result.checkpoint_losses[step + 1] = _window_mean(losses, -10)
    result.weights = snapshot()
    result.loss_start = _window_mean(losses, 10)
    result.loss_end = _window_mean(losses, -10)
    return result


def resize_vocab(w: Weights, new_vocab: int, gen: torch.Generator) -> Weights:
    """Append embedding and lm_head rows, initialised at the mean old row plus small noise."""
    out = dict(w)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        old = w[name]
        extra = new_vocab - old.shape[0]
        if extra <= 0:
            raise ValueError(f"new vocab {new_vocab} must exceed {old.shape[0]}")
        noise = torch.randn((extra, old.shape[1]), generator=gen) * 0.01
        out[name] = torch.cat([old, old.mean(0, keepdim=True) + noise], dim=0)
    return out


def int8_roundtrip(w: Weights) -> Weights:
    """Per-row absmax int8 quantise then dequantise tensors with >= 2 dims (1-D kept as is).

    This is what an int8 checkpoint "looks like" once loaded: same names and shapes, values
    snapped to 255 levels per output row.
    """
    out: Weights = {}
    for name, t in w.items():
        if t.ndim < 2:
            out[name] = t.clone()
            continue
        rows = t.reshape(t.shape[0], -1)
        scale = rows.abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
        q = torch.clamp(torch.round(rows / scale), -127, 127)
        out[name] = (q * scale).reshape(t.shape)
    return out


def cast_roundtrip(w: Weights, dtype: torch.dtype) -> Weights:
    """Values as they are after saving in a lower precision (kept in float32 in memory)."""
    return {k: v.to(dtype).to(torch.float32) for k, v in w.items()}


def linear_merge(parents: list[Weights], weights: list[float]) -> Weights:
    """Weighted average of same-shaped checkpoints (a "model soup" / linear merge)."""
    names = list(parents[0])
    for p in parents[1:]:
        if list(p) != names or any(p[k].shape != parents[0][k].shape for k in names):
            raise ValueError("merge parents must have identical tensor names and shapes")
    return {k: sum(c * p[k] for c, p in zip(weights, parents, strict=True)) for k in names}
