"""The ground-truth file of a zoo (``truth.json``) and its validator.

The schema is documented in ``heritage/zoo/SCHEMA.md``. The validator is deliberately strict:
lineage metrics computed against a malformed truth would be silently wrong.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from heritage.lineage.types import Relation

SIZES = ("tiny", "small", "medium")
PLANS = ("classic", "random")
#: Version 2 adds the random plan's fields (``plan``; per model ``family_kind``, ``net``);
#: classic zoos have none of them and are still written as version 1.
SCHEMA_VERSION = 2
SCHEMA_VERSION_CLASSIC = 1
SUPPORTED_SCHEMA_VERSIONS = (1, 2)
RELATIONS = ("root", *(str(r) for r in Relation))  # a root, or how it was derived
ARCHITECTURES = ("llama", "vit", "cnn", "mlp")
FORMATS = ("safetensors", "safetensors-sharded", "pt", "pth", "bin")
DTYPES = ("float32", "float16", "bfloat16", "int8")
CARD_STATUSES = ("correct", "missing", "wrong")
PICKLE_CONTAINERS = ("zip", "legacy")
FAMILY_KINDS = ("pair", "star", "chain", "deep", "bushy", "mixed")
MERGE_METHODS = ("linear", "slerp", "task-arithmetic", "ties", "dare")
#: Relations whose models are never used as a parent in the zoo.
LEAF_RELATIONS = (str(Relation.QUANTIZED), str(Relation.DUPLICATE))

_MODEL_KEYS: dict[str, type | tuple[type, ...]] = {
    "location": str,
    "name": str,
    "parents": list,
    "relation": str,
    "merge_weights": (list, type(None)),
    "family": str,
    "architecture": str,
    "format": str,
    "dtype": str,
    "recipe": dict,
    "card": dict,
}


def load_truth(zoo_dir: Path) -> dict[str, Any]:
    """Read and validate ``zoo_dir/truth.json``."""
    truth = json.loads((Path(zoo_dir) / "truth.json").read_text(encoding="utf-8"))
    validate_truth(truth)
    return truth


def _fail(msg: str) -> None:
    raise ValueError(f"invalid truth: {msg}")


def _check_location(loc: str, where: str) -> None:
    p = PurePosixPath(loc)
    if not loc or loc != loc.strip() or "\\" in loc or p.is_absolute() or ".." in p.parts:
        _fail(f"{where}: location {loc!r} must be a relative posix path inside the zoo")
    if str(p) != loc:
        _fail(f"{where}: location {loc!r} is not normalised (expected {str(p)!r})")


def _check_model(i: int, m: Any) -> str:
    if not isinstance(m, dict):
        _fail(f"models[{i}] must be an object, got {type(m).__name__}")
    for key, typ in _MODEL_KEYS.items():
        if key not in m:
            _fail(f"models[{i}] is missing required key {key!r}")
        if not isinstance(m[key], typ):
            _fail(f"models[{i}].{key} has type {type(m[key]).__name__}")
    loc = m["location"]
    where = f"model {loc!r}"
    _check_location(loc, where)
    for key, allowed in (
        ("relation", RELATIONS),
        ("architecture", ARCHITECTURES),
        ("format", FORMATS),
        ("dtype", DTYPES),
    ):
        if m[key] not in allowed:
            _fail(f"{where}: {key} {m[key]!r} not in {allowed}")
    if not all(isinstance(p, str) for p in m["parents"]):
        _fail(f"{where}: parents must be a list of location strings")
    if len(set(m["parents"])) != len(m["parents"]):
        _fail(f"{where}: parents contain duplicates")
    if loc in m["parents"]:
        _fail(f"{where}: a model cannot be its own parent")
    relation, parents, weights = m["relation"], m["parents"], m["merge_weights"]
    if relation == "root" and parents:
        _fail(f"{where}: relation 'root' must have no parents, has {parents}")
    if relation != "root" and not parents:
        _fail(f"{where}: only roots may have no parents (relation {relation!r})")
    if relation == "merge":
        if len(parents) < 2:
            _fail(f"{where}: a merge needs at least 2 parents, has {len(parents)}")
        if weights is None or len(weights) != len(parents):
            _fail(f"{where}: a merge needs one merge weight per parent")
        if not all(
            isinstance(x, int | float) and not isinstance(x, bool) and x > 0 for x in weights
        ):
            _fail(f"{where}: merge weights must be positive numbers, got {weights}")
    else:
        if weights is not None:
            _fail(f"{where}: merge_weights must be null for relation {relation!r}")
        if relation != "root" and len(parents) != 1:
            _fail(f"{where}: relation {relation!r} needs exactly 1 parent, has {len(parents)}")
    if "weight_files" in m and (
        not isinstance(m["weight_files"], list)
        or not all(isinstance(f, str) for f in m["weight_files"])
    ):
        _fail(f"{where}: weight_files must be a list of strings")
    if m.get("pickle_container") not in (None, *PICKLE_CONTAINERS):
        _fail(f"{where}: pickle_container must be null or one of {PICKLE_CONTAINERS}")
    _check_card(m, where)
    return loc


def _check_v2_model(m: dict[str, Any]) -> None:
    where = f"model {m['location']!r}"
    if m.get("family_kind") not in FAMILY_KINDS:
        _fail(f"{where}: family_kind {m.get('family_kind')!r} not in {FAMILY_KINDS}")
    if not isinstance(m.get("net"), dict):
        _fail(f"{where}: net must be an object (the family's network shape)")
    recipe = m["recipe"]
    if m["relation"] == "merge" and recipe.get("method") not in MERGE_METHODS:
        _fail(f"{where}: merge method {recipe.get('method')!r} not in {MERGE_METHODS}")


def _check_card(m: dict[str, Any], where: str) -> None:
    card = m["card"]
    if "declared_base_model" not in card or "card_status" not in card:
        _fail(f"{where}: card needs 'declared_base_model' and 'card_status'")
    declared, status = card["declared_base_model"], card["card_status"]
    if status not in CARD_STATUSES:
        _fail(f"{where}: card_status {status!r} not in {CARD_STATUSES}")
    if not (
        declared is None
        or isinstance(declared, str)
        or (isinstance(declared, list) and all(isinstance(d, str) for d in declared))
    ):
        _fail(f"{where}: declared_base_model must be null, a string or a list of strings")
    parents = m["parents"]
    truthful: Any = None if not parents else parents[0] if len(parents) == 1 else parents
    if status == "correct" and declared != truthful:
        _fail(f"{where}: card_status 'correct' but declared {declared!r} != parents {truthful!r}")
    if status == "missing" and declared is not None:
        _fail(f"{where}: card_status 'missing' but a base model {declared!r} is declared")
    if status == "wrong" and (declared is None or declared == truthful):
        _fail(f"{where}: card_status 'wrong' needs a declared base model other than the truth")


def validate_truth(truth: dict[str, Any]) -> None:
    """Raise ValueError naming the first problem if ``truth`` does not follow its schema."""
    if not isinstance(truth, dict):
        _fail(f"top level must be an object, got {type(truth).__name__}")
    for key, typ in (("schema_version", int), ("seed", int), ("size", str), ("models", list)):
        if key not in truth:
            _fail(f"missing top-level key {key!r}")
        if not isinstance(truth[key], typ) or isinstance(truth[key], bool):
            _fail(f"top-level {key!r} has type {type(truth[key]).__name__}")
    version = truth["schema_version"]
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        _fail(f"schema_version {version} unsupported (expected one of {SUPPORTED_SCHEMA_VERSIONS})")
    if version >= 2 and truth.get("plan") not in PLANS:
        _fail(f"top-level plan {truth.get('plan')!r} not in {PLANS}")
    models = truth["models"]
    if not models:
        _fail("models is empty")
    by_loc: dict[str, dict[str, Any]] = {}
    for i, m in enumerate(models):
        loc = _check_model(i, m)
        if version >= 2:
            _check_v2_model(m)
        if loc in by_loc:
            _fail(f"duplicate location {loc!r}")
        by_loc[loc] = m
    for loc, m in by_loc.items():
        for p in m["parents"]:
            if p not in by_loc:
                _fail(f"model {loc!r}: parent {p!r} is not in the zoo")
            if by_loc[p]["relation"] in LEAF_RELATIONS:
                _fail(f"model {loc!r}: parent {p!r} is a {by_loc[p]['relation']} copy (a leaf)")
            if by_loc[p]["architecture"] != m["architecture"]:
                _fail(f"model {loc!r}: parent {p!r} has a different architecture")
        declared = m["card"]["declared_base_model"]
        for d in [declared] if isinstance(declared, str) else declared or []:
            if m["card"]["card_status"] == "correct" and d not in by_loc:
                _fail(f"model {loc!r}: declared base model {d!r} is not in the zoo")
    _check_acyclic(by_loc)
    for loc, m in by_loc.items():
        base = m["recipe"].get("base") if m["relation"] == "merge" else None
        if base is not None and (
            base not in by_loc or by_loc[base]["family"] != by_loc[m["parents"][0]]["family"]
        ):
            _fail(f"model {loc!r}: merge base {base!r} is not a model of the merged family")
    for loc, m in by_loc.items():
        family = m["family"]
        if m["relation"] == "root":
            if family != loc:
                _fail(f"root {loc!r}: family must be its own location, got {family!r}")
        elif family != by_loc[m["parents"][0]]["family"]:
            _fail(f"model {loc!r}: family {family!r} differs from its first parent's family")


def _check_acyclic(by_loc: dict[str, dict[str, Any]]) -> None:
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    for start in by_loc:
        if state.get(start):
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        state[start] = 1
        while stack:
            node, i = stack[-1]
            parents = by_loc[node]["parents"]
            if i < len(parents):
                stack[-1] = (node, i + 1)
                nxt = parents[i]
                if state.get(nxt) == 1:
                    _fail(f"cycle through {nxt!r}")
                if not state.get(nxt):
                    state[nxt] = 1
                    stack.append((nxt, 0))
            else:
                state[node] = 2
                stack.pop()
