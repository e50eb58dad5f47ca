"""Publish the index as a static site: render every page into a temporary folder, swap it in.

The site needs no server: every link is relative (it works from ``file://`` and from any
sub-path of a static host), nothing is fetched (the search index is a script that assigns
a global), and a Content-Security-Policy meta tag forbids inline script. Publishing is
atomic: the new site is built beside the target and exchanged with it in one rename, so
readers see the old site or the new one, and a failed build leaves the old one untouched.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
)

from heritage import __version__
from heritage.errors import PublishError
from heritage.lineage.types import Relation
from heritage.publish import fmt, html
from heritage.publish.api import api_files, headline
from heritage.publish.charts import site_charts
from heritage.publish.cleanup import remove_tree
from heritage.publish.data import Model, Site, load_site
from heritage.publish.exports import EXPORT_FORMATS, export_path, family_exports
from heritage.publish.markdown import render_markdown
from heritage.publish.tree import family_pages

SITE_PACKAGE = "heritage.site"  # package data: templates/ (Jinja) and static/ (copied as is)
MARKER = ".heritage-site"  # marks a folder as a published site that may be replaced
RECENT = 8  # models listed as recently added on the home page
AGREEMENT_TEXT = {  # one sentence per declared_vs_inferred status
    "agrees": "The weights agree: a declared base model is an inferred parent.",
    "disagrees": "The weights disagree: the declared base model is indexed, "
    "but it is not an inferred parent.",
    "unknown_base": "The declared base model is not in this index, so the weights cannot check it.",
    "unverified": "The declared base model is indexed, but it or this model has no "
    "fingerprint, so the weights cannot check it.",
    "compatible": "This adapter fits the declared base model's shapes, but the weights "
    "attach it to another base, or cannot tell which of several it fits.",
    "incompatible": "This adapter cannot be applied to the declared base model: its "
    "shapes do not fit.",
    "proposed": "No base model is declared; the weights propose one.",
}
PARAM_STEPS = [10**k for k in range(3, 13)]  # filter choices: 1K ... 1T


@dataclass
class PublishReport:
    """What a publish wrote and how long it took."""

    out: str
    n_models: int
    n_families: int
    n_edges: int
    n_pages: int
    n_files: int
    bytes: int
    seconds: float
    include_private: bool
    phases: dict[str, float] = field(default_factory=dict)  # seconds per step

    @property
    def pages_per_second(self) -> float:
        """HTML pages written per second of the whole publish."""
        return self.n_pages / self.seconds if self.seconds > 0 else float("inf")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a flow result or a JSON log line."""
        data = asdict(self)
        data["pages_per_second"] = round(self.pages_per_second, 1)
        return data

    def summary_line(self) -> str:
        """One line for the command line and the flow log."""
        return (
            f"published {self.n_models} models, {self.n_families} families and "
            f"{self.n_edges} edges as {self.n_pages} pages ({self.n_files} files, "
            f"{fmt.human_bytes(self.bytes)}) to {self.out} in {self.seconds:.1f} s"
        )


# ---------------------------------------------------------------- rendering

# Columns of each row of the catalog's search index (heritage/site/static/catalog.js reads them).
CATALOG_FIELDS = (
    "slug",
    "name",
    "params",
    "layers",
    "family",
    "arch",
    "format",
    "source",
    "date",
    "relation",
    "status",
)


def template_loader(templates: Path | None = None) -> BaseLoader:
    """The package's templates; with ``templates``, a file there of the same name wins."""
    packaged = PackageLoader(SITE_PACKAGE, "templates")
    if templates is None:
        return packaged
    if not templates.is_dir():
        raise PublishError(f"{templates}: templates folder not found")
    return ChoiceLoader([FileSystemLoader(str(templates)), packaged])


def static_assets() -> Traversable:
    """The site's CSS, script and icon, as package data."""
    return files(SITE_PACKAGE) / "static"


def make_environment(templates: Path | None = None) -> Environment:
    """Jinja with autoescape on for every template (overridden ones too): all text is
    untrusted. ``templates`` overrides the package's templates by file name."""
    env = Environment(
        loader=template_loader(templates),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        count=fmt.human_count,
        size=fmt.human_bytes,
        grouped=fmt.grouped,
        number=fmt.number,
        conf=fmt.confidence,
        day=fmt.day,
        minute=fmt.minute,
        markdown=render_markdown,
        short_hash=lambda h: (h or "")[:12],
        jsonish=_jsonish,
    )
    env.globals.update(
        agreement_text=AGREEMENT_TEXT,
        version=__version__,
        export_formats=EXPORT_FORMATS,
        export_path=export_path,
        relation_badge=html.relation_badge,
        direction_note=html.direction_note,
        proof_note=html.proof_note,
        relations=[r.value for r in Relation],
        family_badge=html.family_badge,
        model_row=html.model_row,
        tensor_rows=html.tensor_rows,
    )
    return env


