"""Safe markdown for model descriptions and card text written by strangers.

CommonMark, parsed and rendered by ``markdown-it-py`` with raw HTML off, so HTML in the
text is shown escaped. Links and images go through :func:`safe_url` (markdown-it's
``validateLink`` hook): only ``http``, ``https`` and ``mailto`` targets and relative links
that do not start with ``/`` survive; anything else (``javascript:``, ``data:``,
``vbscript:``, ``//host``) stays plain text. Images are shown as their alt text, so a
published page never loads anything from elsewhere, and card headings become bold
paragraphs so the page's own headings stay in order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.token import Token
from markupsafe import Markup

__all__ = ["MAX_CHARS", "render_markdown", "safe_url"]

MAX_CHARS = 20_000  # longer input is cut: a card is evidence, not a document to host
SAFE_SCHEMES = ("http", "https", "mailto")
LINK_REL = "nofollow noopener noreferrer"
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):", re.IGNORECASE)


def safe_url(url: str) -> str | None:
    """``url`` when a published page may link to it, else None.

    Kept: ``http``, ``https`` and ``mailto`` URLs, and relative links that do not start
    with ``/`` (``//host`` would leave the site, ``/path`` the folder it is published in).
    Refused: every other scheme, and any URL with spaces, controls, quotes, angle brackets
    or backslashes (which browsers read as slashes).
    """
    url = url.strip()
    if not url or any(ord(c) < 33 or ord(c) == 127 or c in "\"'<>\\`" for c in url):
        return None
    scheme = _SCHEME.match(url)
    if scheme:
        return url if scheme.group(1).lower() in SAFE_SCHEMES else None
    return None if url.startswith("/") else url


def _heading_open(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return '<p class="md-heading">'


def _heading_close(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    return "</p>\n"


def _image(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    """No images from elsewhere: the alt text, escaped."""
    return escapeHtml(self.renderInlineAsText(tokens[idx].children or [], options, env))


def _link_open(self: Any, tokens: Sequence[Token], idx: int, options: Any, env: Any) -> str:
    tokens[idx].attrSet("rel", LINK_REL)
    return self.renderToken(tokens, idx, options, env)


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False})
    md.validateLink = lambda url: safe_url(url) is not None  # type: ignore[method-assign]
    md.add_render_rule("heading_open", _heading_open)
    md.add_render_rule("heading_close", _heading_close)
    md.add_render_rule("image", _image)
    md.add_render_rule("link_open", _link_open)
    return md


_MD = _parser()


def render_markdown(text: str | None) -> Markup:
    """Safe HTML for a markdown text; ``None`` or blank gives an empty string."""
    if not text or not text.strip():
        return Markup("")
    text = text[:MAX_CHARS].replace("\x00", "")
    return Markup(_MD.render(text).strip())
