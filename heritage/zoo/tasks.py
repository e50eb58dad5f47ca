"""Synthetic, seeded training tasks so that pre-training and fine-tuning are real optimisation.

A task is a small JSON-able dict (recorded verbatim in truth.json recipes). Fine-tuning tasks
are *shifts* of a base task: a fraction of the generating process is redrawn from a shift seed,
so a fine-tune has something new to learn while staying close to what the parent knows.

* ``markov``: order-2 Markov "language" (next token depends on the last two tokens, so the
  attention layers have work to do). Shifts redraw a fraction of transition rows; a larger
  ``vocab`` adds new tokens (used by the vocabulary-resize fine-tune); ``seq_len`` (default
  64) sets the length of the sequences.
* ``patterns``: 16x16 RGB images; each class is a procedural prototype (two coloured gaussian
  blobs plus an oriented grating), samples are jittered, rescaled and noisy copies.
* ``teacher``: 32-d gaussian inputs labelled by a random two-layer tanh teacher network;
  shifts perturb the teacher.

Any task may carry ``sample``: another draw of training examples from the same distribution
(the data seed of twins trained with one recipe, or of a continued pre-training).
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Any

import numpy as np
import torch

BASE_VOCAB = 256
SEQ_LEN = 64


def mix_seed(*parts: object) -> int:
    """Derive a stable 63-bit seed from arbitrary parts (stable across processes, unlike hash())."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def task_name(task: dict[str, Any]) -> str:
    """Short human-readable task label used in recipes and model cards."""
    kind = task["kind"]
    if kind == "markov":
        base = f"markov-L{task['lang']}"
        if task.get("vocab", BASE_VOCAB) != BASE_VOCAB:
            base += f"-v{task['vocab']}"
    elif kind == "patterns":
        base = f"patterns-W{task['world']}"
    elif kind == "teacher":
        base = f"teacher-T{task['teacher']}"
    else:
        raise ValueError(f"unknown task kind {kind!r}")
    if task.get("shift", 0):
        base += f"-shift{task['shift']}"
    if task.get("sample", 0):
        base += f"-sample{task['sample']}"
    return base


def _rng(zoo_seed: int, *parts: object) -> np.random.Generator:
    return np.random.default_rng(mix_seed(zoo_seed, *parts))


# --------------------------------------------------------------------------------------------
# Markov languages


def _markov_rows(rng: np.random.Generator, n_rows: int, vocab: int, k: int) -> np.ndarray:
    """Sparse random transition rows: k successors per token with Dirichlet weights."""
    table = np.zeros((n_rows, vocab))
    for r in range(n_rows):
        succ = rng.choice(vocab, size=k, replace=False)
        table[r, succ] = rng.dirichlet(np.full(k, 0.6))
    return table


