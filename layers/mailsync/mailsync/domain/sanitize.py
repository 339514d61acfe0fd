"""Sanitising of untrusted e-mail HTML before anyone sees it.

Every HTML body that leaves :mod:`mailsync.domain.mime` goes through
:func:`sanitize_html`; unsanitized HTML is never stored in a table or served
(only the raw MIME object in S3 holds the mail as the provider sent it). The output is meant to be
rendered inside a CRM page, so it must neither run code nor leak anything to a
remote party when it is merely displayed.

Invariants of the output (enforced by `nh3`_ / ammonia, an allow-list sanitizer
that parses with html5ever exactly like a browser, per the WHATWG HTML parsing
algorithm):

* Only an allow-list of formatting, list, heading and table elements survives.
  ``<script>``, ``<style>``, ``<title>``, ``<noscript>``, ``<template>``,
  ``<iframe>``, ``<object>``, ``<embed>``, ``<svg>``, ``<math>`` ... are removed
  **with their contents**; other unknown elements (``<form>``, ``<meta>``,
  ``<base>``, ``<link>``, ``<input>``) are dropped, keeping their text.
* No event handler (``on*``), no ``style`` (CSS can load remote URLs and
  overlay the page), no ``class``/``id`` (no clash with the host page), no
  ``background``/``srcset``/``action``/``formaction``/``srcdoc`` attribute.
* URLs are parsed (entities, embedded tabs/newlines, case and leading
  whitespace are normalised before the scheme is checked); only ``http``,
  ``https``, ``mailto`` and ``tel`` links survive. ``javascript:``,
  ``vbscript:`` and ``data:`` are dropped — including ``data:image/*``: they are
  rarely used in mail and are an easy carrier for SVG payloads and tracking.
  Relative URLs are dropped (they would resolve against the CRM's origin).
* Remote images are **not loaded**: ``<img src="http(s)://...">`` becomes a link
  ``<a href="..." target="_blank" rel="noopener noreferrer nofollow">[image:
  alt]</a>`` the user can click to open the image (no tracking pixel fires on
  display). ``cid:`` images (parts of the same message, RFC 2392) become
  ``<img data-cid="..." alt="...">`` without ``src`` so the UI can resolve them
  later from the message's attachments.
* With an :class:`~mailsync.domain.images.ImageLinks` (when a body is read), the
  sanitizer asks it for a ``src``: a ``cid:`` image it resolves, and a remote one it
  proxies (``images=load``), becomes ``<img src="...">`` with that link. The final pass
  accepts exactly the links handed out in this call as ``src``, nothing else.
* Every link gets ``rel="noopener noreferrer nofollow"`` and
  ``target="_blank"`` (RFC 8288 link relations; no ``window.opener`` access, no
  Referer leak).

The work is done in three steps: an nh3 pass with ``<img src>`` still allowed, a
rewrite of the (now well-formed, canonically serialised) ``<img>`` elements, and a
final strict nh3 pass, so the rewrite can never introduce anything the final
allow-list does not accept.

.. _nh3: https://nh3.readthedocs.io/
"""

from __future__ import annotations

import html as _html
from collections.abc import Sequence
from html.parser import HTMLParser

import nh3

from mailsync.domain.images import ImageLinks

__all__ = ["LINK_REL", "sanitize_html"]

LINK_REL = "noopener noreferrer nofollow"

_BASE_TAGS = frozenset(
    {
        "a",
        "abbr",
        "acronym",
        "address",
        "article",
        "aside",
        "b",
        "bdi",
        "bdo",
        "big",
        "blockquote",
        "br",
        "caption",
        "center",
        "cite",
        "code",
        "col",
        "colgroup",
        "dd",
        "del",
        "details",
        "dfn",
        "div",
        "dl",
        "dt",
        "em",
        "figcaption",
        "figure",
        "font",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "i",
        "ins",
        "kbd",
        "li",
        "main",
        "mark",
        "ol",
        "p",
        "pre",
        "q",
        "s",
        "samp",
        "section",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "summary",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "tt",
        "u",
        "ul",
        "var",
        "wbr",
    }
)

# Removed together with everything inside them.
_DROP_WITH_CONTENT = frozenset(
    {
        "script",
        "style",
        "title",
        "noscript",
        "template",
        "iframe",
        "object",
        "embed",
        "applet",
        "frame",
        "frameset",
        "noembed",
        "noframes",
        "xmp",
        "svg",
        "math",
        "textarea",
        "select",
    }
)

_GENERIC_ATTRS = frozenset({"title", "dir", "lang", "align", "valign"})
_TABLE_ATTRS = frozenset({"width", "height", "bgcolor", "border", "cellpadding", "cellspacing"})
_CELL_ATTRS = frozenset({"width", "height", "bgcolor", "colspan", "rowspan", "scope", "nowrap"})

