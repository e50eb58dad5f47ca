"""Model zoo generator: families of tiny models made by real CPU training, plus ground truth.

Public API::

    build_zoo(out_dir, size="small", seed=0, progress=None, overwrite=False, plan="classic")
        -> truth dict (also truth.json)
    validate_truth(truth) -> None          # raises ValueError on schema violations
    load_truth(zoo_dir) -> truth dict      # read + validate zoo_dir/truth.json
    cached_zoo(size="small", seed=0, root=None, plan="classic") -> Path
        # build once into <repo>/.cache, then reuse

Plans (``heritage.zoo.plan.make_plan(size, seed, plan)``): ``classic`` grows the same tree
for every seed (only training noise differs); ``random`` draws the families, network
shapes, recipes, merges, adapters and copies from the seed (``heritage.zoo.randplan``).

The truth schema is documented in ``heritage/zoo/SCHEMA.md``. Torch is only imported when a
zoo is built, so validating truth files stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from heritage.zoo.truth import RELATIONS, SCHEMA_VERSION, load_truth, validate_truth

if TYPE_CHECKING:
    from heritage.zoo.build import build_zoo
    from heritage.zoo.cache import cached_zoo

__all__ = ["RELATIONS", "SCHEMA_VERSION", "build_zoo", "cached_zoo", "load_truth", "validate_truth"]


def __getattr__(name: str) -> Any:
    # Lazy: importing torch costs seconds and is only needed to build.
    if name == "build_zoo":
        from heritage.zoo.build import build_zoo

        return build_zoo
    if name == "cached_zoo":
        from heritage.zoo.cache import cached_zoo

        return cached_zoo
    raise AttributeError(f"module 'heritage.zoo' has no attribute {name!r}")
