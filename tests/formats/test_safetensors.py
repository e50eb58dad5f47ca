from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from heritage.formats import BadCheckpoint, open_checkpoint
from tests.formats.builders import entry, raw_safetensors

TORCH_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "F8_E4M3FNUZ": torch.float8_e4m3fnuz,
    "F8_E5M2FNUZ": torch.float8_e5m2fnuz,
    "I8": torch.int8,
    "U8": torch.uint8,
    "I16": torch.int16,
    "I32": torch.int32,
    "I64": torch.int64,
    "BOOL": torch.bool,
}


def _tensor(dtype: torch.dtype, shape=(6, 5)) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if dtype == torch.bool:
        return torch.rand(shape, generator=g) > 0.5
    if dtype.is_floating_point:
        return (torch.randn(shape, generator=g) * 3).to(dtype)
    return torch.randint(-100 if dtype != torch.uint8 else 0, 100, shape, generator=g).to(dtype)


@pytest.mark.parametrize("name", list(TORCH_DTYPES))
def test_every_dtype_reads_as_exact_float32(tmp_path, name):
    t = _tensor(TORCH_DTYPES[name])
    path = tmp_path / "m.safetensors"
    save_file({"w": t}, path)
    with open_checkpoint(path) as ckpt:
        (info,) = ckpt.tensors
        assert (info.dtype, info.shape) == (name, (6, 5))
        got = ckpt.read("w")
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, t.to(torch.float32).numpy())


def test_f64_out_of_range_and_nan_payloads_convert_silently():
    """Overflow becomes ±inf and any NaN payload stays NaN, with no warning per tensor."""
    import warnings

    from heritage.formats.dtypes import to_float32

    values = np.array([np.nan, 1e300, -1e300, 1e-320, 2.5], dtype="<f8").tobytes()
    payloads = np.array([0x7FF0000000000001, 0xFFF8000000000123], dtype="<u8").tobytes()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = to_float32(values + payloads, "F64")
    assert out.dtype == np.float32
    assert np.isnan(out[[0, 5, 6]]).all()
    assert out[1] == np.inf and out[2] == -np.inf and out[3] == 0.0 and out[4] == 2.5


def test_rows_match_whole_tensor_and_read_few_bytes(tmp_path):
    t, b = torch.randn(4096, 256), torch.randn(10)
    path = tmp_path / "big.safetensors"
    save_file({"a": t, "b": b}, path)
    with open_checkpoint(path) as ckpt:
        listed = ckpt.bytes_read
        rows = [3, 4, 1000, 4095]
        got = ckpt.read_rows("a", rows)
        np.testing.assert_array_equal(got, t.numpy()[rows])
        # four rows of 1 KiB each, plus coalescing slack, not the 4 MiB tensor
        assert ckpt.bytes_read - listed < 200_000
        np.testing.assert_array_equal(ckpt.read("b"), b.numpy())
        with pytest.raises(IndexError, match="out of range"):
            ckpt.read_rows("a", [4096])


def test_listing_reads_only_the_header(tmp_path):
    path = tmp_path / "m.safetensors"
    save_file({f"t{i}": torch.zeros(256, 256) for i in range(8)}, path)
    with open_checkpoint(path) as ckpt:
        assert len(ckpt.tensors) == 8
        assert ckpt.bytes_read <= 64 * 1024
        assert ckpt.bytes_read < path.stat().st_size / 20