def _jsonish(value: Any) -> str:
    """A card value as short text: strings as they are, lists joined, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    return json.dumps(value, ensure_ascii=False, default=str)


def search_index(site: Site) -> str:
    """The catalog's search data as a script assigning ``window.HERITAGE_INDEX``.

    A script, not a fetched JSON file, because ``fetch`` is refused on ``file://``.
    Rows are arrays (see ``fields``) with small lookup tables, to keep the file small.
    """
    families = [[f.slug, f.label, f.n_models, f.colour] for f in site.families]
    fam_index = {f.id: i for i, f in enumerate(site.families)}
    lookups: dict[str, dict[str, int]] = {"archs": {}, "formats": {}, "sources": {}}

    def code(table: str, value: str | None) -> int:
        values = lookups[table]
        return values.setdefault(value or "unknown", len(values))

    rows = []
    for m in site.models:
        rows.append(
            [
                m.slug,
                m.name,
                m.n_params if m.n_params is not None else -1,
                m.n_layers if m.n_layers is not None else -1,
                fam_index.get(m.family.id, -1) if m.family else -1,
                code("archs", m.architecture),
                code("formats", m.format),
                code("sources", m.source),
                fmt.day(m.date) if m.date else "",
                m.relation,
                m.status or "",
            ]
        )
    data = {
        "fields": list(CATALOG_FIELDS),
        "relations": sorted(html.KNOWN_RELATIONS),  # the ones site.css colours
        "families": families,
        **{k: list(v) for k, v in lookups.items()},
        "models": rows,
    }
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"/* Generated by heritage publish. */\nwindow.HERITAGE_INDEX = {text};\n"


class Writer:
    """Writes files under the build folder and counts them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = 0
        self.pages = 0
        self.bytes = 0
        self.phases: dict[str, float] = {}
        self._dirs: set[Path] = set()
        self._mark = time.perf_counter()

    def lap(self, phase: str) -> None:
        """Record the seconds since the previous lap under ``phase``."""
        now = time.perf_counter()
        self.phases[phase] = round(self.phases.get(phase, 0.0) + now - self._mark, 3)
        self._mark = now

    def write(self, rel: str, text: str) -> None:
        """Write ``text`` (UTF-8) at the site-relative path ``rel``."""
        path = self.root / rel
        if path.parent not in self._dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path.parent)
        data = text.encode("utf-8")
        path.write_bytes(data)
        self.files += 1
        self.bytes += len(data)
        if rel.endswith(".html"):
            self.pages += 1


def render_site(site: Site, dest: Path, env: Environment) -> Writer:
    """Render every page, JSON file and export of ``site`` into the empty folder ``dest``."""
    w = Writer(dest)
    charts = site_charts(site)
    common: dict[str, Any] = {
        "generated": fmt.minute(site.generated_at),
        "index_written": site.meta.get("written_at", "")[:16].replace("T", " "),
        "stats": headline(site),
        "last_run": site.last_run,
    }

    def page(template: str, rel: str, **context: Any) -> None:
        root = "../" * rel.count("/")
        w.write(rel, env.get_template(template).render(root=root, **common, **context))

    recent = sorted(
        site.models, key=lambda m: (m.indexed_at or datetime.min, m.name), reverse=True
    )[:RECENT]
    page("index.html", "index.html", nav="home", recent=recent, n_models=len(site.models))
    page(
        "models.html",
        "models.html",
        nav="models",
        models=site.models,
        param_steps=PARAM_STEPS,
    )
    page("families.html", "families.html", nav="families", families=site.families)
    page(
        "stats.html",
        "stats.html",
        nav="stats",
        charts=charts,
        families=site.families[:10],
        agreement=site.agreement_counts(),
    )
    page("add.html", "add.html", nav="add")

    w.lap("pages")
    model_tpl = env.get_template("model.html")
    for m in site.models:
        w.write(
            f"models/{m.slug}.html",
            model_tpl.render(
                root="../",
                nav="models",
                m=m,
                path=_path_to_root(m),
                tensors=site.tensors.get(m.id, []),
                **common,
            ),
        )

    w.lap("model pages")
    family_tpl = env.get_template("family.html")
    for f in site.families:
        pages = family_pages(f)
        for p in pages:
            w.write(
                f"families/{p.filename}",
                family_tpl.render(root="../", nav="families", f=f, page=p, pages=pages, **common),
            )
        for ext, text in family_exports(f).items():
            w.write(export_path(f, ext), text)

    w.lap("family pages and exports")
    for rel, text in api_files(site, charts):
        w.write(rel, text)
    w.lap("json api")
    _copy_assets(static_assets(), dest / "static", w)
    w.write("static/search-index.js", search_index(site))
    w.lap("search index")
    return w


