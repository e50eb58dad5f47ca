"""Synthetic lineage shapes of one architecture, for the accuracy and scale benches.

Every step is ``w' = 1.01 w + N(0, 0.004^2)`` over 4 matrices of 8 sampled rows x 128
columns (the shapes the issue "Lineage at Hub scale" states its goals on; a plain
minimum spanning tree recovers them exactly, so they check scale, not difficulty):

- ``star``: one base and ``n - 1`` direct fine-tunes;
- ``forest``: random recursive trees in families of 100;
- ``chains``: checkpoint chains of 10 models, each the child of the one before.
"""

from __future__ import annotations

import dataclasses

import networkx as nx
import numpy as np

from heritage.fingerprint import Fingerprint, TensorPrint
from heritage.lineage import ModelInput

__all__ = ["SHAPES", "edges_right", "finetune_print", "shape_prints"]

SHAPES = ("star", "forest", "chains")


def shape_prints(kind: str, n: int, seed: int = 0) -> tuple[list[ModelInput], dict[str, str]]:
    """The inputs and each non-root model's true parent."""
    if kind not in SHAPES:
        raise ValueError(f"unknown shape {kind!r}; expected one of {', '.join(SHAPES)}")
    rng = np.random.default_rng(seed)
    per = {"star": n, "forest": 100, "chains": 10}[kind]
    weights: dict[str, list[np.ndarray]] = {}
    parent: dict[str, str] = {}
    for f in range(max(1, -(-n // per))):
        size = min(per, n - f * per)
        names = [f"f{f}-0"]
        weights[names[0]] = [
            rng.standard_normal((8, 128)).astype(np.float32) * 0.1 for _ in range(4)
        ]
        for i in range(1, size):
            if kind == "star":
                p = names[0]
            elif kind == "chains":
                p = names[-1]
            else:
                p = names[int(rng.integers(len(names)))]
            name = f"f{f}-{i}"
            weights[name] = [
                (1.01 * w + rng.normal(0, 0.004, w.shape)).astype(np.float32) for w in weights[p]
            ]
            parent[name] = p
            names.append(name)
    rows = np.arange(8)
    inputs = [
        ModelInput(
            name,
            Fingerprint(
                {
                    f"layers.{j}.w": TensorPrint(
                        f"layers.{j}.w", "F32", (512, 512), rows, (0, 128), w
                    )
                    for j, w in enumerate(ws)
                }
            ),
        )
        for name, ws in weights.items()
    ]
    return inputs, parent


def finetune_print(fp: Fingerprint, seed: int = 7) -> Fingerprint:
    """A fingerprint one step of these shapes away from ``fp``: 1.01 w + N(0, 0.004^2)."""
    rng = np.random.default_rng(seed)
    return Fingerprint(
        {
            name: dataclasses.replace(
                t,
                values=(1.01 * t.values + rng.normal(0, 0.004, t.values.shape)).astype(np.float32),
            )
            for name, t in fp.tensors.items()
        }
    )


def edges_right(graph: nx.DiGraph, parent: dict[str, str]) -> tuple[float, float]:
    """Shares of the true edges recovered as directed, and either way round."""
    directed = sum(1 for u, v in graph.edges if parent.get(v) == u)
    either = sum(1 for u, v in graph.edges if parent.get(v) == u or parent.get(u) == v)
    return directed / len(parent), either / len(parent)