def _shard(tmp_path, config=True):
    folder = tmp_path / "model"
    folder.mkdir()
    a, b, c = torch.randn(4, 3), torch.randn(2).to(torch.bfloat16), torch.randn(5, 5)
    save_file(
        {"model.layers.0.w": a, "model.norm.weight": b}, folder / "model-00001-of-00002.safetensors"
    )
    save_file({"model.layers.1.w": c}, folder / "model-00002-of-00002.safetensors")
    index = {
        "metadata": {"total_size": 0},
        "weight_map": {
            "model.layers.0.w": "model-00001-of-00002.safetensors",
            "model.norm.weight": "model-00001-of-00002.safetensors",
            "model.layers.1.w": "model-00002-of-00002.safetensors",
        },
    }
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    if config:
        (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    return folder, {"model.layers.0.w": a, "model.norm.weight": b, "model.layers.1.w": c}


def test_sharded_folder_is_one_model(tmp_path):
    folder, tensors = _shard(tmp_path)
    with open_checkpoint(folder) as ckpt:
        assert ckpt.format == "safetensors-sharded"
        assert ckpt.config == {"model_type": "llama"}
        assert [t.name for t in ckpt.tensors] == sorted(tensors)
        assert {p.name for p in ckpt.files} == {
            "model-00001-of-00002.safetensors",
            "model-00002-of-00002.safetensors",
        }
        got = ckpt.read_rows_many({n: [0] for n in tensors})
        for name, t in tensors.items():
            np.testing.assert_array_equal(got[name], t.float().numpy()[[0]])


# --- validation: each rule broken once, each error exact --------------------------------


def _check(path, message):
    with pytest.raises(BadCheckpoint) as err:
        open_checkpoint(path)
    assert str(err.value) == f"{path}: {message}"
    assert "\n" not in str(err.value)


def test_empty_file(tmp_path):
    p = tmp_path / "e.safetensors"
    p.write_bytes(b"")
    _check(p, "empty file")


def test_too_short(tmp_path):
    p = tmp_path / "s.safetensors"
    p.write_bytes(b"\x01\x02\x03")
    _check(p, "file is 3 bytes, too short for a safetensors header")


def test_header_over_100mb(tmp_path):
    p = raw_safetensors(tmp_path / "h.safetensors", {}, header_len=200 * 1024 * 1024)
    _check(p, f"header length {200 * 1024 * 1024} bytes exceeds the 100 MB limit")


def test_header_past_end_of_file(tmp_path):
    p = raw_safetensors(tmp_path / "h.safetensors", {}, header_len=5000)
    _check(p, "header length 5000 bytes runs past end of file (10 bytes)")


def test_header_not_json(tmp_path):
    p = raw_safetensors(tmp_path / "h.safetensors", "{not json")
    _check(p, "header is not valid JSON (JSONDecodeError)")


def test_header_not_utf8(tmp_path):
    p = raw_safetensors(tmp_path / "h.safetensors", b"\xff\xfe{}")
    _check(p, "header is not valid JSON (UnicodeDecodeError)")


def test_header_not_object(tmp_path):
    p = raw_safetensors(tmp_path / "h.safetensors", [1, 2])
    _check(p, "header is not a JSON object but list")


def test_duplicate_keys(tmp_path):
    header = '{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}'
    p = raw_safetensors(tmp_path / "d.safetensors", header, b"\0" * 8)
    _check(p, "header has duplicate key 'a'")


def test_unknown_dtype(tmp_path):
    p = raw_safetensors(tmp_path / "u.safetensors", {"a": entry("F7", [1], 0, 1)}, b"\0")
    _check(p, "tensor 'a' has unknown dtype 'F7'")


def test_bad_shape(tmp_path):
    p = raw_safetensors(tmp_path / "u.safetensors", {"a": entry("F32", [-1], 0, 4)}, b"\0" * 4)
    _check(p, "tensor 'a' has an invalid shape [-1]")


def test_offsets_disagree_with_shape(tmp_path):
    p = raw_safetensors(tmp_path / "o.safetensors", {"a": entry("F32", [2, 2], 0, 12)}, b"\0" * 12)
    _check(p, "tensor 'a' offsets span 12 bytes but F32 × [2, 2] needs 16")


def test_offsets_overlap(tmp_path):
    header = {"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 4, 12)}
    p = raw_safetensors(tmp_path / "o.safetensors", header, b"\0" * 12)
    _check(p, "tensor 'b' overlaps the previous tensor's bytes")


def test_offsets_leave_hole(tmp_path):
    header = {"a": entry("F32", [2], 0, 8), "b": entry("F32", [2], 12, 20)}
    p = raw_safetensors(tmp_path / "o.safetensors", header, b"\0" * 20)
    _check(p, "hole of 4 bytes before tensor 'b'")


def test_data_shorter_than_header_says(tmp_path):
    header = {"a": entry("F32", [4], 0, 16)}
    p = raw_safetensors(tmp_path / "t.safetensors", header, b"\0" * 10)
    _check(p, "data section is 10 bytes but the header needs 16 (truncated file?)")


def test_truncated_real_file(tmp_path):
    p = tmp_path / "t.safetensors"
    save_file({"a": torch.zeros(100)}, p)
    p.write_bytes(p.read_bytes()[:-100])
    _check(p, "data section is 300 bytes but the header needs 400 (truncated file?)")


def test_trailing_bytes(tmp_path):
    header = {"a": entry("F32", [1], 0, 4)}
    p = raw_safetensors(tmp_path / "t.safetensors", header, b"\0" * 9)
    _check(p, "5 bytes after the last tensor are not described by the header")


def test_shard_index_names_missing_shard(tmp_path):
    folder, _ = _shard(tmp_path)
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(BadCheckpoint) as err:
        open_checkpoint(folder)
    index = folder / "model.safetensors.index.json"
    assert str(err.value) == (
        f"{index}: shard 'model-00002-of-00002.safetensors' named by the index is missing"
    )


@pytest.mark.parametrize(
    "shard", ["../outside.safetensors", "/etc/passwd", "sub/../../x.safetensors"]
)
def test_shard_index_escaping_folder(tmp_path, shard):
    folder, _ = _shard(tmp_path)
    (tmp_path / "outside.safetensors").write_bytes(b"")
    index = folder / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["model.layers.1.w"] = shard
    index.write_text(json.dumps(data))
    with pytest.raises(BadCheckpoint) as err:
        open_checkpoint(folder)
    assert str(err.value) == f"{index}: shard {shard!r} escapes the model folder"


def test_shard_index_symlink_escaping_folder(tmp_path):
    folder, _ = _shard(tmp_path)
    outside = tmp_path / "outside.safetensors"
    (folder / "model-00002-of-00002.safetensors").rename(outside)
    (folder / "model-00002-of-00002.safetensors").symlink_to(outside)
    index = folder / "model.safetensors.index.json"
    with pytest.raises(BadCheckpoint) as err:
        open_checkpoint(folder)
    assert str(err.value) == (
        f"{index}: shard 'model-00002-of-00002.safetensors' escapes the model folder"
    )


def test_shard_index_tensor_in_wrong_shard(tmp_path):
    folder, _ = _shard(tmp_path)
    index = folder / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["weight_map"]["model.layers.1.w"] = "model-00001-of-00002.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(BadCheckpoint) as err:
        open_checkpoint(folder)
    assert str(err.value) == (
        f"{index}: tensor 'model.layers.1.w' is not in shard 'model-00001-of-00002.safetensors'"
    )


def test_shard_index_not_json(tmp_path):
    folder, _ = _shard(tmp_path)
    index = folder / "model.safetensors.index.json"
    index.write_text("[")
    with pytest.raises(BadCheckpoint) as err:
        open_checkpoint(folder)
    assert str(err.value) == f"{index}: shard index is not valid JSON (JSONDecodeError)"


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    _check(tmp_path, "no weight files found (.safetensors, .bin, .pt, .pth)")


def test_bad_config_json(tmp_path):
    folder, _ = _shard(tmp_path)
    (folder / "config.json").write_text("{oops")
    with pytest.raises(BadCheckpoint) as err:
        open_checkpoint(folder)
    assert (
        str(err.value)
        == f"{folder / 'config.json'}: config.json is not valid JSON (JSONDecodeError)"
    )


def test_not_a_checkpoint_by_type(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    _check(p, "not a checkpoint: unsupported file type '.txt'")


def test_missing_path(tmp_path):
    _check(tmp_path / "nope.safetensors", "no such file or folder")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_column_windows_match_and_stay_small(tmp_path, dtype):
    t = torch.randn(512, 4096).to(dtype)
    path = tmp_path / "wide.safetensors"
    save_file({"w": t}, path)
    with open_checkpoint(path) as ckpt:
        before = ckpt.bytes_read
        got = ckpt.read_rows("w", [0, 100, 511], cols=(1000, 1128))
        np.testing.assert_array_equal(got, t.float().numpy()[[0, 100, 511], 1000:1128])
        assert ckpt.bytes_read - before == 3 * 128 * t.element_size()
        with pytest.raises(IndexError, match="columns"):
            ckpt.read_rows("w", [0], cols=(4000, 4097))


def test_column_windows_on_pickles(tmp_path):
    t = torch.randn(8, 3, 2, 2)
    torch.save({"conv": t}, tmp_path / "c.pt")
    with open_checkpoint(tmp_path / "c.pt") as ckpt:
        got = ckpt.read_rows("conv", [1, 6], cols=(2, 7))
    np.testing.assert_array_equal(got, t.reshape(8, -1)[[1, 6], 2:7].numpy())


def test_per_file_budgets_and_concurrent_reads(tmp_path):
    """A budget per file (equal ones planned together), reads in flight at once: same rows."""
    from heritage.formats.source import ReadBudget

    folder, tensors = _shard(tmp_path)
    plan = {"model.layers.0.w": [0, 2], "model.norm.weight": [0], "model.layers.1.w": [0, 2, 4]}
    with open_checkpoint(folder) as ckpt:
        expected = ckpt.read_rows_many(plan)
        first, second = (p.name for p in ckpt.files)
        for budget in (
            ReadBudget(merge_gap=0, concurrency=4),
            {first: ReadBudget(merge_gap=0, concurrency=3), second: ReadBudget(max_requests=1)},
            {second: ReadBudget(max_requests=0)},  # a file left out: ReadBudget()
        ):
            ckpt.read_budget = budget
            before = ckpt.reads
            got = ckpt.read_rows_many(plan)
            for name, t in tensors.items():
                np.testing.assert_array_equal(got[name], expected[name])
                np.testing.assert_array_equal(got[name], t.float().numpy()[plan[name]])
            if not isinstance(budget, dict):
                assert ckpt.reads - before == 6  # gaps not merged: a request per row
