"""Plain text of an HTML body, and the snippet shown in lists.

Invariants: :func:`html_to_text` keeps the text of block elements on their own
lines and drops scripts, styles and other non-content elements; :func:`snippet`
is at most :data:`SNIPPET_LENGTH` characters with whitespace collapsed, and the
same whether the whole text or only its first window is collapsed.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

SNIPPET_LENGTH = 200


# --------------------------------------------------------------------------- html → text

_BLOCK_TAGS = frozenset(
    {
        "address",
        "article",
        "blockquote",
        "br",
        "caption",
        "div",
        "dd",
        "dl",
        "dt",
        "figure",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "tr",
        "ul",
    }
)
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript", "svg", "math"})


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self.skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Plain text of an HTML document: tags stripped, entities unescaped,
    whitespace collapsed within lines, block elements on their own lines."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # noqa: BLE001, S110 - HTMLParser on hostile input: keep what was read
        pass
    text = "".join(parser.parts).replace("\xa0", " ")
    lines = [" ".join(line.split()) for line in text.split("\n")]
    out = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", out).strip()


_SNIPPET_WINDOW = 1024  # characters collapsed for the snippet before the whole text is


def snippet(text: str | None) -> str:
    """The first :data:`SNIPPET_LENGTH` characters of ``text`` with whitespace collapsed.

    A long text is only collapsed as far as its first window (the word cut at the
    window's end is dropped, so the result is the same as collapsing it all).
    """
    if not text:
        return ""
    if len(text) > _SNIPPET_WINDOW:
        head = " ".join(text[:_SNIPPET_WINDOW].split()[:-1])
        if len(head) > SNIPPET_LENGTH:
            return head[:SNIPPET_LENGTH].rstrip()
    collapsed = " ".join(text.split())
    return collapsed[:SNIPPET_LENGTH].rstrip()
