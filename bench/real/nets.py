"""Functional forward passes over plain state dicts, for the real pretrained nets we fine-tune.

Every network is a function of a ``dict[str, Tensor]`` keyed exactly as the shipped state
dict, so a fine-tune changes values but never names, shapes or the set of tensors. Heads that
a fine-tune needs but the checkpoint lacks (an MLM head for a sentence encoder) live in a
separate dict and are thrown away afterwards, as sentence-transformers' domain adaptation does.

* ``bert``: BERT encoder (post-LayerNorm, GELU, absolute positions), e.g. MiniLM-L6-H384.
* ``vad``: the Silero-style voice activity detector (STFT conv, four Conv1d+ReLU, one LSTM
  cell or GRU, a 1-unit head) -- Silero VAD v6 (LSTM) and Akiki VAD (GRU).
* ``onet``: the MTCNN O-Net face landmark CNN (facenet-pytorch layout, PReLU).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

Params = dict[str, torch.Tensor]


# --------------------------------------------------------------------------- BERT


def bert_layers(p: Params) -> int:
    return 1 + max(int(k.split(".")[2]) for k in p if k.startswith("encoder.layer."))


def _ln(x: torch.Tensor, p: Params, name: str) -> torch.Tensor:
    return F.layer_norm(x, x.shape[-1:], p[f"{name}.weight"], p[f"{name}.bias"], 1e-12)


def _lin(x: torch.Tensor, p: Params, name: str) -> torch.Tensor:
    return F.linear(x, p[f"{name}.weight"], p[f"{name}.bias"])


def bert_encode(p: Params, ids: torch.Tensor, heads: int = 12) -> torch.Tensor:
    """Last hidden states (B, L, H) of a BERT encoder for unpadded token ids (B, L)."""
    b, n = ids.shape
    x = (
        p["embeddings.word_embeddings.weight"][ids]
        + p["embeddings.position_embeddings.weight"][:n]
        + p["embeddings.token_type_embeddings.weight"][0]
    )
    x = _ln(x, p, "embeddings.LayerNorm")
    hidden = x.shape[-1]
    d = hidden // heads
    for i in range(bert_layers(p)):
        pre = f"encoder.layer.{i}"

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, heads, d).transpose(1, 2)

        q = split(_lin(x, p, f"{pre}.attention.self.query"))
        k = split(_lin(x, p, f"{pre}.attention.self.key"))
        v = split(_lin(x, p, f"{pre}.attention.self.value"))
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, hidden)
        x = _ln(
            x + _lin(a, p, f"{pre}.attention.output.dense"), p, f"{pre}.attention.output.LayerNorm"
        )
        h = F.gelu(_lin(x, p, f"{pre}.intermediate.dense"))
        x = _ln(x + _lin(h, p, f"{pre}.output.dense"), p, f"{pre}.output.LayerNorm")
    return x


def mlm_head(hidden: int, vocab: int, gen: torch.Generator) -> Params:
    """A fresh BERT MLM head (transform + LayerNorm + output bias; decoder tied to embeddings)."""
    return {
        "transform.weight": torch.randn(hidden, hidden, generator=gen) * 0.02,
        "transform.bias": torch.zeros(hidden),
        "ln.weight": torch.ones(hidden),
        "ln.bias": torch.zeros(hidden),
        "bias": torch.zeros(vocab),
    }


def bert_mlm_loss(
    p: Params, head: Params, ids: torch.Tensor, masked: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """Masked-LM cross-entropy at the masked positions (logits tied to the word embeddings)."""
    h = bert_encode(p, ids)[masked]
    h = F.gelu(F.linear(h, head["transform.weight"], head["transform.bias"]))
    h = F.layer_norm(h, h.shape[-1:], head["ln.weight"], head["ln.bias"], 1e-12)
    logits = h @ p["embeddings.word_embeddings.weight"].T + head["bias"]
    return F.cross_entropy(logits, labels)


def bert_contrastive_loss(
    p: Params, anchors: torch.Tensor, positives: torch.Tensor, scale: float = 20.0
) -> torch.Tensor:
    """Multiple-negatives ranking loss on mean-pooled, normalised sentence embeddings."""
    a = F.normalize(bert_encode(p, anchors).mean(1), dim=-1)
    b = F.normalize(bert_encode(p, positives).mean(1), dim=-1)
    return F.cross_entropy(scale * a @ b.T, torch.arange(a.shape[0]))


def bert_init(shapes: dict[str, tuple[torch.Size, torch.dtype]], gen: torch.Generator) -> Params:
    """BERT's own initialisation: N(0, 0.02) matrices and embeddings, zero biases, unit LN."""
    out: Params = {}
    for name, (shape, dtype) in shapes.items():
        if not dtype.is_floating_point:
            out[name] = torch.arange(shape[-1], dtype=dtype).expand(shape).clone()
        elif "LayerNorm.weight" in name:
            out[name] = torch.ones(shape)
        elif name.endswith(".bias"):
            out[name] = torch.zeros(shape)
        else:
            out[name] = torch.randn(shape, generator=gen) * 0.02
    return out


# --------------------------------------------------------------------------- VAD

