"""The ``random`` zoo plan: every family's tree, network shape and recipes drawn from the seed.

The classic plan grows the same four templates under every root, so every seed of a size has
one tree and only training noise differs. Here a numpy ``Generator`` seeded by the zoo seed
draws everything: how many families and of which architecture; each family's network shape
(widths, depths, initialisation kind and scale; two families may share one, so independent
families of one architecture exist) and tree kind; every fine-tune's optimiser, learning
rate, schedule, steps and weight decay; LoRA ranks and target modules; merges (method,
parents, base, weights); quantised copies, duplicates, vocabulary resizes, formats and
lying or silent model cards. The same seed always gives the same plan.

Tree kinds (``family_kind`` on each spec):

* ``pair``: a base and one fine-tune (or adapter), nothing else;
* ``star``: many direct children of the base;
* ``chain``: consecutive checkpoints of one continued training run;
* ``deep``: a long line of separate fine-tunes with a few side branches;
* ``bushy``: several children per model over two or three generations;
* ``mixed``: some of the above grafted onto one base.

Every kind but ``pair`` is then decorated with merges, quantised copies, duplicates and (for
llama) a resized vocabulary. Plans whose size or estimated build time falls outside the
size's bounds are redrawn from the same generator, so the result stays deterministic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from heritage.zoo.plan import Planner, Spec, task_for
from heritage.zoo.truth import FAMILY_KINDS, MERGE_METHODS

__all__ = ["FAMILY_KINDS", "MERGE_METHODS", "OPTIMIZERS", "PROFILES", "SCHEDULES", "random_plan"]

#: The optimisers and schedules of ``heritage.zoo.train`` a random fine-tune draws from.
OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop")
SCHEDULES = ("constant", "cosine", "warmup-constant", "warmup-cosine", "rising")
#: Peak learning rates per optimiser: each range spans 30x.
LR_RANGES = {
    "adamw": (1e-4, 3e-3),
    "adam": (1e-4, 3e-3),
    "sgd": (2e-3, 6e-2),
    "rmsprop": (1e-5, 3e-4),
}
ARCHS = ("llama", "vit", "mlp")
BASE_VOCAB = 256
LLAMA_SEQ_LEN = 32  # random-plan language models train on 32-token sequences (speed)

#: Sets of LoRA target modules per architecture (short names of ``Net.lora_modules``).
LORA_MODULES: dict[str, list[tuple[str, ...]]] = {
    "llama": [
        ("q_proj", "v_proj"),
        ("q_proj", "k_proj", "v_proj", "o_proj"),
        ("gate_proj", "up_proj", "down_proj"),
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
    ],
    "vit": [
        ("query", "value"),
        ("query", "key", "value", "attention.output"),
        ("intermediate", "output"),
        ("query", "key", "value", "attention.output", "intermediate", "output"),
    ],
    "mlp": [],  # filled per shape: every layer, the hidden layers, the first layer
}
LORA_RANKS = (1, 2, 4, 8, 16, 32, 64)

_PREFIX = {"llama": "tinyllama", "vit": "vit-tiny", "mlp": "mlp"}
_WORDS = (
    "amber",
    "basalt",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "garnet",
    "harbor",
    "indigo",
    "juniper",
    "kestrel",
    "lagoon",
    "marble",
    "nimbus",
    "onyx",
    "pebble",
    "quartz",
    "raven",
    "saffron",
    "tundra",
    "umber",
    "velvet",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
    "alder",
    "bramble",
    "cobalt",
    "dune",
    "echo",
    "flint",
    "grove",
    "heron",
    "iris",
    "jade",
    "kelp",
    "lotus",
    "mesa",
    "nectar",
    "opal",
    "prism",
)
_ROOT_ORGS = ("northwind", "lumenlabs", "corvid-ai", "tessellate", "halcyon", "orbital-ml")
_ORGS = (
    "alice",
    "bytebard",
    "hobbyist42",
    "sweepco",
    "longrun",
    "tinkerer",
    "finetune-farm",
    "datadrift",
    "openweights",
    "kappa-lab",
)
_MERGE_ORGS = ("mergemonkey", "soupkitchen", "blendworks")
_COPY_ORGS = ("quantfolk", "mirror-hub", "lowbit")


@dataclass(frozen=True)
class Profile:
    """Bounds of one random zoo size (ranges are inclusive)."""

    families: tuple[int, int]
    models: tuple[int, int]
    pairs: tuple[int, int]  # two-model families
    required: tuple[str, ...]  # kinds every plan has (besides the pairs)
    star: tuple[int, int]  # children of a star's base
    chain: tuple[int, int]  # checkpoints of a chain
    ft_steps: tuple[int, int]  # fine-tune steps, log-uniform
    pretrain_steps: tuple[int, int]
    tiny_nets: bool
    #: plans estimated to build slower than this (seconds, one thread) are redrawn
    budget_s: float
    cards: tuple[int, int]  # models with a missing or wrong card


PROFILES = {
    "tiny": Profile(
        families=(3, 3),
        models=(6, 12),
        pairs=(2, 2),
        required=("bushy",),
        star=(3, 4),
        chain=(2, 3),
        ft_steps=(3, 12),
        pretrain_steps=(20, 30),
        tiny_nets=True,
        budget_s=4.0,
        cards=(1, 2),
    ),
    "small": Profile(
        families=(5, 8),
        models=(30, 55),
        pairs=(1, 2),
        required=("chain",),
        star=(5, 15),
        chain=(2, 6),
        ft_steps=(5, 200),
        pretrain_steps=(120, 220),
        tiny_nets=False,
        budget_s=45.0,
        cards=(2, 4),
    ),
    "medium": Profile(
        families=(10, 20),
        models=(100, 160),
        pairs=(2, 4),
        required=("star", "chain"),
        star=(5, 40),
        chain=(2, 8),
        ft_steps=(6, 240),
        pretrain_steps=(150, 300),
        tiny_nets=False,
        budget_s=100.0,
        cards=(3, 7),
    ),
}


# -------------------------------------------------------------------------------- drawing


def _loguniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _sig(x: float, digits: int = 2) -> float:
    """``x`` rounded to ``digits`` significant digits (readable recipes)."""
    return float(f"{x:.{digits - 1}e}")


def _choice(rng: np.random.Generator, options: list[Any] | tuple[Any, ...], p: Any = None) -> Any:
    return options[int(rng.choice(len(options), p=p))]


def draw_net(rng: np.random.Generator, arch: str, tiny: bool) -> dict[str, Any]:
    """A family's network shape: ``make_net`` fields (widths, depth, initialisation)."""
    if arch == "mlp":
        if tiny:
            return {"widths": [32, 48, 10], "init": "kaiming-uniform", "init_scale": 1.0}
        depth = _choice(rng, (1, 2, 3), p=(0.3, 0.45, 0.25))
        hidden = [_choice(rng, (48, 64, 96, 128, 192)) for _ in range(depth)]
        return {
            "widths": [32, *hidden, 10],
            "init": _choice(rng, ("kaiming-uniform", "kaiming-normal", "xavier-uniform", "normal")),
            "init_scale": _choice(rng, (0.5, 1.0, 1.0, 1.5, 2.0)),
        }
    init = {
        "init": _choice(
            rng, ("normal", "trunc-normal", "uniform", "xavier-normal", "scaled-normal")
        ),
        "initializer_range": _choice(rng, (0.01, 0.02, 0.02, 0.03, 0.05)),
    }
    if tiny:
        hidden, layers, heads, ratio = 32, 1, 2, 2.0
    else:
        hidden = _choice(rng, (32, 48, 64), p=(0.4, 0.35, 0.25))
        layers = _choice(rng, (1, 2, 3), p=(0.35, 0.45, 0.2))
        heads = _choice(rng, (2, 4))
        ratio = _choice(rng, (2.0, 2.75, 3.5))
    inter = int(round(hidden * ratio / 8)) * 8
    net = {
        "hidden_size": hidden,
        "intermediate_size": inter,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        **init,
    }
    if arch == "vit":
        net["patch_size"] = 4 if tiny else _choice(rng, (4, 4, 8))
    return net


