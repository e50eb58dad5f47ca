"""GGUF exports of the zoo's llama-style models: does each hang off its exact source?

    python bench/gguf_copies.py --zoo ZOO [ZOO ...] [--types F16 Q8_0 Q5_1 Q4_0]

For every tinyllama model of each zoo, writes a GGUF export per type the way llama.cpp's
converter does (its tensor names, q/k rows permuted, norms kept F32; the gguf package's
writer and quantizers; a matrix whose rows are not whole blocks falls back to F16),
fingerprints it through the GGUF reader, adds it to the zoo's fingerprints under a
hashed name and recovers lineage from the weights alone. Prints, per type: exports, how
many hang off their exact source as ``quantized`` (or ``duplicate``), how many of those
are verified, and how many edges among the zoo's own models changed. A source counts
with its duplicates, by the zoo's truth or by identical sampled weights: an F16 export
of an F16 model is that model, and exports of a model and of its F16 copy often round
alike. Nothing here is fitted: the check is exact rounding. Not a timed test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import quantize

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from heritage.fingerprint import fingerprint  # noqa: E402
from heritage.formats import open_checkpoint  # noqa: E402
from heritage.formats.gguf_reader import gguf_name  # noqa: E402
from heritage.lineage import LineageSettings, ModelInput, recover_lineage  # noqa: E402
from heritage.lineage.copies import identical  # noqa: E402
from heritage.lineage.engine import content_key  # noqa: E402
from heritage.lineage.metrics import duplicate_classes  # noqa: E402
from heritage.lineage.types import Relation  # noqa: E402
from heritage.lineage.verify import Verdict, verdict  # noqa: E402
from zoodata import hashed, load_zoo  # noqa: E402


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter's q/k row order for rotary embeddings."""
    return (
        w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)
    )


def export(model: Path, out: Path, qtype: GGMLQuantizationType) -> None:
    with open_checkpoint(model) as ckpt:
        config = ckpt.config or {}
        weights = {t.name: ckpt.read(t.name) for t in ckpt.tensors}
    heads = int(config["num_attention_heads"])
    kv = int(config.get("num_key_value_heads", heads))
    w = GGUFWriter(out, "llama")
    w.add_uint32("llama.attention.head_count", heads)
    w.add_uint32("llama.attention.head_count_kv", kv)
    block = GGML_QUANT_SIZES[qtype][0]
    for name, values in sorted(weights.items()):
        gname = gguf_name(name, "llama")
        if gname is None:
            continue
        values = values.astype(np.float32)
        if gname.endswith("attn_q.weight"):
            values = _permute(values, heads)
        elif gname.endswith("attn_k.weight"):
            values = _permute(values, kv)
        if values.ndim == 1:
            w.add_tensor(gname, values)
        elif qtype == GGMLQuantizationType.F16 or values.shape[-1] % block:
            w.add_tensor(gname, values.astype(np.float16))
        else:
            w.add_tensor(gname, quantize(values, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _hangs_off(
    g, gid: str, src: str, classes: dict[str, str], same: dict[str, str]
) -> tuple[bool, bool]:
    """(the export hangs off its source, and that edge is a proof)."""

    def kin_of_source(m: str) -> bool:
        return classes.get(m) == classes[src] or same[m] == same[src]

    parents = list(g.predecessors(gid))
    # a duplicate of a model with identical weights (another export) is right too
    if parents and all(kin_of_source(p) or same[p] == same[gid] for p in parents):
        e = g.edges[parents[0], gid]
        if e["relation"] in (Relation.QUANTIZED, Relation.DUPLICATE):
            return True, bool(e.get("verified")) or same[gid] == same[src]
        return False, False
    # identical weights: which of the two stands for the class is arbitrary
    twin = same[gid] == same[src] or any(
        kin_of_source(c) and g.edges[gid, c]["relation"] == Relation.DUPLICATE
        for c in g.successors(gid)
    )
    return twin, twin


def _tied(g, gid: str, src: str, prints: dict) -> bool:
    """Whether the export hangs off another model whose weights round to it exactly, as
    its true source's do: a tie the weights cannot break (the F16 export of a model and
    its BF16 copy, say, when 4-bit rounding erases their difference)."""
    parents = list(g.predecessors(gid))
    return (
        len(parents) == 1
        and verdict(prints[gid], prints[parents[0]]) == Verdict.VERIFIED
        and verdict(prints[gid], prints[src]) == Verdict.VERIFIED
    )


def _content_classes(prints: dict) -> dict[str, str]:
    """Each model's class of models with identical sampled weights (an F16 export of an
    F16 model is that model; two exports of near copies can round alike)."""
    by_key: dict[str, list[str]] = {}
    for m, fp in prints.items():
        by_key.setdefault(content_key(fp), []).append(m)
    out = {}
    for members in by_key.values():
        for m in members:
            out[m] = next(o for o in sorted(members) if identical(prints[o], prints[m]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", type=Path, nargs="+", required=True)
    ap.add_argument("--types", nargs="+", default=["F16", "Q8_0", "Q5_1", "Q4_0"])
    args = ap.parse_args()
    types = [GGMLQuantizationType[t] for t in args.types]
    totals = {t.name: [0, 0, 0, 0] for t in types}  # exports, exact source, verified, tied
    changed = 0
    settings = LineageSettings(use_times=False)
    for folder in args.zoo:
        zoo = load_zoo(folder)
        before = recover_lineage([ModelInput(i, fp) for i, fp in zoo.prints.items()], settings)
        classes = duplicate_classes(zoo.truth)
        prints = dict(zoo.prints)
        source: dict[str, tuple[str, str]] = {}  # export id -> (source id, type)
        with tempfile.TemporaryDirectory() as tmp:
            for rec in zoo.records.values():
                if not rec["location"].split("/")[-1].startswith("tinyllama"):
                    continue
                for t in types:
                    path = Path(tmp) / f"{hashed(rec['location'])}-{t.name}.gguf"
                    export(folder / rec["location"], path, t)
                    with open_checkpoint(path) as ckpt:
                        gid = hashed(f"{rec['location']}.{t.name}.gguf")
                        prints[gid] = fingerprint(ckpt)
                    source[gid] = (hashed(rec["location"]), t.name)
        g = recover_lineage([ModelInput(i, fp) for i, fp in prints.items()], settings)
        same = _content_classes(prints)
        for gid, (src, tname) in source.items():
            right, verified = _hangs_off(g, gid, src, classes, same)
            totals[tname][0] += 1
            totals[tname][1] += right
            totals[tname][2] += verified
            totals[tname][3] += not right and _tied(g, gid, src, prints)
        kept = {(u, v) for u, v in g.edges if u in zoo.prints and v in zoo.prints}
        changed += len(kept ^ set(before.edges))
        print(f"{folder.name}: {len(source)} exports", flush=True)
    print(
        "| type | exports | hang off their exact source | verified | "
        "off another model that rounds to them exactly |"
    )
    print("|---|---|---|---|---|")
    for t, (n, right, ver, tied) in totals.items():
        print(f"| {t} | {n} | {right} ({right / max(n, 1):.3f}) | {ver} | {tied} |")
    print(f"edges among the zoo's own models that changed: {changed}")


if __name__ == "__main__":
    main()
