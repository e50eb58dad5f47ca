"""Synthetic training data for the fine-tunes, generated on the fly from a seed.

* text: token sequences from a random bigram "domain" over a slice of the BERT uncased
  vocabulary (ids of whole words and word pieces), for masked-LM and for contrastive pairs
  (two overlapping crops of one passage, as in unsupervised sentence-embedding training);
* audio: 16 kHz clips of voiced "speech" (a glottal-like harmonic source with a drifting
  pitch, formant envelopes and a syllable-rate amplitude) over noise, hum and tones, labelled
  speech / non-speech per VAD window;
* images: 48x48 RGB crops, half with a face-like pattern (skin ellipse, eyes, mouth) and its
  box offsets, half background texture, for the MTCNN O-Net.

A *domain* dict varies each generator (vocabulary slice, noise level, pitch range...), so
different fine-tunes see different data, as fine-tunes on different datasets do.
"""

from __future__ import annotations

import math
from typing import Any

import torch

CLS, SEP, MASK = 101, 102, 103
WORD_IDS = (1996, 29612)  # BERT uncased: ordinary tokens (before the unused/special tail)


class TextDomain:
    """A random sparse bigram language over ``size`` tokens of the vocabulary."""

    def __init__(self, seed: int, size: int = 2000, fanout: int = 12) -> None:
        g = torch.Generator().manual_seed(seed)
        lo, hi = WORD_IDS
        self.tokens = lo + torch.randperm(hi - lo, generator=g)[:size]
        self.next = torch.randint(0, size, (size, fanout), generator=g)
        w = 1.0 / torch.arange(1, fanout + 1, dtype=torch.float32)
        self.weights = w / w.sum()
        self.size = size

    def sample(self, g: torch.Generator, batch: int, length: int) -> torch.Tensor:
        """(batch, length) token ids: [CLS] passage [SEP]."""
        cur = torch.randint(0, self.size, (batch,), generator=g)
        out = [cur]
        for _ in range(length - 3):
            pick = torch.multinomial(self.weights.expand(batch, -1), 1, generator=g)[:, 0]
            jump = torch.rand(batch, generator=g) < 0.1
            cur = torch.where(
                jump,
                torch.randint(0, self.size, (batch,), generator=g),
                self.next[cur, pick],
            )
            out.append(cur)
        body = self.tokens[torch.stack(out, 1)]
        cls = torch.full((batch, 1), CLS)
        sep = torch.full((batch, 1), SEP)
        return torch.cat([cls, body, sep], 1)


def mlm_batch(
    dom: TextDomain, g: torch.Generator, batch: int, length: int, vocab: int
) -> dict[str, torch.Tensor]:
    """BERT masking: 15% of the passage tokens; of those 80% [MASK], 10% random, 10% kept."""
    ids = dom.sample(g, batch, length)
    labels = ids.clone()
    r = torch.rand(ids.shape, generator=g)
    masked = r < 0.15
    masked[:, 0] = masked[:, -1] = False
    masked[0, 1] = True  # never an empty batch
    how = torch.rand(ids.shape, generator=g)
    inp = ids.clone()
    inp[masked & (how < 0.8)] = MASK
    rand_pos = masked & (how >= 0.8) & (how < 0.9)
    inp[rand_pos] = torch.randint(WORD_IDS[0], vocab, ids.shape, generator=g)[rand_pos]
    return {"ids": inp, "masked": masked, "labels": labels[masked]}


