"""The index as the site sees it: public models, their lineage, families and statistics.

Everything a page needs is computed once here (parents, children, the path to the family
root, agreement with the declared base model) so rendering is a plain walk over objects.
Private and gated models are dropped before anything else, together with every edge that
touches them, so nothing about them reaches a page, a JSON file or a count.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from heritage.errors import BadCheckpoint
from heritage.formats import peft
from heritage.index import connect_readonly
from heritage.lineage.types import Direction
from heritage.publish.slugs import slug

N_COLOURS = 10  # family badge colours (CSS classes fc0..fc9)
TENSOR_COLUMNS = (
    "name",
    "dtype",
    "shape",
    "n_params",
    "mean",
    "std",
    "kurtosis",
    "rms",
    "absmax",
    "unique_ratio",
)


@dataclass(eq=False, slots=True)
class Edge:
    """One inferred derivation, parent -> child, between two published models."""

    parent: Model
    child: Model
    relation: str
    confidence: float | None
    distance: float | None
    method: str | None
    weight: float | None
    # inferred, or uncertain: the weights cannot tell which end is the parent
    direction: str = Direction.INFERRED.value
    # quantized copies: True proven by re-rounding the parent, False unfaithful to it
    verified: bool | None = None

    @property
    def uncertain(self) -> bool:
        """True when the weights could not tell which of the two models is the parent."""
        return self.direction == Direction.UNCERTAIN


@dataclass(eq=False, slots=True)
class Model:
    """One published model with everything its page shows."""

    id: str
    slug: str
    name: str
    source: str | None
    location: str | None
    revision: str | None
    format: str | None
    files: list[dict[str, Any]]
    bytes: int | None
    sha256: str | None
    n_params: int | None
    n_tensors: int | None
    n_layers: int | None
    dtypes: list[str]
    structure_hash: str | None
    family_id: str | None
    description: str | None
    declared: list[str]
    created_at: datetime | None
    indexed_at: datetime | None
    status: str | None
    error: str | None
    config: Any
    card: Any
    private: bool
    gated: bool
    architecture: str = "unknown"
    family: Family | None = None
    parents: list[Edge] = field(default_factory=list)
    children: list[Edge] = field(default_factory=list)
    # agrees, disagrees, unknown_base, unverified, compatible, incompatible or proposed
    # (see the declared_vs_inferred view)
    agreement: str | None = None
    matched: list[str] = field(default_factory=list)
    declared_ids: list[str] = field(default_factory=list)  # published models the bases name

    @property
    def date(self) -> datetime | None:
        """The date the catalog sorts and filters on: creation, else indexing."""
        return self.created_at or self.indexed_at

    @property
    def primary(self) -> Edge | None:
        """The most confident parent edge, the one the family tree is drawn along."""
        return self.parents[0] if self.parents else None

    @property
    def proposed(self) -> Edge | None:
        """The parent edge the weights propose as base, unless the declared base agrees."""
        return self.primary if self.agreement not in (None, "agrees") else None

    @property
    def relation(self) -> str:
        """How this model relates to its primary parent; ``root`` for a family root."""
        if self.parents:
            return self.parents[0].relation
        return "root" if self.family is not None else ""

    @property
    def hub_url(self) -> str | None:
        """The Hub repo (or its subfolder, ``ORG/NAME/FOLDER``) at the exact commit read."""
        if self.source != "hub" or not self.location:
            return None
        parts = [quote(part, safe="") for part in self.location.split("/")]
        url = f"https://huggingface.co/{'/'.join(parts[:2])}/tree/"
        return url + "/".join([quote(self.revision or "main", safe=""), *parts[2:]])

    def path_to_root(self) -> list[Edge]:
        """Primary-parent edges from this model up to the root of its tree (cycle-safe)."""
        path: list[Edge] = []
        seen = {self.id}
        node = self
        while node.primary is not None and node.primary.parent.id not in seen:
            path.append(node.primary)
            node = node.primary.parent
            seen.add(node.id)
        return path


@dataclass(eq=False, slots=True)
class Family:
    """A family of published models and the edges among them."""

    id: str
    slug: str
    architecture: str | None
    root: Model | None
    confidence: float | None
    root_confidence: float | None
    members: list[Model] = field(default_factory=list)
    edges: list[Edge] = field(default_factory=list)

    @property
    def label(self) -> str:
        """Human name of the family: its root model's name."""
        return self.root.name if self.root is not None else self.id

    @property
    def colour(self) -> int:
        """Index of the badge colour, stable for a family id."""
        return int(self.slug[-8:], 16) % N_COLOURS

    @property
    def n_models(self) -> int:
        """Published members (hidden ones are not counted)."""
        return len(self.members)


