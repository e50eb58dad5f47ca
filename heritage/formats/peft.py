"""PEFT LoRA adapters: what a folder saved by ``PeftModel.save_pretrained`` holds.

Such a folder has ``adapter_config.json`` and ``adapter_model.safetensors`` (or the
pickled ``adapter_model.bin``). For each module it adapts, the weights file holds
``base_model.model.<module>.lora_A.weight`` of shape [r, in] and
``base_model.model.<module>.lora_B.weight`` of shape [out, r]; merged into the base, the
module's weight ``<module>.weight`` (shape [out, in]) becomes
``W + scale * B @ A``, with ``scale = lora_alpha / r`` (``lora_alpha / sqrt(r)`` with
``use_rslora``). With ``fan_in_fan_out`` (GPT-2's Conv1D) the base weight is stored
[in, out] and takes the transpose. Modules listed in ``modules_to_save`` are saved whole
under ``base_model.model.<module>.weight``: the base's tensor of that name, trained.

Plain functions over a folder's config and tensor listing; nothing here reads weights
or touches the network. Problems raise :class:`~heritage.errors.BadCheckpoint` naming
the file.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from heritage.errors import BadCheckpoint
from heritage.formats.checkpoint import SampleLike, read_json_object

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "FORMAT",
    "PREFIX",
    "LoraConfig",
    "LoraLayout",
    "LoraModule",
    "SavedTensor",
    "adapter_weights",
    "declared_base",
    "is_adapter_folder",
    "is_lora",
    "layout_of",
    "lora_layout",
    "parse_config",
    "read_adapter_config",
]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
FORMAT = "peft-lora"  # models.format of a LoRA adapter
PREFIX = "base_model.model."  # PEFT's wrapper prefix on every saved tensor name

# <module>.lora_A.weight / .lora_B.weight; a state dict saved without save_pretrained
# keeps the adapter's name between them (lora_A.default.weight)
_PAIR = re.compile(r"^(?P<module>.+)\.lora_(?P<part>[AB])(?:\.[^.]+)?\.weight$")
# any other LoRA parameter: lora_embedding_A/B, DoRA's lora_magnitude_vector, lora_B.bias
_LORA_PART = re.compile(r"^(?P<module>.+?)\.lora_[A-Za-z_]+(?:\.|$)")


@dataclass(frozen=True)
class LoraConfig:
    """What adapter_config.json says that lineage uses."""

    r: int
    lora_alpha: float
    use_rslora: bool = False
    fan_in_fan_out: bool = False
    use_dora: bool = False
    target_modules: tuple[str, ...] | str | None = None  # a list, or one regex
    modules_to_save: tuple[str, ...] = ()
    base_model: str | None = None  # base_model_name_or_path
    alpha_pattern: tuple[tuple[str, float], ...] = ()  # module key -> its own lora_alpha

    def scale(self, rank: int, module: str = "") -> float:
        """``lora_alpha / r`` (``/ sqrt(r)`` with rsLoRA) for a module of this rank."""
        alpha = self.lora_alpha
        for key, value in self.alpha_pattern:
            if _module_matches(module, key):
                alpha = value
                break
        if rank <= 0:
            return 0.0
        return alpha / math.sqrt(rank) if self.use_rslora else alpha / rank


@dataclass(frozen=True)
class LoraModule:
    """One adapted module: its lora_A and lora_B tensors and the base weight they change."""

    module: str  # the module's name in the base model
    a: str  # adapter tensor names
    b: str
    rank: int
    base: str  # the base weight it modifies: "<module>.weight"
    shape: tuple[int, ...]  # the base weight's expected shape: [out, in] ([in, out] transposed)
    transposed: bool = False  # fan_in_fan_out: the base stores the weight [in, out]


@dataclass(frozen=True)
class SavedTensor:
    """A whole base tensor the adapter saves (``modules_to_save``, or resized embeddings)."""

    name: str  # adapter tensor name
    base: str  # the base tensor's name
    shape: tuple[int, ...]
    trained: bool  # in a module of ``modules_to_save``: trained, so it differs from the base


@dataclass(frozen=True)
class LoraLayout:
    """An adapter's config and what its tensors modify in the base, by base tensor name."""

    config: LoraConfig
    modules: tuple[LoraModule, ...]
    saved: tuple[SavedTensor, ...] = ()
    other: tuple[str, ...] = ()  # LoRA parameters besides A and B (embedding LoRA, DoRA)

    def base_shapes(self) -> dict[str, tuple[int, ...]]:
        """The base weights the adapter's lora pairs change, with the shape each must
        have ([out, in]; [in, out] with fan_in_fan_out)."""
        return dict(sorted((m.base, m.shape) for m in self.modules))

    def saved_shapes(self) -> dict[str, tuple[int, ...]]:
        """The base tensors the adapter saves whole (``modules_to_save``), with shapes."""
        return dict(sorted((s.base, s.shape) for s in self.saved))

    def fits(self, shapes: Mapping[str, Collection[int]]) -> bool:
        """Whether a model with these tensor shapes (name -> shape) can be the base: it
        holds every weight a lora pair changes, at its shape, and every tensor the adapter
        saves whole that it holds has that tensor's shape (one it lacks is a head the
        adapter adds, as a classification head over a language model)."""
        if any(tuple(shapes.get(n, ())) != shape for n, shape in self.base_shapes().items()):
            return False
        return all(
            tuple(shapes[n]) == shape for n, shape in self.saved_shapes().items() if n in shapes
        )

    @property
    def touched_modules(self) -> frozenset[str]:
        """Modules the adapter changes in place (every LoRA part's module)."""
        return frozenset({m.module for m in self.modules} | {_module_of(n) for n in self.other})

    def sample_like(self) -> dict[str, SampleLike]:
        """Where the fingerprint samples each adapter tensor: lora_B on its base weight's
        sampled rows, lora_A on its base weight's column window, saved tensors as the base
        tensor they replace. The adapter's sampled update then lines up entry for entry
        with the base's sampled weights. A transposed (fan_in_fan_out) pair keeps its own
        sampling: its update does not line up with the base's rows."""
        out: dict[str, SampleLike] = {}
        for m in self.modules:
            if m.transposed:
                continue
            out[m.b] = SampleLike(m.base, m.shape, "rows")
            out[m.a] = SampleLike(m.base, m.shape, "cols")
        for s in self.saved:
            out[s.name] = SampleLike(s.base, s.shape, "same")
        return out


