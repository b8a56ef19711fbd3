"""A small, safe Markdown renderer for policy clauses: everything is HTML-escaped first,
then paragraphs, bullet and numbered lists, headings, `code`, **bold** and *italic*."""

from __future__ import annotations

import re
from html import escape

from markupsafe import Markup

BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
NUMBERED = re.compile(r"^\s*\d{1,3}[.)]\s+(.*)$")
HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
CODE = re.compile(r"`([^`]+)`")
BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
ITALIC = re.compile(r"(?<![\w*])[*_](?=\S)(.+?)(?<=\S)[*_](?![\w*])")


def inline(text: str) -> str:
    """One line's inline marks, on escaped text (code spans are left unformatted)."""
    parts = CODE.split(escape(text, quote=False))
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{part}</code>")
        else:
            out.append(ITALIC.sub(r"<em>\1</em>", BOLD.sub(r"<strong>\1</strong>", part)))
    return "".join(out)


def render(text: str) -> Markup:
    """Markdown to HTML; no raw HTML, links or images pass through."""
    html: list[str] = []
    para: list[str] = []
    items: list[str] = []
    list_tag = ""

    def flush_para() -> None:
        if para:
            html.append("<p>" + " ".join(inline(p) for p in para) + "</p>")
            para.clear()

    def flush_list() -> None:
        nonlocal list_tag
        if items:
            body = "".join(f"<li>{i}</li>" for i in items)
            html.append(f"<{list_tag}>{body}</{list_tag}>")
            items.clear()
        list_tag = ""

    for line in (text or "").splitlines():
        if not line.strip():
            flush_para()
            flush_list()
            continue
        bullet, numbered, heading = BULLET.match(line), NUMBERED.match(line), HEADING.match(line)
        if bullet or numbered:
            flush_para()
            tag = "ul" if bullet else "ol"
            if list_tag and list_tag != tag:
                flush_list()
            list_tag = tag
            items.append(inline((bullet or numbered).group(1)))  # type: ignore[union-attr]
        elif heading:
            flush_para()
            flush_list()
            level = min(len(heading.group(1)) + 2, 6)  # below the page's own headings
            html.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
        elif items and line.startswith((" ", "\t")):
            items[-1] += " " + inline(line.strip())  # a list item's continuation line
        else:
            flush_list()
            para.append(line.strip())
    flush_para()
    flush_list()
    return Markup("".join(html))