def _copy_assets(src: Traversable, dest: Path, w: Writer) -> None:
    """Copy the package's static folder (a Traversable: a zipped install has no real path)."""
    dest.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.is_dir():
            _copy_assets(item, dest / item.name, w)
        elif not item.name.startswith((".", "__")):
            (dest / item.name).write_bytes(item.read_bytes())
            w.files += 1


def _path_to_root(m: Model) -> list[Model]:
    """The models from the root down to ``m`` (for the breadcrumb of ancestors)."""
    return [e.parent for e in reversed(m.path_to_root())]


# ---------------------------------------------------------------- atomic swap

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False when the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    rc = renameat2(
        _AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), ctypes.c_uint(_RENAME_EXCHANGE)
    )
    return rc == 0


def _check_target(out: Path) -> None:
    """Only an empty folder or a site published before may be replaced."""
    if out.is_symlink():
        raise PublishError(f"{out}: is a symbolic link; publish to a real folder")
    if not out.exists():
        return
    if not out.is_dir():
        raise PublishError(f"{out}: exists and is not a folder")
    if (out / MARKER).is_file():
        return
    if any(out.iterdir()):
        raise PublishError(
            f"{out}: folder is not empty and was not written by heritage publish; "
            "refusing to replace it"
        )


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One publish at a time into a parent folder (flock on the folder itself)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _leftovers(out: Path) -> list[Path]:
    return sorted(out.parent.glob(f".{out.name}.publish-*"))


def publish_site(site: Site, out: Path, templates: Path | None = None) -> PublishReport:
    """Render ``site`` and swap it into ``out`` atomically; returns what was written.

    ``templates``: a folder whose templates replace the package's of the same file name.
    """
    start = time.perf_counter()
    out = Path(os.path.abspath(out))
    env = make_environment(templates)  # a missing templates folder fails before any write
    out.parent.mkdir(parents=True, exist_ok=True)
    with _locked(out.parent):
        _check_target(out)
        for stale in _leftovers(out):  # from a publish that crashed; we hold the lock
            remove_tree(stale)
        build = out.parent / f".{out.name}.publish-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        build.mkdir()
        try:
            writer = render_site(site, build, env)
            marker = {
                "tool": "heritage",
                "version": __version__,
                "published_at": fmt.iso(site.generated_at),
            }
            writer.write(MARKER, json.dumps(marker) + "\n")
            os.sync()  # the new site is on disk before it becomes visible
            writer.lap("sync")
            if out.exists():
                if not _exchange(build, out):  # no atomic exchange here: two renames
                    old = build.with_name(build.name + "-old")
                    os.rename(out, old)
                    try:
                        os.rename(build, out)
                    except BaseException:
                        os.rename(old, out)
                        raise
                    build = old
                # either way ``build`` now holds the previous site, deleted below
            else:
                os.rename(build, out)
                build = None
        finally:
            if build is not None:
                remove_tree(build)
    writer.lap("swap and cleanup")
    return PublishReport(
        out=str(out),
        n_models=len(site.models),
        n_families=len(site.families),
        n_edges=len(site.edges),
        n_pages=writer.pages,
        n_files=writer.files,
        bytes=writer.bytes,
        seconds=round(time.perf_counter() - start, 3),
        include_private=site.include_private,
        phases=writer.phases,
    )


def publish(
    db: Path, out: Path, include_private: bool = False, templates: Path | None = None
) -> PublishReport:
    """Publish the index ``db`` as a static site in ``out``.

    Private and gated models are left out unless ``include_private``. Templates in the
    folder ``templates`` replace the package's templates of the same file name. Raises
    FileNotFoundError when there is no index, PublishError when ``out`` is a folder this
    must not replace or ``templates`` is not a folder.
    """
    start = time.perf_counter()
    db = Path(db)
    if not db.is_file():
        raise FileNotFoundError(f"{db}: no index file (run `heritage index` first)")
    if templates is not None:
        templates = Path(templates)
        template_loader(templates)  # a missing folder fails before the index is read
    site = load_site(db, include_private=include_private)
    loaded = time.perf_counter() - start
    report = publish_site(site, Path(out), templates=templates)
    report.phases = {"load index": round(loaded, 3), **report.phases}
    report.seconds = round(time.perf_counter() - start, 3)
    return report