def _module_matches(module: str, key: str) -> bool:
    """PEFT's pattern rule: the key names the module, or its end after a dot, or is a
    regular expression the module matches whole."""
    if module == key or module.endswith("." + key):
        return True
    try:
        return (
            re.fullmatch(key, module) is not None or re.fullmatch(rf".*\.{key}", module) is not None
        )
    except re.error:
        return False


def _module_of(name: str) -> str:
    m = _LORA_PART.match(name)
    return m.group("module") if m else name


def _strip(name: str) -> str:
    return name[len(PREFIX) :] if name.startswith(PREFIX) else name


def adapter_weights(folder: Path) -> Path | None:
    """The adapter weights file of a PEFT folder (adapter_config.json beside
    adapter_model.safetensors or adapter_model.bin), else None."""
    if not (folder / ADAPTER_CONFIG).is_file():
        return None
    for name in ADAPTER_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    return None


def is_adapter_folder(names: Collection[str]) -> bool:
    """Whether a folder listing is a PEFT adapter's: its config and its weights file."""
    return ADAPTER_CONFIG in names and any(n in names for n in ADAPTER_WEIGHTS)


def read_adapter_config(folder: Path) -> dict[str, Any]:
    """adapter_config.json as a dict; BadCheckpoint naming the file when unreadable."""
    return read_json_object(folder / ADAPTER_CONFIG)


def is_lora(raw: Mapping[str, Any] | None) -> bool:
    """Whether an adapter config is LoRA's (``peft_type`` LORA, or absent)."""
    if raw is None:
        return False
    kind = raw.get("peft_type", "LORA")
    return isinstance(kind, str) and kind.upper() == "LORA"


def declared_base(raw: Mapping[str, Any] | None) -> str | None:
    """The base model an adapter config names (``base_model_name_or_path``), if any."""
    value = (raw or {}).get("base_model_name_or_path")
    return value.strip() if isinstance(value, str) and value.strip() else None


def _number(raw: Mapping[str, Any], key: str, default: float, where: object) -> float:
    value = raw.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadCheckpoint(where, f"{ADAPTER_CONFIG}: {key} must be a number, not {value!r}")
    return float(value)


def _flag(raw: Mapping[str, Any], key: str, where: object) -> bool:
    value = raw.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise BadCheckpoint(where, f"{ADAPTER_CONFIG}: {key} must be true or false, not {value!r}")
    return value


def _names(raw: Mapping[str, Any], key: str, where: object) -> tuple[str, ...] | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise BadCheckpoint(where, f"{ADAPTER_CONFIG}: {key} must be a list of names")


