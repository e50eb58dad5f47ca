"""Tiny models and PEFT LoRA adapters written with numpy and safetensors, for the tests.

A base of two decoder blocks (hidden 48, MLP 160, so the MLP matrices are sampled on
some rows and on a column window), fine-tunes of it with the same shapes, and LoRA
adapters saved the way ``PeftModel.save_pretrained`` saves them: ``base_model.model.``
before each module, ``lora_A.weight`` [r, in] and ``lora_B.weight`` [out, r], the
``modules_to_save`` weights whole, and adapter_config.json beside them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

HIDDEN, MLP, VOCAB, LABELS = 48, 160, 64, 5
TARGETS = ("self_attn.q_proj", "self_attn.v_proj", "mlp.up_proj", "mlp.down_proj")

State = dict[str, np.ndarray]


def base_state(seed: int = 0) -> State:
    """A randomly initialised two-block model with a classification head (``score``)."""
    rng = np.random.default_rng(seed)

    def mat(out: int, inp: int) -> np.ndarray:
        return (rng.standard_normal((out, inp)) / math.sqrt(inp)).astype(np.float32)

    state = {"model.embed_tokens.weight": mat(VOCAB, HIDDEN), "score.weight": mat(LABELS, HIDDEN)}
    for i in range(2):
        p = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            state[p + f"self_attn.{name}.weight"] = mat(HIDDEN, HIDDEN)
        state[p + "mlp.up_proj.weight"] = mat(MLP, HIDDEN)
        state[p + "mlp.down_proj.weight"] = mat(HIDDEN, MLP)
        state[p + "input_layernorm.weight"] = np.ones(HIDDEN, np.float32)
    state["model.norm.weight"] = np.ones(HIDDEN, np.float32)
    return state


def fine_tune(state: State, seed: int, step: float = 0.2) -> State:
    """Every tensor moved by a little noise (a full fine-tune)."""
    rng = np.random.default_rng(seed)
    return {
        k: (v + step * rng.standard_normal(v.shape) * (np.abs(v).mean() + 1e-3)).astype(np.float32)
        for k, v in state.items()
    }


def lora(
    state: State,
    seed: int,
    r: int = 4,
    alpha: float = 8.0,
    targets: tuple[str, ...] = TARGETS,
    save: tuple[str, ...] = (),
    rslora: bool = False,
    base_name: str | None = "org/base",
) -> tuple[State, dict, State]:
    """A trained LoRA on ``state``: (adapter tensors, adapter_config, the merged model).

    ``save`` lists modules saved whole (``modules_to_save``), each trained away from the
    base's weights."""
    rng = np.random.default_rng(seed)
    scale = alpha / math.sqrt(r) if rslora else alpha / r
    tensors: State = {}
    merged = {k: v.copy() for k, v in state.items()}
    for i in range(2):
        for t in targets:
            module = f"model.layers.{i}.{t}"
            out, inp = state[module + ".weight"].shape
            a = (rng.standard_normal((r, inp)) / math.sqrt(inp)).astype(np.float32)
            b = (0.05 * rng.standard_normal((out, r))).astype(np.float32)
            tensors[f"base_model.model.{module}.lora_A.weight"] = a
            tensors[f"base_model.model.{module}.lora_B.weight"] = b
            delta = scale * (b.astype(np.float64) @ a.astype(np.float64))
            merged[module + ".weight"] = (state[module + ".weight"] + delta).astype(np.float32)
    for module in save:
        w = state[module + ".weight"]
        trained = (w + 0.05 * np.abs(w).mean() * rng.standard_normal(w.shape)).astype(np.float32)
        tensors[f"base_model.model.{module}.weight"] = trained
        merged[module + ".weight"] = trained.copy()
    config = {
        "peft_type": "LORA",
        "r": r,
        "lora_alpha": alpha,
        "use_rslora": rslora,
        "fan_in_fan_out": False,
        "target_modules": sorted({t.split(".")[-1] for t in targets}),
        "modules_to_save": list(save) or None,
        "base_model_name_or_path": base_name,
        "task_type": "SEQ_CLS" if save else "CAUSAL_LM",
    }
    return tensors, config, merged


def write_model(folder: Path, state: State) -> Path:
    """A Hugging Face model folder: model.safetensors and a config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: np.ascontiguousarray(v) for k, v in sorted(state.items())}, folder / "model.safetensors"
    )
    (folder / "config.json").write_text(json.dumps({"model_type": "tiny", "hidden_size": HIDDEN}))
    return folder


def write_adapter(folder: Path, tensors: State, config: dict | str) -> Path:
    """A PEFT adapter folder: adapter_model.safetensors and adapter_config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: np.ascontiguousarray(v) for k, v in sorted(tensors.items())},
        folder / "adapter_model.safetensors",
    )
    text = config if isinstance(config, str) else json.dumps(config, indent=2)
    (folder / "adapter_config.json").write_text(text)
    return folder
