"""Header fields of RFC 5322 / MIME messages: charsets, encoded words, message ids,
addresses and dates. Every function here is total: it never raises on any input and
returns a neutral value (``""``, ``None``, ``[]``) for what it cannot read.

Follows RFC 5322 (§3.3 dates, §3.4 addresses, §3.6.4 Message-ID, In-Reply-To,
References), RFC 2047 (encoded words; whitespace between adjacent words dropped,
§6.2) and RFC 2045 (charsets). 8-bit header bytes are read as UTF-8, else
Windows-1252/Latin-1.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import contextlib
import quopri
import re
from datetime import UTC, datetime, timedelta
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime

from mailsync.domain.models import Address

_WS = re.compile(r"\s+")
_ANGLE_ID = re.compile(r"<([^<>]*)>")
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_UNFOLD = re.compile(r"\r?\n(?=[ \t])")
# The Date form nearly every client writes (RFC 5322 §3.3): [day-name ","] d month yyyy hh:mm[:ss] zone
_PLAIN_DATE = re.compile(
    r"(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), )?(\d{1,2}) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"([1-9]\d{3}) (\d\d):(\d\d)(?::(\d\d))? ([+-])(\d\d)(\d\d)"
)
_MONTH_NUMBERS = {
    m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), start=1)
}
_EW_GAP = re.compile(r"(=\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)\s+(?==\?[^?\s]+\?[bBqQ]\?[^?\s]*\?=)")


# --------------------------------------------------------------------------- text decoding


def _text_codec(charset: str | None) -> str | None:
    """The Python codec for a MIME charset, ``None`` for unknown / non-text codecs."""
    if not charset:
        return None
    name = charset.strip().strip("\"'").split("*", 1)[0].lower()
    if not name:
        return None
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    if not getattr(info, "_is_text_encoding", True):  # base64, rot13, zlib ...
        return None
    return info.name


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode ``data`` declared as ``charset``; never fails.

    Order: the declared charset (ISO-8859-1 read as its superset Windows-1252),
    then UTF-8, then the declared charset with replacement characters. Without
    a usable declaration (missing, unknown, or us-ascii which is routinely
    mislabelled 8-bit text): UTF-8, Windows-1252, Latin-1.
    """
    codec = _text_codec(charset)
    if codec == "ascii":
        codec = None
    attempts: list[str] = []
    if codec == "iso8859-1":
        attempts.append("cp1252")
    if codec:
        attempts.append(codec)
    if "utf-8" not in attempts:
        attempts.append("utf-8")
    if not codec:
        attempts.append("cp1252")
    for attempt in attempts:
        try:
            return data.decode(attempt)
        except (UnicodeError, LookupError):
            continue
    if codec:
        try:
            return data.decode(codec, "replace")
        except (UnicodeError, LookupError):
            pass
    return data.decode("latin-1")


def raw_to_str(value: object) -> str:
    """A raw header value (str with surrogate-escaped 8-bit bytes) to clean text."""
    if value is None:
        return ""
    text = str(value)
    if text.isascii():  # the common case; 8-bit bytes arrive as surrogates, never ASCII
        return text
    try:
        data = text.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
    return decode_bytes(data, None)


def _decode_word(charset: str, encoding: str, payload: str) -> str | None:
    try:
        if encoding.lower() == "b":
            payload += "=" * (-len(payload) % 4)
            data = base64.b64decode(payload.encode("ascii"), validate=False)
        else:
            data = quopri.decodestring(payload.replace("_", " ").encode("ascii"), header=False)
    except (binascii.Error, ValueError, UnicodeError):
        return None
    return decode_bytes(data, charset)


def decode_header_value(value: object) -> str:
    """Unfold a raw header value and decode RFC 2047 encoded words in it.

    Whitespace between two adjacent encoded words is dropped (RFC 2047 §6.2).
    Malformed encoded words are kept literally.
    """
    text = raw_to_str(value)
    if "\n" in text or "\r" in text:
        text = _UNFOLD.sub("", text).replace("\r", "").replace("\n", " ")
    if "=?" not in text:
        return text
    text = _EW_GAP.sub(r"\1", text)

    def repl(match: re.Match[str]) -> str:
        decoded = _decode_word(match.group(1), match.group(2), match.group(3))
        return match.group(0) if decoded is None else decoded

    return _ENCODED_WORD.sub(repl, text)


# --------------------------------------------------------------------------- headers


