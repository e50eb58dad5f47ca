"""Which models each split of the real-weights zoo holds, and how each one is made.

Every real base gets the same kinds of descendants (the numbers differ per split):

* fine-tunes of the base (different tasks, optimisers, learning rates, step counts);
* second-generation fine-tunes (a fine-tune of a fine-tune; in test also a third generation);
* one run saved as a chain of checkpoints (checkpoint k is the parent of checkpoint k+1);
* copies: a byte-identical duplicate, a bfloat16 and a float16 re-save (leaves);
* a linear merge of two fine-tunes;
* a hard negative family of the same architecture that does not descend from the base.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

#: The op of each spec and the truth relation it gives.
RELATION_OF_OP = {
    "import": "root",
    "scratch": "root",
    "finetune": "finetune",
    "checkpoint": "finetune",
    "cast": "quantized",
    "dup": "duplicate",
    "merge": "merge",
}

#: Per real base: net family (nets.py), truth-schema architecture, real architecture.
BASES: dict[str, tuple[str, str, str]] = {
    "minilm-l6": ("bert", "vit", "bert-minilm-l6-h384"),
    "minilm-l3": ("bert", "vit", "bert-minilm-l3-h384"),
    "silero-vad": ("vad", "cnn", "vad-cnn-lstm"),
    "akiki-vad": ("vad", "cnn", "vad-cnn-gru"),
    "akiki-candidate": ("vad", "cnn", "vad-cnn-gru"),
    "mtcnn-onet": ("onet", "cnn", "mtcnn-onet"),
}

SPLIT_SEEDS = {"dev": 0, "test": 1}


def mix_seed(*parts: object) -> int:
    """A stable 31-bit seed from arbitrary parts."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:4], "little") >> 1


@dataclass
class Spec:
    location: str
    base: str  # key of BASES (the architecture this model has)
    op: str
    parents: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    card_status: str = "correct"

    @property
    def relation(self) -> str:
        return RELATION_OF_OP[self.op]

    @property
    def name(self) -> str:
        return self.location.rsplit("/", 1)[-1]

    @property
    def net(self) -> str:
        return BASES[self.base][0]


def _ft(loc: str, base: str, parent: str, task: dict, lr: float, steps: int, **kw: Any) -> Spec:
    card = kw.pop("card_status", "correct")
    params = {"task": task, "lr": lr, "steps": steps, **kw}
    return Spec(loc, base, "finetune", [parent], params, card_status=card)


def _chain(
    prefix: str, base: str, parent: str, task: dict, lr: float, per: int, count: int, **kw: Any
) -> list[Spec]:
    out = []
    prev = parent
    for i in range(count):
        loc = f"{prefix}-step{per * (i + 1)}"
        params = {"task": task, "lr": lr, "per": per, "count": count, "index": i, "run": prefix}
        out.append(Spec(loc, base, "checkpoint", [prev], {**params, **kw}))
        prev = loc
    return out


def _copies(base: str, dup_of: str, bf16_of: str, fp16_of: str) -> list[Spec]:
    return [
        Spec(f"{dup_of}-mirror", base, "dup", [dup_of], card_status="missing"),
        Spec(f"{bf16_of}-bf16", base, "cast", [bf16_of], dtype="bfloat16"),
        Spec(f"{fp16_of}-fp16", base, "cast", [fp16_of], dtype="float16"),
    ]


def _merge(loc: str, base: str, a: str, b: str, wa: float) -> Spec:
    return Spec(loc, base, "merge", [a, b], {"weights": [wa, round(1 - wa, 6)]})


def _bert(d: int, objective: str = "mlm", **kw: Any) -> dict:
    return {"objective": objective, "domain": d, "batch": 8, "length": 32, **kw}


def _vad(**kw: Any) -> dict:
    return {"batch": 16, "steps_per_clip": 16, **kw}


def _face(**kw: Any) -> dict:
    return {"batch": 32, **kw}


