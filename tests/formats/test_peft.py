"""PEFT LoRA adapter folders: discovery, config, layout, open_checkpoint and fingerprints."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from heritage.crawl.plan import read_meta
from heritage.errors import BadCheckpoint
from heritage.fingerprint import fingerprint
from heritage.formats import open_checkpoint, peft, weight_files
from heritage.sources import discover
from heritage.summary import summarize
from tests.formats.peft_builders import (
    HIDDEN,
    MLP,
    base_state,
    fine_tune,
    lora,
    write_adapter,
    write_model,
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("peft")
    base = base_state(0)
    tuned = fine_tune(base, 1)
    tensors, config, merged = lora(tuned, 2, save=("score",))
    return {
        "root": root,
        "tuned": write_model(root / "tuned", tuned),
        "merged": write_model(root / "merged", merged),
        "adapter": write_adapter(root / "adapter", tensors, config),
    }


def test_config_scale_and_defaults() -> None:
    cfg = peft.parse_config({"peft_type": "LORA", "r": 16, "lora_alpha": 32})
    assert (cfg.r, cfg.scale(16)) == (16, 2.0)
    rs = peft.parse_config({"r": 16, "lora_alpha": 32, "use_rslora": True})
    assert rs.scale(16) == pytest.approx(32 / math.sqrt(16))
    bare = peft.parse_config({})  # PEFT's defaults: r 8, lora_alpha 8
    assert (bare.r, bare.lora_alpha, bare.modules_to_save, bare.base_model) == (8, 8.0, (), None)
    patterned = peft.parse_config({"r": 4, "lora_alpha": 8, "alpha_pattern": {"v_proj": 16}})
    assert patterned.scale(4, "model.layers.0.self_attn.v_proj") == 4.0
    assert patterned.scale(4, "model.layers.0.self_attn.q_proj") == 2.0
    full = peft.parse_config(
        {
            "target_modules": "q_proj|v_proj",
            "modules_to_save": ["score"],
            "base_model_name_or_path": " org/base ",
            "fan_in_fan_out": True,
        }
    )
    assert full.target_modules == "q_proj|v_proj" and full.modules_to_save == ("score",)
    assert full.base_model == "org/base" and full.fan_in_fan_out


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"r": "eight"}, "r must be a number"),
        ({"r": 0}, "r must be a positive integer"),
        ({"lora_alpha": True}, "lora_alpha must be a number"),
        ({"use_rslora": "yes"}, "use_rslora must be true or false"),
        ({"modules_to_save": "score"}, "modules_to_save must be a list"),
        ({"peft_type": "IA3"}, "is not LORA"),
    ],
)
def test_config_wrong_types_are_bad_checkpoints(raw: dict, says: str) -> None:
    with pytest.raises(BadCheckpoint) as err:
        peft.parse_config(raw, "x/adapter_config.json")
    assert says in str(err.value) and str(err.value).startswith("x/adapter_config.json: ")


def test_layout_maps_each_pair_to_its_base_weight() -> None:
    tensors, config, _ = lora(base_state(0), 1, r=4, save=("score",))
    layout = peft.lora_layout(peft.parse_config(config), [(k, v.shape) for k, v in tensors.items()])
    assert len(layout.modules) == 8
    up = next(m for m in layout.modules if m.module == "model.layers.1.mlp.up_proj")
    assert up.base == "model.layers.1.mlp.up_proj.weight"
    assert (up.shape, up.rank) == ((MLP, HIDDEN), 4)
    assert up.a == "base_model.model.model.layers.1.mlp.up_proj.lora_A.weight"
    assert [(s.base, s.trained) for s in layout.saved] == [("score.weight", True)]
    assert layout.base_shapes()["model.layers.0.mlp.down_proj.weight"] == (HIDDEN, MLP)
    assert layout.saved_shapes() == {"score.weight": (5, HIDDEN)}
    shapes = {k: v.shape for k, v in base_state(3).items()}
    assert layout.fits(shapes)
    assert layout.fits({k: v for k, v in shapes.items() if k != "score.weight"})  # a new head
    assert not layout.fits({**shapes, "score.weight": (7, HIDDEN)})
    assert not layout.fits({**shapes, "model.layers.1.mlp.up_proj.weight": (HIDDEN, MLP)})
    assert not layout.fits({k: v for k, v in shapes.items() if "layers.1.mlp.up" not in k})


def test_layout_fan_in_fan_out_and_adapter_names() -> None:
    cfg = peft.parse_config({"r": 2, "fan_in_fan_out": True})
    layout = peft.lora_layout(
        cfg,
        [
            ("base_model.model.h.0.attn.c_attn.lora_A.default.weight", (2, 8)),
            ("base_model.model.h.0.attn.c_attn.lora_B.default.weight", (24, 2)),
        ],
    )
    (m,) = layout.modules
    assert (m.base, m.shape, m.transposed) == ("h.0.attn.c_attn.weight", (8, 24), True)
    assert layout.sample_like() == {}  # a transposed update does not line up with the rows


@pytest.mark.parametrize(
    ("tensors", "says"),
    [
        ({"base_model.model.q.lora_A.weight": (4, 8)}, "has no lora_B beside it"),
        ({"base_model.model.q.lora_B.weight": (8, 4)}, "has no lora_A beside it"),
        (
            {
                "base_model.model.q.lora_A.weight": (4, 8),
                "base_model.model.q.lora_B.weight": (8, 2),
            },
            "do not share a rank",
        ),
        ({"base_model.model.score.weight": (5, 8)}, "no LoRA weights"),
    ],
)
def test_layout_missing_tensors_are_bad_checkpoints(tensors: dict, says: str) -> None:
    with pytest.raises(BadCheckpoint) as err:
        peft.lora_layout(peft.parse_config({}), tensors.items(), "a/adapter_model.safetensors")
    text = str(err.value)
    assert says in text and text.startswith("a/adapter_model.safetensors: ") and "\n" not in text


def test_an_adapter_folder_is_one_model(folders: dict[str, Path], tmp_path: Path) -> None:
    folder = tmp_path / "org" / "lora"
    tensors, config, _ = lora(base_state(0), 1)
    write_adapter(folder, tensors, config)
    (folder / "README.md").write_text("---\nbase_model: org/base\n---\n")
    (folder / "training_args.bin").write_bytes(b"\x80\x04N.")  # not weights: never listed
    found = discover([tmp_path])
    assert [(m.model_id, m.kind) for m in found.models] == [("org/lora", "folder")]
    assert weight_files(folder) == ("peft", [folder / "adapter_model.safetensors"])
    # whole weights under Hugging Face names beside an adapter: the folder is that model
    write_model(tmp_path / "both", base_state(0))
    write_adapter(tmp_path / "both", tensors, config)
    assert weight_files(tmp_path / "both")[0] == "safetensors"
    with open_checkpoint(tmp_path / "both") as ckpt:
        assert ckpt.format == "safetensors"


def test_open_summary_and_config(folders: dict[str, Path]) -> None:
    with open_checkpoint(folders["adapter"]) as ckpt:
        assert ckpt.format == peft.FORMAT
        assert ckpt.config is not None and ckpt.config["r"] == 4
        summary = summarize(ckpt)
    assert summary.format == "peft-lora" and summary.config["base_model_name_or_path"] == "org/base"
    assert [f.name for f in summary.files] == ["adapter_model.safetensors"]
    found = next(m for m in discover([folders["root"]]).models if m.model_id == "adapter")
    meta, error = read_meta(found)
    assert error is None and meta.base_models == ["org/base"]
    assert meta.config is not None and meta.config["peft_type"] == "LORA"


def test_fingerprint_samples_the_adapter_where_the_base_is_sampled(
    folders: dict[str, Path],
) -> None:
    """B on its base weight's sampled rows, A on its column window, saved weights as the
    base tensor: the sampled update B @ A lines up with the base's sampled entries."""
    with open_checkpoint(folders["adapter"]) as ckpt:
        fa = fingerprint(ckpt)
    with open_checkpoint(folders["tuned"]) as ckpt:
        ft = fingerprint(ckpt)
    with open_checkpoint(folders["merged"]) as ckpt:
        fm = fingerprint(ckpt)
    scale = 8.0 / 4
    for module in ("model.layers.0.mlp.up_proj", "model.layers.1.mlp.down_proj"):
        a = fa.tensors[f"base_model.model.{module}.lora_A.weight"]
        b = fa.tensors[f"base_model.model.{module}.lora_B.weight"]
        w, m = ft.tensors[module + ".weight"], fm.tensors[module + ".weight"]
        assert np.array_equal(b.rows, w.rows) and a.cols == w.cols
        assert b.cols == (0, 4) and list(a.rows) == [0, 1, 2, 3]
        predicted = w.values + scale * (b.values.astype(np.float64) @ a.values)
        assert np.abs(m.values - predicted).max() < 1e-6
    assert len(ft.tensors["model.layers.0.mlp.up_proj.weight"].rows) < MLP  # rows sampled
    saved, head = fa.tensors["base_model.model.score.weight"], fm.tensors["score.weight"]
    assert np.array_equal(saved.rows, head.rows) and saved.cols == head.cols
    assert np.array_equal(saved.values, head.values)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "adapter_config.json is not valid JSON (JSONDecodeError)"),
        ("[1, 2]", "adapter_config.json is not a JSON object"),
        ('{"r": "four"}', "adapter_config.json: r must be a number"),
    ],
)
def test_a_corrupt_adapter_config_is_one_line_naming_the_file(
    tmp_path: Path, text: str, says: str
) -> None:
    tensors, _, _ = lora(base_state(0), 1)
    folder = write_adapter(tmp_path / "bad", tensors, text)
    with pytest.raises(BadCheckpoint) as err:
        open_checkpoint(folder)
    message = str(err.value)
    assert message.startswith(f"{folder / 'adapter_config.json'}: {says}")
    # an index run fails the model with that line before it reads any weight
    (found,) = discover([tmp_path]).models
    _, error = read_meta(found)
    if says.startswith("adapter_config.json: r"):  # valid JSON: only reading the weights fails
        assert error is None
    else:
        assert error == message
    assert "\n" not in message


def test_an_adapter_missing_lora_b_names_the_weights_file(tmp_path: Path) -> None:
    tensors, config, _ = lora(base_state(0), 1)
    del tensors["base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight"]
    folder = write_adapter(tmp_path / "half", tensors, config)
    with pytest.raises(BadCheckpoint) as err:
        open_checkpoint(folder)
    assert str(err.value).startswith(f"{folder / 'adapter_model.safetensors'}: ")
    assert "v_proj.lora_A.weight' has no lora_B beside it" in str(err.value)


def test_other_peft_types_are_read_as_they_are(tmp_path: Path) -> None:
    folder = tmp_path / "ia3"
    write_adapter(
        folder,
        {"base_model.model.q.ia3_l": np.ones((8, 1), np.float32)},
        json.dumps({"peft_type": "IA3", "base_model_name_or_path": "org/base"}),
    )
    with open_checkpoint(folder) as ckpt:
        assert ckpt.format == "safetensors" and ckpt.config["peft_type"] == "IA3"
        assert ckpt.sample_like == {}
