"""Build a zoo: execute the plan (real CPU training), publish every model, write truth.json."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from heritage.lineage.types import Relation
from heritage.zoo.merges import linear_merge, merge
from heritage.zoo.nets import Net, Weights, make_net
from heritage.zoo.plan import PICKLE_FILES, Spec, make_plan
from heritage.zoo.tasks import mix_seed, task_name
from heritage.zoo.train import (
    BATCH_SIZES,
    LoraSpec,
    Optim,
    TrainResult,
    cast_roundtrip,
    int8_roundtrip,
    resize_vocab,
    train,
)
from heritage.zoo.truth import PLANS, SCHEMA_VERSION, SCHEMA_VERSION_CLASSIC, validate_truth
from heritage.zoo.writers import DTYPES, save_pickle, save_safetensors, write_card, write_json

#: torch threads per plan: the classic zoos were made with 2 (their bytes depend on it); a
#: random zoo trains on one, so two can build side by side on a 2-core machine.
NUM_THREADS = {"classic": 2, "random": 1}
_OPTIMIZER_NAMES = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD", "rmsprop": "RMSprop"}
_MERGE_NAMES = {
    "linear": "Linear",
    "slerp": "SLERP",
    "task-arithmetic": "Task-arithmetic",
    "ties": "TIES",
    "dare": "DARE",
}
_COUNTS = {2: "two", 3: "three"}
_HF_RELATIONS = {Relation.FINETUNE, Relation.ADAPTER, Relation.MERGE, Relation.QUANTIZED}
_DESCRIPTIONS = {
    "llama": "A tiny Llama-style causal language model trained on synthetic Markov text.",
    "vit": "A tiny Vision Transformer classifying 16x16 procedural pattern images.",
    "mlp": "A small MLP classifier (32-128-128-10) saved as a PyTorch state_dict.",
}


def _seed(zoo_seed: int, *parts: object) -> int:
    return mix_seed(zoo_seed, *parts) % (2**31)


class _Builder:
    def __init__(
        self,
        out_dir: Path,
        size: str,
        seed: int,
        progress: Callable[[str], None] | None,
        plan: str = "classic",
        on_model: Callable[[int, int], None] | None = None,
    ) -> None:
        self.out = out_dir
        self.size = size
        self.seed = seed
        self.plan = plan
        self.progress = progress or (lambda _msg: None)
        self.on_model = on_model or (lambda _done, _total: None)
        self.weights: dict[str, Weights] = {}
        self.runs: dict[str, TrainResult] = {}
        self.records: dict[str, dict[str, Any]] = {}
        self.nets: dict[str, Net] = {}

    def net(self, arch: str, shape: dict[str, Any] | None = None) -> Net:
        key = arch + json.dumps(shape, sort_keys=True)
        if key not in self.nets:
            self.nets[key] = make_net(arch, shape)
        return self.nets[key]

    # ---------------------------------------------------------------- deriving weights

    def _train_recipe(
        self, spec: Spec, result: TrainResult, steps: int, seed: int, lr: float
    ) -> dict[str, Any]:
        task = spec.params["task"]
        return {
            "op": spec.op,
            "task": task_name(task),
            "task_params": task,
            "steps": steps,
            "lr": lr,
            "seed": seed,
            "batch_size": BATCH_SIZES[spec.arch],
            "optimizer": "adamw",
            "schedule": "warmup10-cosine",
            "loss_start": result.loss_start,
            "loss_end": result.loss_end,
        }

    def derive(self, spec: Spec) -> tuple[Weights, dict[str, Any]]:
        """Produce the model's float32 weights (as stored) and its recipe."""
        if self.plan == "random":
            return self._derive_random(spec)
        net = self.net(spec.arch)
        p = spec.params
        parents = [self.weights[x] for x in spec.parents]
        if spec.op in ("pretrain", "finetune", "lora", "resize"):
            seed = _seed(self.seed, spec.location, p["seed"])
            extra: dict[str, Any] = {}
            if spec.op == "pretrain":
                init_seed = _seed(self.seed, spec.arch, "init", p["init_seed"])
                start = net.init(torch.Generator().manual_seed(init_seed))
                extra["init_seed"] = init_seed
            elif spec.op == "resize":
                start = resize_vocab(
                    parents[0], p["new_vocab"], torch.Generator().manual_seed(seed + 1)
                )
                extra["old_vocab"] = int(parents[0]["model.embed_tokens.weight"].shape[0])
                extra["new_vocab"] = p["new_vocab"]
                extra["new_rows_init"] = "mean of old rows + N(0, 0.01)"
            else:
                start = parents[0]
            lora = LoraSpec(p["rank"], p["alpha"]) if spec.op == "lora" else None
            result = train(
                net,
                start,
                p["task"],
                steps=p["steps"],
                lr=p["lr"],
                seed=seed,
                zoo_seed=self.seed,
                lora=lora,
            )
            recipe = self._train_recipe(spec, result, p["steps"], seed, p["lr"])
            if lora is not None:
                extra.update(
                    lora_rank=lora.rank,
                    lora_alpha=lora.alpha,
                    lora_merged=True,
                    lora_targets=sorted(net.lora_targets(start)),
                )
            return result.weights, {**recipe, **extra}
        if spec.op == "checkpoint":
            return self._checkpoint(spec, net)
        if spec.op == "merge":
            return (
                linear_merge(parents, p["weights"]),
                {"op": "merge", "method": "linear", "weights": p["weights"]},
            )
        return self._copy(spec)

    def _copy(self, spec: Spec) -> tuple[Weights, dict[str, Any]]:
        """Quantised copies and duplicates: no training, no randomness."""
        p = spec.params
        parents = [self.weights[x] for x in spec.parents]
        if spec.op == "cast":
            return (
                cast_roundtrip(parents[0], DTYPES[spec.dtype]),
                {"op": "cast", "dtype": spec.dtype},
            )
        if spec.op == "int8":
            w = cast_roundtrip(int8_roundtrip(parents[0]), DTYPES[spec.dtype])
            return w, {
                "op": "int8",
                "method": p["method"],
                "bits": 8,
                "storage_dtype": spec.dtype,
                "dequantized": True,
            }
        if spec.op == "dup":
            return parents[0], {"op": "duplicate", "copy_of": spec.parents[0]}
        raise ValueError(f"unknown op {spec.op!r}")

    # ---------------------------------------------------------------- random plan

    def _random_recipe(
        self, spec: Spec, result: TrainResult, steps: int, seed: int
    ) -> dict[str, Any]:
        """The classic recipe keys plus the whole optimiser and schedule."""
        p, o = spec.params, spec.params["optim"]
        recipe: dict[str, Any] = {
            "op": spec.op,
            "task": task_name(p["task"]),
            "task_params": p["task"],
            "steps": steps,
            "lr": p["lr"],
            "seed": seed,
            "batch_size": BATCH_SIZES[spec.arch],
            "optimizer": o["name"],
            "schedule": o["schedule"],
            "warmup": o.get("warmup", 0.0),
            "weight_decay": o["weight_decay"],
            "grad_clip": 1.0,
            "loss_start": result.loss_start,
            "loss_end": result.loss_end,
        }
        for key in ("betas", "momentum"):
            if key in o:
                recipe[key] = o[key]
        for key in ("stage", "twin_group"):
            if key in p:
                recipe[key] = p[key]
        return recipe

    @staticmethod
    def _optim(p: dict[str, Any]) -> Optim:
        o = p["optim"]
        return Optim(
            name=o["name"],
            schedule=o["schedule"],
            weight_decay=o["weight_decay"],
            warmup=o.get("warmup", 0.1),
            betas=tuple(o.get("betas", (0.9, 0.95))),  # type: ignore[arg-type]
            momentum=o.get("momentum", 0.9),
        )

    def _derive_random(self, spec: Spec) -> tuple[Weights, dict[str, Any]]:
        net = self.net(spec.arch, spec.net)
        p = spec.params
        parents = [self.weights[x] for x in spec.parents]
        if spec.op in ("pretrain", "finetune", "lora", "resize"):
            seed = _seed(self.seed, spec.location, p["seed"])
            extra: dict[str, Any] = {}
            if spec.op == "pretrain":
                init_seed = _seed(self.seed, spec.arch, "init", p["init_seed"])
                start = net.init(torch.Generator().manual_seed(init_seed))
                extra["init_seed"] = init_seed
                extra["init"] = (spec.net or {}).get("init", "normal")
                for key in ("initializer_range", "init_scale"):
                    if key in (spec.net or {}):
                        extra[key] = spec.net[key]  # type: ignore[index]
            elif spec.op == "resize":
                start = resize_vocab(
                    parents[0], p["new_vocab"], torch.Generator().manual_seed(seed + 1)
                )
                extra["old_vocab"] = int(parents[0]["model.embed_tokens.weight"].shape[0])
                extra["new_vocab"] = p["new_vocab"]
                extra["new_rows_init"] = "mean of old rows + N(0, 0.01)"
            else:
                start = parents[0]
            lora = None
            if spec.op == "lora":
                lora = LoraSpec(p["rank"], p["alpha"], tuple(p["modules"]))
            result = train(
                net,
                start,
                p["task"],
                steps=p["steps"],
                lr=p["lr"],
                seed=seed,
                zoo_seed=self.seed,
                lora=lora,
                optim=self._optim(p),
            )
            recipe = self._random_recipe(spec, result, p["steps"], seed)
            if lora is not None:
                extra.update(
                    lora_rank=lora.rank,
                    lora_alpha=lora.alpha,
                    lora_merged=True,
                    lora_modules=list(p["modules"]),
                    lora_targets=sorted(net.lora_targets(start, lora.modules)),
                )
            return result.weights, {**recipe, **extra}
        if spec.op == "checkpoint":
            marks = list(p["marks"])
            run, i = p["run"], p["index"]
            seed = _seed(self.seed, run, p["seed"])
            if run not in self.runs:  # first checkpoint: train the whole run once
                self.runs[run] = train(
                    net,
                    self.weights[spec.parents[0]],
                    p["task"],
                    steps=marks[-1],
                    lr=p["lr"],
                    seed=seed,
                    zoo_seed=self.seed,
                    checkpoints=tuple(marks),
                    optim=self._optim(p),
                )
            result = self.runs[run]
            step = marks[i]
            recipe = self._random_recipe(spec, result, step - (marks[i - 1] if i else 0), seed)
            recipe.update(
                run=run,
                checkpoint_index=i,
                global_step=step,
                run_total_steps=marks[-1],
                run_checkpoints=marks,
                loss_end=result.checkpoint_losses[step],
            )
            if i:
                recipe["loss_start"] = result.checkpoint_losses[marks[i - 1]]
            return result.checkpoints[step], recipe
        if spec.op == "merge":
            method = p["method"]
            base = self.weights[p["base"]] if "base" in p else None
            gen = None
            recipe = {"op": "merge", "method": method, "weights": p["weights"], "kin": p["kin"]}
            if "seed" in p:
                seed = _seed(self.seed, spec.location, p["seed"])
                gen = torch.Generator().manual_seed(seed)
                recipe["seed"] = seed
            if "base" in p:
                recipe["base"] = p["base"]
            if "density" in p:
                recipe["density"] = p["density"]
            if method == "slerp":
                recipe["t"] = p["weights"][1]
            w = merge(method, parents, p["weights"], base, p.get("density", 1.0), gen)
            return w, recipe
        return self._copy(spec)

    def _checkpoint(self, spec: Spec, net: Net) -> tuple[Weights, dict[str, Any]]:
        p = spec.params
        per, count, run = p["steps_per_checkpoint"], p["count"], p["run"]
        seed = _seed(self.seed, run, p["seed"])
        if run not in self.runs:  # first checkpoint: train the whole run once
            marks = tuple(per * (i + 1) for i in range(count))
            self.runs[run] = train(
                net,
                self.weights[spec.parents[0]],
                p["task"],
                steps=per * count,
                lr=p["lr"],
                seed=seed,
                zoo_seed=self.seed,
                checkpoints=marks,
            )
        result = self.runs[run]
        step = per * (p["index"] + 1)
        recipe = self._train_recipe(spec, result, per, seed, p["lr"])
        recipe.update(
            op="checkpoint",
            run=run,
            checkpoint_index=p["index"],
            global_step=step,
            run_total_steps=per * count,
            loss_end=result.checkpoint_losses[step],
        )
        if p["index"]:
            recipe["loss_start"] = result.checkpoint_losses[step - per]
        return result.checkpoints[step], recipe

    # ---------------------------------------------------------------- publishing

    def publish(self, spec: Spec, w: Weights) -> tuple[list[str], str]:
        folder = self.out / spec.location
        folder.mkdir(parents=True, exist_ok=False)
        net = self.net(spec.arch, spec.net)
        if spec.op == "dup":  # byte-identical weights (and config) under another name
            src_rec = self.records[spec.parents[0]]
            src = self.out / src_rec["location"]
            files = list(src_rec["weight_files"])
            for name in [*files, "config.json"]:
                if (src / name).exists():
                    shutil.copyfile(src / name, folder / name)
            return files, src_rec["format"]
        if spec.fmt.startswith("safetensors"):
            shards = 2 if spec.fmt == "safetensors-sharded" else 1
            files = save_safetensors(folder, w, spec.dtype, shards)
            fmt = "safetensors-sharded" if len(files) > 1 else "safetensors"
        else:
            fname = PICKLE_FILES[spec.fmt]
            save_pickle(folder / fname, w, spec.dtype, legacy=spec.legacy)
            files, fmt = [fname], spec.fmt
        config = net.config(w, spec.dtype)
        if config is not None:
            write_json(folder / "config.json", config)
        return files, fmt

    def card(self, spec: Spec, recipe: dict[str, Any]) -> dict[str, Any]:
        truthful: Any = (
            None
            if not spec.parents
            else spec.parents[0]
            if len(spec.parents) == 1
            else list(spec.parents)
        )
        declared = {"correct": truthful, "missing": None, "wrong": spec.card_target}[
            spec.card_status
        ]
        front: dict[str, Any] = {"license": "apache-2.0"}
        if declared is not None:
            front["base_model"] = declared
            if spec.relation in _HF_RELATIONS:
                front["base_model_relation"] = spec.relation
        if spec.arch == "mlp":
            front["library_name"] = "pytorch"
        else:
            front["library_name"] = "transformers"
            front["pipeline_tag"] = (
                "text-generation" if spec.arch == "llama" else "image-classification"
            )
        front["tags"] = [spec.arch, "synthetic", "model-heritage-zoo"]
        write_card(self.out / spec.location, front, spec.name, _card_body(spec, recipe))
        return {"declared_base_model": declared, "card_status": spec.card_status}

    def build(self) -> dict[str, Any]:
        specs = make_plan(self.size, self.seed, self.plan)
        for i, spec in enumerate(specs, 1):
            t0 = time.perf_counter()
            w, recipe = self.derive(spec)
            self.weights[spec.location] = w
            files, fmt = self.publish(spec, w)
            family = spec.location if not spec.parents else self.records[spec.parents[0]]["family"]
            self.records[spec.location] = {
                "location": spec.location,
                "name": spec.name,
                "parents": list(spec.parents),
                "relation": spec.relation,
                "merge_weights": list(spec.params["weights"]) if spec.op == "merge" else None,
                "family": family,
                "architecture": spec.arch,
                "format": fmt,
                "dtype": spec.dtype,
                "weight_files": files,
                "pickle_container": (
                    None if fmt.startswith("safetensors") else "legacy" if spec.legacy else "zip"
                ),
                "recipe": recipe,
                "card": self.card(spec, recipe),
            }
            if self.plan != "classic":
                self.records[spec.location]["family_kind"] = spec.family_kind
                self.records[spec.location]["net"] = spec.net
            loss = (
                f" loss {recipe['loss_start']:.3f}->{recipe['loss_end']:.3f}"
                if "loss_end" in recipe
                else ""
            )
            self.progress(
                f"[{i}/{len(specs)}] {spec.location} ({spec.relation}/{spec.op}, "
                f"{fmt}, {spec.dtype}){loss} {time.perf_counter() - t0:.1f}s"
            )
            self.on_model(i, len(specs))
        truth: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION_CLASSIC if self.plan == "classic" else SCHEMA_VERSION,
            "seed": self.seed,
            "size": self.size,
            "models": list(self.records.values()),
        }
        if self.plan != "classic":
            truth["plan"] = self.plan
        validate_truth(truth)
        write_json(self.out / "truth.json", truth)
        return truth