def _dev() -> list[Spec]:
    L6 = "sentence-transformers/all-MiniLM-L6-v2"
    SV = "snakers4/silero-vad-16k"
    ON = "timesler/mtcnn-onet"
    b = "minilm-l6"
    specs = [
        Spec(L6, b, "import", params={"source": b}),
        _ft("lexa-ai/minilm-l6-legal-mlm", b, L6, _bert(11), 5e-5, 40, optimizer="adamw"),
        _ft(
            "qa-labs/minilm-l6-faq-pairs",
            b,
            L6,
            _bert(12, "contrastive"),
            1e-4,
            40,
            optimizer="adam",
            schedule="constant",
        ),
        _ft(
            "medtext/minilm-l6-clinical",
            b,
            L6,
            _bert(13),
            2e-5,
            60,
            optimizer="adamw",
            schedule="cosine",
            card_status="missing",
        ),
        _ft(
            "searchco/minilm-l6-retrieval",
            b,
            L6,
            _bert(14, "contrastive"),
            8e-5,
            40,
            optimizer="adamw",
            opt={"betas": (0.9, 0.98), "wd": 0.05},
        ),
        _ft(
            "lexa-ai/minilm-l6-legal-mlm-contracts",
            b,
            "lexa-ai/minilm-l6-legal-mlm",
            _bert(15),
            3e-5,
            30,
            optimizer="adamw",
        ),
        _ft(
            "qa-labs/minilm-l6-faq-pairs-v2",
            b,
            "qa-labs/minilm-l6-faq-pairs",
            _bert(16, "contrastive"),
            8e-5,
            30,
            optimizer="adam",
        ),
        *_chain(
            "runs/minilm-l6-news-mlm",
            b,
            L6,
            _bert(17),
            4e-5,
            20,
            3,
            optimizer="adamw",
            schedule="constant",
        ),
        *_copies(b, L6, "lexa-ai/minilm-l6-legal-mlm", "qa-labs/minilm-l6-faq-pairs"),
        _merge(
            "mergekit-fan/minilm-l6-clinical-retrieval",
            b,
            "medtext/minilm-l6-clinical",
            "searchco/minilm-l6-retrieval",
            0.5,
        ),
        # hard negative: the same architecture, random init, brief MLM from scratch
        Spec(
            "scratch-lab/minilm-l6-from-scratch",
            b,
            "scratch",
            params={
                "task": _bert(18),
                "lr": 5e-4,
                "steps": 60,
                "optimizer": "adamw",
                "init": "bert-normal-0.02",
            },
        ),
        _ft(
            "scratch-lab/minilm-l6-from-scratch-ft",
            b,
            "scratch-lab/minilm-l6-from-scratch",
            _bert(19, "contrastive"),
            1e-4,
            20,
            optimizer="adamw",
        ),
    ]
    b = "silero-vad"
    specs += [
        Spec(SV, b, "import", params={"source": b}),
        _ft(
            "callcenter/silero-vad-phone",
            b,
            SV,
            _vad(noise=0.05, hum=0.05),
            1e-4,
            150,
            optimizer="adamw",
        ),
        _ft(
            "podcastify/silero-vad-studio",
            b,
            SV,
            _vad(noise=0.01, f0=(80.0, 180.0)),
            5e-5,
            200,
            optimizer="adam",
        ),
        _ft(
            "kidsvoice/silero-vad-children",
            b,
            SV,
            _vad(f0=(200.0, 400.0), tones=0.05),
            1e-4,
            120,
            optimizer="adamw",
            schedule="cosine",
        ),
        _ft(
            "factory-ai/silero-vad-noisy",
            b,
            SV,
            _vad(noise=0.1, brown=0.8),
            8e-5,
            150,
            optimizer="adamw",
            opt={"betas": (0.9, 0.98)},
            card_status="missing",
        ),
        _ft(
            "callcenter/silero-vad-phone-eu",
            b,
            "callcenter/silero-vad-phone",
            _vad(noise=0.05, hum=0.08),
            1e-4,
            150,
            optimizer="adamw",
        ),
        _ft(
            "podcastify/silero-vad-studio-music",
            b,
            "podcastify/silero-vad-studio",
            _vad(noise=0.01, tones=0.1),
            8e-5,
            100,
            optimizer="adam",
        ),
        *_chain(
            "runs/silero-vad-meetings",
            b,
            SV,
            _vad(noise=0.03, switch=0.25),
            1e-4,
            60,
            3,
            optimizer="adamw",
            schedule="constant",
        ),
        *_copies(b, SV, "podcastify/silero-vad-studio", "callcenter/silero-vad-phone"),
        _merge(
            "mergekit-fan/silero-vad-children-noisy",
            b,
            "kidsvoice/silero-vad-children",
            "factory-ai/silero-vad-noisy",
            0.5,
        ),
        Spec(
            "scratch-lab/silero-vad-arch-from-scratch",
            b,
            "scratch",
            params={
                "task": _vad(noise=0.02),
                "lr": 1e-3,
                "steps": 200,
                "optimizer": "adamw",
                "init": "torch-default",
            },
        ),
        _ft(
            "scratch-lab/silero-vad-arch-from-scratch-ft",
            b,
            "scratch-lab/silero-vad-arch-from-scratch",
            _vad(noise=0.06),
            1e-4,
            80,
        ),
    ]
    b = "mtcnn-onet"
    specs += [
        Spec(ON, b, "import", params={"source": b}),
        _ft("faceops/onet-webcam", b, ON, _face(noise=0.1), 2e-5, 60, optimizer="adamw"),
        _ft(
            "faceops/onet-lowlight",
            b,
            ON,
            _face(noise=0.2, skin=(0.5, 0.4, 0.35)),
            1e-5,
            80,
            optimizer="adam",
        ),
        _ft(
            "visionkit/onet-crowd",
            b,
            ON,
            _face(jitter=9.0),
            3e-5,
            40,
            optimizer="adamw",
            schedule="cosine",
        ),
        _ft("faceops/onet-webcam-hd", b, "faceops/onet-webcam", _face(noise=0.05), 1e-5, 50),
        *_chain(
            "runs/onet-selfies",
            b,
            ON,
            _face(jitter=3.0),
            1e-5,
            25,
            3,
            optimizer="adam",
            schedule="constant",
        ),
        *_copies(b, "visionkit/onet-crowd", ON, "faceops/onet-lowlight"),
        _merge(
            "mergekit-fan/onet-webcam-lowlight",
            b,
            "faceops/onet-webcam",
            "faceops/onet-lowlight",
            0.6,
        ),
        Spec(
            "scratch-lab/onet-arch-from-scratch",
            b,
            "scratch",
            params={
                "task": _face(),
                "lr": 1e-3,
                "steps": 150,
                "optimizer": "adamw",
                "init": "torch-default",
            },
        ),
    ]
    return specs


