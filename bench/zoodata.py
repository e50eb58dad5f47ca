"""Load a zoo for the lineage benchmarks: fingerprints under hashed names, and truth.

Names are replaced by hashes of the location so nothing downstream can read them;
fingerprints are cached in .cache/prints/ (keyed by the zoo's truth.json and settings).
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

from heritage.fingerprint import Fingerprint, FingerprintSettings, fingerprint
from heritage.formats import open_checkpoint
from heritage.lineage import TruthModel
from heritage.zoo import load_truth

FULL = FingerprintSettings(rows=10**9, cols=10**9)
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "prints"


def hashed(location: str) -> str:
    return "m-" + hashlib.sha256(location.encode()).hexdigest()[:12]


@dataclass
class ZooData:
    folder: Path
    label: str
    prints: dict[str, Fingerprint]  # hashed id -> fingerprint
    truth: dict[str, TruthModel]
    order: dict[str, int]  # build order (parents first): stands in for upload times
    records: dict[str, dict]  # hashed id -> the truth.json record


def load_zoo(folder: Path, full: bool = False) -> ZooData:
    folder = Path(folder)
    truth = load_truth(folder)
    records = truth["models"]
    tm = {
        hashed(m["location"]): TruthModel(
            hashed(m["location"]),
            tuple(hashed(p) for p in m["parents"]),
            m["relation"],
            m["family"],
        )
        for m in records
    }
    raw = (folder / "truth.json").read_bytes()
    key = hashlib.sha256(
        raw + str(folder.resolve()).encode() + (b"full" if full else b"")
    ).hexdigest()[:16]
    cache = CACHE / f"{folder.name}-{key}.pkl"
    if cache.exists():
        prints = pickle.loads(cache.read_bytes())
    else:
        prints = {}
        for m in records:
            with open_checkpoint(folder / m["location"]) as ckpt:
                prints[hashed(m["location"])] = fingerprint(ckpt, FULL if full else None)
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(prints))
        tmp.rename(cache)
    label = f"{truth.get('size', '?')} seed {truth.get('seed', '?')}"
    if truth.get("plan"):
        label = f"{truth['plan']} {label}"
    return ZooData(
        folder,
        label,
        prints,
        tm,
        {hashed(m["location"]): k for k, m in enumerate(records)},
        {hashed(m["location"]): m for m in records},
    )


def ancestors(truth: dict[str, TruthModel]) -> dict[str, set[str]]:
    """Every model's ancestors through all its parents (copies included)."""
    memo: dict[str, set[str]] = {}

    def walk(m: str) -> set[str]:
        if m not in memo:
            out: set[str] = set()
            for p in truth[m].parents:
                out |= {p} | walk(p)
            memo[m] = out
        return memo[m]

    for m in truth:
        walk(m)
    return memo
