"""A synthetic index of any size, for the publishing benchmark and the site tests.

Families of very different sizes (one past the tree page size when there are enough
models), fans, chains, merges with two parents, quantized copies and duplicates, some
fine-tunes whose direction is uncertain; Hub and local models; cards that declare the right base, a wrong one or none; a few private and
gated models; and per-tensor statistics. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from heritage.index import IndexData, model_row, models_frame, table_frame, table_schema
from heritage.lineage.types import Direction, Relation

ORGS = (
    "northwind", "lumenlabs", "quantfolk", "mergemonkey", "sweepco", "alice", "bytebard",
    "longrun", "mirror-hub", "deepfield", "tinyworks", "openmeadow", "kestrel-ai", "polyglot",
    "riverbank", "sunbeam", "nimbus", "ironclad", "fable", "orchard",
)  # fmt: skip
BASES = (
    "llama", "mistral", "qwen", "phi", "gemma", "falcon", "bert", "vit", "t5", "whisper",
    "olmo", "pythia", "gpt2", "deberta", "clip", "mamba",
)  # fmt: skip
SUFFIXES = (
    "instruct", "chat", "code", "math", "sft", "dpo", "lora", "int8", "awq", "gguf-q4",
    "medical", "legal", "de", "ja", "long", "v2", "distilled", "rp", "uncensored", "merged",
)  # fmt: skip
# How often a non-root model gets each relation; the rest are duplicates.
RELATIONS = (
    (Relation.FINETUNE, 0.6),
    (Relation.QUANTIZED, 0.15),
    (Relation.ADAPTER, 0.1),
    (Relation.MERGE, 0.08),
)
UNCERTAIN_BELOW = 0.45  # fine-tunes less confident than this have an uncertain direction
ARCHS = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen": "Qwen2ForCausalLM",
    "phi": "PhiForCausalLM",
    "gemma": "GemmaForCausalLM",
    "falcon": "FalconForCausalLM",
    "bert": "BertModel",
    "vit": "ViTForImageClassification",
    "t5": "T5ForConditionalGeneration",
    "whisper": "WhisperForConditionalGeneration",
    "olmo": "OlmoForCausalLM",
    "pythia": "GPTNeoXForCausalLM",
    "gpt2": "GPT2LMHeadModel",
    "deberta": "DebertaV2Model",
    "clip": "CLIPModel",
    "mamba": "MambaForCausalLM",
}
START = datetime(2024, 1, 1)


def family_sizes(n: int, rng: random.Random, big: int = 450) -> list[int]:
    """Heavy-tailed family sizes summing to ``n``; one family of ``big`` if n allows."""
    sizes = [big] if n >= 2 * big else []
    left = n - sum(sizes)
    while left > 0:
        size = min(left, max(1, int(rng.paretovariate(1.3))))
        sizes.append(size)
        left -= size
    return sizes


def _relation(rng: random.Random) -> Relation:
    r = rng.random()
    for name, p in RELATIONS:
        if r < p:
            return name
        r -= p
    return Relation.DUPLICATE


def synthetic_index(
    n_models: int = 10_000, seed: int = 0, tensors_per_model: int = 24, big_family: int = 450
) -> IndexData:
    """An index of ``n_models`` models in families, with edges, runs and tensor statistics."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    families: list[dict[str, Any]] = []
    tensors: dict[str, list] = {c: [] for c in table_schema("tensors").names()}
    used: set[str] = set()

    def new_name(base: str, org: str, parent: str | None) -> str:
        stem = parent.split("/", 1)[1] if parent else f"{base}-{rng.choice([1, 2, 3, 7, 13])}b"
        while True:
            name = f"{org}/{stem}-{rng.choice(SUFFIXES)}" if parent else f"{org}/{stem}"
            if len(name) > 70:
                name = f"{org}/{base}-{rng.choice(SUFFIXES)}-{rng.randrange(10**6)}"
            if name not in used:
                used.add(name)
                return name
            stem = f"{stem}-{rng.randrange(100)}"

    for fam_no, size in enumerate(family_sizes(n_models, rng, big_family)):
        base = rng.choice(BASES)
        fam_id = f"fam-{fam_no:05d}"
        arch = f"{rng.getrandbits(64):016x}"
        n_layers = rng.choice([2, 6, 12, 24, 32, 40, 80])
        n_params = int(10 ** rng.uniform(6, 10.8))
        created = START + timedelta(days=rng.uniform(0, 600))
        members: list[str] = []
        for k in range(size):
            org = rng.choice(ORGS)
            parents: list[str] = []
            relation: Relation | None = None
            if k:
                # Mostly near the root (fans), sometimes deep (chains).
                pick = members[int(len(members) * rng.random() ** 2.5)]
                parents = [pick]
                relation = _relation(rng)
                if relation == Relation.MERGE and len(members) > 1:
                    other = rng.choice(members)
                    if other != pick:
                        parents.append(other)
                    else:
                        relation = Relation.FINETUNE
            name = new_name(base, org, parents[0] if parents else None)
            members.append(name)
            created += timedelta(days=rng.uniform(0, 4))
            hub = rng.random() < 0.7
            declared: list[str] | None = None
            if parents:
                r = rng.random()
                declared = [parents[0]] if r < 0.7 else ["someone/else-base"] if r < 0.8 else None
            n_t = max(2, int(rng.gauss(tensors_per_model, tensors_per_model / 4)))
            params = n_params if relation != Relation.ADAPTER else n_params + n_params // 200
            rows.append(
                model_row(
                    name,
                    name=name,
                    source="hub" if hub else "local",
                    location=name if hub else f"models/{name}",
                    revision=f"{rng.getrandbits(160):040x}" if hub else None,
                    format=rng.choice(["safetensors", "safetensors-sharded", "pytorch-zip"]),
                    files=[
                        {
                            "name": "model.safetensors",
                            "bytes": params * 2,
                            "sha256": f"{rng.getrandbits(256):064x}",
                            "mtime": None,
                        }
                    ],
                    bytes=params * 2,
                    sha256=f"{rng.getrandbits(256):064x}",
                    n_params=params,
                    n_tensors=n_t,
                    n_layers=n_layers,
                    dtypes=["BF16"] if relation != Relation.QUANTIZED else ["I8", "F16"],
                    structure_hash=f"{rng.getrandbits(256):064x}",
                    family_id=fam_id,
                    description=f"A **{base}** model by *{org}*. See [the card](https://huggingface.co/{name}).",
                    declared_base_models=declared,
                    created_at=created,
                    indexed_at=datetime(2026, 9, 1) + timedelta(days=rng.uniform(0, 85)),
                    status="ok",
                    config={"architectures": [ARCHS[base]], "model_type": base},
                    card={"license": rng.choice(["mit", "apache-2.0", "llama3"]), "tags": [base]},
                    private=rng.random() < 0.02,
                    gated=rng.random() < 0.02,
                )
            )
            for i, parent in enumerate(parents):
                conf = round(rng.uniform(0.35, 1.0), 4)
                uncertain = relation == Relation.FINETUNE and conf < UNCERTAIN_BELOW
                edges.append(
                    {
                        "parent_id": parent,
                        "child_id": name,
                        "relation": relation.value,
                        "direction": (
                            Direction.UNCERTAIN if uncertain else Direction.INFERRED
                        ).value,
                        "confidence": conf,
                        "distance": round(rng.uniform(0, 0.5), 6),
                        "method": "synthetic/1",
                        "weight": (0.5 if i == 0 else 0.5) if relation == Relation.MERGE else None,
                    }
                )
            for t in range(n_t):
                layer, kind = divmod(t, 8)
                tensors["model_id"].append(name)
                tensors["name"].append(f"model.layers.{layer}.w{kind}.weight")
                tensors["position"].append(t)
                tensors["dtype"].append("BF16")
                tensors["shape"].append([4096, 4096])
                tensors["n_params"].append(4096 * 4096)
                tensors["mean"].append(rng.gauss(0, 1e-3))
                tensors["std"].append(rng.uniform(0.01, 0.05))
                tensors["kurtosis"].append(rng.gauss(0, 0.5))
                tensors["rms"].append(rng.uniform(0.01, 0.05))
                tensors["absmax"].append(rng.uniform(0.1, 1.0))
                tensors["unique_ratio"].append(rng.uniform(0.5, 1.0))
        families.append(
            {
                "family_id": fam_id,
                "architecture": arch,
                "n_models": size,
                "root_model_id": members[0],
                "confidence": round(rng.uniform(0.6, 1.0), 4),
                "root_confidence": round(rng.uniform(0.5, 1.0), 4),
            }
        )
    runs = table_frame(
        "runs",
        [
            {
                "run_id": f"run-{i}",
                "flow": "index-local" if i % 2 else "index-hub",
                "started_at": datetime(2026, 9, 1) + timedelta(days=20 * i),
                "finished_at": datetime(2026, 9, 1) + timedelta(days=20 * i, minutes=42),
                "source": "synthetic",
                "n_seen": n_models,
                "n_added": n_models // 5,
                "n_changed": 0,
                "n_unchanged": 0,
                "n_failed": 0,
                "n_edges_changed": 0,
                "bytes_read": 0,
                "errors": [],
                "status": "ok",
            }
            for i in range(5)
        ],
    )
    return IndexData(
        models=models_frame(rows),
        tensors=pl.DataFrame(tensors, schema=table_schema("tensors")),
        families=table_frame("families", families),
        edges=table_frame("edges", edges),
        runs=runs,
    )
