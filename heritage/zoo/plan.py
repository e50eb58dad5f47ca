"""The shape of each zoo: which models exist, how each one is derived, how it is published.

Planning is separate from building so the whole tree (locations, cards pointing at other
models, formats) is known before any training starts, and so the sizes are easy to read.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from heritage.lineage.types import Relation
from heritage.zoo.truth import PLANS, SIZES

__all__ = ["PLANS", "SIZES", "Spec", "make_plan"]

#: Relation of each op; roots are "root", which ``Relation`` leaves out (it names edges).
RELATION_OF_OP: dict[str, str] = {
    "pretrain": "root",
    "finetune": Relation.FINETUNE,
    "resize": Relation.FINETUNE,
    "checkpoint": Relation.FINETUNE,
    "lora": Relation.ADAPTER,
    "cast": Relation.QUANTIZED,
    "int8": Relation.QUANTIZED,
    "dup": Relation.DUPLICATE,
    "merge": Relation.MERGE,
}

PICKLE_FILES = {"pt": "model.pt", "pth": "model.pth", "bin": "pytorch_model.bin"}


@dataclass
class Spec:
    """One model to build: how it derives from its parents and how it is published."""

    location: str
    arch: str
    op: str
    parents: list[str]
    params: dict[str, Any]
    fmt: str = "safetensors"
    legacy: bool = False
    dtype: str = "float32"
    card_status: str = "correct"
    card_target: str | None = None  # declared base for a deliberately wrong card
    #: random plan only: the family's network shape (``make_net`` fields) and tree kind
    net: dict[str, Any] | None = None
    family_kind: str | None = None

    @property
    def relation(self) -> str:
        return str(RELATION_OF_OP[self.op])  # the plain value (YAML cards, JSON truth)

    @property
    def name(self) -> str:
        return self.location.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Budget:
    """Training steps per size; fine-tune steps stay small next to pre-training on purpose."""

    pretrain: int
    finetune: int


BUDGETS: dict[str, dict[str, Budget]] = {
    "tiny": {"llama": Budget(30, 10), "vit": Budget(30, 10), "mlp": Budget(40, 12)},
    "small": {"llama": Budget(400, 100), "vit": Budget(300, 100), "mlp": Budget(400, 150)},
    "medium": {"llama": Budget(450, 140), "vit": Budget(400, 120), "mlp": Budget(500, 200)},
}

_PREFIX = {"llama": "tinyllama", "vit": "vit-tiny", "mlp": "mlp"}
_ROOT_ORGS = ["northwind", "lumenlabs", "corvid-ai", "tessellate"]
_SHIFT_FRAC = {"llama": 0.3, "vit": 0.3, "mlp": 0.5}


def task_for(arch: str, world: int, shift: int = 0, vocab: int | None = None) -> dict[str, Any]:
    """Base task of a family (``shift=0``) or a shifted variant for fine-tuning."""
    if arch == "llama":
        task: dict[str, Any] = {"kind": "markov", "lang": world}
        if vocab is not None:
            task["vocab"] = vocab
    elif arch == "vit":
        task = {"kind": "patterns", "world": world}
    else:
        task = {"kind": "teacher", "teacher": world}
    if shift:
        task["shift"] = shift
        task["frac"] = _SHIFT_FRAC[arch]
    return task


@dataclass
class Family:
    """Helper that appends the specs of one root's tree to a shared plan."""

    plan: Planner
    arch: str
    letter: str
    world: int
    budget: Budget
    root: str = ""
    roles: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"{_PREFIX[self.arch]}-{self.letter}"

    def _fmt(self, fmt: str | None) -> tuple[str, bool]:
        if fmt is not None:
            return fmt, fmt in ("pt-legacy", "pth-legacy", "bin-legacy")
        if self.arch == "mlp":
            return next(self.plan.mlp_formats)
        return "safetensors", False

    def add(
        self,
        role: str,
        op: str,
        parents: list[str],
        org: str,
        suffix: str,
        fmt: str | None = None,
        dtype: str = "float32",
        **params: Any,
    ) -> str:
        fmt_name, legacy = self._fmt(fmt)
        spec = Spec(
            location=f"{org}/{self.base}-{suffix}" if suffix else f"{org}/{self.base}",
            arch=self.arch,
            op=op,
            parents=parents,
            params=params,
            fmt=fmt_name.removesuffix("-legacy"),
            legacy=legacy,
            dtype=dtype,
        )
        self.plan.add(spec)
        self.roles[role] = spec.location
        return spec.location

    def make_root(self, init_seed: int, fmt: str | None = None) -> str:
        org = _ROOT_ORGS[(ord(self.letter) - ord("a")) % len(_ROOT_ORGS)]
        self.root = self.add(
            "root",
            "pretrain",
            [],
            org,
            "",
            fmt=fmt,
            init_seed=init_seed,
            task=task_for(self.arch, self.world),
            steps=self.budget.pretrain,
            lr=3e-3,
            seed=init_seed + 1000,
        )
        return self.root

    def finetune(
        self,
        role: str,
        parent: str,
        org: str,
        suffix: str,
        shift: int,
        lr: float,
        seed: int,
        steps: int | None = None,
        fmt: str | None = None,
    ) -> str:
        return self.add(
            role,
            "finetune",
            [parent],
            org,
            suffix,
            fmt=fmt,
            task=task_for(self.arch, self.world, shift),
            lr=lr,
            seed=seed,
            steps=steps or self.budget.finetune,
        )

    def lora(
        self, role: str, parent: str, org: str, suffix: str, shift: int, rank: int, seed: int
    ) -> str:
        return self.add(
            role,
            "lora",
            [parent],
            org,
            suffix,
            task=task_for(self.arch, self.world, shift),
            lr=2e-3,
            seed=seed,
            steps=self.budget.finetune,
            rank=rank,
            alpha=float(rank),
        )

    def resize(
        self, role: str, parent: str, org: str, suffix: str, shift: int, new_vocab: int, seed: int
    ) -> str:
        return self.add(
            role,
            "resize",
            [parent],
            org,
            suffix,
            task=task_for(self.arch, self.world, shift, vocab=new_vocab),
            new_vocab=new_vocab,
            lr=1e-3,
            seed=seed,
            steps=self.budget.finetune,
        )

    def snake(
        self, role: str, parent: str, org: str, suffix: str, shift: int, count: int, seed: int
    ) -> list[str]:
        """A chain of checkpoints saved along one training run (each the next one's parent)."""
        per = max(2, self.budget.finetune // 2)
        run = f"{self.base}-{suffix}"
        out: list[str] = []
        prev = parent
        for i in range(count):
            prev = self.add(
                f"{role}{i}",
                "checkpoint",
                [prev],
                org,
                f"{suffix}-step{per * (i + 1)}",
                run=run,
                index=i,
                count=count,
                steps_per_checkpoint=per,
                lr=5e-4,
                seed=seed,
                task=task_for(self.arch, self.world, shift),
            )
            out.append(prev)
        return out

    def fan(
        self,
        role: str,
        parent: str,
        org: str,
        suffix: str,
        shift: int,
        lrs: list[float],
        steps: int | None = None,
    ) -> list[str]:
        """A sweep of siblings from one parent: same task, different learning rate and seed."""
        steps = steps or max(2, int(self.budget.finetune * 0.6))
        return [
            self.finetune(
                f"{role}{i}",
                parent,
                org,
                f"{suffix}-lr{lr:g}-s{i}",
                shift,
                lr=lr,
                seed=100 + i,
                steps=steps,
            )
            for i, lr in enumerate(lrs)
        ]

    def leaf(self, role: str, op: str, parent: str, org: str, suffix: str, **params: Any) -> str:
        """Quantised copies and duplicates: derived without training, never fine-tuned further."""
        parent_spec = self.plan.by_location[parent]
        fmt = parent_spec.fmt + ("-legacy" if parent_spec.legacy else "")
        if op == "cast":
            return self.add(role, op, [parent], org, suffix, fmt=fmt, dtype=params["dtype"])
        if op == "int8":
            return self.add(
                role,
                op,
                [parent],
                org,
                suffix,
                fmt=fmt,
                dtype=params.get("storage_dtype", "float32"),
                method="absmax-per-row",
            )
        if op == "dup":
            return self.add(role, op, [parent], org, suffix, fmt=fmt, dtype=parent_spec.dtype)
        raise ValueError(op)

    def merge(
        self,
        role: str,
        a: str,
        b: str,
        org: str,
        suffix: str,
        weights: tuple[float, float],
        fmt: str | None = None,
    ) -> str:
        return self.add(role, "merge", [a, b], org, suffix, fmt=fmt, weights=list(weights))


class Planner:
    """Ordered list of specs (parents always before children)."""

    def __init__(self, size: str) -> None:
        self.size = size
        self.specs: list[Spec] = []
        self.by_location: dict[str, Spec] = {}
        cycle: Iterator[tuple[str, bool]] = itertools.cycle(
            [("bin", False), ("pt", False), ("pth", True), ("bin", True), ("pth", False)]
        )
        self.mlp_formats = cycle

    def add(self, spec: Spec) -> None:
        if spec.location in self.by_location:
            raise ValueError(f"duplicate location {spec.location}")
        for p in spec.parents:
            if p not in self.by_location:
                raise ValueError(f"{spec.location}: parent {p} not planned yet")
        self.specs.append(spec)
        self.by_location[spec.location] = spec

    def family(self, arch: str, letter: str, world: int) -> Family:
        return Family(self, arch, letter, world, BUDGETS[self.size][arch])

    def set_card(self, location: str, status: str, target: str | None = None) -> None:
        spec = self.by_location[location]
        spec.card_status = status
        spec.card_target = target


# --------------------------------------------------------------------------------------------
# Templates: each grows one root's tree. Depth is >= 3 generations below every root.


def _template_branchy(f: Family, init_seed: int, root_fmt: str | None) -> None:
    """Fine-tune with an adapter and an int8 copy below it, a snake, and a bf16 re-save."""
    root = f.make_root(init_seed, root_fmt)
    ft = f.finetune("ft", root, "alice", "instruct", shift=1, lr=1e-3, seed=1)
    if f.arch == "mlp":
        f.finetune("ft2", ft, "bytebard", "instruct-v2", shift=2, lr=5e-4, seed=2)
    else:
        f.lora("lora", ft, "bytebard", "instruct-lora", shift=2, rank=4, seed=2)
    f.leaf(
        "q8",
        "int8",
        ft,
        "quantfolk",
        "instruct-int8",
        storage_dtype="float16" if f.arch == "llama" else "float32",
    )
    f.snake("snake", root, "longrun", "continued", shift=3, count=3, seed=3)
    f.leaf("bf16", "cast", root, "quantfolk", "bf16", dtype="bfloat16")


def _template_sweep(f: Family, init_seed: int, root_fmt: str | None) -> None:
    """Fine-tune with a learning-rate sweep below it and a merge of two sweep members."""
    root = f.make_root(init_seed, root_fmt)
    ft = f.finetune("ft", root, "alice", "domain", shift=4, lr=1e-3, seed=4)
    fan = f.fan("fan", ft, "sweepco", "domain-sweep", shift=5, lrs=[3e-4, 1e-3, 3e-3])
    f.merge("merge", fan[0], fan[1], "mergemonkey", "domain-soup", (0.5, 0.5))
    if f.arch == "llama":
        f.resize("resize", root, "bytebard", "extended-vocab", shift=6, new_vocab=288, seed=6)
    f.leaf("dup", "dup", root, "mirror-hub", "")


def _template_deep(f: Family, init_seed: int, root_fmt: str | None) -> None:
    """A long chain of separate fine-tunes plus a 4-way sweep with a 0.3/0.7 merge."""
    root = f.make_root(init_seed, root_fmt)
    c1 = f.finetune("c1", root, "alice", "stage1", shift=7, lr=1e-3, seed=7)
    c2 = f.finetune("c2", c1, "alice", "stage2", shift=8, lr=5e-4, seed=8)
    c3 = f.finetune("c3", c2, "bytebard", "stage3", shift=9, lr=3e-4, seed=9)
    c4 = f.finetune("c4", c3, "hobbyist42", "stage4", shift=10, lr=3e-4, seed=10)
    f.leaf("c2q8", "int8", c2, "quantfolk", "stage2-int8")
    f.leaf("c4fp16", "cast", c4, "quantfolk", "stage4-fp16", dtype="float16")
    fan = f.fan("fan", root, "sweepco", "sweep", shift=11, lrs=[1e-4, 3e-4, 1e-3, 2e-3])
    f.merge("merge", fan[2], fan[3], "mergemonkey", "sweep-merge", (0.3, 0.7))
    f.leaf("dup", "dup", fan[0], "mirror-hub", "sweep-copy")


def _template_mixed(f: Family, init_seed: int, root_fmt: str | None) -> None:
    """A 4-checkpoint snake with a branch off its middle, an adapter, a merge, and casts."""
    root = f.make_root(init_seed, root_fmt)
    ckpts = f.snake("snake", root, "longrun", "cont", shift=12, count=4, seed=12)
    ft = f.finetune("ft", ckpts[1], "hobbyist42", "cont-tuned", shift=13, lr=7e-4, seed=13)
    if f.arch == "mlp":
        f.finetune("ft2", ft, "bytebard", "cont-tuned-v2", shift=14, lr=3e-4, seed=14)
    else:
        f.lora("lora", ft, "bytebard", "cont-tuned-lora", shift=14, rank=8, seed=14)
    f.leaf("q8", "int8", ft, "quantfolk", "cont-tuned-int8")
    pair = f.fan("pair", root, "sweepco", "pair", shift=15, lrs=[5e-4, 5e-4])
    f.merge("merge", pair[0], pair[1], "mergemonkey", "pair-merge", (0.7, 0.3))
    f.leaf("bf16", "cast", root, "quantfolk", "bf16", dtype="bfloat16")
    if f.arch == "llama":
        f.resize("resize", ft, "bytebard", "cont-tuned-vocab320", shift=16, new_vocab=320, seed=16)


def _template_tiny(f: Family, init_seed: int, root_fmt: str | None) -> None:
    """Every derivation kind once, with very few steps (used by the determinism test)."""
    root = f.make_root(init_seed, root_fmt)
    ft = f.finetune("ft", root, "alice", "ft", shift=1, lr=1e-3, seed=1)
    if f.arch != "mlp":
        f.lora("lora", ft, "bytebard", "ft-lora", shift=2, rank=2, seed=2)
    f.leaf("q8", "int8", ft, "quantfolk", "ft-int8")
    f.snake("snake", root, "longrun", "cont", shift=3, count=2, seed=3)
    pair = f.fan("pair", root, "sweepco", "pair", shift=4, lrs=[1e-3, 2e-3])
    f.merge("merge", pair[0], pair[1], "mergemonkey", "merge", (0.3, 0.7))
    f.leaf("bf16", "cast", root, "quantfolk", "bf16", dtype="bfloat16")
    f.leaf("dup", "dup", root, "mirror-hub", "")
    if f.arch == "llama":
        f.resize("resize", root, "bytebard", "vocab272", shift=5, new_vocab=272, seed=5)


def make_plan(size: str, seed: int = 0, plan: str = "classic") -> list[Spec]:
    """All specs of a zoo, in build order (parents before children).

    ``classic``: the same tree for every seed (4 templates x 3 architectures; the seed only
    changes the training noise). ``random``: the whole tree drawn from ``seed``
    (``heritage.zoo.randplan``).
    """
    if size not in SIZES:
        raise ValueError(f"unknown zoo size {size!r}; expected one of {SIZES}")
    if plan == "random":
        from heritage.zoo.randplan import random_plan

        return random_plan(size, seed)
    if plan != "classic":
        raise ValueError(f"unknown zoo plan {plan!r}; expected one of {PLANS}")
    return _classic_plan(size)


def _classic_plan(size: str) -> list[Spec]:
    plan = Planner(size)
    fams: dict[tuple[str, str], Family] = {}
    if size == "tiny":
        templates = [_template_tiny]
    elif size == "small":
        templates = [_template_branchy, _template_sweep]
    else:
        templates = [_template_branchy, _template_sweep, _template_deep, _template_mixed]
    root_formats = {
        "llama": ["safetensors-sharded", "safetensors", "safetensors", "safetensors-sharded"],
        "vit": ["safetensors"] * 4,
        "mlp": ["pt", "pth-legacy", "bin", "pt-legacy"],
    }
    for arch_index, arch in enumerate(("llama", "vit", "mlp")):
        for i, template in enumerate(templates):
            letter = "abcd"[i]
            fam = plan.family(arch, letter, world=i + 1)
            template(fam, init_seed=100 * (arch_index + 1) + i, root_fmt=root_formats[arch][i])
            fams[(arch, letter)] = fam
    _assign_cards(plan, fams, size)
    return plan.specs


def _assign_cards(plan: Planner, fams: dict[tuple[str, str], Family], size: str) -> None:
    """Make a few cards lie or stay silent, as real model cards do."""
    if size == "tiny":
        plan.set_card(fams[("llama", "a")].roles["ft"], "missing")
        plan.set_card(fams[("mlp", "a")].roles["merge"], "wrong", fams[("llama", "a")].root)
        return
    plan.set_card(fams[("llama", "b")].roles["ft"], "missing")
    plan.set_card(fams[("llama", "a")].roles["snake1"], "wrong", fams[("llama", "b")].root)
    plan.set_card(fams[("vit", "a")].roles["ft"], "wrong", fams[("vit", "b")].root)
    plan.set_card(fams[("mlp", "b")].roles["fan2"], "missing")
    if size == "medium":
        plan.set_card(fams[("llama", "c")].roles["c3"], "wrong", fams[("llama", "d")].root)
        plan.set_card(fams[("vit", "d")].roles["q8"], "missing")
        plan.set_card(fams[("mlp", "c")].roles["merge"], "wrong", fams[("mlp", "a")].roles["ft"])
        plan.set_card(fams[("mlp", "d")].roles["snake2"], "missing")
