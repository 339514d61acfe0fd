"""Parsing of raw RFC 5322 / MIME messages into :class:`ParsedMessage`: the MIME tree,
body selection and attachments. Header fields are read by :mod:`mimeheaders`, plain
text and snippets made by :mod:`mimetext`; this module is the facade over both.

Follows RFC 5322 (message format), RFC 2045-2047 (MIME, encoded words),
RFC 2231 (parameter encoding), RFC 2392 (cid:), RFC 3501 §6.4.5 (IMAP body
section numbers, used as attachment ids) and RFC 5322 §3.6.4 (Message-ID,
In-Reply-To, References).

Invariants:

* :func:`parse_message` never raises on any ``bytes`` input. Every field is read
  independently; what cannot be read gets its neutral value (``None``, ``""`` or
  ``[]``). ``size`` is always ``len(raw)``.
* Headers are read from their raw form and decoded here: 8-bit bytes as UTF-8,
  else Windows-1252/Latin-1; RFC 2047 encoded words with unknown charsets or bad
  base64 fall back instead of failing. For single-valued headers (Subject,
  Date, Message-ID, In-Reply-To, References) the first occurrence wins; address
  headers that occur several times are concatenated.
* Message ids are stored without angle brackets (:func:`normalize_message_id`);
  References keep their order (oldest first) without duplicates.
* Addresses keep the e-mail as written; entries without ``@`` (groups,
  ``undisclosed-recipients:;``, garbage) are skipped.
* ``date`` is timezone-aware UTC, ``None`` when missing or unparsable. A date
  without zone (``-0000``) is taken as UTC.
* ``html`` is always the output of :func:`mailsync.domain.sanitize.sanitize_html`.
  ``text`` is the first inline text/plain part, else text derived from the html.
  Bodies are searched in the message's own MIME tree only: an attached
  ``message/rfc822`` is one attachment, its content is never the body.
* Attachment ids are IMAP body section numbers: ``"1"``, ``"2"``, ``"2.1"``
  (1-based through multiparts; the single body of a non-multipart message is
  ``"1"``; the parts of an encapsulated message/rfc822 at ``"2"`` are ``"2.1"``,
  ...). :func:`get_attachment` resolves exactly these ids. A part is an
  attachment when its Content-Disposition is ``attachment``, when it has a
  filename and is not a chosen body, or when it is any other leaf that is not
  text/plain or text/html (an inline image referenced only by Content-ID, a
  text/calendar invitation, an attached message/rfc822 ...).
"""

from __future__ import annotations

import hashlib
import json
import quopri
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email import policy as _policy
from email._encoded_words import decode_b
from email.message import Message
from email.parser import BytesParser
from urllib.parse import unquote

from mailsync.domain import mimelimits
from mailsync.domain.bulk import is_bulk
from mailsync.domain.images import IMAGE_TYPES, ImageLinks
from mailsync.domain.mimeheaders import (
    decode_bytes,
    decode_header_value,
    first_header,
    normalize_message_id,
    parse_addresses,
    parse_date,
    parse_references,
    raw_headers,
    raw_to_str,
)
from mailsync.domain.mimetext import SNIPPET_LENGTH, html_to_text, snippet
from mailsync.domain.models import AttachmentInfo, ParsedMessage
from mailsync.domain.sanitize import sanitize_html

__all__ = [
    "SNIPPET_LENGTH",
    "Leaf",
    "decode_transfer",
    "fill_headers",
    "finish_body",
    "get_attachment",
    "header_map",
    "html_to_text",
    "message_key",
    "normalize_message_id",
    "parse_message",
    "quarantined",
    "render_located",
    "select_parts",
    "snippet",
]


# --------------------------------------------------------------------------- MIME tree


def _iter_parts(msg: Message, prefix: str = "") -> Iterator[tuple[str, Message, bool]]:
    """Yield ``(section, part, inside_attached_message)`` for every leaf-ish part.

    Multipart containers are not yielded themselves; a message/rfc822 part is
    yielded (as a leaf) and its content is walked with ``inside=True``.
    """
    yield from _walk(msg, prefix, inside=False, top=True)