#: Silero-style VAD tensor names: (stft basis, 4 convs, rnn weights, head) per layout.
VAD_LAYOUTS: dict[str, dict[str, object]] = {
    "silero": {
        "basis": "stft_conv.weight",
        "convs": [f"conv{i}" for i in range(1, 5)],
        "rnn": "lstm",
        "rnn_names": (
            "lstm_cell.weight_ih",
            "lstm_cell.weight_hh",
            "lstm_cell.bias_ih",
            "lstm_cell.bias_hh",
        ),
        "head": "final_conv",
    },
    "akiki": {
        "basis": "basis",
        "convs": [f"encoder.{i}" for i in range(4)],
        "rnn": "gru",
        "rnn_names": ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0"),
        "head": "head",
    },
}
VAD_WINDOW = 576  # samples the net sees per output: context + new samples (both layouts)
_STRIDES = (1, 2, 2, 1)


def vad_layout(p: Params) -> str:
    return "silero" if "stft_conv.weight" in p else "akiki"


def vad_logits(p: Params, windows: torch.Tensor) -> torch.Tensor:
    """Speech logits (B, T) for audio windows (B, T, 576), the recurrent state carried over T."""
    lay = VAD_LAYOUTS[vad_layout(p)]
    b, t, _ = windows.shape
    x = F.pad(windows.reshape(b * t, 1, VAD_WINDOW), (0, 64), mode="reflect")
    x = F.conv1d(x, p[lay["basis"]], stride=128)
    half = x.shape[1] // 2
    x = (x[:, :half].square() + x[:, half:].square()).sqrt()
    for name, stride in zip(lay["convs"], _STRIDES, strict=True):
        x = F.relu(F.conv1d(x, p[f"{name}.weight"], p[f"{name}.bias"], stride=stride, padding=1))
    feats = x.mean(-1).view(b, t, -1)
    w_ih, w_hh, b_ih, b_hh = (p[n] for n in lay["rnn_names"])
    hidden = w_hh.shape[1]
    h = feats.new_zeros(b, hidden)
    c = feats.new_zeros(b, hidden)
    outs = []
    for step in range(t):
        gi = F.linear(feats[:, step], w_ih, b_ih)
        gh = F.linear(h, w_hh, b_hh)
        if lay["rnn"] == "lstm":
            i, f, g, o = (gi + gh).chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        else:
            ir, iz, inn = gi.chunk(3, -1)
            hr, hz, hn = gh.chunk(3, -1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            h = (1 - z) * torch.tanh(inn + r * hn) + z * h
        outs.append(h)
    hs = F.relu(torch.stack(outs, 1))
    head_w = p[f"{lay['head']}.weight"].reshape(1, -1)
    return F.linear(hs, head_w, p[f"{lay['head']}.bias"]).squeeze(-1)


def vad_loss(p: Params, windows: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(vad_logits(p, windows), labels)


def torch_default_init(
    shapes: dict[str, tuple[torch.Size, torch.dtype]], gen: torch.Generator, keep: Params
) -> Params:
    """PyTorch's default Conv/Linear/RNN initialisation (uniform +-1/sqrt(fan_in)); tensors in
    ``keep`` (fixed, untrained buffers such as an STFT basis) are copied unchanged."""
    out: Params = {}
    for name, (shape, _dtype) in shapes.items():
        if name in keep:
            out[name] = keep[name].clone()
            continue
        if "prelu" in name:
            out[name] = torch.full(shape, 0.25)
            continue
        if any(s in name for s in ("lstm", "rnn")):
            fan_in = shape[-1] if len(shape) > 1 else shape[0] // (4 if "lstm" in name else 3)
        else:
            weight = shapes[name.rsplit(".", 1)[0] + ".weight"][0]
            fan_in = math.prod(weight[1:])
        bound = 1.0 / math.sqrt(fan_in)
        out[name] = (torch.rand(shape, generator=gen) * 2 - 1) * bound
    return out


# --------------------------------------------------------------------------- MTCNN O-Net


def _prelu(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.prelu(x, w)


def onet_forward(p: Params, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(face logits (B, 2), box regression (B, 4)) for 48x48 RGB crops in [-1, 1]."""
    x = _prelu(F.conv2d(img, p["conv1.weight"], p["conv1.bias"]), p["prelu1.weight"])
    x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    x = _prelu(F.conv2d(x, p["conv2.weight"], p["conv2.bias"]), p["prelu2.weight"])
    x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    x = _prelu(F.conv2d(x, p["conv3.weight"], p["conv3.bias"]), p["prelu3.weight"])
    x = F.max_pool2d(x, 2, 2, ceil_mode=True)
    x = _prelu(F.conv2d(x, p["conv4.weight"], p["conv4.bias"]), p["prelu4.weight"])
    x = x.permute(0, 3, 2, 1).flatten(1)
    x = _prelu(F.linear(x, p["dense5.weight"], p["dense5.bias"]), p["prelu5.weight"])
    logits = F.linear(x, p["dense6_1.weight"], p["dense6_1.bias"])
    boxes = F.linear(x, p["dense6_2.weight"], p["dense6_2.bias"])
    return logits, boxes


def onet_loss(
    p: Params, img: torch.Tensor, labels: torch.Tensor, boxes: torch.Tensor
) -> torch.Tensor:
    logits, pred = onet_forward(p, img)
    face = labels == 1
    reg = F.mse_loss(pred[face], boxes[face]) if bool(face.any()) else pred.sum() * 0
    return F.cross_entropy(logits, labels) + 0.5 * reg