def parse_config(raw: Mapping[str, Any], where: str | Path = ADAPTER_CONFIG) -> LoraConfig:
    """A LoRA adapter_config.json (as a dict) read defensively. PEFT's defaults fill
    what is missing (r 8, lora_alpha 8); wrong types raise BadCheckpoint naming
    ``where``."""
    if not is_lora(raw):
        raise BadCheckpoint(
            where, f"{ADAPTER_CONFIG}: peft_type {raw.get('peft_type')!r} is not LORA"
        )
    r = _number(raw, "r", 8, where)
    if r != int(r) or r < 1:
        raise BadCheckpoint(
            where, f"{ADAPTER_CONFIG}: r must be a positive integer, not {raw.get('r')!r}"
        )
    targets = raw.get("target_modules")
    if isinstance(targets, str):
        target_modules: tuple[str, ...] | str | None = targets
    else:
        target_modules = _names(raw, "target_modules", where)
    pattern = raw.get("alpha_pattern") or {}
    if not isinstance(pattern, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in pattern.values()
    ):
        raise BadCheckpoint(where, f"{ADAPTER_CONFIG}: alpha_pattern must map names to numbers")
    return LoraConfig(
        r=int(r),
        lora_alpha=_number(raw, "lora_alpha", 8, where),
        use_rslora=_flag(raw, "use_rslora", where),
        fan_in_fan_out=_flag(raw, "fan_in_fan_out", where),
        use_dora=_flag(raw, "use_dora", where),
        target_modules=target_modules,
        modules_to_save=_names(raw, "modules_to_save", where) or (),
        base_model=declared_base(raw),
        alpha_pattern=tuple((str(k), float(v)) for k, v in pattern.items()),
    )


def lora_layout(
    config: LoraConfig,
    tensors: Iterable[tuple[str, Collection[int]]],
    where: str | Path = ADAPTER_WEIGHTS[0],
) -> LoraLayout:
    """Pair each lora_A with its lora_B and name the base tensor they change.

    ``tensors`` are the adapter file's (name, shape) pairs. A lora_A without its lora_B
    (or the reverse), ranks that disagree, or no pair at all raise BadCheckpoint naming
    ``where``.
    """
    parts: dict[str, dict[str, tuple[str, tuple[int, ...]]]] = {}
    saved: list[SavedTensor] = []
    other: list[str] = []
    for name, shape in sorted((n, tuple(int(d) for d in s)) for n, s in tensors):
        stripped = _strip(name)
        pair = _PAIR.match(stripped)
        if pair:
            parts.setdefault(pair.group("module"), {})[pair.group("part")] = (name, shape)
        elif _LORA_PART.match(stripped):
            other.append(name)
        else:
            module = stripped.rsplit(".", 1)[0]
            trained = any(_module_matches(module, key) for key in config.modules_to_save)
            saved.append(SavedTensor(name, stripped, shape, trained))
    modules = []
    for module, ab in sorted(parts.items()):
        if set(ab) != {"A", "B"}:
            have, lack = ("A", "B") if "A" in ab else ("B", "A")
            raise BadCheckpoint(
                where, f"{ab[have][0]!r} has no lora_{lack} beside it (missing tensor)"
            )
        (a, a_shape), (b, b_shape) = ab["A"], ab["B"]
        if len(a_shape) < 2 or len(b_shape) < 2 or a_shape[0] != b_shape[1]:
            raise BadCheckpoint(
                where,
                f"LoRA pair of {module!r}: lora_A {list(a_shape)} and lora_B {list(b_shape)} "
                "do not share a rank",
            )
        if any(d != 1 for d in b_shape[2:]):
            raise BadCheckpoint(where, f"lora_B of {module!r} has shape {list(b_shape)}")
        out, inner = b_shape[0], a_shape[1:]
        transposed = config.fan_in_fan_out and len(a_shape) == 2
        shape = (inner[0], out) if transposed else (out, *inner)
        modules.append(LoraModule(module, a, b, a_shape[0], f"{module}.weight", shape, transposed))
    if not modules:
        raise BadCheckpoint(where, "no LoRA weights (lora_A / lora_B pairs) in the adapter")
    return LoraLayout(config, tuple(modules), tuple(saved), tuple(other))


def layout_of(
    config: Mapping[str, Any] | str | None,
    tensors: Iterable[tuple[str, Collection[int]]],
    where: str | Path = ADAPTER_CONFIG,
) -> LoraLayout:
    """An adapter's layout from its config (a dict, or the JSON text the index keeps in
    models.config) and its tensors' (name, shape) pairs; BadCheckpoint naming ``where``."""
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as exc:
            raise BadCheckpoint(
                where, f"{ADAPTER_CONFIG} is not valid JSON ({exc.__class__.__name__})"
            ) from None
    if not isinstance(config, Mapping):
        raise BadCheckpoint(where, f"{ADAPTER_CONFIG} is not a JSON object")
    return lora_layout(parse_config(config, where), tensors, where)
