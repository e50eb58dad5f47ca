"""Verified quantized copies: rounding the source reproduces the copy, or it does not."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from gguf import GGMLQuantizationType as Q
from gguf.quants import dequantize, quantize

from heritage.fingerprint import Fingerprint
from heritage.lineage import LineageSettings, ModelInput, recover_lineage
from heritage.lineage.precision import precision_bits
from heritage.lineage.types import Relation
from heritage.lineage.verify import Verdict, verdict

from .synthetic import bf16, finetune, int8, make, root

SETTINGS = LineageSettings(use_times=False)


def gguf_copy(weights: dict[str, np.ndarray], qtype: Q) -> Fingerprint:
    """What the GGUF reader gives for ``weights`` exported as ``qtype``: the matrices
    rounded and stored as that type, the vectors kept in F32 (as llama.cpp keeps norms)."""
    out = {}
    for name, w in weights.items():
        if w.ndim == 1:
            out[name] = w
        else:
            out[name] = dequantize(quantize(w, qtype), qtype).astype(np.float32).reshape(w.shape)
    fp = make(out)
    for name, t in fp.tensors.items():
        if len(t.shape) > 1:
            fp.tensors[name] = replace(t, dtype=qtype.name)
    return fp


def test_rounding_the_source_reproduces_its_copies_and_not_its_kin():
    base = root(1)
    child = finetune(base, 2)
    for qtype in (Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1):
        copy = gguf_copy(child, qtype)
        assert verdict(copy, make(child)) == Verdict.VERIFIED, qtype
        assert verdict(copy, make(base)) != Verdict.VERIFIED, qtype
    assert verdict(make(bf16(child), "BF16"), make(child)) == Verdict.VERIFIED
    # an int8 round trip stored in BF16 is rounded another way: unknown, never unfaithful
    assert verdict(make(bf16(int8(child)), "BF16"), make(child)) == Verdict.UNKNOWN


def test_weights_changed_during_quantization_are_unfaithful():
    child = finetune(root(1), 2)
    tampered = {n: w.copy() for n, w in child.items()}
    tampered["layers.3.w"][5, :8] += 0.3  # far beyond a Q8_0 step of these weights
    assert verdict(gguf_copy(tampered, Q.Q8_0), make(child)) == Verdict.UNFAITHFUL
    # scales chosen another way (as an importance matrix does) stay within a step
    rescaled = gguf_copy({n: w * 1.0005 for n, w in child.items()}, Q.Q4_0)
    assert verdict(rescaled, make(child)) == Verdict.UNKNOWN


def test_a_4_bit_copy_hangs_off_its_exact_source_verified():
    base = root(1)
    models = {"base": base, "a": finetune(base, 2), "b": finetune(base, 3)}
    models["a2"] = finetune(models["a"], 4)
    inputs = [ModelInput(k, make(v)) for k, v in models.items()]
    inputs.append(ModelInput("a-q4", gguf_copy(models["a"], Q.Q4_0)))
    inputs.append(ModelInput("b-q8", gguf_copy(models["b"], Q.Q8_0)))
    tampered = {n: w.copy() for n, w in models["b"].items()}
    tampered["layers.2.w"][7, :4] += 0.15  # a few weights: within copy distance
    inputs.append(ModelInput("b-bad", gguf_copy(tampered, Q.Q8_0)))
    g = recover_lineage(inputs, SETTINGS)
    for parent, child in (("a", "a-q4"), ("b", "b-q8")):
        e = g.edges[parent, child]
        assert e["relation"] == Relation.QUANTIZED and e["verified"] is True
        assert e["confidence"] == 1.0
    assert list(g.predecessors("a-q4")) == ["a"] and not list(g.successors("a-q4"))
    bad = g.edges["b", "b-bad"]
    assert bad["relation"] == Relation.QUANTIZED
    assert bad["verified"] is False and bad["confidence"] < 1.0


def test_a_gguf_with_f16_fallbacks_is_as_precise_as_its_blocks_and_bf16_parents_f16():
    child = finetune(root(1), 2)
    mixed = gguf_copy(child, Q.Q4_0)
    name = "layers.5.w"
    mixed.tensors[name] = replace(
        mixed.tensors[name],
        dtype="F16",
        values=child[name].astype(np.float16).astype(np.float32),
    )
    assert precision_bits(mixed) == 4  # its Q4_0 blocks, not the F16 matrix
    base = root(1)
    models = {"base": base, "a": finetune(base, 2), "b": finetune(base, 3)}
    half = {n: w.astype(np.float16).astype(np.float32) for n, w in bf16(models["a"]).items()}
    inputs = [ModelInput(k, make(v)) for k, v in models.items()]
    inputs.append(ModelInput("a-bf16", make(bf16(models["a"]), "BF16")))
    inputs.append(ModelInput("a-bf16-f16", make(half, "F16")))
    g = recover_lineage(inputs, SETTINGS)
    e = g.edges["a-bf16", "a-bf16-f16"]  # equal precision, another type: rounding proves it
    assert e["relation"] == Relation.QUANTIZED and e["verified"] is True


def test_an_f16_export_of_a_bf16_copy_hangs_off_that_copy_whatever_the_order():
    """The BF16 copy is proven from the F32 model; the F16 export of that copy is
    reproduced by rounding the copy, not the original, so it hangs off the copy even when
    the copy was attached first (copies of equal precision are taken in content order)."""
    for seed in range(1, 9):
        base = root(seed)
        a = finetune(base, seed + 10)
        a["layers.0.w"][0, :16] = np.linspace(1e-6, 3e-6, 16)  # F16 keeps these coarser
        half = {n: w.astype(np.float16).astype(np.float32) for n, w in bf16(a).items()}
        inputs = [
            ModelInput("base", make(base)),
            ModelInput("a", make(a)),
            ModelInput("b", make(finetune(base, seed + 20))),
            ModelInput("a-bf16", make(bf16(a), "BF16")),
            ModelInput("a-bf16-f16", make(half, "F16")),
        ]
        g = recover_lineage(inputs, SETTINGS)
        assert list(g.predecessors("a-bf16")) == ["a"], seed
        assert list(g.predecessors("a-bf16-f16")) == ["a-bf16"], seed
        e = g.edges["a-bf16", "a-bf16-f16"]
        assert e["relation"] == Relation.QUANTIZED and e["verified"] is True
