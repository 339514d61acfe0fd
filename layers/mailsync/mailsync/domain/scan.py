"""Fast ingest scan of a raw message: headers, MIME structure and snippet, no rendering.

The sync engine reads every new mail once, and most mirrored mail is never opened.
So ingest keeps what lists, threading and assignment need (the header fields, the
snippet, the attachment list) plus *where* the text/plain and text/html bodies sit
in the raw message (:class:`~mailsync.domain.models.BodyPart`); decoding and
sanitizing the bodies happens when a message is read
(:func:`mailsync.domain.mime.render_located` on a ranged read of the raw object).

Follows the same RFCs as :mod:`mailsync.domain.mime` (RFC 5322 header fields,
RFC 2045/2046 MIME structure and boundaries, RFC 3501 §6.4.5 section numbers) and
mirrors the line handling of the stdlib ``email.feedparser``: a boundary line is
``--boundary`` optionally followed by ``--``, blanks and the line end, and the line
end before it belongs to the boundary.

Invariants:

* :func:`scan_message` never raises and returns, for every input, the same header
  fields, ``snippet``, ``attachments`` and ``size`` as
  :func:`mailsync.domain.mime.parse_message`; rendering its ``body_parts`` gives the
  same ``text`` and ``html`` (``tests/unit/test_scan.py`` checks this on corpora).
* It reads only header blocks and boundary positions. Payloads are decoded only for
  the snippet (the text part), for attachment sizes (C-speed ``binascii``) and for
  html-only mail (the snippet comes from the html).
* Input outside the well-formed common case is handed to ``parse_message`` whole
  (``body_parts`` is then ``None``: the reader parses the raw message): mbox
  ``From`` lines, bare CR line ends in headers or at delimiters, header lines the feed parser would treat as
  body, missing boundaries or close delimiters, ``message/*`` parts, RFC 2231 or
  non-ASCII parameters, unknown transfer encodings, more than 20 levels of nesting.
"""

from __future__ import annotations

import re

from mailsync.domain import mime, mimeheaders, mimelimits, mimetext
from mailsync.domain.models import BodyPart, ParsedMessage

__all__ = ["scan_message"]

