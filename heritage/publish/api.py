"""The static JSON API: plain files next to the pages, with the same data.

``api/models.json`` lists every model; ``api/models/{slug}.json`` is one model with its
lineage and tensor statistics; ``api/families.json`` lists families;
``api/families/{slug}/models.json`` lists one family's members; ``api/stats.json`` holds
the headline counts and the statistics charts' data. Every URL inside is relative to the
site root, so the files work wherever the site is hosted.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from heritage.publish.charts import Chart
from heritage.publish.data import Edge, Family, Model, Site
from heritage.publish.exports import EXPORT_FORMATS, export_path
from heritage.publish.fmt import finite, iso

API_VERSION = 1


def dumps(data: Any) -> str:
    """Compact, UTF-8, strict JSON (NaN and infinities become null)."""
    try:
        return json.dumps(
            data, ensure_ascii=False, separators=(",", ":"), default=str, allow_nan=False
        )
    except ValueError:  # rare: walk the data only when a non-finite float is there
        return json.dumps(finite(data), ensure_ascii=False, separators=(",", ":"), default=str)


def model_url(m: Model) -> str:
    """Site-relative URL of a model page."""
    return f"models/{m.slug}.html"


def model_api(m: Model) -> str:
    """Site-relative URL of a model's JSON."""
    return f"api/models/{m.slug}.json"


def family_url(f: Family) -> str:
    """Site-relative URL of a family's first tree page."""
    return f"families/{f.slug}.html"


def family_api(f: Family) -> str:
    """Site-relative URL of a family's members JSON."""
    return f"api/families/{f.slug}/models.json"


def model_summary(m: Model) -> dict[str, Any]:
    """The short form of a model used in lists."""
    return {
        "id": m.id,
        "slug": m.slug,
        "name": m.name,
        "url": model_url(m),
        "api": model_api(m),
        "source": m.source,
        "location": m.location,
        "format": m.format,
        "architecture": m.architecture,
        "n_params": m.n_params,
        "n_layers": m.n_layers,
        "n_tensors": m.n_tensors,
        "bytes": m.bytes,
        "family_id": m.family_id if m.family else None,
        "relation": m.relation or None,
        "parents": [e.parent.id for e in m.parents],
        "declared_base_models": m.declared,
        "agreement": m.agreement,
        "status": m.status,
        "created_at": iso(m.created_at),
        "indexed_at": iso(m.indexed_at),
    }


def _edge(e: Edge, other: Model) -> dict[str, Any]:
    return {
        "id": other.id,
        "name": other.name,
        "slug": other.slug,
        "url": model_url(other),
        "relation": e.relation,
        "direction": e.direction,
        "verified": e.verified,
        "confidence": e.confidence,
        "distance": e.distance,
        "weight": e.weight,
        "method": e.method,
    }


def model_detail(m: Model, tensors: list[tuple]) -> dict[str, Any]:
    """One model in full: specifications, lineage, card and per-tensor statistics."""
    data = model_summary(m)
    data.update(
        revision=m.revision,
        source_url=m.hub_url,
        sha256=m.sha256,
        structure_hash=m.structure_hash,
        dtypes=m.dtypes,
        files=m.files,
        description=m.description,
        error=m.error,
        card=m.card,
        config=m.config,
        family=(family_summary(m.family) if m.family else None),
        lineage={
            "parents": [_edge(e, e.parent) for e in m.parents],
            "children": [_edge(e, e.child) for e in m.children],
            "path_to_root": [e.parent.id for e in m.path_to_root()],
            "declared_base_models": m.declared,
            "declared_base_ids": m.declared_ids,
            "matched_bases": m.matched,
            "agreement": m.agreement,
            "proposed_base": _edge(m.proposed, m.proposed.parent) if m.proposed else None,
        },
        tensors=[
            {
                "name": t[0],
                "dtype": t[1],
                "shape": t[2],
                "n_params": t[3],
                "mean": t[4],
                "std": t[5],
                "kurtosis": t[6],
                "rms": t[7],
                "absmax": t[8],
                "unique_ratio": t[9],
            }
            for t in tensors
        ],
    )
    return data


def family_summary(f: Family) -> dict[str, Any]:
    """The short form of a family used in lists."""
    return {
        "id": f.id,
        "slug": f.slug,
        "label": f.label,
        "url": family_url(f),
        "api": family_api(f),
        "root_id": f.root.id if f.root else None,
        "root_name": f.root.name if f.root else None,
        "n_models": f.n_models,
        "n_edges": len(f.edges),
        "architecture": f.architecture,
        "confidence": f.confidence,
        "root_confidence": f.root_confidence,
        "exports": {ext: export_path(f, ext) for ext in EXPORT_FORMATS},
    }


def headline(site: Site) -> dict[str, Any]:
    """The counts on the home page."""
    run = site.last_run
    return {
        "models": len(site.models),
        "families": len(site.families),
        "edges": len(site.edges),
        "disagreements": site.agreement_counts().get("disagrees", 0),
        "agreements": site.agreement_counts().get("agrees", 0),
        "unknown_bases": site.agreement_counts().get("unknown_base", 0),
        "proposed_bases": site.agreement_counts().get("proposed", 0),
        "last_run": None
        if run is None
        else {
            "flow": run.get("flow"),
            "status": run.get("status"),
            "started_at": iso(run.get("started_at")),
            "finished_at": iso(run.get("finished_at")),
        },
    }


def api_files(site: Site, charts: list[Chart]) -> Iterator[tuple[str, str]]:
    """Every JSON API file as (site-relative path, text), one at a time."""
    stamp = iso(site.generated_at)
    yield (
        "api/models.json",
        dumps(
            {
                "version": API_VERSION,
                "generated_at": stamp,
                "count": len(site.models),
                "models": [model_summary(m) for m in site.models],
            }
        ),
    )
    yield (
        "api/families.json",
        dumps(
            {
                "version": API_VERSION,
                "generated_at": stamp,
                "count": len(site.families),
                "families": [family_summary(f) for f in site.families],
            }
        ),
    )
    yield (
        "api/stats.json",
        dumps(
            {
                "version": API_VERSION,
                "generated_at": stamp,
                **headline(site),
                "charts": {
                    c.key: {"title": c.title, "unit": c.unit, "rows": [list(r) for r in c.rows]}
                    for c in charts
                },
            }
        ),
    )
    for f in site.families:
        yield (
            family_api(f),
            dumps(
                {
                    "version": API_VERSION,
                    "family": family_summary(f),
                    "models": [model_summary(m) for m in f.members],
                }
            ),
        )
    for m in site.models:
        yield model_api(m), dumps(model_detail(m, site.tensors.get(m.id, [])))