def _children(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [p for p in payload if isinstance(p, Message)]
    return []


def _walk(part: Message, prefix: str, inside: bool, top: bool) -> Iterator[tuple[str, Message, bool]]:
    if part.is_multipart() and part.get_content_maintype() == "multipart":
        for index, child in enumerate(_children(part), start=1):
            section = f"{prefix}.{index}" if prefix else str(index)
            yield from _walk(child, section, inside, top=False)
        return
    if top:
        # RFC 3501: the body of a non-multipart message is section "1".
        prefix = f"{prefix}.1" if prefix else "1"
    yield prefix, part, inside
    if part.get_content_type() == "message/rfc822":
        for inner in _children(part):
            yield from _walk(inner, prefix, inside=True, top=True)


def _find_part(msg: Message, section: str) -> Message | None:
    for path, part, _inside in _iter_parts(msg):
        if path == section:
            return part
    return None


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:  # noqa: BLE001 - broken Content-Disposition header
        return None


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:  # noqa: BLE001 - broken Content-Type header
        return "application/octet-stream"


def _filename(part: Message) -> str | None:
    name: str | None = None
    try:
        name = part.get_filename() or part.get_param("name", header="content-type")  # type: ignore[assignment]
    except Exception:  # noqa: BLE001 - broken parameters
        name = None
    if isinstance(name, tuple):  # RFC 2231 triple when the policy did not collapse it
        try:
            name = decode_bytes(name[2].encode("latin-1", "replace"), name[0])
        except (IndexError, AttributeError):
            name = None
    if not name:
        return None
    name = decode_header_value(str(name)).strip()
    name = name.replace("/", "_").replace("\\", "_").replace("\x00", "")
    return name or None


def _serialise(inner: Message) -> bytes:
    try:
        return inner.as_bytes(policy=_policy.compat32)
    except Exception:  # noqa: BLE001 - re-serialising a broken message
        try:
            return inner.as_string(policy=_policy.compat32).encode("utf-8", "replace")
        except Exception:  # noqa: BLE001
            return b""


def _payload_bytes(part: Message) -> bytes:
    if _content_type(part).startswith("message/"):
        # message/rfc822 (one encapsulated message), message/delivery-status
        # (several header blocks): the email package keeps them parsed.
        inner = _children(part)
        if inner:
            return b"\n".join(_serialise(m) for m in inner) if len(inner) > 1 else _serialise(inner[0])
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - broken transfer encoding
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    if isinstance(payload, str):
        return payload.encode("ascii", "surrogateescape")
    return b""


def _part_text(part: Message) -> str:
    try:
        charset = part.get_content_charset()
    except Exception:  # noqa: BLE001 - broken charset parameter
        charset = None
    return decode_bytes(_payload_bytes(part), charset)


# --------------------------------------------------------------------------- public API


def _parse_tree(raw: bytes) -> Message | None:
    try:
        return BytesParser(policy=_policy.default).parsebytes(raw)
    except Exception:  # noqa: BLE001 - the parser is lenient, but never trust it
        return None


def _empty(raw: bytes) -> ParsedMessage:
    return ParsedMessage(
        message_id=None,
        in_reply_to=None,
        references=[],
        subject="",
        from_=[],
        to=[],
        cc=[],
        bcc=[],
        reply_to=[],
        date=None,
        text=None,
        html=None,
        snippet="",
        attachments=[],
        size=len(raw),
    )


def quarantined(raw: bytes, reason: str) -> ParsedMessage:
    """What is kept of a mail beyond the parser's limits (:mod:`mimelimits`): the header
    fields of its cut header block, no body, no attachments, and ``reason``."""
    parsed = _empty(raw)
    parsed.quarantine_reason = reason
    parsed.body_parts = []  # nothing to render: a read never parses it again
    try:
        msg = BytesParser(policy=_policy.default).parsebytes(
            mimelimits.quarantine_headers(raw), headersonly=True
        )
        fill_headers(parsed, header_map(msg.raw_items()))
    except Exception:  # noqa: BLE001, S110 - keep the neutral values
        pass
    return parsed


def parse_message(raw: bytes, images: ImageLinks | None = None) -> ParsedMessage:
    """Parse one raw message; never raises (see the module docstring). A mail beyond the
    limits of :mod:`mimelimits` is not parsed but :func:`quarantined`. ``images`` links the
    html's images (:mod:`mailsync.domain.images`) when a body is read."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raw = b""
    raw = bytes(raw)
    reason = mimelimits.screen(raw)
    if reason is not None:
        return quarantined(raw, reason)
    parsed = _empty(raw)
    msg = _parse_tree(raw)
    if msg is None:
        parsed.quarantine_reason = "unparsable"
        return parsed
    try:
        headers = header_map(msg.raw_items())
    except Exception:  # noqa: BLE001 - a broken header list must not break parsing
        headers = {}
    fill_headers(parsed, headers)
    try:
        text_leaf, html_leaf, parsed.attachments = select_parts(_tree_leaves(msg))
        text = text_leaf.text() if text_leaf else None
        html = html_leaf.text() if html_leaf else None
        parsed.text, parsed.html = finish_body(text, html, images)
        parsed.snippet = snippet(parsed.text)
    except Exception:  # noqa: BLE001 - keep the headers when the body is unreadable
        parsed.quarantine_reason = "unreadable_body"
    return parsed


def header_map(items: Iterable[tuple[str, object]]) -> dict[str, list[str]]:
    """Raw header values by lower-cased name, in message order."""
    out: dict[str, list[str]] = {}
    for name, value in items:
        out.setdefault(name.lower(), []).append(str(value))
    return out


def fill_headers(parsed: ParsedMessage, headers: dict[str, list[str]]) -> None:
    """Set the header fields of ``parsed`` from :func:`header_map` output.

    Each field is read independently: one unreadable field keeps its neutral value.
    """

    def first(name: str) -> str | None:
        values = headers.get(name.lower())
        return values[0] if values else None

    def safe(fn, default):  # type: ignore[no-untyped-def]
        try:
            return fn()
        except Exception:  # noqa: BLE001 - one unreadable field must not lose the others
            return default

    parsed.message_id = safe(lambda: normalize_message_id(first("Message-ID")), None)
    parsed.in_reply_to = safe(lambda: normalize_message_id(first("In-Reply-To")), None)
    refs = safe(lambda: parse_references(first("References")), [])
    if len(refs) > mimelimits.MAX_REFERENCES:  # the root and the latest ones thread the mail
        refs = refs[:1] + refs[1 - mimelimits.MAX_REFERENCES :]
    parsed.references = refs
    subject = safe(lambda: decode_header_value(first("Subject") or "").strip(), "")
    parsed.subject = subject[: mimelimits.MAX_SUBJECT_CHARS]
    for attr, header in (
        ("from_", "from"),
        ("to", "to"),
        ("cc", "cc"),
        ("bcc", "bcc"),
        ("reply_to", "reply-to"),
    ):
        addresses = safe(lambda h=header: parse_addresses(headers.get(h, [])), [])
        setattr(parsed, attr, addresses[: mimelimits.MAX_ADDRESSES])
    parsed.date = safe(lambda: parse_date(first("Date")), None)
    sender = parsed.from_[0].email if parsed.from_ else None
    parsed.bulk = safe(lambda: is_bulk(headers, sender), False)


@dataclass
class Leaf:
    """One leaf of a MIME tree, as far as choosing bodies and attachments needs it.

    ``text``/``payload``/``filename`` are callables so that nothing is decoded
    unless it is chosen. ``location`` is ``(start, end)`` of the encoded payload
    in the raw message when the reader knows it (the fast scan does).
    """

    section: str
    inside: bool  # within an attached message/rfc822
    ctype: str
    disposition: str | None
    filename: Callable[[], str | None]
    payload: Callable[[], bytes]
    text: Callable[[], str]
    charset: str | None = None
    cte: str = ""
    location: tuple[int, int] | None = None


def select_parts(leaves: list[Leaf]) -> tuple[Leaf | None, Leaf | None, list[AttachmentInfo]]:
    """The text/plain body, the text/html body and the attachments of a message.

    The bodies are the first inline text/plain and text/html leaves outside an
    attached message; see the module docstring for what counts as an attachment.
    """
    text_leaf: Leaf | None = None
    html_leaf: Leaf | None = None
    for leaf in leaves:
        if leaf.inside or leaf.disposition == "attachment":
            continue
        ctype = leaf.ctype
        if ctype.startswith("multipart/"):
            ctype = "text/plain"  # a multipart without usable boundary: read it as text
        if ctype == "text/plain" and text_leaf is None:
            text_leaf = leaf
        elif ctype == "text/html" and html_leaf is None:
            html_leaf = leaf

    attachments: list[AttachmentInfo] = []
    for leaf in leaves:
        if leaf.inside or leaf is text_leaf or leaf is html_leaf:
            continue
        ctype = leaf.ctype
        filename = leaf.filename()
        is_attachment = (
            leaf.disposition == "attachment"
            or filename is not None
            or ctype not in ("text/plain", "text/html")
            and not ctype.startswith("multipart/")
        )
        if is_attachment:
            attachments.append(
                AttachmentInfo(
                    id=leaf.section,
                    filename=filename[: mimelimits.MAX_FILENAME_CHARS] if filename else filename,
                    content_type=ctype[: mimelimits.MAX_FILENAME_CHARS],
                    size=len(leaf.payload()),
                )
            )
    return text_leaf, html_leaf, attachments


def finish_body(
    text: str | None, html: str | None, images: ImageLinks | None = None
) -> tuple[str | None, str | None]:
    """``(text, sanitized html)`` from the decoded body parts: the html is always
    sanitized (dropped when that fails); text is derived from it when missing."""
    clean: str | None = None
    if html is not None:
        try:
            clean = sanitize_html(html, images)
        except Exception:  # noqa: BLE001 - never keep raw html, drop it instead
            clean = None
    if text is None and html is not None:
        text = html_to_text(html)
    return text, clean


def decode_transfer(data: bytes, cte: str) -> bytes:
    """The payload decoded from its Content-Transfer-Encoding (lower-cased), exactly as
    :meth:`email.message.Message.get_payload` with ``decode=True`` does for
    quoted-printable, base64 and the identity encodings."""
    if cte == "quoted-printable":
        return quopri.decodestring(data)
    if cte == "base64":
        value, _defects = decode_b(b"".join(data.splitlines()))
        return value
    return data


def render_located(
    parts: Iterable[tuple[str, bytes, str, str | None]], images: ImageLinks | None = None
) -> tuple[str | None, str | None]:
    """``(text, sanitized html)`` of a message from its located body parts:
    ``(kind, encoded payload, transfer encoding, charset)`` with kind ``text`` or ``html``;
    ``images`` as for :func:`parse_message`."""
    text: str | None = None
    html: str | None = None
    for kind, data, cte, charset in parts:
        decoded = decode_bytes(decode_transfer(data, cte), charset)
        if kind == "text":
            text = decoded
        else:
            html = decoded
    return finish_body(text, html, images)


def _tree_leaves(msg: Message) -> list[Leaf]:
    leaves: list[Leaf] = []
    for path, part, inside in _iter_parts(msg):
        leaves.append(
            Leaf(
                section=path,
                inside=inside,
                ctype=_content_type(part),
                disposition=_disposition(part),
                filename=lambda part=part: _named(part),  # type: ignore[misc]
                payload=lambda part=part: _payload_bytes(part),  # type: ignore[misc]
                text=lambda part=part: _part_text(part),  # type: ignore[misc]
            )
        )
    return leaves


def _named(part: Message) -> str | None:
    """The filename of a part; an attached message without one is named after its subject."""
    filename = _filename(part)
    if filename is None and _content_type(part) == "message/rfc822":
        inner = _children(part)
        values = raw_headers(inner[0], "Subject") if inner else []
        subject = decode_header_value(values[0]) if values else ""
        filename = (subject.strip() or "message") + ".eml"
    return filename


def get_attachment(raw: bytes, attachment_id: str) -> tuple[str | None, str, bytes] | None:
    """``(filename, content_type, decoded bytes)`` of the part ``attachment_id``
    (an IMAP section number as produced by :func:`parse_message`), or ``None``
    when there is no such part. Never raises."""
    if not attachment_id or not re.fullmatch(r"[1-9]\d*(\.[1-9]\d*)*", attachment_id):
        return None
    msg = _parse_tree(bytes(raw))
    if msg is None:
        return None
    try:
        part = _find_part(msg, attachment_id)
        if part is None:
            return None
        return _filename(part), _content_type(part), _payload_bytes(part)
    except Exception:  # noqa: BLE001
        return None


def get_inline_image(raw: bytes, content_id: str) -> tuple[str, bytes] | None:
    """``(content type, decoded bytes)`` of the message's own image part whose Content-ID
    is ``content_id`` (RFC 2392: the ``cid:`` URL without its scheme, compared without the
    angle brackets), or ``None``: no such part, or not a raster image
    (:data:`~mailsync.domain.images.IMAGE_TYPES`). Parts of an attached message are not the
    mail's own. Never raises."""
    wanted = normalize_message_id(unquote(content_id))
    if not wanted:
        return None
    msg = _parse_tree(bytes(raw))
    if msg is None:
        return None
    try:
        for _path, part, inside in _iter_parts(msg):
            values = raw_headers(part, "Content-ID")
            if inside or not values or normalize_message_id(values[0]) != wanted:
                continue
            ctype = _content_type(part)
            return (ctype, _payload_bytes(part)) if ctype in IMAGE_TYPES else None
    except Exception:  # noqa: BLE001
        return None
    return None


def _raw_body(raw: bytes) -> bytes:
    for sep in (b"\r\n\r\n", b"\n\n"):
        index = raw.find(sep)
        if index != -1:
            return raw[index + len(sep) :]
    return b""


def message_key(parsed: ParsedMessage, raw: bytes) -> str:
    """The identity used to dedupe copies of one mail across folders.

    * With a Message-ID: the normalised id, lower-cased. RFC 5322 makes the
      local part case-sensitive, but servers and clients are known to rewrite
      case, and two distinct mails whose ids differ only by case do not occur in
      practice.
    * Without one: ``"sha256:" + hex`` of the canonical JSON of (Date header as
      written, From addresses lower-cased, decoded Subject, byte length of the
      body with CRLF normalised to LF). These are the fields the author's client
      sets once; everything that changes between copies of the same mail is left
      out: the folder-local UID, flags, and trace/status headers that servers add
      or rewrite on delivery or copy (Received, Return-Path, Status, X-UID,
      X-Keywords ...) — which is why the whole raw message cannot be hashed.
      The body length is included so that two different mails with identical
      headers (automated mails without Message-ID) do not merge, and line
      endings are normalised because servers store them differently.
    """
    if parsed.message_id:
        return parsed.message_id.lower()
    try:
        msg: Message | None = BytesParser(policy=_policy.default).parsebytes(bytes(raw), headersonly=True)
    except Exception:  # noqa: BLE001
        msg = None
    date_raw = first_header(msg, "Date") if msg is not None else None
    date = " ".join(raw_to_str(date_raw).split()) if date_raw else ""
    body = _raw_body(raw).replace(b"\r\n", b"\n")
    canonical = json.dumps(
        [date, [a.key for a in parsed.from_], parsed.subject, len(body)],
        ensure_ascii=True,
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(canonical.encode("ascii")).hexdigest()
