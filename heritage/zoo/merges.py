"""Model merges as the merging toolkits publish them, over float32 ``{name: tensor}`` dicts.

Every method works tensor by tensor (1-D norms and biases too) on models of identical
names and shapes. The methods that work on task vectors (``task-arithmetic``, ``ties``,
``dare``) take a ``base``: the common ancestor the merged fine-tunes started from; the
merge is ``base`` plus a combination of the differences ``model - base``.

* ``linear``: ``sum(w_i * model_i)`` (a "model soup"; the weights need not sum to 1).
* ``slerp``: spherical interpolation between two models at ``t`` (weights ``1-t, t``), per
  tensor, falling back to linear interpolation for nearly parallel tensors.
* ``task-arithmetic``: ``base + sum(w_i * (model_i - base))``.
* ``ties``: each task vector trimmed to its ``density`` share of largest magnitudes, a
  sign elected per entry from the weighted sum, then the weighted mean of the entries that
  agree with it (disjoint mean) added to the base.
* ``dare``: each task vector's entries dropped at random with probability ``1 - density``
  and the survivors rescaled by ``1 / density``, then added as in task arithmetic.
"""

from __future__ import annotations

import math

import torch

from heritage.zoo.nets import Weights
from heritage.zoo.truth import MERGE_METHODS

#: Methods that combine task vectors relative to a base model.
BASED_METHODS = ("task-arithmetic", "ties", "dare")


def _check_same(models: list[Weights]) -> list[str]:
    names = list(models[0])
    for m in models[1:]:
        if list(m) != names or any(m[k].shape != models[0][k].shape for k in names):
            raise ValueError("merged models must have identical tensor names and shapes")
    return names


def linear_merge(parents: list[Weights], weights: list[float]) -> Weights:
    """Weighted sum of same-shaped checkpoints (a "model soup" / linear merge)."""
    names = _check_same(parents)
    return {k: sum(c * p[k] for c, p in zip(weights, parents, strict=True)) for k in names}


def slerp(a: Weights, b: Weights, t: float) -> Weights:
    """Spherical interpolation from ``a`` (t=0) to ``b`` (t=1), tensor by tensor."""
    names = _check_same([a, b])
    out: Weights = {}
    for k in names:
        x, y = a[k].reshape(-1).double(), b[k].reshape(-1).double()
        nx, ny = float(x.norm()), float(y.norm())
        cos = float(x @ y) / (nx * ny) if nx > 0 and ny > 0 else 1.0
        cos = max(-1.0, min(1.0, cos))
        if cos > 0.9995:
            z = (1.0 - t) * x + t * y
        else:
            theta = math.acos(cos)
            s = math.sin(theta)
            z = (math.sin((1.0 - t) * theta) / s) * x + (math.sin(t * theta) / s) * y
        out[k] = z.to(torch.float32).reshape(a[k].shape)
    return out


def task_arithmetic(base: Weights, models: list[Weights], weights: list[float]) -> Weights:
    """``base + sum(w_i * (model_i - base))``."""
    names = _check_same([base, *models])
    return {
        k: base[k] + sum(w * (m[k] - base[k]) for w, m in zip(weights, models, strict=True))
        for k in names
    }


def _trim(delta: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``density`` share of entries with the largest magnitudes (at least one)."""
    flat = delta.reshape(-1)
    keep = max(1, round(density * flat.numel()))
    if keep >= flat.numel():
        return delta.clone()
    idx = torch.topk(flat.abs(), keep, sorted=False).indices
    out = torch.zeros_like(flat)
    out[idx] = flat[idx]
    return out.reshape(delta.shape)


def ties(base: Weights, models: list[Weights], weights: list[float], density: float) -> Weights:
    """TIES merging: trim, elect signs, disjoint weighted mean of the agreeing entries."""
    names = _check_same([base, *models])
    out: Weights = {}
    for k in names:
        deltas = torch.stack(
            [w * _trim(m[k] - base[k], density) for w, m in zip(weights, models, strict=True)]
        )
        scale = torch.tensor(weights, dtype=torch.float32).reshape(-1, *[1] * base[k].ndim)
        sign = torch.sign(deltas.sum(0))
        agree = (torch.sign(deltas) == sign) & (deltas != 0)
        total = (deltas * agree).sum(0)
        mass = (scale * agree).sum(0)
        merged = torch.where(mass > 0, total / mass.clamp_min(1e-12), torch.zeros_like(total))
        out[k] = base[k] + merged
    return out


def dare(
    base: Weights,
    models: list[Weights],
    weights: list[float],
    density: float,
    gen: torch.Generator,
) -> Weights:
    """DARE: drop task-vector entries at random, rescale the rest, add them to the base."""
    names = _check_same([base, *models])
    out: Weights = {}
    for k in names:
        acc = base[k].clone()
        for w, m in zip(weights, models, strict=True):
            delta = m[k] - base[k]
            keep = torch.rand(delta.shape, generator=gen) < density
            acc = acc + w * (delta * keep) / density
        out[k] = acc
    return out


def merge(
    method: str,
    models: list[Weights],
    weights: list[float],
    base: Weights | None = None,
    density: float = 1.0,
    gen: torch.Generator | None = None,
) -> Weights:
    """Dispatch on ``method`` (one of ``MERGE_METHODS``)."""
    if method == "linear":
        return linear_merge(models, weights)
    if method == "slerp":
        if len(models) != 2:
            raise ValueError("slerp merges exactly two models")
        return slerp(models[0], models[1], weights[1] / (weights[0] + weights[1]))
    if method not in BASED_METHODS:
        raise ValueError(f"unknown merge method {method!r}; expected one of {MERGE_METHODS}")
    if base is None:
        raise ValueError(f"{method} needs a base model")
    if method == "task-arithmetic":
        return task_arithmetic(base, models, weights)
    if method == "ties":
        return ties(base, models, weights, density)
    return dare(base, models, weights, density, gen or torch.Generator().manual_seed(0))