def pair_batch(
    dom: TextDomain, g: torch.Generator, batch: int, length: int, mask_share: float = 0.3
) -> dict[str, torch.Tensor]:
    """Two overlapping crops of each passage (anchor, positive), ``mask_share`` of the
    positive's tokens replaced by [MASK]."""
    long = dom.sample(g, batch, length + length // 2)[:, 1:-1]
    shift = length // 2 - 1
    cls = torch.full((batch, 1), CLS)
    sep = torch.full((batch, 1), SEP)
    a = torch.cat([cls, long[:, : length - 2], sep], 1)
    b = torch.cat([cls, long[:, shift : shift + length - 2], sep], 1)
    hide = torch.rand(b.shape, generator=g) < mask_share
    hide[:, 0] = hide[:, -1] = False
    b = torch.where(hide, torch.full_like(b, MASK), b)
    return {"anchors": a, "positives": b}


# --------------------------------------------------------------------------- audio

SR = 16000


def _smooth(g: torch.Generator, b: int, n: int, knots: int) -> torch.Tensor:
    """Random smooth curves in [0, 1] (B, n): linear interpolation of random knots."""
    k = torch.rand(b, 1, knots, generator=g)
    return torch.nn.functional.interpolate(k, size=n, mode="linear", align_corners=True)[:, 0]


def vad_batch(
    g: torch.Generator, dom: dict[str, Any], batch: int, steps: int, hop: int, window: int
) -> dict[str, torch.Tensor]:
    """Audio windows (B, steps, window), hop ``hop`` apart, and per-window speech labels."""
    n = hop * steps + (window - hop)
    t = torch.arange(n) / SR
    # speech regions: runs of windows
    seg = torch.rand(batch, steps, generator=g)
    on = torch.zeros(batch, steps)
    state = torch.rand(batch, generator=g) < 0.5
    for s in range(steps):
        flip = seg[:, s] < dom.get("switch", 0.15)
        state = state ^ flip
        on[:, s] = state.float()
    gate = on.repeat_interleave(hop, 1)
    gate = torch.cat([gate[:, :1].expand(-1, window - hop), gate], 1)
    ramp = torch.ones(1, 1, 81) / 81
    gate = torch.nn.functional.conv1d(gate[:, None], ramp, padding=40)[:, 0]
    lo, hi = dom.get("f0", (90.0, 260.0))
    f0 = lo + (hi - lo) * _smooth(g, batch, n, 6)
    phase = 2 * math.pi * torch.cumsum(f0 / SR, 1)
    formants = 300 + 2700 * _smooth(g, batch * 3, n, 10).view(batch, 3, n)
    voiced = torch.zeros(batch, n)
    for k in range(1, 25):
        fk = k * f0
        env = sum(
            torch.exp(-(((fk - formants[:, j]) / 250.0) ** 2).clamp_max(20.0)) for j in range(3)
        )
        voiced += env * torch.sin(k * phase) / k**0.5
    syll_rate = 3 + 4 * torch.rand(batch, 1, generator=g)
    syll = 0.55 + 0.45 * torch.sin(
        2 * math.pi * syll_rate * t + 6.28 * torch.rand(batch, 1, generator=g)
    )
    speech = voiced * syll * gate
    speech = speech / speech.abs().amax(1, keepdim=True).clamp_min(1e-6)
    level = 0.1 + 0.4 * torch.rand(batch, 1, generator=g)
    noise_lvl = dom.get("noise", 0.02) * (0.2 + torch.rand(batch, 1, generator=g))
    white = torch.randn(batch, n, generator=g)
    brown = torch.cumsum(torch.randn(batch, n, generator=g), 1)
    brown = brown - brown.mean(1, keepdim=True)
    brown = brown / brown.abs().amax(1, keepdim=True).clamp_min(1e-6)
    mix = dom.get("brown", 0.5)
    noise = noise_lvl * ((1 - mix) * white * 0.5 + mix * brown)
    hum_f = 50.0 + 10.0 * (torch.rand(batch, 1, generator=g) < 0.5).float()
    hum = dom.get("hum", 0.0) * sum(torch.sin(2 * math.pi * k * hum_f * t) / k for k in (1, 2, 3))
    tone_f = 400 + 3000 * torch.rand(batch, 1, generator=g)
    tone = dom.get("tones", 0.0) * torch.sin(2 * math.pi * tone_f * t) * (1 - gate)
    audio = level * speech + noise + hum + tone
    windows = audio.unfold(1, window, hop)[:, :steps]
    return {"windows": windows.contiguous(), "labels": on}


# --------------------------------------------------------------------------- images


def face_batch(g: torch.Generator, dom: dict[str, Any], batch: int) -> dict[str, torch.Tensor]:
    """48x48 crops in [-1, 1]; label 1 (face-like pattern, with box offsets) or 0."""
    size = 48
    yy, xx = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    labels = (torch.rand(batch, generator=g) < 0.5).long()
    base = torch.rand(batch, 3, 1, 1, generator=g) * 0.8 + 0.1
    grad = _smooth(g, batch * 3, size, 4).view(batch, 3, 1, size)
    img = base * (0.7 + 0.3 * grad) + dom.get("noise", 0.08) * torch.randn(
        batch, 3, size, size, generator=g
    )
    cx = size / 2 + dom.get("jitter", 6.0) * (torch.rand(batch, generator=g) * 2 - 1)
    cy = size / 2 + dom.get("jitter", 6.0) * (torch.rand(batch, generator=g) * 2 - 1)
    rx = size * (0.25 + 0.12 * torch.rand(batch, generator=g))
    ry = rx * (1.2 + 0.2 * torch.rand(batch, generator=g))
    skin = torch.tensor(dom.get("skin", (0.85, 0.65, 0.5))).view(1, 3, 1, 1)
    skin = skin * (0.7 + 0.5 * torch.rand(batch, 1, 1, 1, generator=g))
    e = ((xx - cx.view(-1, 1, 1)) / rx.view(-1, 1, 1)) ** 2 + (
        (yy - cy.view(-1, 1, 1)) / ry.view(-1, 1, 1)
    ) ** 2
    face = (e < 1).float()[:, None]
    for dx in (-0.4, 0.4):
        ex = cx + dx * rx
        ey = cy - 0.25 * ry
        eye = ((xx - ex.view(-1, 1, 1)) ** 2 + (yy - ey.view(-1, 1, 1)) ** 2) < (
            0.12 * rx.view(-1, 1, 1)
        ) ** 2
        face = face * (1 - 0.8 * eye.float()[:, None])
    mouth = ((yy - (cy + 0.45 * ry).view(-1, 1, 1)).abs() < 1.5) & (
        (xx - cx.view(-1, 1, 1)).abs() < 0.35 * rx.view(-1, 1, 1)
    )
    face = face * (1 - 0.6 * mouth.float()[:, None])
    is_face = labels.view(-1, 1, 1, 1).float()
    img = torch.where((face > 0) & (is_face > 0), skin * face, img)
    img = img.clamp(0, 1) * 2 - 1
    boxes = torch.stack(
        [(cx - rx) / size, (cy - ry) / size, (cx + rx) / size - 1, (cy + ry) / size - 1], 1
    )
    return {"img": img, "labels": labels, "boxes": boxes}