def _description(spec: Spec) -> str:
    if spec.net is None:
        return _DESCRIPTIONS[spec.arch]
    if spec.arch == "mlp":
        widths = "-".join(str(w) for w in spec.net["widths"])
        saved = "safetensors" if spec.fmt.startswith("safetensors") else "a PyTorch state_dict"
        return f"A small MLP classifier ({widths}) saved as {saved}."
    return _DESCRIPTIONS[spec.arch]


def _card_body(spec: Spec, recipe: dict[str, Any]) -> str:
    """Model-card prose; it never names the parent (only the YAML front matter does)."""
    lines = [_description(spec), ""]
    op = spec.op
    if "task" in recipe:
        what = {
            "pretrain": "Pre-trained",
            "lora": "LoRA-tuned (adapters merged)",
            "resize": "Vocabulary extended, then fine-tuned",
            "checkpoint": "Intermediate checkpoint of a longer run,",
        }.get(op, "Fine-tuned")
        lines.append(
            f"{what} on `{recipe['task']}` for {recipe['steps']} steps "
            f"({_OPTIMIZER_NAMES[recipe['optimizer']]}, peak lr {recipe['lr']:g}, "
            f"batch {recipe['batch_size']})."
        )
        lines.append(f"Training loss {recipe['loss_start']:.3f} -> {recipe['loss_end']:.3f}.")
    elif op == "int8":
        lines.append(
            f"Weights quantised to int8 (per-row absmax) and stored dequantised in {spec.dtype}."
        )
    elif op == "cast":
        lines.append(f"Weights re-saved in {spec.dtype}.")
    elif op == "merge":
        ws = "/".join(f"{x:g}" for x in recipe["weights"])
        n = _COUNTS.get(len(recipe["weights"]), str(len(recipe["weights"])))
        lines.append(
            f"{_MERGE_NAMES[recipe['method']]} merge of {n} checkpoints with weights {ws}."
        )
    elif op == "dup":
        lines.append("Mirror upload.")
    return "\n".join(lines)


