"""How much of a checkpoint the readers touch: listing and row sampling versus a full read.

Writes a 1 GB Llama-shaped BF16 safetensors file (cached in .cache/bench/) and prints, for
(a) listing its tensors and (b) reading 64 sampled rows from every 2-D tensor, the time
and bytes read, against reading the whole file. Run: ``python bench/read.py [--gb 1]``.
Times are warm-cache (the file was just written or read); bytes read are exact.
"""

from __future__ import annotations

import argparse
import json
import struct
import time
from pathlib import Path

import numpy as np

from heritage.formats import RowSample, open_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SAMPLED_ROWS = 64
WINDOW = 128  # columns per sampled row in the fingerprint-style read


def llama_shapes(hidden: int, inter: int, layers: int, vocab: int) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (vocab, hidden)}
    for i in range(layers):
        p = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"{p}self_attn.{name}.weight"] = (hidden, hidden)
        shapes[f"{p}mlp.gate_proj.weight"] = (inter, hidden)
        shapes[f"{p}mlp.up_proj.weight"] = (inter, hidden)
        shapes[f"{p}mlp.down_proj.weight"] = (hidden, inter)
        shapes[f"{p}input_layernorm.weight"] = (hidden,)
        shapes[f"{p}post_attention_layernorm.weight"] = (hidden,)
    shapes["model.norm.weight"] = (hidden,)
    shapes["lm_head.weight"] = (vocab, hidden)
    return shapes


def write_bf16_safetensors(path: Path, shapes: dict[str, tuple[int, ...]], seed: int = 0) -> None:
    """Stream random BF16 tensors to disk without holding the model in memory."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        n = int(np.prod(shape)) * 2
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".partial")
    with open(tmp, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)) + blob)
        for shape in shapes.values():
            values = rng.standard_normal(int(np.prod(shape)), dtype=np.float32) * 0.02
            fh.write((values.view(np.uint32) >> 16).astype(np.uint16).tobytes())
    tmp.rename(path)


def sample_rows(n_rows: int, k: int) -> list[int]:
    return sorted({int(r) for r in np.linspace(0, n_rows - 1, num=min(k, n_rows))})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="approximate file size")
    args = parser.parse_args()
    layers = max(
        1, round((args.gb * 2**30 - 2 * 32000 * 2048 * 2) / (2048 * (4 * 2048 + 3 * 5632) * 2))
    )
    shapes = llama_shapes(2048, 5632, layers, 32000)
    path = ROOT / ".cache" / "bench" / f"llama-like-{layers}l-bf16.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        print(f"writing {path} ...", flush=True)
        write_bf16_safetensors(path, shapes)
    size = path.stat().st_size

    t0 = time.perf_counter()
    with open_checkpoint(path) as ckpt:
        for t in ckpt.tensors:
            ckpt.read(t.name)
        full_bytes, full_s = ckpt.bytes_read, time.perf_counter() - t0

    t0 = time.perf_counter()
    with open_checkpoint(path) as ckpt:
        list_s, list_bytes, list_req = time.perf_counter() - t0, ckpt.bytes_read, ckpt.requests
        two_d = [t for t in ckpt.tensors if len(t.shape) == 2]

        t0 = time.perf_counter()
        ckpt.read_rows_many({t.name: sample_rows(t.shape[0], SAMPLED_ROWS) for t in two_d})
        rows_s, rows_bytes = time.perf_counter() - t0, ckpt.bytes_read - list_bytes
        rows_req = ckpt.requests - list_req

        t0 = time.perf_counter()
        before, before_req = ckpt.bytes_read, ckpt.requests
        plan = {
            t.name: RowSample(sample_rows(t.shape[0], SAMPLED_ROWS), (0, min(WINDOW, t.shape[1])))
            for t in two_d
        }
        ckpt.read_rows_many(plan)
        win_s, win_bytes = time.perf_counter() - t0, ckpt.bytes_read - before
        win_req = ckpt.requests - before_req

    print(f"file: {path.name}, {size / 2**30:.2f} GiB, {len(shapes)} tensors, {len(two_d)} 2-D")
    print(f"{'operation':<44} {'time':>9} {'bytes read':>15} {'% of file':>10} {'requests':>9}")
    rows = [
        ("full read (every tensor)", full_s, full_bytes, None),
        ("(a) list tensors (header only)", list_s, list_bytes, list_req),
        (f"(b) {SAMPLED_ROWS} whole rows of every 2-D tensor", rows_s, rows_bytes, rows_req),
        (f"(c) {SAMPLED_ROWS} rows x {WINDOW} columns (fingerprint)", win_s, win_bytes, win_req),
    ]
    for label, secs, nbytes, req in rows:
        print(
            f"{label:<44} {secs * 1000:>7.1f}ms {nbytes:>15,} {100 * nbytes / size:>9.3f}% "
            f"{req if req is not None else '-':>9}"
        )
    print(f"ratio full/list bytes: {full_bytes / max(list_bytes, 1):,.0f}x")
    print(
        f"ratio full/(b) bytes: {full_bytes / rows_bytes:,.1f}x; full/(c) bytes: {full_bytes / win_bytes:,.0f}x"
    )
    print(f"time ratio full/(b): {full_s / rows_s:,.1f}x; full/(c): {full_s / win_s:,.1f}x")


if __name__ == "__main__":
    main()