# One header field: name (email.feedparser.headerRE without "From "), blanks, then the
# value with its continuation lines, up to the line end.
_FIELD = rb"([\x21-\x39\x3b-\x7e]+):[ \t]*((?:[^\r\n]|\r?\n[ \t])*)(?:\r?\n|\Z)"
_HEADER_FIELD = re.compile(_FIELD)
_HEAD = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+(?:/[A-Za-z0-9!#$%&'*+.^_`|~-]+)?")
_CTYPE = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+/[a-z0-9!#$%&'*+.^_`|~-]+")
_PARAM = re.compile(
    r'\s*;\s*([A-Za-z0-9!#$%&\'+.^_`|~-]+)\s*=\s*(?:"([^"\\\r\n]*)"|([A-Za-z0-9!#$%&+.^_`|~-]+))\s*'
)
_TRAILING_SEMICOLONS = re.compile(r"[\s;]*")
_B64 = r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
_WORD = rf"(?:=\?[^?\s]+\?(?:[qQ]\?(?:[^?\s=]|=[0-9A-Fa-f]{{2}})*|[bB]\?{_B64})\?=|[^\s=?]+)"
_WORDS = re.compile(rf"{_WORD}(?:[ \t]+{_WORD})*")  # RFC 2047 words between blanks, in a parameter
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_IDENTITY = frozenset({"", "7bit", "8bit", "binary"})
_MAX_DEPTH = 20


class _Fallback(Exception):
    """The input is outside the fast path: parse it with the email package."""


def scan_message(raw: bytes) -> ParsedMessage:
    """Scan one raw message; never raises (see the module docstring). A mail beyond the
    limits of :mod:`mailsync.domain.mimelimits` is quarantined, not scanned."""
    if isinstance(raw, bytes):
        reason = mimelimits.screen(raw)
        if reason is not None:
            return mime.quarantined(raw, reason)
    try:
        if isinstance(raw, bytes):
            return _scan(raw)
    except Exception:  # noqa: BLE001, S110 - _Fallback, or a bug: the full parser is always right
        pass
    parsed = mime.parse_message(raw)
    parsed.text = parsed.html = None  # rendered from the whole raw message when read
    return parsed


def _scan(raw: bytes) -> ParsedMessage:
    if raw.startswith(b"From "):
        raise _Fallback  # an mbox envelope line
    headers, body_start = _headers(raw, 0, len(raw))
    parsed = mime._empty(raw)
    mime.fill_headers(parsed, headers)
    leaves: list[mime.Leaf] = []
    _walk(raw, headers, body_start, len(raw), "", True, (), leaves)
    text_leaf, html_leaf, parsed.attachments = mime.select_parts(leaves)
    parts: list[BodyPart] = []
    for kind, leaf in (("text", text_leaf), ("html", html_leaf)):
        if leaf is not None:
            if leaf.location is None:
                raise _Fallback
            parts.append(BodyPart(kind, leaf.location[0], leaf.location[1], leaf.cte, leaf.charset))
    parsed.body_parts = parts
    if text_leaf is not None:
        parsed.snippet = mimetext.snippet(text_leaf.text())
    elif html_leaf is not None:
        parsed.snippet = mimetext.snippet(mimetext.html_to_text(html_leaf.text()))
    return parsed


def _headers(buf: bytes, start: int, end: int) -> tuple[dict[str, list[str]], int]:
    """The header block at ``buf[start:end]`` as :func:`mime.header_map`, and where the body starts."""
    if buf.startswith(b"\r\n", start, end):
        return {}, start + 2
    if buf.startswith(b"\n", start, end):
        return {}, start + 1
    crlf = buf.find(b"\n\r\n", start, end)
    lf = buf.find(b"\n\n", start, end if crlf == -1 else crlf)
    if crlf != -1 and (lf == -1 or crlf < lf):
        block_end, body_start = crlf + 1, crlf + 3
    elif lf != -1:
        block_end, body_start = lf + 1, lf + 2
    else:
        block_end = body_start = end
    out: dict[str, list[str]] = {}
    pos = start
    for field in _HEADER_FIELD.finditer(buf, start, block_end):
        if field.start() != pos:
            raise _Fallback  # a line the feed parser would treat as body, or a stray continuation
        pos = field.end()
        name, value = field.groups()
        # email.policy.EmailPolicy.header_source_parse: leading blanks and the line end go.
        out.setdefault(name.decode("ascii").lower(), []).append(value.decode("ascii", "surrogateescape"))
    if pos != block_end:
        raise _Fallback
    return out, body_start


def _content_header(headers: dict[str, list[str]], name: str) -> tuple[str, dict[str, str]] | None:
    values = headers.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise _Fallback
    value = _FOLD.sub("", values[0])
    if not value.isascii() or "*" in value or "\\" in value:
        raise _Fallback  # non-ASCII, RFC 2231 continuations, quoted pairs
    head, sep, rest = value.partition(";")
    if not _HEAD.fullmatch(head.strip()):
        raise _Fallback  # not a plain type or disposition token
    params: dict[str, str] = {}
    pos = 0
    rest = sep + rest
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        if match is None:
            if _TRAILING_SEMICOLONS.fullmatch(rest, pos):
                break
            raise _Fallback
        key = match.group(1).lower()
        param = match.group(2) if match.group(2) is not None else match.group(3)
        if key in params or ("=?" in param or "?=" in param) and not _WORDS.fullmatch(param):
            raise _Fallback  # encoded words that the header parser may read differently
        params[key] = param
        pos = match.end()
    return head.strip().lower(), params


def _walk(
    raw: bytes,
    headers: dict[str, list[str]],
    start: int,
    end: int,
    section: str,
    top: bool,
    boundaries: tuple[bytes, ...],
    leaves: list[mime.Leaf],
) -> None:
    if len(boundaries) > _MAX_DEPTH:
        raise _Fallback
    content_type = _content_header(headers, "content-type")
    ctype, params = content_type if content_type else ("text/plain", {})
    if not _CTYPE.fullmatch(ctype):
        raise _Fallback
    if ctype.startswith("multipart/"):
        if ctype == "multipart/digest" or not params.get("boundary"):
            raise _Fallback  # digest children default to message/rfc822
        boundary = params["boundary"].rstrip().encode("ascii")  # as Message.get_boundary
        if boundary in boundaries:
            raise _Fallback
        for index, (cstart, cend) in enumerate(_children(raw, start, end, boundary), start=1):
            child_headers, child_body = _headers(raw, cstart, cend)
            child = f"{section}.{index}" if section else str(index)
            _walk(raw, child_headers, child_body, cend, child, False, (*boundaries, boundary), leaves)
        return
    if ctype.startswith("message/"):
        raise _Fallback  # encapsulated messages are re-serialised by the email package
    cte_values = headers.get("content-transfer-encoding") or [""]
    cte = _FOLD.sub("", cte_values[0]).lower()
    if len(cte_values) > 1 or cte not in _IDENTITY and cte not in ("quoted-printable", "base64"):
        raise _Fallback  # blanks around the name change what the email package decodes
    disposition = _content_header(headers, "content-disposition")
    charset = params.get("charset")
    if top:
        section = f"{section}.1" if section else "1"  # RFC 3501: a lone body is section 1
    location = (start, end)
    leaves.append(
        mime.Leaf(
            section=section,
            inside=False,
            ctype=ctype,
            disposition=disposition[0] if disposition else None,
            filename=lambda: _filename(disposition[1] if disposition else {}, params),
            payload=lambda: mime.decode_transfer(raw[location[0] : location[1]], cte),
            text=lambda: mimeheaders.decode_bytes(
                mime.decode_transfer(raw[location[0] : location[1]], cte), charset and charset.lower()
            ),
            charset=charset and charset.lower(),
            cte=cte,
            location=location,
        )
    )


def _children(raw: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of each body part between the delimiters of ``boundary``."""
    marker = b"--" + boundary
    found = _delimiter(raw, start, end, marker)
    if found is None or found[2]:
        raise _Fallback  # no opening delimiter
    parts: list[tuple[int, int]] = []
    while True:
        part_start = found[1]
        if raw.startswith(marker, part_start, end):
            raise _Fallback  # the feed parser folds consecutive delimiter lines into one
        nxt = _delimiter(raw, part_start, end, marker)
        if nxt is None:
            raise _Fallback  # no close delimiter: a truncated message
        parts.append((part_start, nxt[0]))
        if nxt[2]:
            return parts
        found = nxt


def _delimiter(raw: bytes, start: int, end: int, marker: bytes) -> tuple[int, int, bool] | None:
    """The next delimiter line at or after ``start``: ``(end of the content before it,
    start of the content after it, is the close delimiter)``. The line end before a
    delimiter belongs to it (RFC 2046 §5.1.1)."""
    pos = start
    while True:
        i = raw.find(marker, pos, end)
        if i == -1:
            return None
        pos = i + 1
        if i > 0 and raw[i - 1] == 0x0D:
            raise _Fallback  # a bare CR ends a line for the feed parser
        if i > 0 and raw[i - 1] != 0x0A:  # not at the start of a line
            continue
        j = i + len(marker)
        close = raw.startswith(b"--", j, end)
        if close:
            j += 2
        while j < end and raw[j] in (0x20, 0x09):
            j += 1
        if j < end:
            if raw.startswith(b"\r\n", j, end):
                j += 2
            elif raw[j] == 0x0A:
                j += 1
            elif raw[j] == 0x0D:
                raise _Fallback  # a bare CR ends a line for the feed parser
            else:
                continue  # "--boundary" followed by more text is not a delimiter
        before = i
        if i > start:
            before = i - 2 if i - 2 >= start and raw[i - 2] == 0x0D else i - 1
        return before, j, close


def _filename(disposition: dict[str, str], content_type: dict[str, str]) -> str | None:
    # mime._filename: get_filename() (stripped), else the Content-Type name.
    name = disposition.get("filename")
    if name is None:
        name = content_type.get("name")
    if name is not None:
        name = name.strip()
    if not name:
        name = content_type.get("name")
    if not name:
        return None
    name = mimeheaders.decode_header_value(name).strip()
    name = name.replace("/", "_").replace("\\", "_").replace("\x00", "")
    return name or None
