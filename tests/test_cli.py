from __future__ import annotations

import json
import subprocess
import sys

import torch
from safetensors.torch import save_file

from heritage.cli import main


def test_inspect_table_and_json(tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    save_file({"layers.0.w": torch.zeros(4, 4), "layers.1.w": torch.zeros(4, 4)}, path)
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "parameters      32" in out and "layers          2" in out
    assert main(["inspect", str(path), "--json", "--tensors"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["n_params"] == 32 and data["n_layers"] == 2
    assert [t["name"] for t in data["tensors"]] == ["layers.0.w", "layers.1.w"]


def test_bad_file_gives_one_line_error_and_nonzero_exit(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00[1,2]")
    proc = subprocess.run(
        [sys.executable, "-m", "heritage", "inspect", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr == f"heritage: error: {bad}: header is not a JSON object but list\n"
    assert "Traceback" not in proc.stderr


def test_inspect_many_goes_on_past_a_bad_file(tmp_path, capsys):
    good = tmp_path / "good.safetensors"
    save_file({"w": torch.zeros(2)}, good)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"")
    assert main(["inspect", str(bad), str(good), "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.err == f"heritage: error: {bad}: empty file\n"
    assert json.loads(captured.out)[0]["location"] == str(good)


def test_help_lists_subcommands(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    assert "inspect" in out and "zoo" in out
