from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from heritage.formats import BadCheckpoint, UnsafePickle, open_checkpoint
from heritage.formats.pickle_reader import pickle_globals


def _state():
    g = torch.Generator().manual_seed(1)
    return {
        "fc1.weight": torch.randn(8, 4, generator=g),
        "fc1.bias": torch.randn(8, generator=g).half(),
        "fc2.weight": torch.randn(3, 8, generator=g).to(torch.bfloat16),
        "steps": torch.tensor(7),
    }


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".bin"])
@pytest.mark.parametrize("zipped", [True, False])
def test_pickle_formats_read_exactly(tmp_path, suffix, zipped):
    state = _state()
    path = tmp_path / f"model{suffix}"
    torch.save(state, path, _use_new_zipfile_serialization=zipped)
    with open_checkpoint(path) as ckpt:
        assert ckpt.format == ("pytorch-zip" if zipped else "pytorch-legacy")
        assert {t.name: t.dtype for t in ckpt.tensors} == {
            "fc1.weight": "F32",
            "fc1.bias": "F16",
            "fc2.weight": "BF16",
            "steps": "I64",
        }
        for name, t in state.items():
            np.testing.assert_array_equal(ckpt.read(name), t.float().numpy())
        np.testing.assert_array_equal(
            ckpt.read_rows("fc1.weight", [2, 5]), state["fc1.weight"][[2, 5]].numpy()
        )


def test_nested_state_dict_is_flattened(tmp_path):
    path = tmp_path / "ckpt.pt"
    torch.save({"state_dict": {"a": torch.ones(2)}, "epoch": 3, "optimizer": {"lr": 0.1}}, path)
    with open_checkpoint(path) as ckpt:
        assert [t.name for t in ckpt.tensors] == ["state_dict.a"]


def test_hf_folder_with_pytorch_model_bin(tmp_path):
    torch.save(_state(), tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text('{"model_type": "mlp"}')
    with open_checkpoint(tmp_path) as ckpt:
        assert ckpt.config == {"model_type": "mlp"}
        assert len(ckpt.tensors) == 4


class _Evil:
    """Its reduce would create a file if the pickle were ever executed."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.parametrize("zipped", [True, False])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, zipped):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save(
        {"w": torch.zeros(2), "x": _Evil(target)}, path, _use_new_zipfile_serialization=zipped
    )
    with pytest.raises(UnsafePickle) as err:
        open_checkpoint(path)
    assert str(err.value) == f"{path}: unsafe pickle refused: it needs globals posix.system"
    assert err.value.globals == ["posix.system"]
    assert not target.exists()


def test_plain_malicious_pickle_with_several_globals(tmp_path):
    target = tmp_path / "pwned"
    path = tmp_path / "evil.bin"

    class Two:
        def __reduce__(self):
            return (eval, ("1",))

    path.write_bytes(pickle.dumps({"a": _Evil(target), "b": Two()}, protocol=4))
    with pytest.raises(UnsafePickle) as err:
        open_checkpoint(path)
    assert err.value.globals == ["builtins.eval", "posix.system"]
    assert not target.exists()


def test_pickle_globals_resolves_memoised_stack_global():
    data = pickle.dumps([os.system, os.system, print], protocol=4)
    assert pickle_globals(data) == ["posix.system", "builtins.print"]


def _check(path, message):
    with pytest.raises(BadCheckpoint) as err:
        open_checkpoint(path)
    assert str(err.value) == f"{path}: {message}"


def test_empty_pickle(tmp_path):
    p = tmp_path / "e.pt"
    p.write_bytes(b"")
    _check(p, "empty file")


def test_not_a_pickle(tmp_path):
    p = tmp_path / "readme.bin"
    p.write_text("just text")
    _check(p, "not a PyTorch checkpoint (neither a zip archive nor a pickle)")


def test_truncated_zip_pickle(tmp_path):
    p = tmp_path / "t.pt"
    torch.save(_state(), p)
    p.write_bytes(p.read_bytes()[:-30])
    _check(p, "truncated or corrupt zip archive")


def test_truncated_legacy_pickle(tmp_path):
    p = tmp_path / "t.pth"
    torch.save(_state(), p, _use_new_zipfile_serialization=False)
    p.write_bytes(p.read_bytes()[:40])
    _check(p, "truncated pickle (unexpected end of file)")


def test_legacy_pickle_with_truncated_storage(tmp_path):
    p = tmp_path / "t.pth"
    torch.save({"w": torch.zeros(16)}, p, _use_new_zipfile_serialization=False)
    p.write_bytes(p.read_bytes()[:-10])
    _check(
        p,
        "corrupt or truncated checkpoint: unexpected EOF, expected 10 more bytes. The file might be corrupted.",
    )


def test_corrupt_legacy_pickle(tmp_path):
    p = tmp_path / "c.pt"
    p.write_bytes(b"\x80\x02" + bytes(range(256)) * 4)
    _check(p, "corrupt pickle: Unsupported operand 0")


def test_pickle_without_tensors(tmp_path):
    p = tmp_path / "n.pt"
    torch.save({"epoch": 3}, p)
    _check(p, "not a checkpoint: the pickle holds no tensors")