def build_zoo(
    out_dir: Path,
    size: str = "small",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
    overwrite: bool = False,
    plan: str = "classic",
    on_model: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Train and publish a zoo of model families into ``out_dir``; return (and write) its truth.

    ``plan`` is ``classic`` (one tree for every seed) or ``random`` (the tree drawn from the
    seed); see ``heritage.zoo.plan.make_plan``. The output is byte-for-byte reproducible for
    a given ``size``, ``seed`` and ``plan`` (same torch build and CPU): all randomness is
    seeded and torch runs on a fixed number of threads per plan.

    ``progress`` gets a line per model built; ``on_model(done, total)`` is called after
    each, for a progress bar. ``out_dir`` must be empty or absent unless ``overwrite`` is set. The zoo is built in a
    hidden sibling folder and renamed into place when complete, so a reader never sees a
    half-built zoo at ``out_dir``.
    """
    if plan not in PLANS:
        raise ValueError(f"unknown zoo plan {plan!r}; expected one of {PLANS}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{out_dir} is not empty (pass overwrite=True to replace it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.building-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(NUM_THREADS[plan])
    try:
        truth = _Builder(tmp, size, seed, progress, plan, on_model).build()
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)
    if out_dir.exists():  # empty, or replaced on request: swap, then delete the old one
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old)
    else:
        tmp.rename(out_dir)
    if progress is not None:
        progress(
            f"zoo of {len(truth['models'])} models written to {out_dir} "
            f"in {time.perf_counter() - started:.1f}s"
        )
    return truth