_COMMON_ATTRIBUTES: dict[str, set[str]] = {
    "*": set(_GENERIC_ATTRS),
    "a": {"href"},
    "font": {"color", "face", "size"},
    "table": set(_TABLE_ATTRS),
    "td": set(_CELL_ATTRS),
    "th": set(_CELL_ATTRS),
    "tr": {"bgcolor", "height"},
    "col": {"span", "width"},
    "colgroup": {"span", "width"},
    "ol": {"start", "type", "reversed"},
    "ul": {"type"},
    "li": {"value"},
    "hr": {"width", "size", "noshade"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "del": {"cite", "datetime"},
    "ins": {"cite", "datetime"},
    "abbr": set(),
    "details": {"open"},
}

_LINK_SCHEMES = {"http", "https", "mailto", "tel"}


def _attrs(**extra: set[str]) -> dict[str, set[str]]:
    out = {tag: set(values) for tag, values in _COMMON_ATTRIBUTES.items()}
    for tag, values in extra.items():
        out.setdefault(tag, set()).update(values)
    return out


def _first_pass_filter(tag: str, attr: str, value: str) -> str | None:
    # cid: is accepted by the first pass only so <img src="cid:..."> survives;
    # a cid: link (or blockquote cite, ...) has no meaning in a rendered page.
    if value.strip().lower().startswith("cid:") and not (tag == "img" and attr == "src"):
        return None
    return value


def _first_pass(html: str) -> str:
    return nh3.clean(
        html,
        tags=set(_BASE_TAGS | {"img"}),
        clean_content_tags=set(_DROP_WITH_CONTENT),
        attributes=_attrs(img={"src", "alt", "width", "height", "data-cid"}),
        attribute_filter=_first_pass_filter,
        strip_comments=True,
        link_rel=None,
        url_schemes=_LINK_SCHEMES | {"cid"},
        url_relative="deny",
    )


def _final_pass(html: str, sources: frozenset[str] = frozenset()) -> str:
    def only_ours(tag: str, attr: str, value: str) -> str | None:
        # an <img src> survives only as one of the links this call handed out
        if tag == "img" and attr == "src" and value not in sources:
            return None
        return value

    return nh3.clean(
        html,
        tags=set(_BASE_TAGS | {"img"}),
        clean_content_tags=set(_DROP_WITH_CONTENT),
        attributes=_attrs(img={"alt", "width", "height", "data-cid"} | ({"src"} if sources else set())),
        attribute_filter=only_ours if sources else None,
        strip_comments=True,
        link_rel=LINK_REL,
        url_schemes=set(_LINK_SCHEMES),
        url_relative="deny",
        set_tag_attribute_values={"a": {"target": "_blank"}},
    )


def _esc(value: str) -> str:
    return _html.escape(value, quote=True)


def _image_label(alt: str) -> str:
    alt = " ".join(alt.split())
    if len(alt) > 100:
        alt = alt[:99] + "\u2026"
    return f"[image: {alt}]" if alt else "[image]"


class _ImageRewriter(HTMLParser):
    """Re-serialises nh3 output, replacing every ``<img>`` (see module docstring)."""

    def __init__(self, images: ImageLinks | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.images = images
        self.sources: set[str] = set()

    def _linked(self, src: str | None, values: dict[str, str]) -> bool:
        """Emit ``<img src>`` when the image got a link; False when it did not."""
        if not src:
            return False
        self.sources.add(src)
        keep = [("src", src)] + [(n, values[n]) for n in ("alt", "width", "height") if n in values]
        self.out.append(self._tag("img", keep))
        return True

    def _tag(self, tag: str, attrs: Sequence[tuple[str, str | None]], close: str = ">") -> str:
        parts = [tag]
        for name, value in attrs:
            parts.append(name if value is None else f'{name}="{_esc(value)}"')
        return "<" + " ".join(parts) + close

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "img":
            self.out.append(self._tag(tag, attrs))
            return
        values = {name: (value or "") for name, value in attrs}
        src = values.get("src", "").strip()
        alt = values.get("alt", "")
        scheme = src.split(":", 1)[0].lower() if ":" in src else ""
        if scheme in ("http", "https"):
            if self.images is not None and self._linked(self.images.remote(src), values):
                return
            self.out.append(f'<a href="{_esc(src)}">{_esc(_image_label(alt))}</a>')
        elif scheme == "cid" or (not src and values.get("data-cid")):
            # (an already sanitised <img data-cid> stays as it is: idempotence)
            content_id = src[4:] if scheme == "cid" else values["data-cid"]
            if self.images is not None and self._linked(self.images.cid(content_id), values):
                return
            keep = [("data-cid", content_id)]
            keep += [(name, values[name]) for name in ("alt", "width", "height") if name in values]
            self.out.append(self._tag("img", keep))
        elif alt.strip():
            self.out.append(_esc(_image_label(alt)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag != "img":
            self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        self.out.append(_esc(data))


def _rewrite_images(html: str, images: ImageLinks | None) -> tuple[str, frozenset[str]]:
    if "<img" not in html:
        return html, frozenset()
    parser = _ImageRewriter(images)
    parser.feed(html)
    parser.close()
    return "".join(parser.out), frozenset(parser.sources)


def sanitize_html(html: str, images: ImageLinks | None = None) -> str:
    """Return a safe, display-only version of untrusted e-mail HTML; with ``images``, the
    images it links get a ``src`` (see the module docstring).

    Never raises for any ``str`` input; returns ``""`` for empty input.
    """
    if not html:
        return ""
    # Lone surrogates (from undecodable bytes) cannot cross into Rust.
    html = html.encode("utf-8", "replace").decode("utf-8")
    rewritten, sources = _rewrite_images(_first_pass(html), images)
    return _final_pass(rewritten, sources).strip()