@dataclass
class Site:
    """Everything published, loaded from one index."""

    models: list[Model]
    families: list[Family]
    edges: list[Edge]
    tensors: dict[str, list[tuple]]
    runs: list[dict[str, Any]]
    meta: dict[str, str]
    include_private: bool = False
    generated_at: datetime = field(default_factory=lambda: datetime.now(UTC).replace(tzinfo=None))
    by_id: dict[str, Model] = field(default_factory=dict)

    @property
    def last_run(self) -> dict[str, Any] | None:
        """The most recent indexing run (by start time)."""
        return self.runs[-1] if self.runs else None

    def agreement_counts(self) -> Counter:
        """Models per agreement status between declared and inferred lineage."""
        return Counter(m.agreement for m in self.models if m.agreement)


def _json(value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def architecture_of(config: Any, family_arch: str | None) -> str:
    """A readable architecture: config ``architectures[0]``, ``model_type``, else structure."""
    if isinstance(config, dict):
        archs = config.get("architectures")
        if isinstance(archs, list) and archs and isinstance(archs[0], str) and archs[0]:
            return archs[0][:80]
        if isinstance(config.get("model_type"), str) and config["model_type"]:
            return config["model_type"][:80]
    if family_arch:
        return f"structure {family_arch[:8]}"
    return "unknown"


def agreement(
    model: Model,
    known: dict[str, list[Model]],
    tensors: dict[str, list[tuple]] | None = None,
) -> tuple[str | None, list[str]]:
    """(status, matched bases): the declared_vs_inferred view's verdict over published models.

    ``known`` maps the lower-cased id, name and location of every published model to the
    models so named. Hidden models are not in it, so a base that is private reads as
    ``unknown_base`` rather than leaking that it exists. ``tensors`` (model id -> rows
    of TENSOR_COLUMNS) lets a PEFT adapter's declared base be judged ``compatible`` or
    ``incompatible`` by shapes, as the view does.
    """
    if not model.declared and not model.parents:
        return None, []
    if not model.declared:
        return "proposed", []
    keys = set()
    for e in model.parents:
        keys.update(k.lower() for k in (e.parent.id, e.parent.name, e.parent.location) if k)
    matched = sorted({b for b in model.declared if b.lower() in keys})
    if matched:
        return "agrees", matched
    bases = [b for d in model.declared for b in known.get(d.lower(), []) if b is not model]
    if not bases:
        return "unknown_base", []
    if model.status != "ok" or all(b.status != "ok" for b in bases):
        return "unverified", []
    if model.format == peft.FORMAT:
        fits = adapter_fits(model, [b for b in bases if b.status == "ok"], tensors or {})
        return ("compatible" if fits else "incompatible"), []
    return "disagrees", []


def adapter_fits(model: Model, bases: list[Model], tensors: dict[str, list[tuple]]) -> bool:
    """Whether any of ``bases`` has the shapes the PEFT LoRA adapter ``model`` needs
    (heritage.formats.peft.LoraLayout.fits, as the view's adapter_fits)."""

    def shapes(m: Model) -> list[tuple[str, tuple[int, ...]]]:
        return [(r[0], tuple(r[2] or ())) for r in tensors.get(m.id, [])]

    try:
        layout = peft.layout_of(model.config, shapes(model), model.id)
    except BadCheckpoint:
        return False
    return any(layout.fits(dict(shapes(b))) for b in bases)


def _known(models: list[Model]) -> dict[str, list[Model]]:
    known: dict[str, list[Model]] = {}
    for m in models:
        for key in {k.lower() for k in (m.id, m.name, m.location) if k}:
            known.setdefault(key, []).append(m)
    return known


def _rows(con: Any, sql: str) -> list[dict[str, Any]]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def load_site(db: Path, include_private: bool = False) -> Site:
    """Read the index read-only and link models, edges and families together."""
    con = connect_readonly(db)
    try:
        hidden = "" if include_private else "WHERE NOT coalesce(private, false) "
        hidden += "" if include_private else "AND NOT coalesce(gated, false)"
        model_rows = _rows(con, f"SELECT * FROM models {hidden} ORDER BY lower(name), model_id")
        edge_rows = _rows(con, "SELECT * FROM edges ORDER BY child_id, parent_id")
        family_rows = _rows(con, "SELECT * FROM families ORDER BY family_id")
        runs = _rows(
            con,
            "SELECT run_id, flow, started_at, finished_at, n_added, n_changed, n_failed, "
            "status FROM runs ORDER BY started_at NULLS FIRST, run_id",
        )
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        cols = ", ".join(TENSOR_COLUMNS)
        tensor_rows = con.execute(
            f"SELECT model_id, {cols} FROM tensors ORDER BY model_id, position, name"
        ).fetchall()
    finally:
        con.close()
    return build_site(model_rows, edge_rows, family_rows, runs, meta, tensor_rows, include_private)


def build_site(
    model_rows: list[dict[str, Any]],
    edge_rows: list[dict[str, Any]],
    family_rows: list[dict[str, Any]],
    runs: list[dict[str, Any]],
    meta: dict[str, str],
    tensor_rows: list[tuple],
    include_private: bool = False,
) -> Site:
    """Link rows (as read from the index) into a Site; rows of hidden models are dropped."""
    families_by_id = {r["family_id"]: r for r in family_rows}
    models: list[Model] = []
    by_id: dict[str, Model] = {}
    for r in model_rows:
        if not include_private and (r.get("private") or r.get("gated")):
            continue
        config = _json(r.get("config"))
        fam = families_by_id.get(r.get("family_id"))
        m = Model(
            id=r["model_id"],
            slug=slug(r["model_id"]),
            name=r.get("name") or r["model_id"],
            source=r.get("source"),
            location=r.get("location"),
            revision=r.get("revision"),
            format=r.get("format"),
            files=list(r.get("files") or []),
            bytes=r.get("bytes"),
            sha256=r.get("sha256"),
            n_params=r.get("n_params"),
            n_tensors=r.get("n_tensors"),
            n_layers=r.get("n_layers"),
            dtypes=list(r.get("dtypes") or []),
            structure_hash=r.get("structure_hash"),
            family_id=r.get("family_id"),
            description=r.get("description"),
            declared=[b for b in (r.get("declared_base_models") or []) if b],
            created_at=r.get("created_at"),
            indexed_at=r.get("indexed_at"),
            status=r.get("status"),
            error=r.get("error"),
            config=config,
            card=_json(r.get("card")),
            private=bool(r.get("private")),
            gated=bool(r.get("gated")),
            architecture=architecture_of(config, fam.get("architecture") if fam else None),
        )
        models.append(m)
        by_id[m.id] = m

    edges: list[Edge] = []
    for r in edge_rows:
        parent, child = by_id.get(r["parent_id"]), by_id.get(r["child_id"])
        if parent is None or child is None or parent is child:
            continue
        e = Edge(
            parent=parent,
            child=child,
            relation=r.get("relation") or "derived",
            confidence=r.get("confidence"),
            distance=r.get("distance"),
            method=r.get("method"),
            weight=r.get("weight"),
            direction=r.get("direction") or Direction.INFERRED.value,
            verified=r.get("verified"),
        )
        edges.append(e)
        parent.children.append(e)
        child.parents.append(e)

    def by_confidence(e: Edge) -> tuple:
        return (-(e.confidence if e.confidence is not None else -1.0), e.parent.name, e.parent.id)

    tensors: dict[str, list[tuple]] = {}
    for row in tensor_rows:
        if row[0] in by_id:
            tensors.setdefault(row[0], []).append(row[1:])
    known = _known(models)
    for m in models:
        m.parents.sort(key=by_confidence)
        m.children.sort(key=lambda e: (e.child.name.lower(), e.child.id))
        m.agreement, m.matched = agreement(m, known, tensors)
        m.declared_ids = sorted(
            {b.id for d in m.declared for b in known.get(d.lower(), []) if b is not m}
        )

    families: dict[str, Family] = {}
    for m in models:
        if not m.family_id:
            continue
        fam = families.get(m.family_id)
        if fam is None:
            r = families_by_id.get(m.family_id, {})
            fam = families[m.family_id] = Family(
                id=m.family_id,
                slug=slug(m.family_id),
                architecture=r.get("architecture"),
                root=by_id.get(r.get("root_model_id")),
                confidence=r.get("confidence"),
                root_confidence=r.get("root_confidence"),
            )
        fam.members.append(m)
        m.family = fam
    for fam in families.values():
        if fam.root is None or fam.root.family is not fam:  # hidden or elsewhere: pick a source
            sources = [m for m in fam.members if not m.parents] or fam.members
            fam.root = min(sources, key=lambda m: (m.name.lower(), m.id))
        fam.edges = [e for m in fam.members for e in m.parents if e.parent.family is fam]

    return Site(
        models=models,
        families=sorted(families.values(), key=lambda f: (-f.n_models, f.label.lower(), f.id)),
        edges=edges,
        tensors=tensors,
        runs=runs,
        meta=meta,
        include_private=include_private,
        by_id=by_id,
    )
