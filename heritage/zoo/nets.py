"""Tiny functional networks whose parameters carry the tensor names real checkpoints publish.

The networks are written as pure functions over a ``{name: tensor}`` dict instead of
``nn.Module`` trees. That keeps the saved names exactly as Hugging Face / PyTorch users publish
them, and makes LoRA (``W + B @ A``), vocabulary resizing and merging plain dict operations.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F

Weights = dict[str, torch.Tensor]

ARCHITECTURES = ("llama", "vit", "mlp")


def _normal(gen: torch.Generator, shape: tuple[int, ...], std: float) -> torch.Tensor:
    return torch.randn(shape, generator=gen) * std


def _uniform(gen: torch.Generator, shape: tuple[int, ...], bound: float) -> torch.Tensor:
    return (torch.rand(shape, generator=gen) * 2.0 - 1.0) * bound


#: How the transformers' matrices are initialised (``std`` is the config's initializer_range):
#: ``normal`` N(0, std) (Hugging Face's default); ``trunc-normal`` the same cut at 2 std;
#: ``uniform`` with the same variance; ``xavier-normal`` scaled by fan-in + fan-out (times
#: std / 0.02); ``scaled-normal`` N(0, std) with residual output projections divided by
#: sqrt(2 * layers), as GPT-2 does.
INIT_KINDS = ("normal", "trunc-normal", "uniform", "xavier-normal", "scaled-normal")
#: How the MLP's layers are initialised (times ``init_scale``): nn.Linear's default
#: ``kaiming-uniform`` (bias too), ``kaiming-normal``, ``xavier-uniform``, or ``normal``
#: (std 0.05); the last three start with zero biases.
MLP_INIT_KINDS = ("kaiming-uniform", "kaiming-normal", "xavier-uniform", "normal")


def _matrix(
    gen: torch.Generator,
    shape: tuple[int, ...],
    std: float,
    kind: str,
    residual_layers: int = 0,
) -> torch.Tensor:
    """A weight matrix initialised by ``kind`` (``residual_layers`` > 0: a residual output)."""
    if kind == "normal":
        return _normal(gen, shape, std)
    if kind == "trunc-normal":
        t = torch.empty(shape)
        torch.nn.init.trunc_normal_(t, 0.0, std, -2 * std, 2 * std, generator=gen)
        return t
    if kind == "uniform":
        return _uniform(gen, shape, std * math.sqrt(3.0))
    if kind == "xavier-normal":
        fan_out, fan_in = shape[0], math.prod(shape[1:])
        return _normal(gen, shape, math.sqrt(2.0 / (fan_in + fan_out)) * std / 0.02)
    if kind == "scaled-normal":
        scale = 1.0 / math.sqrt(2.0 * residual_layers) if residual_layers else 1.0
        return _normal(gen, shape, std * scale)
    raise ValueError(f"unknown init kind {kind!r}; expected one of {INIT_KINDS}")


def _embedding(gen: torch.Generator, shape: tuple[int, ...], std: float, kind: str) -> torch.Tensor:
    """Embedding-like tensors: as matrices, but never fan-scaled or residual-scaled."""
    return _matrix(gen, shape, std, kind if kind in ("trunc-normal", "uniform") else "normal")


@dataclass(frozen=True)
class LlamaShape:
    """Hyper-parameters of the tiny Llama; vocab size is read from the weights at run time."""

    vocab_size: int = 256
    hidden_size: int = 64
    intermediate_size: int = 176
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    max_position_embeddings: int = 128
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    initializer_range: float = 0.02
    init: str = "normal"


@dataclass(frozen=True)
class VitShape:
    """Hyper-parameters of the tiny ViT image classifier (16x16 RGB, 4x4 patches)."""

    image_size: int = 16
    patch_size: int = 4
    num_channels: int = 3
    hidden_size: int = 64
    intermediate_size: int = 128
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_labels: int = 10
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    init: str = "normal"


@dataclass(frozen=True)
class MlpShape:
    """Layer widths of the small MLP classifier (``nn.Sequential`` naming: net.0, net.2, ...)."""

    widths: tuple[int, ...] = (32, 128, 128, 10)
    init: str = "kaiming-uniform"
    init_scale: float = 1.0


class Net:
    """Interface shared by the three architectures so the trainer can stay generic."""

    name: str = ""
    #: 2-D weights that LoRA adapts (suffix match on the tensor name).
    lora_suffixes: tuple[str, ...] = ()

    def init(self, gen: torch.Generator) -> Weights:
        raise NotImplementedError

    def loss(self, w: Weights, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        raise NotImplementedError

    def config(self, w: Weights, dtype: str) -> dict[str, Any] | None:
        """Return the ``config.json`` content, or None for formats published without one."""
        return None

    def lora_targets(self, w: Weights, modules: tuple[str, ...] | None = None) -> list[str]:
        """Names of the matrices LoRA adapts: the net's default set, or those of ``modules``
        (short module names, see ``lora_modules``)."""
        if modules is None:
            return [k for k in w if k.endswith(self.lora_suffixes)]
        patterns = [re.compile(self.lora_modules()[m]) for m in modules]
        return [k for k in w if any(p.search(k) for p in patterns)]

    def lora_modules(self) -> dict[str, str]:
        """Short module name -> regular expression over tensor names (for LoRA targets)."""
        return {}


# --------------------------------------------------------------------------------------------
# Llama-style decoder


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Llama(Net):
    """Llama decoder (RMSNorm, rotary positions, SwiGLU) with HF ``LlamaForCausalLM`` names."""

    name = "llama"
    lora_suffixes = ("_proj.weight",)  # every attention and MLP projection ("all-linear")

    def __init__(self, shape: LlamaShape | None = None) -> None:
        self.shape = shape or LlamaShape()
        s = self.shape
        head_dim = s.hidden_size // s.num_attention_heads
        inv_freq = 1.0 / (s.rope_theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
        freqs = torch.outer(torch.arange(s.max_position_embeddings).float(), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self._cos, self._sin = emb.cos(), emb.sin()

    def lora_modules(self) -> dict[str, str]:
        projs = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
        return {m: rf"\.{m}\.weight$" for m in projs}

    def init(self, gen: torch.Generator) -> Weights:
        s = self.shape
        d, f, std, kind = s.hidden_size, s.intermediate_size, s.initializer_range, s.init
        layers = s.num_hidden_layers
        w: Weights = {"model.embed_tokens.weight": _embedding(gen, (s.vocab_size, d), std, kind)}
        for i in range(layers):
            p = f"model.layers.{i}."
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                res = layers if proj == "o_proj" else 0
                w[p + f"self_attn.{proj}.weight"] = _matrix(gen, (d, d), std, kind, res)
            w[p + "mlp.gate_proj.weight"] = _matrix(gen, (f, d), std, kind)
            w[p + "mlp.up_proj.weight"] = _matrix(gen, (f, d), std, kind)
            w[p + "mlp.down_proj.weight"] = _matrix(gen, (d, f), std, kind, layers)
            w[p + "input_layernorm.weight"] = torch.ones(d)
            w[p + "post_attention_layernorm.weight"] = torch.ones(d)
        w["model.norm.weight"] = torch.ones(d)
        w["lm_head.weight"] = _embedding(gen, (s.vocab_size, d), std, kind)
        return w

    def loss(self, w: Weights, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        (tokens,) = batch
        s = self.shape
        x_ids, targets = tokens[:, :-1], tokens[:, 1:]
        bsz, seq = x_ids.shape
        heads = s.num_attention_heads
        head_dim = s.hidden_size // heads
        cos, sin = self._cos[:seq], self._sin[:seq]
        h = F.embedding(x_ids, w["model.embed_tokens.weight"])
        for i in range(s.num_hidden_layers):
            p = f"model.layers.{i}."
            a = _rms_norm(h, w[p + "input_layernorm.weight"], s.rms_norm_eps)

            def split(t: torch.Tensor) -> torch.Tensor:
                return t.view(bsz, seq, heads, head_dim).transpose(1, 2)

            q = split(F.linear(a, w[p + "self_attn.q_proj.weight"]))
            k = split(F.linear(a, w[p + "self_attn.k_proj.weight"]))
            v = split(F.linear(a, w[p + "self_attn.v_proj.weight"]))
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            att = att.transpose(1, 2).reshape(bsz, seq, s.hidden_size)
            h = h + F.linear(att, w[p + "self_attn.o_proj.weight"])
            m = _rms_norm(h, w[p + "post_attention_layernorm.weight"], s.rms_norm_eps)
            gate = F.silu(F.linear(m, w[p + "mlp.gate_proj.weight"]))
            h = h + F.linear(
                gate * F.linear(m, w[p + "mlp.up_proj.weight"]), w[p + "mlp.down_proj.weight"]
            )
        h = _rms_norm(h, w["model.norm.weight"], s.rms_norm_eps)
        logits = F.linear(h, w["lm_head.weight"])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    def config(self, w: Weights, dtype: str) -> dict[str, Any]:
        s = self.shape
        return {
            "architectures": ["LlamaForCausalLM"],
            "attention_bias": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "head_dim": s.hidden_size // s.num_attention_heads,
            "hidden_act": "silu",
            "hidden_size": s.hidden_size,
            "initializer_range": s.initializer_range,
            "intermediate_size": s.intermediate_size,
            "max_position_embeddings": s.max_position_embeddings,
            "mlp_bias": False,
            "model_type": "llama",
            "num_attention_heads": s.num_attention_heads,
            "num_hidden_layers": s.num_hidden_layers,
            "num_key_value_heads": s.num_attention_heads,
            "rms_norm_eps": s.rms_norm_eps,
            "rope_theta": s.rope_theta,
            "tie_word_embeddings": False,
            "torch_dtype": dtype,
            "use_cache": True,
            "vocab_size": int(w["model.embed_tokens.weight"].shape[0]),
        }


# --------------------------------------------------------------------------------------------
# ViT image classifier


class Vit(Net):
    """ViT encoder + linear head with HF ``ViTForImageClassification`` names."""

    name = "vit"
    lora_suffixes = ("query.weight", "value.weight", "dense.weight")

    def __init__(self, shape: VitShape | None = None) -> None:
        self.shape = shape or VitShape()

    def lora_modules(self) -> dict[str, str]:
        return {
            "query": r"attention\.attention\.query\.weight$",
            "key": r"attention\.attention\.key\.weight$",
            "value": r"attention\.attention\.value\.weight$",
            "attention.output": r"attention\.output\.dense\.weight$",
            "intermediate": r"intermediate\.dense\.weight$",
            "output": r"layer\.\d+\.output\.dense\.weight$",
        }

    def init(self, gen: torch.Generator) -> Weights:
        s = self.shape
        d, f, std, kind = s.hidden_size, s.intermediate_size, s.initializer_range, s.init
        layers = s.num_hidden_layers
        n_patches = (s.image_size // s.patch_size) ** 2
        w: Weights = {
            "vit.embeddings.cls_token": _embedding(gen, (1, 1, d), std, kind),
            "vit.embeddings.position_embeddings": _embedding(gen, (1, n_patches + 1, d), std, kind),
            "vit.embeddings.patch_embeddings.projection.weight": _matrix(
                gen, (d, s.num_channels, s.patch_size, s.patch_size), std, kind
            ),
            "vit.embeddings.patch_embeddings.projection.bias": torch.zeros(d),
        }
        for i in range(layers):
            p = f"vit.encoder.layer.{i}."
            for name in ("query", "key", "value"):
                w[p + f"attention.attention.{name}.weight"] = _matrix(gen, (d, d), std, kind)
                w[p + f"attention.attention.{name}.bias"] = torch.zeros(d)
            w[p + "attention.output.dense.weight"] = _matrix(gen, (d, d), std, kind, layers)
            w[p + "attention.output.dense.bias"] = torch.zeros(d)
            w[p + "intermediate.dense.weight"] = _matrix(gen, (f, d), std, kind)
            w[p + "intermediate.dense.bias"] = torch.zeros(f)
            w[p + "output.dense.weight"] = _matrix(gen, (d, f), std, kind, layers)
            w[p + "output.dense.bias"] = torch.zeros(d)
            for ln in ("layernorm_before", "layernorm_after"):
                w[p + f"{ln}.weight"] = torch.ones(d)
                w[p + f"{ln}.bias"] = torch.zeros(d)
        w["vit.layernorm.weight"] = torch.ones(d)
        w["vit.layernorm.bias"] = torch.zeros(d)
        w["classifier.weight"] = _matrix(gen, (s.num_labels, d), std, kind)
        w["classifier.bias"] = torch.zeros(s.num_labels)
        return w

    def loss(self, w: Weights, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        images, labels = batch
        s = self.shape
        d, heads, eps = s.hidden_size, s.num_attention_heads, s.layer_norm_eps
        x = F.conv2d(
            images,
            w["vit.embeddings.patch_embeddings.projection.weight"],
            w["vit.embeddings.patch_embeddings.projection.bias"],
            stride=s.patch_size,
        )
        x = x.flatten(2).transpose(1, 2)
        bsz = x.shape[0]
        h = torch.cat([w["vit.embeddings.cls_token"].expand(bsz, -1, -1), x], dim=1)
        h = h + w["vit.embeddings.position_embeddings"]
        seq = h.shape[1]
        for i in range(s.num_hidden_layers):
            p = f"vit.encoder.layer.{i}."

            def lin(t: torch.Tensor, name: str, prefix: str = p) -> torch.Tensor:
                return F.linear(t, w[prefix + name + ".weight"], w[prefix + name + ".bias"])

            a = F.layer_norm(
                h, (d,), w[p + "layernorm_before.weight"], w[p + "layernorm_before.bias"], eps
            )
            q, k, v = (
                lin(a, f"attention.attention.{n}").view(bsz, seq, heads, -1).transpose(1, 2)
                for n in ("query", "key", "value")
            )
            att = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(bsz, seq, d)
            h = h + lin(att, "attention.output.dense")
            m = F.layer_norm(
                h, (d,), w[p + "layernorm_after.weight"], w[p + "layernorm_after.bias"], eps
            )
            h = h + lin(F.gelu(lin(m, "intermediate.dense")), "output.dense")
        h = F.layer_norm(h, (d,), w["vit.layernorm.weight"], w["vit.layernorm.bias"], eps)
        logits = F.linear(h[:, 0], w["classifier.weight"], w["classifier.bias"])
        return F.cross_entropy(logits, labels)

    def config(self, w: Weights, dtype: str) -> dict[str, Any]:
        s = self.shape
        labels = {str(i): f"pattern_{i}" for i in range(s.num_labels)}
        return {
            "architectures": ["ViTForImageClassification"],
            "attention_probs_dropout_prob": 0.0,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.0,
            "hidden_size": s.hidden_size,
            "id2label": labels,
            "image_size": s.image_size,
            "initializer_range": s.initializer_range,
            "intermediate_size": s.intermediate_size,
            "label2id": {v: int(k) for k, v in labels.items()},
            "layer_norm_eps": s.layer_norm_eps,
            "model_type": "vit",
            "num_attention_heads": s.num_attention_heads,
            "num_channels": s.num_channels,
            "num_hidden_layers": s.num_hidden_layers,
            "patch_size": s.patch_size,
            "qkv_bias": True,
            "torch_dtype": dtype,
        }


# --------------------------------------------------------------------------------------------
# MLP


class Mlp(Net):
    """ReLU MLP saved as a bare PyTorch ``state_dict`` of an ``nn.Sequential``."""

    name = "mlp"
    lora_suffixes = (".weight",)

    def __init__(self, shape: MlpShape | None = None) -> None:
        self.shape = shape or MlpShape()

    def lora_modules(self) -> dict[str, str]:
        n = len(self.shape.widths) - 1
        out = {f"net.{2 * i}": rf"^net\.{2 * i}\.weight$" for i in range(n)}
        out["hidden"] = "|".join(rf"^net\.{2 * i}\.weight$" for i in range(n - 1)) or "^$"
        return out

    def init(self, gen: torch.Generator) -> Weights:
        w: Weights = {}
        widths, kind, scale = self.shape.widths, self.shape.init, self.shape.init_scale
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            name = f"net.{2 * i}"
            if kind == "kaiming-uniform":  # nn.Linear's default init
                bound = scale / math.sqrt(n_in)
                w[f"{name}.weight"] = _uniform(gen, (n_out, n_in), bound)
                w[f"{name}.bias"] = _uniform(gen, (n_out,), bound)
                continue
            if kind == "kaiming-normal":
                weight = _normal(gen, (n_out, n_in), math.sqrt(2.0 / n_in) * scale)
            elif kind == "xavier-uniform":
                weight = _uniform(gen, (n_out, n_in), math.sqrt(6.0 / (n_in + n_out)) * scale)
            elif kind == "normal":
                weight = _normal(gen, (n_out, n_in), 0.05 * scale)
            else:
                raise ValueError(f"unknown MLP init {kind!r}; expected one of {MLP_INIT_KINDS}")
            w[f"{name}.weight"] = weight
            w[f"{name}.bias"] = torch.zeros(n_out)
        return w

    def loss(self, w: Weights, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        x, labels = batch
        n_layers = len(self.shape.widths) - 1
        for i in range(n_layers):
            x = F.linear(x, w[f"net.{2 * i}.weight"], w[f"net.{2 * i}.bias"])
            if i < n_layers - 1:
                x = F.relu(x)
        return F.cross_entropy(x, labels)


_SHAPES: dict[str, type] = {"llama": LlamaShape, "vit": VitShape, "mlp": MlpShape}


def make_shape(arch: str, shape: dict[str, Any] | None = None) -> LlamaShape | VitShape | MlpShape:
    """The shape dataclass of ``arch`` with the given fields changed (unknown keys raise)."""
    if arch not in _SHAPES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHITECTURES}")
    cls = _SHAPES[arch]
    shape = dict(shape or {})
    known = {f.name for f in fields(cls)}
    if set(shape) - known:
        raise ValueError(f"unknown {arch} shape fields {sorted(set(shape) - known)}")
    if "widths" in shape:
        shape["widths"] = tuple(shape["widths"])
    return cls(**shape)


def make_net(arch: str, shape: dict[str, Any] | None = None) -> Net:
    """Instantiate the network for an architecture id used in truth.json (default shape, or
    the default with the fields in ``shape`` changed)."""
    dims = make_shape(arch, shape)
    if arch == "llama":
        return Llama(dims)  # type: ignore[arg-type]
    if arch == "vit":
        return Vit(dims)  # type: ignore[arg-type]
    return Mlp(dims)  # type: ignore[arg-type]
