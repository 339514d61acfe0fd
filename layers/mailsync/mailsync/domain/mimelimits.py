"""Limits of the MIME parser, and the screen that enforces them before any parsing.

Hostile mail is built to make parsers slow or deep: a thousand nested multiparts, ten
thousand parts, a header line of a megabyte. The stdlib ``email`` package handles all of
them, but slowly (a 1,000-level nesting took 20 s here and lost even the headers; 10,000
parts took 50 s) and our tree walk is recursive. :func:`screen` finds such a mail with
C-speed regular expressions over the raw bytes, before the email package sees it; the
mail is then stored **quarantined** (its header fields, cut to the limits below, no body,
no attachments) with the reason, instead of being parsed.

Invariants:

* :func:`screen` never raises, runs in time linear in ``len(raw)`` and allocates at
  most a few copies of the header block; it over-estimates rather than misses (a
  delimiter line of a declared boundary counts as a part wherever it is).
* A mail within the limits is parsed as before; a mail beyond them is never handed to
  the email package whole (:func:`quarantine_headers` returns its cut header block).
* Stored fields are capped (:data:`MAX_SUBJECT_CHARS`, :data:`MAX_ADDRESSES`,
  :data:`MAX_REFERENCES`, :data:`MAX_FILENAME_CHARS`) so that one message document stays
  far below DynamoDB's 400 KB item limit whatever the mail says.
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_ADDRESSES",
    "MAX_DEPTH",
    "MAX_FILENAME_CHARS",
    "MAX_HEADER_LENGTH",
    "MAX_PARTS",
    "MAX_REFERENCES",
    "MAX_SUBJECT_CHARS",
    "quarantine_headers",
    "screen",
]

MAX_DEPTH = 64
"""Deepest MIME nesting parsed: nested multiparts plus every ``message/*`` part (each
encapsulated message is a level of recursion). Real mail rarely goes beyond 5."""

MAX_PARTS = 500
"""Most MIME parts (delimiter lines of declared boundaries) parsed in one mail. Also
bounds the attachment list stored with the message (about 300 bytes per entry)."""

MAX_HEADER_LENGTH = 64 * 1024
"""Longest header field, in bytes, folded lines included (RFC 5322 §2.1.1 allows 998
per line; a To: of 1,000 recipients is about 40 KB)."""

MAX_SUBJECT_CHARS = 2000
"""Characters of the decoded Subject kept."""

MAX_ADDRESSES = 200
"""Addresses kept per address field (From, To, Cc, Bcc, Reply-To)."""

MAX_REFERENCES = 100
"""Message ids kept of References: the first (the thread root) and the latest ones."""

MAX_FILENAME_CHARS = 255
"""Characters of an attachment's file name kept (the usual file-system limit)."""

_BOUNDARY = re.compile(rb'(?i)\bboundary\s*=\s*(?:"([^"\r\n]*)"|([^\s;"]+))')
_DELIMITER = re.compile(rb"(?m)^--([^\r\n]*?)[ \t]*\r?$")
_ENCAPSULATED = re.compile(rb"(?im)^content-type:[ \t]*message/")
_LONG_LINE = re.compile(rb"(?m)^[\x21-\x39\x3b-\x7e]+:[^\r\n]{%d}" % MAX_HEADER_LENGTH)
_FIELD_SPLIT = re.compile(rb"\r?\n(?![ \t])")


def _header_block(raw: bytes) -> bytes:
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i != -1]
    return raw[: min(ends)] if ends else raw


def _depth_and_parts(raw: bytes) -> tuple[int, int]:
    declared = {
        (m.group(1) if m.group(1) is not None else m.group(2)).rstrip() for m in _BOUNDARY.finditer(raw)
    }
    declared.discard(b"")
    stack: list[bytes] = []
    depth = parts = 0
    if declared:
        for m in _DELIMITER.finditer(raw):
            token = m.group(1)
            if token.endswith(b"--") and token[:-2] in declared:
                if token[:-2] in stack:
                    del stack[stack.index(token[:-2]) :]
                continue
            if token not in declared:
                continue
            parts += 1
            if token in stack:
                del stack[stack.index(token) + 1 :]
            else:
                stack.append(token)
                depth = max(depth, len(stack))
    encapsulated = sum(1 for _ in _ENCAPSULATED.finditer(raw))
    return depth + encapsulated, parts + encapsulated


def screen(raw: bytes) -> str | None:
    """The reason to quarantine ``raw`` instead of parsing it, or ``None``.

    Reasons: ``header_too_long`` (a field over :data:`MAX_HEADER_LENGTH`),
    ``too_deep`` (nesting over :data:`MAX_DEPTH`), ``too_many_parts`` (over
    :data:`MAX_PARTS`).
    """
    try:
        if _LONG_LINE.search(raw) or any(
            len(f) > MAX_HEADER_LENGTH for f in _FIELD_SPLIT.split(_header_block(raw))
        ):
            return "header_too_long"
        depth, parts = _depth_and_parts(raw)
        if depth > MAX_DEPTH:
            return "too_deep"
        if parts > MAX_PARTS:
            return "too_many_parts"
    except Exception:  # noqa: BLE001 - a screen must never be the reason a mail is lost
        return None
    return None


def quarantine_headers(raw: bytes) -> bytes:
    """The top header block of ``raw`` with every field cut to :data:`MAX_HEADER_LENGTH`
    bytes, ending with the blank line: what is parsed of a quarantined mail."""
    fields = [f[:MAX_HEADER_LENGTH] for f in _FIELD_SPLIT.split(_header_block(raw)) if f]
    return b"\r\n".join(fields) + b"\r\n\r\n"
