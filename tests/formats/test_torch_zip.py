"""Zip-format torch checkpoints read by range: the same tensors as torch.load, no code run."""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch

from heritage.formats import BadCheckpoint, LocalFileSource, UnsafePickle, open_checkpoint
from heritage.formats.torch_zip import TorchZipCheckpoint


def _open(path: Path) -> TorchZipCheckpoint:
    return TorchZipCheckpoint(path, {path.name: LocalFileSource(path)})


def test_names_and_values_match_torch_load(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(6, 4, generator=g)
    sd = OrderedDict(
        w=torch.randn(8, 3, 2, generator=g),
        half=torch.randn(5, 7, generator=g).half(),
        bf=torch.randn(9, generator=g).bfloat16(),
        every_other_row=base[::2],  # a view: rows two storage rows apart
        tail=base[2:],  # shares base's storage at an offset
        ids=torch.arange(10),
        nested={"inner": torch.nn.Parameter(torch.randn(3, 3, generator=g))},
    )
    path = tmp_path / "m.pt"
    torch.save(sd, path)
    local, remote = open_checkpoint(path), _open(path)
    assert [(t.name, t.dtype, t.shape) for t in remote.tensors] == [
        (t.name, t.dtype, t.shape) for t in local.tensors
    ]
    for t in local.tensors:
        rows = list(range(t.n_rows))[::-1]
        assert np.array_equal(remote.read_rows(t.name, rows), local.read_rows(t.name, rows))
    window = remote.read_rows("w", [1, 7], cols=(2, 5))
    assert np.array_equal(window, sd["w"].reshape(8, -1)[[1, 7], 2:5].numpy())
    assert "nested.inner" in {t.name for t in remote.tensors}


def test_a_pickle_asking_for_other_globals_is_refused_unrun(tmp_path: Path, capsys) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("never printed",))

    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("evil/data.pkl", pickle.dumps({"w": Evil()}, protocol=4))
    with pytest.raises(UnsafePickle, match="builtins.print"):
        _open(path)
    assert "never printed" not in capsys.readouterr().out


def test_truncated_and_foreign_archives_get_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    torch.save({"w": torch.ones(4, 4)}, path)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(BadCheckpoint, match="no end of directory|out of bounds|corrupt"):
        _open(cut)
    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("readme.txt", "hello")
    with pytest.raises(BadCheckpoint, match="no data.pkl"):
        _open(other)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("x/data.pkl", pickle.dumps({"n": 1}, protocol=2))
    (tmp_path / "empty.pt").write_bytes(buf.getvalue())
    with pytest.raises(BadCheckpoint, match="holds no tensors"):
        _open(tmp_path / "empty.pt")
