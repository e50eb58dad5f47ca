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
    """Low-rank adapter settings; adapters are merged into the base weights after training.

    ``modules`` names the adapted matrices (short names from ``Net.lora_modules``); None
    keeps the net's default set.
    """

    rank: int
    alpha: float
    modules: tuple[str, ...] | None = None


OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop")
#: ``warmup10-cosine`` is the classic zoo's schedule; the others take ``Optim.warmup``.
SCHEDULES = ("warmup10-cosine", "constant", "cosine", "warmup-constant", "warmup-cosine", "rising")


@dataclass(frozen=True)
class Optim:
    """Optimiser and learning-rate schedule of one training run (gradients clipped at 1.0).

    ``weight_decay`` is decoupled for AdamW and an L2 term for the others; it never applies
    to 1-D tensors. ``warmup`` is the warm-up's share of the run, ``betas`` serve Adam(W)
    and ``momentum`` SGD and RMSprop. The defaults are the classic zoo's AdamW.
    """

    name: str = "adamw"
    schedule: str = "warmup10-cosine"
    weight_decay: float = 0.01
    warmup: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    momentum: float = 0.9

    def make(self, groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
        if self.name == "adamw":
            return torch.optim.AdamW(groups, lr=lr, betas=self.betas, foreach=False)
        if self.name == "adam":
            return torch.optim.Adam(groups, lr=lr, betas=self.betas, foreach=False)
        if self.name == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=self.momentum, foreach=False)
        if self.name == "rmsprop":
            return torch.optim.RMSprop(
                groups, lr=lr, alpha=0.99, momentum=self.momentum, foreach=False
            )
        raise ValueError(f"unknown optimizer {self.name!r}; expected one of {OPTIMIZERS}")


def _lr_at(step: int, total: int, peak: float) -> float:
    """Linear warm-up over 10 % of the run, then cosine decay to 10 % of the peak."""
    warm = max(1, total // 10)
    if step < warm:
        return peak * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def lr_at(step: int, total: int, peak: float, schedule: str, warmup: float = 0.1) -> float:
    """Learning rate of ``step`` (0-based) of ``total`` under a schedule of ``SCHEDULES``.

    Cosine decays end at 10 % of the peak; ``rising`` climbs linearly from 10 % of the peak
    to the peak at the last step.
    """
    if schedule == "warmup10-cosine":
        return _lr_at(step, total, peak)
    warm = max(1, round(total * warmup)) if schedule.startswith("warmup-") else 0
    if step < warm:
        return peak * (step + 1) / warm
    if schedule in ("constant", "warmup-constant"):
        return peak
    if schedule in ("cosine", "warmup-cosine"):
        progress = (step - warm) / max(1, total - warm)
        return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))
    if schedule == "rising":
        return peak * (0.1 + 0.9 * step / max(1, total - 1))
    raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")


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
    optim: Optim | None = None,
) -> TrainResult:
    """Optimise next-token / classification loss from ``init`` and return the new weights.

    ``optim`` defaults to the classic AdamW with ``weight_decay`` and a 10 % warm-up then
    cosine schedule. With ``lora`` only rank-r adapters on the LoRA targets are trained; the
    result has ``W + (alpha / r) * B @ A`` merged in, as people do before publishing a
    merged adapter.
    """
    optim = optim or Optim(weight_decay=weight_decay)
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
            {"params": decay, "weight_decay": optim.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
    else:
        for name in net.lora_targets(params, lora.modules):
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

    opt = optim.make(groups, lr)
    trainable = [t for g in groups for t in g["params"]]
    losses: list[float] = []
    result = TrainResult(weights={}, loss_start=0.0, loss_end=0.0)
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps, lr, optim.schedule, optim.warmup)
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