def lora_module_sets(arch: str, net: dict[str, Any]) -> list[tuple[str, ...]]:
    if arch != "mlp":
        return LORA_MODULES[arch]
    layers = tuple(f"net.{2 * i}" for i in range(len(net["widths"]) - 1))
    return [layers, ("hidden",), (layers[0],)]


def lora_rank_cap(arch: str, net: dict[str, Any], modules: tuple[str, ...]) -> int:
    """The largest rank the targeted matrices allow (their smallest dimension)."""
    if arch != "mlp":
        return int(net["hidden_size"])  # every targeted matrix has the hidden size as a side
    widths = net["widths"]
    layers = range(len(widths) - 1)
    if modules == ("hidden",):
        chosen = list(layers)[:-1]
    else:
        chosen = [i for i in layers if f"net.{2 * i}" in modules]
    return int(min(min(widths[i], widths[i + 1]) for i in chosen))


def step_cost_s(arch: str, net: dict[str, Any]) -> float:
    """Estimated CPU seconds of one training step on one thread (fitted on the build machine:
    a fixed cost, a cost per layer, and the floating-point work)."""
    if arch == "mlp":
        w = net["widths"]
        macs = sum(a * b for a, b in zip(w[:-1], w[1:], strict=True))
        return 1e-3 * (0.3 + 0.2 * (len(w) - 1) + 0.015 * 6 * macs * 128 / 1e6)
    h, f, n = net["hidden_size"], net["intermediate_size"], net["num_hidden_layers"]
    if arch == "llama":
        tokens = 16 * LLAMA_SEQ_LEN
        macs = n * (4 * h * h + 3 * h * f) + 2 * BASE_VOCAB * h
        return 1e-3 * (1.85 + 2.9 * n + 0.0153 * 6 * macs * tokens / 1e6)
    tokens = 32 * ((16 // net["patch_size"]) ** 2 + 1)
    macs = n * (4 * h * h + 2 * h * f)
    return 1e-3 * (2.3 + 2.0 * n + 0.022 * 6 * macs * tokens / 1e6)


# -------------------------------------------------------------------------------- families


@dataclass
class _Node:
    loc: str
    op: str
    parent: str | None
    vocab: int
    children: list[str] = field(default_factory=list)


@dataclass
class _Family:
    """Draws one family's specs into the shared planner."""

    zoo: RandomPlanner
    arch: str
    kind: str
    word: str
    world: int
    net: dict[str, Any]
    nodes: dict[str, _Node] = field(default_factory=dict)
    root: str = ""
    shifts: int = 0
    counter: dict[str, int] = field(default_factory=dict)
    merged: set[frozenset[str]] = field(default_factory=set)

    @property
    def rng(self) -> np.random.Generator:
        return self.zoo.rng

    @property
    def profile(self) -> Profile:
        return self.zoo.profile

    # ------------------------------------------------------------ helpers

    def _name(self, tag: str) -> str:
        n = self.counter.get(tag, 0) + 1
        self.counter[tag] = n
        return f"{_PREFIX[self.arch]}-{self.word}-{tag}{n}"

    def _fmt(self, trained: bool) -> tuple[str, bool]:
        rng = self.rng
        if self.arch == "mlp" and rng.random() < 0.35:
            fmt = _choice(rng, ("pt", "pth", "bin"))
            return fmt, bool(rng.random() < 0.4)
        if self.arch == "llama" and trained and rng.random() < 0.15:
            return "safetensors-sharded", False
        return "safetensors", False

    def _add(
        self,
        op: str,
        parents: list[str],
        org: str,
        name: str,
        params: dict[str, Any],
        fmt: tuple[str, bool] | None = None,
        dtype: str = "float32",
    ) -> str:
        fmt_name, legacy = fmt or self._fmt(op not in ("cast", "int8", "dup"))
        spec = Spec(
            location=f"{org}/{name}",
            arch=self.arch,
            op=op,
            parents=list(parents),
            params=params,
            fmt=fmt_name,
            legacy=legacy,
            dtype=dtype,
            net=self.net,
            family_kind=self.kind,
        )
        self.zoo.planner.add(spec)
        first = parents[0] if parents else None
        vocab = params.get("new_vocab") or (self.nodes[first].vocab if first else BASE_VOCAB)
        self.nodes[spec.location] = _Node(spec.location, op, first, vocab)
        for p in parents:
            self.nodes[p].children.append(spec.location)
        return spec.location

    def _org(self) -> str:
        return _choice(self.rng, _ORGS)

    def _task(self, parent: str, shift: bool = True, sample: int = 0) -> dict[str, Any]:
        vocab = self.nodes[parent].vocab if parent else BASE_VOCAB
        task = task_for(self.arch, self.world, vocab=vocab if vocab != BASE_VOCAB else None)
        if self.arch == "llama":
            task["seq_len"] = LLAMA_SEQ_LEN
        if shift:
            self.shifts += 1
            task["shift"] = self.shifts
            lo, hi = (0.3, 0.7) if self.arch == "mlp" else (0.15, 0.5)
            task["frac"] = round(float(self.rng.uniform(lo, hi)), 2)
        if sample:
            task["sample"] = sample
        return task

    def _optim(self, optimizer: str | None = None) -> tuple[dict[str, Any], float]:
        """A fine-tuning optimiser and schedule, and a peak learning rate for it."""
        rng = self.rng
        name = optimizer or _choice(rng, OPTIMIZERS, p=(0.4, 0.2, 0.2, 0.2))
        schedule = _choice(rng, SCHEDULES)
        optim: dict[str, Any] = {"name": name, "schedule": schedule}
        optim["warmup"] = (
            round(float(rng.uniform(0.05, 0.2)), 2) if schedule.startswith("warmup-") else 0.0
        )
        if name == "adamw":
            optim["weight_decay"] = _choice(rng, (0.0, 0.01, 0.05, 0.1))
        else:
            optim["weight_decay"] = _choice(rng, (0.0, 0.0, 1e-4, 5e-4))
        if name in ("adamw", "adam"):
            optim["betas"] = list(_choice(rng, ((0.9, 0.95), (0.9, 0.999))))
        elif name == "sgd":
            optim["momentum"] = _choice(rng, (0.8, 0.9, 0.95))
        else:
            optim["momentum"] = _choice(rng, (0.0, 0.9))
        lo, hi = LR_RANGES[name]
        return optim, _sig(_loguniform(rng, lo, hi))

    def _steps(self, lo: int | None = None, hi: int | None = None) -> int:
        a, b = self.profile.ft_steps
        return int(round(_loguniform(self.rng, lo or a, hi or b)))

    def _seed(self) -> int:
        return int(self.rng.integers(0, 2**31 - 1))

    # ------------------------------------------------------------ derivations

    def make_root(self, init_seed: int) -> str:
        rng = self.rng
        steps = int(
            rng.integers(self.profile.pretrain_steps[0], self.profile.pretrain_steps[1] + 1)
        )
        optim = {
            "name": "adamw",
            "schedule": _choice(rng, ("warmup-cosine", "warmup-constant", "cosine")),
            "warmup": 0.1,
            "weight_decay": _choice(rng, (0.0, 0.01, 0.1)),
            "betas": [0.9, 0.95],
        }
        self.root = self._add(
            "pretrain",
            [],
            _choice(rng, _ROOT_ORGS),
            f"{_PREFIX[self.arch]}-{self.word}",
            {
                "init_seed": init_seed,
                "task": self._task("", shift=False),
                "steps": steps,
                "lr": _sig(_loguniform(rng, 1.5e-3, 4e-3)),
                "seed": self._seed(),
                "optim": optim,
            },
        )
        return self.root

    def finetune(
        self,
        parent: str,
        *,
        steps: int | None = None,
        optimizer: str | None = None,
        task: dict[str, Any] | None = None,
        stage: str | None = None,
        tag: str = "ft",
    ) -> str:
        optim, lr = self._optim(optimizer)
        params: dict[str, Any] = {
            "task": task or self._task(parent),
            "steps": steps or self._steps(),
            "lr": lr,
            "seed": self._seed(),
            "optim": optim,
        }
        if stage:
            params["stage"] = stage
        return self._add("finetune", [parent], self._org(), self._name(tag), params)

    def lora(self, parent: str) -> str:
        rng = self.rng
        modules = _choice(rng, lora_module_sets(self.arch, self.net))
        cap = lora_rank_cap(self.arch, self.net, modules)
        rank = min(cap, _choice(rng, LORA_RANKS, p=(0.08, 0.14, 0.2, 0.22, 0.16, 0.12, 0.08)))
        optim, lr = self._optim(_choice(rng, ("adamw", "adam"), p=(0.75, 0.25)))
        lr = _sig(lr * 2)  # adapters are trained at higher rates than full fine-tunes
        params = {
            "task": self._task(parent),
            "steps": self._steps(),
            "lr": lr,
            "seed": self._seed(),
            "optim": optim,
            "rank": int(rank),
            "alpha": float(_choice(rng, (rank, 2 * rank, 16))),
            "modules": list(modules),
        }
        return self._add("lora", [parent], self._org(), self._name(f"lora-r{rank}-"), params)

    def child(self, parent: str) -> str:
        """A trained child: a full fine-tune, or now and then an adapter."""
        return self.lora(parent) if self.rng.random() < 0.2 else self.finetune(parent)

    def twins(self, parent: str) -> list[str]:
        """Two fine-tunes with one recipe and task, drawing different data and batches."""
        optim, lr = self._optim()
        task = self._task(parent)
        steps = self._steps()
        group = self._name("twins")
        out = []
        for i in range(2):
            params = {
                "task": {**task, "sample": i} if i else task,
                "steps": steps,
                "lr": lr,
                "seed": self._seed(),
                "optim": optim,
                "twin_group": group,
            }
            out.append(self._add("finetune", [parent], self._org(), f"{group}-{'ab'[i]}", params))
        return out

    def chain(self, parent: str, count: int) -> list[str]:
        """``count`` consecutive checkpoints of one run (each the next one's parent)."""
        rng = self.rng
        optim, lr = self._optim(_choice(rng, OPTIMIZERS, p=(0.55, 0.15, 0.15, 0.15)))
        lo = max(2, self.profile.ft_steps[0])
        hi = max(lo + 1, self.profile.ft_steps[1] // 4)
        marks: list[int] = []
        for _ in range(count):
            marks.append((marks[-1] if marks else 0) + self._steps(lo, hi))
        run = self._name("run")
        task = self._task(parent)
        seed = self._seed()
        org = self._org()
        out: list[str] = []
        prev = parent
        for i, mark in enumerate(marks):
            params = {
                "task": task,
                "lr": lr,
                "seed": seed,
                "optim": optim,
                "run": run,
                "index": i,
                "marks": marks,
            }
            prev = self._add("checkpoint", [prev], org, f"{run}-step{mark}", params)
            out.append(prev)
        return out

    def sft_then_cpt(self, parent: str) -> list[str]:
        """A short supervised fine-tune, then a long continued pre-training on base data."""
        sft = self.finetune(parent, steps=self._steps(3, 16), stage="sft", tag="sft")
        cpt = self.finetune(
            sft,
            steps=self._steps(100, 240) if not self.profile.tiny_nets else self._steps(8, 16),
            optimizer=_choice(self.rng, ("adamw", "adam")),
            task=self._task(sft, shift=False, sample=1 + int(self.rng.integers(0, 1000))),
            stage="continued-pretraining",
            tag="cpt",
        )
        return [sft, cpt]

    def resize(self, parent: str) -> str:
        new_vocab = BASE_VOCAB + int(_choice(self.rng, (16, 32, 64)))
        optim, lr = self._optim()
        task = task_for("llama", self.world, vocab=new_vocab)
        task["seq_len"] = LLAMA_SEQ_LEN
        self.shifts += 1
        task["shift"] = self.shifts
        task["frac"] = round(float(self.rng.uniform(0.15, 0.4)), 2)
        params = {
            "task": task,
            "new_vocab": new_vocab,
            "steps": self._steps(),
            "lr": lr,
            "seed": self._seed(),
            "optim": optim,
        }
        return self._add("resize", [parent], self._org(), self._name(f"vocab{new_vocab}-"), params)

    def copy(self, parent: str) -> str:
        """A quantised copy or an exact duplicate (always a leaf), stored as its parent."""
        rng = self.rng
        spec = self.zoo.planner.by_location[parent]
        fmt = (spec.fmt, spec.legacy)
        org = _choice(rng, _COPY_ORGS)
        kind = _choice(rng, ("bf16", "fp16", "int8", "dup"), p=(0.3, 0.25, 0.3, 0.15))
        base = parent.rsplit("/", 1)[1]
        if kind == "dup":
            name = self._unique(org, base)
            return self._add("dup", [parent], org, name, {}, fmt=fmt, dtype=spec.dtype)
        if kind in ("bf16", "fp16"):
            dtype = "bfloat16" if kind == "bf16" else "float16"
            name = self._unique(org, f"{base}-{kind}")
            return self._add("cast", [parent], org, name, {}, fmt=fmt, dtype=dtype)
        storage = _choice(rng, ("float32", "float16", "bfloat16"), p=(0.5, 0.3, 0.2))
        name = self._unique(org, f"{base}-int8")
        params = {"method": "absmax-per-row"}
        return self._add("int8", [parent], org, name, params, fmt=fmt, dtype=storage)

    def _unique(self, org: str, name: str) -> str:
        k, out = 1, name
        while f"{org}/{out}" in self.zoo.planner.by_location:
            k += 1
            out = f"{name}{k}"
        return out

    # ------------------------------------------------------------ merges

    def _ancestors(self, loc: str) -> list[str]:
        """``loc``'s first-parent line, nearest first (the model itself included)."""
        out = [loc]
        while self.nodes[out[-1]].parent is not None:
            out.append(self.nodes[out[-1]].parent)  # type: ignore[arg-type]
        return out

    def _lca(self, locs: list[str]) -> str:
        common = set(self._ancestors(locs[0]))
        for loc in locs[1:]:
            common &= set(self._ancestors(loc))
        return next(a for a in self._ancestors(locs[0]) if a in common)

    def _mergeable(self) -> list[str]:
        """Trained models (no copies, no root) on the base vocabulary."""
        return [
            n.loc
            for n in self.nodes.values()
            if n.op in ("finetune", "lora", "checkpoint", "merge") and n.vocab == BASE_VOCAB
        ]

    def _related(self, cands: list[str], n: int) -> list[str]:
        """``n`` models none of which descends from another: siblings half of the time,
        cousins (children of siblings) when the family has them, else any such models."""
        rng = self.rng
        r = rng.random()
        by_parent: dict[str, list[str]] = {}
        for c in cands:
            by_parent.setdefault(self.nodes[c].parent or "", []).append(c)
        if r < 0.5:
            groups = [g for g in by_parent.values() if len(g) >= n]
            if groups:
                g = _choice(rng, groups)
                return [g[int(i)] for i in rng.choice(len(g), n, replace=False)]
        if r < 0.8:
            by_grandparent: dict[str, list[list[str]]] = {}
            for parent, kids in by_parent.items():
                grandparent = self.nodes[parent].parent if parent else None
                if grandparent is not None:
                    by_grandparent.setdefault(grandparent, []).append(kids)
            options = [fams for fams in by_grandparent.values() if len(fams) >= n]
            if options:
                fams = _choice(rng, options)
                return [_choice(rng, fams[int(i)]) for i in rng.choice(len(fams), n, replace=False)]
        for _ in range(30):
            pick = [cands[int(i)] for i in rng.choice(len(cands), n, replace=False)]
            lines = [set(self._ancestors(p)[1:]) for p in pick]
            if not any(p in line for p in pick for line in lines):
                return pick
        return []

    def _kinship(self, parents: list[str]) -> str:
        firsts = [self.nodes[p].parent for p in parents]
        if len(set(firsts)) == 1:
            return "siblings"
        seconds = {self.nodes[f].parent if f else None for f in firsts}
        if len(set(firsts)) == len(firsts) and len(seconds) == 1 and None not in seconds:
            return "cousins"
        return "relatives"

    def merge(self) -> str | None:
        """One merge of models of this family (never the same set twice), or None."""
        for _ in range(5):
            loc = self._merge_once()
            if loc is not None:
                return loc
        return None

    def _merge_once(self) -> str | None:
        rng = self.rng
        cands = self._mergeable()
        if len(cands) < 2:
            return None
        method = _choice(rng, MERGE_METHODS)
        n_parents = 2 if method == "slerp" or rng.random() < 0.7 or len(cands) < 3 else 3
        with_base = method in ("linear", "slerp") and rng.random() < 0.25
        parents: list[str] = []
        if with_base:  # a fine-tune merged with the model it was tuned from
            loc = _choice(rng, cands)
            parents = [loc, self.nodes[loc].parent]  # type: ignore[list-item]
            relation = "with-parent"
        else:
            parents = self._related(cands, n_parents)
            if not parents:
                return None
            relation = self._kinship(parents)
        if frozenset(parents) in self.merged:
            return None
        self.merged.add(frozenset(parents))
        if method == "slerp":
            t = round(float(rng.uniform(0.2, 0.8)), 2)
            weights = [round(1.0 - t, 2), t]
        elif method == "linear":
            raw = rng.dirichlet(np.full(len(parents), 3.0))
            weights = [max(0.05, round(float(x), 2)) for x in raw]
        elif method == "task-arithmetic":
            weights = [round(float(rng.uniform(0.3, 1.0)), 2) for _ in parents]
        else:
            weights = [round(float(rng.uniform(0.5, 1.0)), 2) for _ in parents]
        params: dict[str, Any] = {"method": method, "weights": weights, "kin": relation}
        if method in ("task-arithmetic", "ties", "dare"):
            params["base"] = self._lca(parents)
        if method == "ties":
            params["density"] = round(float(rng.uniform(0.2, 0.8)), 2)
        if method == "dare":
            params["density"] = round(float(rng.uniform(0.1, 0.7)), 2)
            params["seed"] = self._seed()
        org = _choice(rng, _MERGE_ORGS)
        return self._add("merge", parents, org, self._name(f"{method}-"), params)

    # ------------------------------------------------------------ shapes

    def trainable(self) -> list[str]:
        return [n.loc for n in self.nodes.values() if n.op not in ("cast", "int8", "dup")]

    def grow(self, init_seed: int) -> None:
        rng, prof = self.rng, self.profile
        root = self.make_root(init_seed)
        if self.kind == "pair":
            self.child(root)
            return
        if self.kind == "star":
            n = min(prof.star[1], int(_loguniform(rng, prof.star[0], prof.star[1] + 1)))
            while len(self.nodes[root].children) < n:
                if rng.random() < 0.1 and n - len(self.nodes[root].children) >= 2:
                    self.twins(root)
                else:
                    self.child(root)
        elif self.kind == "chain":
            count = int(rng.integers(prof.chain[0], prof.chain[1] + 1))
            ckpts = self.chain(root, count)
            if rng.random() < 0.3:
                self.child(_choice(rng, ckpts))
        elif self.kind == "deep":
            self._deep(root, int(rng.integers(3, 7)))
        elif self.kind == "bushy":
            self._bushy(root, levels=int(rng.integers(2, 4)))
        else:
            self._mixed(root)
        self._decorate()

    def _deep(self, start: str, depth: int) -> None:
        node = start
        for _ in range(depth):
            r = self.rng.random()
            if r < 0.12 and not self.profile.tiny_nets:
                node = self.sft_then_cpt(node)[-1]
                continue
            node = self.child(node)
            if self.rng.random() < 0.2:  # a side branch
                self.child(self.nodes[node].parent)  # type: ignore[arg-type]

    def _bushy(self, start: str, levels: int) -> None:
        frontier = [start]
        for level in range(levels):
            nxt: list[str] = []
            for node in frontier:
                lo, hi = (2, 3) if level == 0 else (0, 2 if level == 1 else 1)
                n = int(self.rng.integers(lo, hi + 1))
                if n >= 2 and self.rng.random() < 0.15:
                    nxt += self.twins(node)
                    n -= 2
                nxt += [self.child(node) for _ in range(n)]
            frontier = nxt
            if not frontier:
                break

    def _mixed(self, root: str) -> None:
        rng = self.rng
        parts = ["chain", "star", "deep", "twins", "sft-cpt", "bushy"]
        picked = [parts[i] for i in rng.choice(len(parts), int(rng.integers(2, 4)), replace=False)]
        for part in picked:
            at = root if rng.random() < 0.4 else _choice(rng, self.trainable())
            if part == "chain":
                self.chain(at, int(rng.integers(2, 5)))
            elif part == "star":
                hub = self.finetune(at)
                for _ in range(int(rng.integers(2, 6))):
                    self.child(hub)
            elif part == "deep":
                self._deep(at, int(rng.integers(2, 4)))
            elif part == "twins":
                self.twins(at)
            elif part == "sft-cpt":
                self.sft_then_cpt(at)
            else:
                self._bushy(at, levels=int(rng.integers(1, 3)))

    def _decorate(self) -> None:
        rng = self.rng
        size = len(self.nodes)
        tiny = self.profile.tiny_nets
        n_merges = int(min(3, rng.poisson(0.3 + size / 15))) if not tiny else 1
        for _ in range(n_merges):
            m = self.merge()
            if m is not None and rng.random() < 0.2 and not tiny:
                self.finetune(m)  # a merge tuned further
        if self.arch == "llama" and rng.random() < 0.4 and not tiny:
            base_vocab = [loc for loc in self.trainable() if self.nodes[loc].vocab == BASE_VOCAB]
            resized = self.resize(_choice(rng, base_vocab))
            if rng.random() < 0.4:
                self.finetune(resized)
        n_copies = int(rng.integers(0, 3)) + (size > 10) if not tiny else 1
        for _ in range(n_copies):
            self.copy(_choice(rng, self.trainable()))


# -------------------------------------------------------------------------------- the zoo


class RandomPlanner:
    """Draws a whole random plan; ``draw()`` returns None when the bounds are missed."""

    def __init__(self, size: str, rng: np.random.Generator) -> None:
        self.size = size
        self.profile = PROFILES[size]
        self.rng = rng
        self.planner = Planner(size)
        self.families: list[_Family] = []

    def _kinds(self) -> list[str]:
        rng, prof = self.rng, self.profile
        n = int(rng.integers(prof.families[0], prof.families[1] + 1))
        kinds = ["pair"] * int(rng.integers(prof.pairs[0], prof.pairs[1] + 1))
        kinds += list(prof.required)
        others = ("pair", "star", "chain", "deep", "bushy", "mixed")
        weights = np.array([0.2, 0.08, 0.2, 0.18, 0.17, 0.17])
        while len(kinds) < n:
            kinds.append(_choice(rng, others, p=weights / weights.sum()))
        return [kinds[i] for i in rng.permutation(len(kinds))]

    def _archs(self, n: int) -> list[str]:
        rng = self.rng
        base = [a for a in ARCHS for _ in range(2)] if n >= 6 else list(ARCHS)[:n]
        archs = base + [_choice(rng, ARCHS) for _ in range(n - len(base))]
        return [archs[i] for i in rng.permutation(n)]

    def draw(self) -> list[Spec] | None:
        rng, prof = self.rng, self.profile
        kinds = self._kinds()
        archs = self._archs(len(kinds))
        words = [_WORDS[i] for i in rng.choice(len(_WORDS), len(kinds), replace=False)]
        init_seeds = rng.choice(10**6, len(kinds), replace=False)
        by_arch: dict[str, list[_Family]] = {a: [] for a in ARCHS}
        repeated = sorted({a for a in archs if archs.count(a) >= 2})
        forced = _choice(rng, repeated) if repeated else None
        for kind, arch, word, init_seed in zip(kinds, archs, words, init_seeds, strict=True):
            peers = by_arch[arch]
            # Share the network shape of an earlier family of the architecture now and then,
            # and always once per zoo, so independent look-alike families exist.
            if peers and ((arch == forced and len(peers) == 1) or rng.random() < 0.3):
                twin = _choice(rng, peers)
                net = dict(twin.net)
                world = twin.world if rng.random() < 0.5 else len(peers) + 1
            else:
                net = draw_net(rng, arch, prof.tiny_nets)
                world = len(peers) + 1
            fam = _Family(self, arch, kind, word, world, net)
            fam.grow(int(init_seed))
            peers.append(fam)
            self.families.append(fam)
        specs = self.planner.specs
        if not prof.models[0] <= len(specs) <= prof.models[1]:
            return None
        if estimate_seconds(specs) > prof.budget_s:
            return None
        self._cards()
        return specs

    def _cards(self) -> None:
        """A few model cards declare no base model, or a wrong one."""
        rng, prof = self.rng, self.profile
        specs = [s for s in self.planner.specs if s.parents]
        k = int(rng.integers(prof.cards[0], prof.cards[1] + 1))
        roots = [s.location for s in self.planner.specs if not s.parents]
        for i in rng.choice(len(specs), min(k, len(specs)), replace=False):
            spec = specs[int(i)]
            if rng.random() < 0.5:
                self.planner.set_card(spec.location, "missing")
                continue
            others = [r for r in roots if r not in spec.parents]
            same_arch = [r for r in others if self.planner.by_location[r].arch == spec.arch]
            pool = same_arch or others
            if pool:
                self.planner.set_card(spec.location, "wrong", _choice(rng, pool))
            else:
                self.planner.set_card(spec.location, "missing")


def estimate_seconds(specs: list[Spec]) -> float:
    """Rough one-thread build time of a plan: training steps plus a fixed cost per model."""
    total = 0.0
    runs: set[str] = set()
    for s in specs:
        total += 0.05
        if s.op in ("pretrain", "finetune", "lora", "resize"):
            total += s.params["steps"] * step_cost_s(s.arch, s.net or {})
        elif s.op == "checkpoint" and s.params["run"] not in runs:
            runs.add(s.params["run"])
            total += s.params["marks"][-1] * step_cost_s(s.arch, s.net or {})
    return total


def random_plan(size: str, seed: int) -> list[Spec]:
    """The random plan of ``size`` for ``seed``: deterministic, redrawn until within bounds."""
    rng = np.random.default_rng([seed, 0x5EED])
    for _ in range(500):
        specs = RandomPlanner(size, rng).draw()
        if specs is not None:
            return specs
    raise RuntimeError(f"no random {size} plan within bounds for seed {seed}")
