"""Fine-tune a state dict on CPU: one generic loop over the functional nets of ``nets.py``.

A *task* names the net's objective and the synthetic data domain; the loop runs a torch
optimiser (AdamW, Adam, ...) with warm-up and a decay schedule, gradient clipping at 1.0,
and returns the float32 weights (plus intermediate checkpoints of the same run, if asked).
Integer buffers and fixed signal-processing bases are never trained.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from real import data, nets

Params = dict[str, torch.Tensor]

#: Tensors that are fixed transforms, not learned weights (kept as they are in a fine-tune).
FROZEN = {"stft_conv.weight", "basis", "embeddings.position_ids"}
#: Learning rate of a task head that the checkpoint lacks (BERT's MLM head), not saved.
HEAD_LR = 1e-3


@dataclass
class TrainResult:
    weights: Params
    loss_start: float
    loss_end: float
    checkpoints: dict[int, Params] = field(default_factory=dict)
    checkpoint_losses: dict[int, float] = field(default_factory=dict)


def _bert_task(p: Params, task: dict[str, Any], g: torch.Generator):
    dom = data.TextDomain(task["domain"])
    batch, length = task.get("batch", 16), task.get("length", 32)
    vocab = p["embeddings.word_embeddings.weight"].shape[0]
    hidden = p["embeddings.word_embeddings.weight"].shape[1]
    if task["objective"] == "mlm":
        head = nets.mlm_head(hidden, vocab, g)

        def loss(q: Params) -> torch.Tensor:
            b = data.mlm_batch(dom, g, batch, length, vocab)
            return nets.bert_mlm_loss(q, head, b["ids"], b["masked"], b["labels"])

        return loss, head

    def closs(q: Params) -> torch.Tensor:
        b = data.pair_batch(dom, g, batch, length)
        return nets.bert_contrastive_loss(q, b["anchors"], b["positives"])

    return closs, {}


def _vad_task(p: Params, task: dict[str, Any], g: torch.Generator):
    hop = 512 if nets.vad_layout(p) == "silero" else 256
    batch, steps = task.get("batch", 16), task.get("steps_per_clip", 16)

    def loss(q: Params) -> torch.Tensor:
        b = data.vad_batch(g, task, batch, steps, hop, nets.VAD_WINDOW)
        return nets.vad_loss(q, b["windows"], b["labels"])

    return loss, {}


def _onet_task(p: Params, task: dict[str, Any], g: torch.Generator):
    batch = task.get("batch", 32)

    def loss(q: Params) -> torch.Tensor:
        b = data.face_batch(g, task, batch)
        return nets.onet_loss(q, b["img"], b["labels"], b["boxes"])

    return loss, {}


TASKS: dict[str, Callable] = {"bert": _bert_task, "vad": _vad_task, "onet": _onet_task}


def _optimizer(name: str, params: list[dict[str, Any]], lr: float, opt: dict[str, Any]):
    betas = tuple(opt.get("betas", (0.9, 0.999)))
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=opt.get("wd", 0.01))
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=betas)
    raise ValueError(f"unknown optimizer {name!r}")


def _schedule(kind: str, steps: int, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        frac = (step - warmup) / max(1, steps - warmup)
        if kind == "linear":
            return 1.0 - frac
        if kind == "cosine":
            return 0.5 * (1 + math.cos(math.pi * frac))
        return 1.0  # constant

    return f


def train(
    family: str,
    start: Params,
    task: dict[str, Any],
    *,
    steps: int,
    lr: float,
    seed: int,
    optimizer: str = "adamw",
    schedule: str = "linear",
    warmup: int = 10,
    opt: dict[str, Any] | None = None,
    checkpoints: tuple[int, ...] = (),
) -> TrainResult:
    """Train a copy of ``start`` (``family`` picks the net: bert, vad, onet) for ``steps``."""
    g = torch.Generator().manual_seed(seed)
    q: Params = {}
    trainable: list[torch.Tensor] = []
    for name, t in start.items():
        if name in FROZEN or not t.dtype.is_floating_point:
            q[name] = t.clone()
        else:
            q[name] = t.detach().float().clone().requires_grad_(True)
            trainable.append(q[name])
    loss_fn, extra = TASKS[family](q, task, g)
    for t in extra.values():
        t.requires_grad_(True)
    groups: list[dict[str, Any]] = [{"params": trainable}]
    if extra:  # a freshly initialised head learns at its own, larger rate (then is dropped)
        groups.append({"params": list(extra.values()), "lr": HEAD_LR})
    optim = _optimizer(optimizer, groups, lr, opt or {})
    sched = torch.optim.lr_scheduler.LambdaLR(optim, _schedule(schedule, steps, warmup))
    losses: list[float] = []
    result = TrainResult({}, 0.0, 0.0)
    for step in range(1, steps + 1):
        loss = loss_fn(q)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optim.step()
        sched.step()
        losses.append(loss.item())
        if step in checkpoints:
            result.checkpoints[step] = {k: v.detach().clone() for k, v in q.items()}
            result.checkpoint_losses[step] = sum(losses[-10:]) / len(losses[-10:])
    result.weights = {k: v.detach().clone() for k, v in q.items()}
    result.loss_start = sum(losses[:10]) / len(losses[:10])
    result.loss_end = sum(losses[-10:]) / len(losses[-10:])
    return result


def relative_change(a: Params, b: Params) -> float:
    """Global relative L2 distance ||b - a|| / ||a|| over the floating-point tensors."""
    num = den = 0.0
    for k, v in a.items():
        if not v.dtype.is_floating_point:
            continue
        num += float((b[k].float() - v.float()).pow(2).sum())
        den += float(v.float().pow(2).sum())
    return math.sqrt(num / den)