def markov_tables(task: dict[str, Any], zoo_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Build (T1, T2) so that p(x_t) = 0.75 T1[x_{t-1}] + 0.25 T2[x_{t-2}]."""
    vocab = int(task.get("vocab", BASE_VOCAB))
    base_rng = _rng(zoo_seed, "markov", task["lang"])
    t1 = np.zeros((vocab, vocab))
    t2 = np.zeros((vocab, vocab))
    t1[:BASE_VOCAB, :BASE_VOCAB] = _markov_rows(base_rng, BASE_VOCAB, BASE_VOCAB, 8)
    t2[:BASE_VOCAB, :BASE_VOCAB] = _markov_rows(base_rng, BASE_VOCAB, BASE_VOCAB, 4)
    shift = int(task.get("shift", 0))
    frac = float(task.get("frac", 0.0))
    if shift or vocab > BASE_VOCAB:
        rng = _rng(zoo_seed, "markov-shift", task["lang"], shift, vocab)
        redraw = rng.random(vocab) < frac
        redraw[BASE_VOCAB:] = True  # new tokens need rows of their own
        idx = np.flatnonzero(redraw)
        t1[idx] = _markov_rows(rng, len(idx), vocab, 8)
        t2[idx] = _markov_rows(rng, len(idx), vocab, 4)
    return t1, t2


def _markov_data(task: dict[str, Any], zoo_seed: int, n: int) -> tuple[torch.Tensor]:
    t1, t2 = markov_tables(task, zoo_seed)
    vocab = t1.shape[0]
    seq_len = int(task.get("seq_len", SEQ_LEN))
    rng = _rng(zoo_seed, "markov-sample", json.dumps(task, sort_keys=True))
    seqs = np.zeros((n, seq_len + 1), dtype=np.int64)
    seqs[:, 0] = rng.integers(0, vocab, n)
    seqs[:, 1] = rng.integers(0, vocab, n)
    c1 = np.cumsum(t1, axis=1)
    c2 = np.cumsum(t2, axis=1)
    for t in range(2, seq_len + 1):
        u = rng.random(n)
        use_first = rng.random(n) < 0.75
        cum = np.where(use_first[:, None], c1[seqs[:, t - 1]], c2[seqs[:, t - 2]])
        seqs[:, t] = np.minimum((cum < u[:, None]).sum(axis=1), vocab - 1)
    return (torch.from_numpy(seqs),)


# --------------------------------------------------------------------------------------------
# Procedural images


def _prototype(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.zeros((3, size, size))
    for _ in range(2):
        cy, cx = rng.uniform(2, size - 2, 2)
        sigma = rng.uniform(1.5, 3.0)
        color = rng.uniform(-1, 1, 3)
        blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
        img += color[:, None, None] * blob
    angle, freq, phase = rng.uniform(0, np.pi), rng.uniform(0.4, 1.2), rng.uniform(0, 2 * np.pi)
    grating = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + phase)
    img += 0.5 * rng.uniform(-1, 1, 3)[:, None, None] * grating
    return img


def _pattern_data(task: dict[str, Any], zoo_seed: int, n: int) -> tuple[torch.Tensor, ...]:
    size, n_classes = 16, 10
    base_rng = _rng(zoo_seed, "patterns", task["world"])
    protos = np.stack([_prototype(base_rng, size) for _ in range(n_classes)])
    shift = int(task.get("shift", 0))
    if shift:
        rng = _rng(zoo_seed, "patterns-shift", task["world"], shift)
        redraw = np.flatnonzero(rng.random(n_classes) < float(task.get("frac", 0.0)))
        if len(redraw) == 0:
            redraw = rng.integers(0, n_classes, 1)
        for c in redraw:
            protos[c] = _prototype(rng, size)
    # All 3x3 one-pixel translations of each prototype, so jitter is a simple gather.
    shifted = np.stack(
        [np.roll(protos, (dy, dx), axis=(2, 3)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=1
    )
    rng = _rng(zoo_seed, "patterns-sample", json.dumps(task, sort_keys=True))
    labels = rng.integers(0, n_classes, n)
    jitter = rng.integers(0, 9, n)
    scale = rng.uniform(0.7, 1.3, n)[:, None, None, None]
    noise = float(task.get("noise", 0.9))
    images = shifted[labels, jitter] * scale + rng.normal(0, noise, (n, 3, size, size))
    return (torch.from_numpy(images.astype(np.float32)), torch.from_numpy(labels))


# --------------------------------------------------------------------------------------------
# Teacher-labelled vectors


def _teacher_data(task: dict[str, Any], zoo_seed: int, n: int) -> tuple[torch.Tensor, ...]:
    d_in, d_hidden, n_classes = 32, 64, 10
    rng = _rng(zoo_seed, "teacher", task["teacher"])
    w1 = rng.normal(0, 1 / np.sqrt(d_in), (d_in, d_hidden))
    w2 = rng.normal(0, 1 / np.sqrt(d_hidden), (d_hidden, n_classes))
    shift = int(task.get("shift", 0))
    if shift:
        srng = _rng(zoo_seed, "teacher-shift", task["teacher"], shift)
        scale = float(task.get("frac", 0.5))
        w1 = w1 + scale * srng.normal(0, 1 / np.sqrt(d_in), w1.shape)
        w2 = w2 + scale * srng.normal(0, 1 / np.sqrt(d_hidden), w2.shape)
    data_rng = _rng(zoo_seed, "teacher-sample", json.dumps(task, sort_keys=True))
    x = data_rng.normal(0, 1, (n, d_in))
    labels = np.argmax(np.tanh(x @ w1 * 2.0) @ w2, axis=1)
    return (torch.from_numpy(x.astype(np.float32)), torch.from_numpy(labels.astype(np.int64)))


_SIZES = {"markov": 2048, "patterns": 4096, "teacher": 8192}


@lru_cache(maxsize=64)
def _dataset_cached(task_json: str, zoo_seed: int) -> tuple[torch.Tensor, ...]:
    task = json.loads(task_json)
    n = _SIZES[task["kind"]]
    if task["kind"] == "markov":
        return _markov_data(task, zoo_seed, n)
    if task["kind"] == "patterns":
        return _pattern_data(task, zoo_seed, n)
    return _teacher_data(task, zoo_seed, n)


def dataset(task: dict[str, Any], zoo_seed: int) -> tuple[torch.Tensor, ...]:
    """Materialise a task's training set (cached: siblings in a sweep share their data)."""
    if task.get("kind") not in _SIZES:
        raise ValueError(f"unknown task kind in {task!r}")
    return _dataset_cached(json.dumps(task, sort_keys=True), zoo_seed)