def _test() -> list[Spec]:
    L3 = "sentence-transformers/paraphrase-MiniLM-L3-v2"
    AK = "akiki-ai/akiki-vad"
    AC = "akiki-ai/akiki-vad-candidate-1"
    b = "minilm-l3"
    specs = [
        Spec(L3, b, "import", params={"source": b}),
        _ft(
            "docsearch/minilm-l3-manuals",
            b,
            L3,
            _bert(21, "contrastive"),
            1e-4,
            50,
            optimizer="adamw",
        ),
        _ft(
            "shopwise/minilm-l3-products-mlm",
            b,
            L3,
            _bert(22),
            3e-5,
            60,
            optimizer="adam",
            schedule="cosine",
        ),
        _ft(
            "finlp/minilm-l3-filings",
            b,
            L3,
            _bert(23),
            6e-5,
            40,
            optimizer="adamw",
            opt={"betas": (0.9, 0.98), "wd": 0.1},
        ),
        _ft(
            "eduqa/minilm-l3-quiz-pairs",
            b,
            L3,
            _bert(24, "contrastive"),
            8e-5,
            60,
            optimizer="adam",
            card_status="missing",
        ),
        _ft(
            "helpdesk/minilm-l3-tickets",
            b,
            L3,
            _bert(25),
            1e-5,
            80,
            optimizer="adamw",
            schedule="constant",
        ),
        _ft(
            "docsearch/minilm-l3-manuals-de",
            b,
            "docsearch/minilm-l3-manuals",
            _bert(26),
            4e-5,
            40,
            optimizer="adamw",
        ),
        _ft(
            "docsearch/minilm-l3-manuals-de-medical",
            b,
            "docsearch/minilm-l3-manuals-de",
            _bert(27, "contrastive"),
            8e-5,
            40,
            optimizer="adamw",
        ),
        _ft(
            "finlp/minilm-l3-filings-10k",
            b,
            "finlp/minilm-l3-filings",
            _bert(28),
            2e-5,
            40,
            optimizer="adam",
        ),
        *_chain(
            "runs/minilm-l3-wiki-pairs",
            b,
            L3,
            _bert(29, "contrastive"),
            1e-4,
            25,
            3,
            optimizer="adamw",
            schedule="constant",
        ),
        *_copies(b, "shopwise/minilm-l3-products-mlm", L3, "finlp/minilm-l3-filings"),
        _merge(
            "mergekit-fan/minilm-l3-manuals-quiz",
            b,
            "docsearch/minilm-l3-manuals",
            "eduqa/minilm-l3-quiz-pairs",
            0.7,
        ),
        Spec(
            "scratch-lab/minilm-l3-from-scratch",
            b,
            "scratch",
            params={
                "task": _bert(30),
                "lr": 3e-4,
                "steps": 80,
                "optimizer": "adam",
                "init": "bert-normal-0.02",
            },
        ),
        _ft(
            "scratch-lab/minilm-l3-from-scratch-ft",
            b,
            "scratch-lab/minilm-l3-from-scratch",
            _bert(31),
            2e-5,
            30,
        ),
    ]
    b = "akiki-vad"
    specs += [
        Spec(AK, b, "import", params={"source": b}),
        _ft(
            "voicebox/akiki-vad-far-field",
            b,
            AK,
            _vad(noise=0.08, brown=0.9),
            6e-5,
            150,
            optimizer="adamw",
        ),
        _ft("meetly/akiki-vad-meetings", b, AK, _vad(switch=0.3), 1e-4, 120, optimizer="adam"),
        _ft(
            "karaoke-ai/akiki-vad-singing",
            b,
            AK,
            _vad(f0=(150.0, 500.0), tones=0.1),
            4e-5,
            200,
            optimizer="adamw",
            schedule="cosine",
            card_status="missing",
        ),
        _ft(
            "voicebox/akiki-vad-far-field-car",
            b,
            "voicebox/akiki-vad-far-field",
            _vad(noise=0.1, hum=0.1),
            5e-5,
            100,
            optimizer="adamw",
        ),
        _ft(
            "voicebox/akiki-vad-far-field-car-ev",
            b,
            "voicebox/akiki-vad-far-field-car",
            _vad(noise=0.06, hum=0.03),
            6e-5,
            100,
            optimizer="adam",
        ),
        *_chain(
            "runs/akiki-vad-radio",
            b,
            AK,
            _vad(noise=0.04, tones=0.03),
            8e-5,
            50,
            3,
            optimizer="adamw",
            schedule="constant",
        ),
        *_copies(b, "meetly/akiki-vad-meetings", "voicebox/akiki-vad-far-field", AK),
        _merge(
            "mergekit-fan/akiki-vad-meetings-singing",
            b,
            "meetly/akiki-vad-meetings",
            "karaoke-ai/akiki-vad-singing",
            0.4,
        ),
    ]
    # hard negative: another training run of the same architecture (its own random init)
    b = "akiki-candidate"
    specs += [
        Spec(AC, b, "import", params={"source": b}),
        _ft(
            "voicebox/akiki-vad-candidate-far-field",
            b,
            AC,
            _vad(noise=0.08, brown=0.9),
            6e-5,
            150,
            optimizer="adamw",
        ),
        _ft(
            "meetly/akiki-vad-candidate-meetings",
            b,
            AC,
            _vad(switch=0.3),
            1e-4,
            120,
            optimizer="adam",
        ),
        Spec(f"{AC}-bf16", b, "cast", [AC], dtype="bfloat16"),
    ]
    return specs


def make_plan(split: str) -> list[Spec]:
    """The specs of one split, parents always before children."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r} (dev or test)")
    specs = _dev() if split == "dev" else _test()
    seen: set[str] = set()
    for s in specs:
        missing = [p for p in s.parents if p not in seen]
        if missing or s.location in seen:
            raise AssertionError(f"bad plan order at {s.location}: {missing}")
        seen.add(s.location)
    return specs
