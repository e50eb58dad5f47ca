"""PyTorch pickles (.pt, .pth, .bin), loaded only through torch's restricted unpickler.

``torch.load(weights_only=True)`` admits tensors, storages and plain containers and
nothing else; a pickle that asks for any other global is refused before a single
global is resolved, and we name the globals it asked for by disassembling it.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from heritage.errors import BadCheckpoint, UnsafePickle
from heritage.formats.checkpoint import RowSample, SourcedCheckpoint, TensorInfo
from heritage.formats.dtypes import TORCH_TO_SAFETENSORS
from heritage.formats.source import ByteSource

PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
ZIP_MAGIC = b"PK\x03\x04"
_PROTO = 0x80


def _first_line(exc: BaseException, limit: int = 160) -> str:
    """The informative part of a torch error, on one line."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # torch wraps the real reason in a long preamble
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    line = lines[0] if lines else exc.__class__.__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


def pickle_globals(data: bytes) -> list[str]:
    """Every ``module.name`` global a pickle stream refers to, found without executing it.

    Walks the opcodes of each pickle in ``data`` (legacy torch files hold several in a
    row) and resolves STACK_GLOBAL operands from the strings pushed or memoised before it.
    """
    found: list[str] = []
    stream = io.BytesIO(data)
    while stream.tell() < len(data):
        strings: list[str] = []
        memo: dict[int, str] = {}
        try:
            for op, arg, _pos in pickletools.genops(stream):
                if op.name == "GLOBAL":
                    found.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    found.append(f"{strings[-2]}.{strings[-1]}")
                elif isinstance(arg, str) and ("UNICODE" in op.name or op.name.endswith("STRING")):
                    strings.append(str(arg))
                elif op.name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
                    memo[int(arg)] = strings[-1]
                elif op.name == "MEMOIZE" and strings:
                    memo[len(memo)] = strings[-1]
                elif op.name in ("BINGET", "LONG_BINGET", "GET") and int(arg) in memo:
                    strings.append(memo[int(arg)])
        except Exception:  # noqa: BLE001 - a stream we cannot walk further ends the scan
            break
        # Legacy files continue with raw storage bytes after the pickles; stop there.
        if stream.tell() >= len(data) or data[stream.tell()] != _PROTO:
            break
    return found


def _allowed_globals() -> set[str]:
    from torch import _weights_only_unpickler as wou

    try:
        return set(wou._get_allowed_globals()) | set(wou._get_user_allowed_globals())
    except AttributeError:  # private API moved: fall back to naming every global
        return set()


def unsafe_globals(path: Path) -> list[str]:
    """Globals in a torch pickle that ``weights_only`` loading does not allow."""
    data = path.read_bytes()
    if data.startswith(ZIP_MAGIC):
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            pkl = [n for n in zf.namelist() if n.endswith("data.pkl")]
            data = zf.read(pkl[0]) if pkl else b""
    allowed = _allowed_globals()
    return sorted({g for g in pickle_globals(data) if g not in allowed})


def _flatten(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    if isinstance(obj, torch.Tensor):
        out[prefix or "tensor"] = obj
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            _flatten(value, f"{prefix}.{key}" if prefix else str(key), out)


def load_state_dict(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """Tensors of a torch pickle by dotted name, and the container kind (zip or legacy)."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise BadCheckpoint(path, f"cannot open: {exc.strerror}") from None
    if not magic:
        raise BadCheckpoint(path, "empty file")
    if magic == ZIP_MAGIC:
        kind = "pytorch-zip"
        try:
            with zipfile.ZipFile(path) as zf:
                zf.infolist()
        except (zipfile.BadZipFile, OSError):
            raise BadCheckpoint(path, "truncated or corrupt zip archive") from None
    elif magic[0] == _PROTO:
        kind = "pytorch-legacy"
    else:
        raise BadCheckpoint(path, "not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(
                path, map_location="cpu", weights_only=True, mmap=kind == "pytorch-zip"
            )
    except pickle.UnpicklingError as exc:
        bad = unsafe_globals(path)
        if bad:
            raise UnsafePickle(path, bad) from None
        raise BadCheckpoint(path, f"corrupt pickle: {_first_line(exc)}") from None
    except EOFError:
        raise BadCheckpoint(path, "truncated pickle (unexpected end of file)") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for corrupt archives
        raise BadCheckpoint(path, f"corrupt or truncated checkpoint: {_first_line(exc)}") from None
    tensors: dict[str, torch.Tensor] = {}
    _flatten(obj, "", tensors)
    if not tensors:
        raise BadCheckpoint(path, "not a checkpoint: the pickle holds no tensors")
    return tensors, kind


class PickleCheckpoint(SourcedCheckpoint):
    """Tensors from one or more torch pickles (a sharded ``pytorch_model.bin`` is several)."""

    def __init__(
        self,
        location: Path,
        paths: list[Path],
        config: dict[str, Any] | None = None,
        *,
        files: list[Path] | None = None,
        sources: Mapping[str, ByteSource] | None = None,
    ):
        """``files`` name the pickles where they came from when ``paths`` are local
        copies of downloads; ``sources`` are the byte sources they were downloaded
        through (by file name), which counted the bytes and requests."""
        self._use_sources(sources or {})
        self._tensors: dict[str, torch.Tensor] = {}
        infos: list[TensorInfo] = []
        kinds: set[str] = set()
        for path in paths:
            loaded, kind = load_state_dict(path)
            kinds.add(kind)
            for name, tensor in loaded.items():
                if name in self._tensors:
                    raise BadCheckpoint(path, f"tensor {name!r} appears in more than one file")
                dtype = TORCH_TO_SAFETENSORS.get(str(tensor.dtype).removeprefix("torch."))
                if dtype is None:
                    raise BadCheckpoint(
                        path, f"tensor {name!r} has unsupported dtype {tensor.dtype}"
                    )
                self._tensors[name] = tensor
                infos.append(TensorInfo(name, dtype, tuple(tensor.shape), path.name))
        infos.sort(key=lambda t: t.name)
        if files is not None:  # name each tensor's file as the caller knows it
            names = {p.name: f.name for p, f in zip(paths, files, strict=True)}
            infos = [replace(t, file=names[t.file]) for t in infos]
        super().__init__(
            location=location,
            format=sorted(kinds)[0],
            files=list(files if files is not None else paths),
            tensors=infos,
            config=config,
        )

    def _read_rows_many(self, plan: dict[str, RowSample]) -> dict[str, np.ndarray]:
        out = {}
        for name, sample in plan.items():
            tensor = self._tensors[name]
            if tensor.dim() == 0:
                tensor = tensor.reshape(1)
            picked = tensor[torch.as_tensor(list(sample.rows), dtype=torch.long)]
            if sample.cols is not None:
                picked = picked.reshape(len(sample.rows), -1)[:, sample.cols[0] : sample.cols[1]]
            out[name] = picked.detach().to(torch.float32).numpy()
        return out

    def close(self) -> None:
        self._tensors = {}
        super().close()
