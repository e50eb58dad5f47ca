"""Uploads into the lake: checks before copying, verified copies, no half-copied models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import heritage.sources.lake as lake_mod
from heritage.formats import CheckpointError
from heritage.sources import UploadError, add_to_lake, discover, parse_size, read_card
from heritage.summary import file_sha256


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "model.safetensors"
    path.parent.mkdir()
    save_file({"layers.0.w": torch.randn(8, 8)}, path)
    return path


def test_parse_size():
    assert parse_size("5GB") == 5 * 10**9
    assert parse_size("1.5 MiB") == int(1.5 * 2**20)
    assert parse_size("123") == 123
    with pytest.raises(ValueError, match="not a size"):
        parse_size("5 parsecs")


def test_upload_lands_as_a_model_folder_with_a_card(weights: Path, tmp_path: Path):
    lake = tmp_path / "lake"
    up = add_to_lake(weights, "org/m", lake, description="Fine-tuned\nfor tests.")
    assert up.file == lake / "org/m/model.safetensors" and up.sha256 == file_sha256(weights)
    card = read_card(lake / "org/m/README.md")
    assert (card.name, card.description) == ("org/m", "Fine-tuned for tests.")
    assert [m.model_id for m in discover([lake]).models] == ["org/m"]


def test_refusals(weights: Path, tmp_path: Path):
    lake = tmp_path / "lake"
    add_to_lake(weights, "m", lake)
    with pytest.raises(UploadError, match="already exists in the lake"):
        add_to_lake(weights, "m", lake)
    with pytest.raises(UploadError, match="already exists in the index"):
        add_to_lake(weights, "n", lake, taken={"n"})
    with pytest.raises(UploadError, match="is a model, not an organisation"):
        add_to_lake(weights, "m/child", lake)
    for bad in ("../x", "a/b/c", "", "-x", "a/.."):
        with pytest.raises(UploadError, match="invalid name"):
            add_to_lake(weights, bad, lake)
    with pytest.raises(UploadError, match="upload limit"):
        add_to_lake(weights, "big", lake, max_bytes=100)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(weights.read_bytes()[:50])
    with pytest.raises(CheckpointError, match="corrupt.safetensors: "):
        add_to_lake(corrupt, "c", lake)
    assert sorted(p.name for p in lake.iterdir()) == ["m"]


def test_a_copy_that_does_not_verify_is_discarded(weights, tmp_path, monkeypatch):
    lake = tmp_path / "lake"
    monkeypatch.setattr(lake_mod, "file_sha256", lambda path: "0" * 64)
    with pytest.raises(UploadError, match="sha256 of the copy differs"):
        add_to_lake(weights, "m", lake)
    assert list(lake.iterdir()) == []