def raw_headers(msg: Message, name: str) -> list[str]:
    wanted = name.lower()
    try:
        return [str(v) for k, v in msg.raw_items() if k.lower() == wanted]
    except Exception:  # noqa: BLE001 - a broken header list must not break parsing
        return []


def first_header(msg: Message, name: str) -> str | None:
    values = raw_headers(msg, name)
    return values[0] if values else None


def normalize_message_id(s: str | None) -> str | None:
    """``" <Abc@Example.com> (comment)"`` → ``"Abc@Example.com"``; ``None`` when empty.

    Takes the first ``<...>`` token when there is one, else the first
    whitespace-separated word; case is preserved (see :func:`message_key`).
    """
    if not s:
        return None
    text = raw_to_str(s).strip()
    match = _ANGLE_ID.search(text)
    if match:
        candidate = match.group(1)
    else:
        words = text.split()
        candidate = words[0] if words else ""
    candidate = _WS.sub("", candidate).strip("<>")
    return candidate or None


def parse_references(value: str | None) -> list[str]:
    if not value:
        return []
    text = raw_to_str(value)
    tokens = _ANGLE_ID.findall(text) if "<" in text else text.split()
    out: list[str] = []
    for token in tokens:
        ref = normalize_message_id(token)
        if ref and ref not in out:
            out.append(ref)
    return out


_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_EMAIL = rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_PHRASE_WORD = r'[^"(),.:;<>@\[\]\\\s]+'
# One plain mailbox: ["quoted name" | name words] <dot-atom@domain>, or a bare dot-atom@domain.
_PLAIN_MAILBOX = re.compile(
    rf'[ \t]*(?:(?:"([^"\\]*)"|({_PHRASE_WORD}(?:[ \t]+{_PHRASE_WORD})*))?[ \t]*<({_PLAIN_EMAIL})>'
    rf"|({_PLAIN_EMAIL}))[ \t]*(?:,|$)"
)


def _plain_mailboxes(text: str) -> list[tuple[str, str]] | None:
    """``getaddresses([text])`` for a list of plain mailboxes (the common case), else ``None``.

    The stdlib parser is exact but slow; this path only takes input whose result
    cannot differ from it: no groups, comments, quoted pairs, routes or domain literals.
    """
    out: list[tuple[str, str]] = []
    pos, end = 0, len(text)
    while pos < end:
        match = _PLAIN_MAILBOX.match(text, pos)
        if match is None:
            return None
        quoted, words, routed, bare = match.groups()
        if bare is not None:
            out.append(("", bare))
        else:
            out.append((quoted if quoted is not None else " ".join((words or "").split()), routed))
        pos = match.end()
        if text[pos - 1] == "," and not text[pos:].strip():
            return None  # a trailing comma: leave the empty entry to getaddresses
    return out


def parse_addresses(values: list[str]) -> list[Address]:
    if not values:
        return []
    texts = [raw_to_str(v).replace("\r", "").replace("\n", " ") for v in values]
    pairs: list[tuple[str, str]] | None = []
    for text in texts:
        plain = _plain_mailboxes(text)
        if plain is None or pairs is None:
            pairs = None
            break
        pairs.extend(plain)
    if pairs is None:
        # One header at a time: since Python 3.13 (CVE-2023-27043) getaddresses is strict and
        # answers [("", "")] for the whole list when any part of it, an empty field included,
        # does not parse; a broken Cc must not take the From and To with it.
        pairs = []
        for text in texts:
            if text.strip():
                # getaddresses has raised on hostile input in the past
                with contextlib.suppress(Exception):
                    pairs.extend(getaddresses([text]))
    out: list[Address] = []
    for name, email in pairs:
        email = (email or "").strip()
        if "@" not in email:
            continue
        display = " ".join(decode_header_value(name).split()) if name else ""
        out.append(Address(name=display or None, email=email))
    return out


def parse_date(value: str | None) -> datetime | None:
    if not value:
        return None
    text = raw_to_str(value).strip()
    plain = _PLAIN_DATE.fullmatch(text)
    if plain is not None:  # parsedate_to_datetime gives the same, ~5x slower
        day, month, year, hour, minute, second, sign, zh, zm = plain.groups()
        offset = timedelta(hours=int(zh), minutes=int(zm))
        try:
            local = datetime(
                int(year), _MONTH_NUMBERS[month], int(day), int(hour), int(minute), int(second or 0)
            )
            return (local - offset if sign == "+" else local + offset).replace(tzinfo=UTC)
        except (ValueError, OverflowError):
            return None
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
