"""Model cards: the YAML front matter of a ``README.md``, read defensively.

A card is evidence written by whoever uploaded the model, so it is parsed as hostile
input: at most :data:`CARD_SIZE_LIMIT` bytes are read, YAML goes through
``yaml.safe_load`` only, anything but a mapping is ignored, and alias-heavy documents
(which would expand enormously when re-encoded as JSON) are refused. Every ignored part
comes back as a one-line ``problem`` so a crawl can log why.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CARD_SIZE_LIMIT = 256 * 1024  # bytes of README.md read, front matter included
DESCRIPTION_LIMIT = 1000  # characters kept of a description
MAX_NODES = 20_000  # YAML values visited before a card is called too complex
_FENCE = re.compile(r"^---[ \t]*\r?$", re.MULTILINE)


@dataclass
class ModelCard:
    """What a card says about its model; every field is optional."""

    name: str | None = None
    description: str | None = None
    base_models: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)  # JSON-safe front matter
    problems: list[str] = field(default_factory=list)  # why parts were ignored


def _walk_size(value: Any, budget: int) -> int:
    """Count values reachable from ``value``, stopping past ``budget`` (also stops cycles)."""
    seen = 0
    stack = [value]
    while stack:
        item = stack.pop()
        seen += 1
        if seen > budget:
            return seen
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set):
            stack.extend(item)
    return seen


def _json_safe(value: Any) -> Any:
    """Round-trip through JSON so dates and odd scalars become plain JSON values."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def _split_front_matter(text: str) -> tuple[str | None, str, bool]:
    """(front matter or None, body, whether a front matter was opened but never closed)."""
    first, sep, rest = text.partition("\n")
    if first.strip() != "---" or not sep:
        return None, text, False
    end = _FENCE.search(rest)
    if end is None:
        return None, text, True
    return rest[: end.start()], rest[end.end() :], False


def _first_paragraph(body: str) -> str | None:
    """The first prose paragraph of a markdown body (headings, code and HTML skipped)."""
    para: list[str] = []
    in_code = False
    for raw in body.splitlines():
        line = raw.strip()
        if line.startswith("```"):
            in_code = not in_code
            if para:
                break
            continue
        if in_code:
            continue
        if not line:
            if para:
                break
            continue
        if line.startswith(("#", "<", "|", "![", "---")):
            if para:
                break
            continue
        para.append(line)
    text = " ".join(para).strip()
    return text[:DESCRIPTION_LIMIT] or None


def _text_field(meta: dict[str, Any], key: str, problems: list[str]) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{key} is not a non-empty string; ignored")
        return None
    return value.strip()


def _base_models(value: Any, problems: list[str]) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
        problems.append("base_model is neither a string nor a list of strings; ignored")
        return []
    out: list[str] = []
    for v in items:
        v = v.strip()
        if v and v not in out:
            out.append(v)
    return out


def parse_card(text: str) -> ModelCard:
    """Parse a card's text: front matter fields, else the body's first paragraph."""
    card = ModelCard()
    front, body, unclosed = _split_front_matter(text)
    meta: Any = None
    if unclosed:
        card.problems.append("front matter has no closing '---'; ignored")
    if front is not None:
        try:
            meta = yaml.safe_load(front)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 2}" if mark is not None else ""
            card.problems.append(f"front matter is not valid YAML{where}; ignored")
            meta = None
        except RecursionError:
            card.problems.append("front matter is nested too deeply; ignored")
            meta = None
    if meta is not None and not isinstance(meta, dict):
        card.problems.append(f"front matter is a {type(meta).__name__}, not a mapping; ignored")
        meta = None
    if meta is not None and _walk_size(meta, MAX_NODES) > MAX_NODES:
        card.problems.append(f"front matter has over {MAX_NODES} values; ignored")
        meta = None
    if meta:
        meta = {str(k): v for k, v in meta.items()}
        card.metadata = _json_safe(meta)
        card.name = _text_field(meta, "name", card.problems) or _text_field(
            meta, "model_name", card.problems
        )
        card.description = _text_field(meta, "description", card.problems)
        card.base_models = _base_models(meta.get("base_model"), card.problems)
    if card.description is None:
        card.description = _first_paragraph(body)
    elif len(card.description) > DESCRIPTION_LIMIT:
        card.description = card.description[:DESCRIPTION_LIMIT]
    return card


def read_card(path: Path, limit: int = CARD_SIZE_LIMIT) -> ModelCard:
    """Read and parse ``path`` (a README.md), looking at no more than ``limit`` bytes.

    A card that cannot be read gives an empty card with the reason in ``problems``;
    a card is never a reason to fail a model.
    """
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        return ModelCard(problems=[f"cannot read model card: {exc.strerror or exc}"])
    problems = []
    if len(raw) > limit:
        raw = raw[:limit]
        problems.append(f"model card is over {limit // 1024} KB; only the start was read")
    text = raw.decode("utf-8", errors="replace")
    card = parse_card(text)
    card.problems[:0] = problems
    return card
