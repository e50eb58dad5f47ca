"""A tiny, safe markdown subset for model descriptions and card text written by strangers.

Everything is escaped first; only a few constructs become markup: paragraphs, headings
(shown as bold paragraphs so page headings stay in order), bullet and numbered lists,
block quotes, fenced code, inline code, bold, italics and links. Links are kept only for
``http``, ``https`` and ``mailto`` targets; anything else (``javascript:``, ``data:``,
relative paths) is shown as plain text. Raw HTML is never passed through and images are
shown as their alt text, so a published page never loads anything from elsewhere.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

MAX_CHARS = 20_000  # longer input is cut: a card is evidence, not a document to host
_SAFE_SCHEMES = ("http://", "https://", "mailto:")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s{0,3}[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s{0,3}\d{1,9}[.)]\s+(.*)$")
_QUOTE = re.compile(r"^\s{0,3}>\s?(.*)$")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_INLINE = re.compile(
    r"(?P<code>`{1,2})(?P<code_text>[^`\n]+?)(?P=code)"
    r"|(?P<image>!)?\[(?P<label>[^\[\]\n]{0,500})\]\((?P<url>[^()\s]{0,2000})(?:\s+\"[^\"\n]*\")?\)"
    r"|\*\*(?P<strong>[^\n]+?)\*\*"
    r"|__(?P<strong2>[^\n]+?)__"
    r"|(?<![\w*])\*(?P<em>[^\s*](?:[^\n*]*[^\s*])?)\*(?![\w*])"
    r"|(?<![\w_])_(?P<em2>[^\s_](?:[^\n_]*[^\s_])?)_(?![\w_])"
    r"|(?P<auto>https?://[^\s<>\"'`()\[\]]+[^\s<>\"'`()\[\].,;:!?])"
)


def safe_url(url: str) -> str | None:
    """The URL when it is an absolute http(s) or mailto link without odd characters."""
    url = url.strip()
    if any(ord(c) < 33 or c in "\"'<>\\`" for c in url):
        return None
    return url if url.lower().startswith(_SAFE_SCHEMES) else None


def _link(url: str, label: Markup) -> Markup:
    return Markup('<a href="{}" rel="nofollow noopener noreferrer">{}</a>').format(url, label)


def render_inline(text: str, links: bool = True) -> Markup:
    """Inline markdown of one block: code, bold, italics and safe links; the rest escaped."""
    out: list[Markup] = []
    pos = 0
    for m in _INLINE.finditer(text):
        out.append(escape(text[pos : m.start()]))
        pos = m.end()
        if m.group("code"):
            out.append(Markup("<code>{}</code>").format(m.group("code_text").strip()))
        elif m.group("label") is not None:
            label = m.group("label")
            url = safe_url(m.group("url"))
            if m.group("image"):
                out.append(escape(label))  # no remote images: show the alt text
            elif url and links:
                out.append(_link(url, render_inline(label, links=False)))
            else:
                out.append(render_inline(label, links=False))
        elif m.group("strong") or m.group("strong2"):
            inner = m.group("strong") or m.group("strong2")
            out.append(Markup("<strong>{}</strong>").format(render_inline(inner, links)))
        elif m.group("em") or m.group("em2"):
            inner = m.group("em") or m.group("em2")
            out.append(Markup("<em>{}</em>").format(render_inline(inner, links)))
        elif m.group("auto"):
            url = m.group("auto")
            out.append(_link(url, escape(url)) if links and safe_url(url) else escape(url))
    out.append(escape(text[pos:]))
    return Markup("").join(out)


def _blocks(lines: list[str]) -> list[tuple[str, list[str]]]:
    """Group lines into (kind, lines) blocks: code, heading, ul, ol, quote, p."""
    blocks: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        fence = _FENCE.match(line)
        if fence:
            body = []
            i += 1
            while i < len(lines) and not lines[i].lstrip().startswith(fence.group(1)):
                body.append(lines[i])
                i += 1
            blocks.append(("code", body))
            i += 1
            continue
        heading = _HEADING.match(line)
        if heading:
            blocks.append(("heading", [heading.group(1)]))
            i += 1
            continue
        for kind, pattern in (("ul", _BULLET), ("ol", _NUMBERED), ("quote", _QUOTE)):
            if pattern.match(line):
                items = []
                while i < len(lines) and lines[i].strip():
                    item = pattern.match(lines[i])
                    if item:
                        items.append(item.group(1))
                    elif items:  # a continuation line belongs to the previous item
                        items[-1] += " " + lines[i].strip()
                    i += 1
                blocks.append((kind, items))
                break
        else:
            para = []
            while (
                i < len(lines)
                and lines[i].strip()
                and not _FENCE.match(lines[i])
                and not _HEADING.match(lines[i])
            ):
                para.append(lines[i].strip())
                i += 1
            blocks.append(("p", para))
    return blocks


def render_markdown(text: str | None) -> Markup:
    """Safe HTML for a markdown text; ``None`` or blank gives an empty string."""
    if not text or not text.strip():
        return Markup("")
    text = text[:MAX_CHARS].replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    html: list[Markup] = []
    for kind, lines in _blocks(text.split("\n")):
        if kind == "code":
            html.append(Markup("<pre><code>{}</code></pre>").format("\n".join(lines)))
        elif kind == "heading":
            html.append(Markup('<p class="md-heading">{}</p>').format(render_inline(lines[0])))
        elif kind in ("ul", "ol"):
            items = Markup("").join(
                Markup("<li>{}</li>").format(render_inline(item)) for item in lines
            )
            html.append(Markup("<{0}>{1}</{0}>").format(Markup(kind), items))
        elif kind == "quote":
            html.append(
                Markup("<blockquote><p>{}</p></blockquote>").format(render_inline(" ".join(lines)))
            )
        else:
            html.append(Markup("<p>{}</p>").format(render_inline(" ".join(lines))))
    return Markup("\n").join(html)
