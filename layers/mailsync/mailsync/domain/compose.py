"""Build outgoing RFC 5322 messages (pure: no network, no AWS).

* :func:`parse_address` turns what an API client sent (``"Name <a@b.example>"``,
  ``"a@b.example"`` or ``{"name": ..., "email": ...}``) into an
  :class:`~mailsync.domain.models.Address`, or raises :class:`InvalidAddress`.
  Exactly one RFC 5322 ``addr-spec`` (dot-atom local part, a domain with at
  least one dot) is accepted; lists, groups, control characters (CR/LF header
  injection) and whitespace inside the address are refused.
* :func:`compose` builds the message with :class:`email.message.EmailMessage`
  and serialises it with :data:`email.policy.SMTP` (CRLF line ends, 7-bit clean:
  non-ASCII headers become RFC 2047 encoded words, non-ASCII bodies
  quoted-printable or base64), so no SMTP extension (8BITMIME, SMTPUTF8) is
  needed to send it.

  Structure: ``text/plain``; with HTML a ``multipart/alternative`` of text and
  HTML (the text part is derived from the HTML when only HTML is given); with
  attachments everything is wrapped in ``multipart/mixed``. The ``Bcc`` header
  is never written: blind recipients only go into the SMTP envelope (use
  :func:`envelope_recipients`).
* Replies carry ``In-Reply-To`` and ``References`` (RFC 5322 §3.6.4).
"""

from __future__ import annotations

import html as _html
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email import policy as _policy
from email.headerregistry import Address as _HeaderAddress
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from mailsync.domain.mimetext import html_to_text
from mailsync.domain.models import Address

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_REFERENCES",
    "InvalidAddress",
    "TooLarge",
    "compose",
    "envelope_recipients",
    "parse_address",
    "smtp_address",
]

MAX_MESSAGE_BYTES = 25 * 1024 * 1024
MAX_REFERENCES = 20

# 7-bit clean output: every MTA accepts it without 8BITMIME.
_POLICY = _policy.SMTP.clone(cte_type="7bit")

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# RFC 5322 atext (plus '.' handled separately for dot-atom).
_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_MSGID = re.compile(r"^[^\s<>\x00-\x1f\x7f]+@[^\s<>\x00-\x1f\x7f]+$")
_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)
# Unquoted display names must not contain RFC 5322 specials that start another
# address, a group or a quoted string.
_NAME_SPECIALS = set('<>,;:"')


class InvalidAddress(ValueError):
    """Not exactly one valid email address."""


class TooLarge(ValueError):
    """The composed message exceeds :data:`MAX_MESSAGE_BYTES`."""


# --------------------------------------------------------------------------- addresses


def _invalid(value: object, why: str) -> InvalidAddress:
    return InvalidAddress(f"invalid email address {value!r}: {why}")


def _idna_domain(domain: str) -> str:
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError("invalid domain") from exc


def _check_addr_spec(email: str, original: object) -> str:
    if not email:
        raise _invalid(original, "empty")
    if len(email) > 254:
        raise _invalid(original, "too long")
    if _CONTROL.search(email) or any(ch.isspace() for ch in email):
        raise _invalid(original, "contains whitespace or control characters")
    if email.count("@") != 1:
        raise _invalid(original, "must contain exactly one '@'")
    local, domain = email.split("@")
    if not local:
        raise _invalid(original, "empty local part")
    if not domain:
        raise _invalid(original, "empty domain")
    if len(local) > 64:
        raise _invalid(original, "local part too long")
    atoms = local.split(".")
    if not all(atoms) or not all(_ATEXT.match(a) for a in atoms):
        raise _invalid(original, "invalid local part")
    if "." not in domain:
        raise _invalid(original, "domain must contain a dot")
    try:
        ascii_domain = _idna_domain(domain)
    except ValueError:
        raise _invalid(original, "invalid domain") from None
    labels = ascii_domain.split(".")
    if not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise _invalid(original, "invalid domain")
    return email


def _check_name(name: str | None, original: object) -> str | None:
    if name is None:
        return None
    if not isinstance(name, str):
        raise _invalid(original, "name must be a string")
    if _CONTROL.search(name):
        raise _invalid(original, "name contains control characters")
    name = " ".join(name.split())
    return name or None


def _unquote_name(raw: str, original: object) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        inner = raw[1:-1]
        out: list[str] = []
        escaped = False
        for ch in inner:
            if escaped:
                out.append(ch)
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                raise _invalid(original, "unbalanced quotes in the name")
            else:
                out.append(ch)
        if escaped:
            raise _invalid(original, "unbalanced quotes in the name")
        return "".join(out)
    if any(ch in _NAME_SPECIALS for ch in raw):
        raise _invalid(original, "more than one address or unquoted special characters in the name")
    return raw


def parse_address(value: str | Mapping[str, Any] | Address) -> Address:
    """One address from ``"Name <a@b.example>"``, ``"a@b.example"`` or ``{name, email}``.

    The email is kept as written (surrounding whitespace removed, case kept); the
    display name has its whitespace collapsed (``None`` when empty).
    """
    if isinstance(value, Address):
        return Address(_check_name(value.name, value), _check_addr_spec(value.email.strip(), value))
    if isinstance(value, Mapping):
        email = value.get("email")
        if not isinstance(email, str):
            raise _invalid(value, "'email' must be a string")
        return Address(_check_name(value.get("name"), value), _check_addr_spec(email.strip(), value))
    if not isinstance(value, str):
        raise _invalid(value, "must be a string or an object with 'email'")
    if _CONTROL.search(value):
        raise _invalid(value, "contains control characters")
    s = value.strip()
    if s.endswith(">") and "<" in s:
        i = s.rindex("<")
        name = _unquote_name(s[:i], value)
        email = s[i + 1 : -1].strip()
    else:
        name, email = None, s
    return Address(_check_name(name, value), _check_addr_spec(email, value))


def smtp_address(address: Address) -> str:
    """The address for the SMTP envelope: the domain IDNA-encoded (ASCII)."""
    local, _, domain = address.email.strip().rpartition("@")
    return f"{local}@{_idna_domain(domain)}"


def envelope_recipients(*groups: Iterable[str | Mapping[str, Any] | Address]) -> list[str]:
    """The SMTP ``RCPT TO`` list of to/cc/bcc: parsed, ASCII, deduplicated (case-insensitive)."""
    seen: set[str] = set()
    out: list[str] = []
    for group in groups:
        for value in group or ():
            addr = smtp_address(parse_address(value))
            if addr.lower() not in seen:
                seen.add(addr.lower())
                out.append(addr)
    return out


def _header_address(address: Address) -> _HeaderAddress:
    return _HeaderAddress(display_name=address.name or "", addr_spec=smtp_address(address))


# --------------------------------------------------------------------------- bodies


def _norm_newlines(s: str) -> str:
    return s.replace("\r\n", "\n").replace("\r", "\n")


def _text_with_signature(text: str, signature: str) -> str:
    body = _norm_newlines(text).rstrip("\n")
    sig = _norm_newlines(signature).strip("\n")
    if sig:
        body = f"{body}\n\n-- \n{sig}" if body else f"-- \n{sig}"
    return body + "\n"


def _html_with_signature(html: str, signature: str) -> str:
    sig = _norm_newlines(signature).strip("\n")
    if not sig:
        return html
    escaped = "<br>\n".join(_html.escape(line) for line in sig.split("\n"))
    block = f'<div class="signature">-- <br>\n{escaped}</div>\n'
    matches = list(_BODY_CLOSE.finditer(html))
    if matches:
        at = matches[-1].start()
        return html[:at] + block + html[at:]
    sep = "" if html.endswith("\n") or not html else "\n"
    return html + sep + block


def _clean_header_text(value: str) -> str:
    """Header text without CR/LF or other control characters (no header injection)."""
    return " ".join(_CONTROL.sub(" ", value).split())


def _clean_filename(name: str) -> str:
    name = _clean_header_text(name).replace("/", "_").replace("\\", "_")
    return name or "attachment"


def _add_attachment(msg: EmailMessage, filename: str, content_type: str, data: bytes) -> None:
    ctype = (content_type or "").strip().lower()
    maintype, _, subtype = ctype.partition("/")
    valid = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*$")
    if not (valid.match(maintype) and valid.match(subtype)):
        maintype, subtype = "application", "octet-stream"
    fname = _clean_filename(filename)
    if maintype == "message" and subtype == "rfc822":
        # RFC 2046 §5.2.1: message/rfc822 allows only 7bit/8bit/binary, so
        # attach it as is when it is 7-bit clean, as an opaque file otherwise.
        if data.isascii() and all(len(line) <= 998 for line in data.splitlines()):
            msg.add_attachment(data, maintype="message", subtype="rfc822", cte="7bit", filename=fname)
            return
        maintype, subtype = "application", "octet-stream"
    elif maintype in ("message", "multipart"):
        maintype, subtype = "application", "octet-stream"
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=fname)


# --------------------------------------------------------------------------- references


def _msgid(value: str) -> str | None:
    v = value.strip()
    if v.startswith("<") and v.endswith(">"):
        v = v[1:-1].strip()
    return v if _MSGID.match(v) else None


def _references(parent_id: str, references: Sequence[str]) -> list[str]:
    """Parent's references then the parent, deduplicated; at most :data:`MAX_REFERENCES`.

    When trimming, the first (root) id is kept and the oldest of the rest are
    dropped, as RFC 5322 §3.6.4 suggests, so threading on the root still works.
    """
    seen: set[str] = set()
    refs: list[str] = []
    for raw in [*references, parent_id]:
        mid = _msgid(raw) if isinstance(raw, str) else None
        if mid is None:
            continue
        key = mid.lower()
        if key in seen:
            if key == parent_id.lower():
                refs = [r for r in refs if r.lower() != key]
                refs.append(mid)
            continue
        seen.add(key)
        refs.append(mid)
    if len(refs) > MAX_REFERENCES:
        refs = [refs[0], *refs[-(MAX_REFERENCES - 1) :]]
    return refs


# --------------------------------------------------------------------------- compose


def compose(
    *,
    sender: Address,
    to: Sequence[str | Mapping[str, Any] | Address],
    cc: Sequence[str | Mapping[str, Any] | Address] = (),
    bcc: Sequence[str | Mapping[str, Any] | Address] = (),
    subject: str = "",
    text: str | None = None,
    html: str | None = None,
    signature: str = "",
    reply_to_headers: tuple[str, list[str]] | None = None,
    attachments: Sequence[tuple[str, str, bytes]] = (),
    message_id_domain: str,
    now: datetime | None = None,
) -> tuple[EmailMessage, bytes, str]:
    """Build one message; returns ``(message, bytes, message_id_without_brackets)``.

    ``bcc`` is validated but not written (pass it to SMTP only). Raises
    :class:`InvalidAddress` for a bad address or no recipient at all,
    :class:`ValueError` for a bad ``message_id_domain`` or parent id and
    :class:`TooLarge` when the message exceeds :data:`MAX_MESSAGE_BYTES`.
    """
    from_addr = parse_address(sender)
    to_addrs = [parse_address(v) for v in to or ()]
    cc_addrs = [parse_address(v) for v in cc or ()]
    bcc_addrs = [parse_address(v) for v in bcc or ()]
    if not (to_addrs or cc_addrs or bcc_addrs):
        raise InvalidAddress("at least one recipient (to, cc or bcc) is required")

    domain = (message_id_domain or "").strip()
    if not domain or not re.match(r"^[A-Za-z0-9.-]+$", domain):
        raise ValueError(f"invalid message id domain {message_id_domain!r}")

    raw_size = sum(len(data) for _, _, data in attachments) + len(text or "") + len(html or "")
    if raw_size > MAX_MESSAGE_BYTES:
        raise TooLarge(f"message of at least {raw_size} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes")

    when = now or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)

    msg = EmailMessage(policy=_POLICY)
    message_id = make_msgid(domain=domain)
    msg["Message-ID"] = message_id
    msg["Date"] = format_datetime(when)
    msg["From"] = _header_address(from_addr)
    if to_addrs:
        msg["To"] = [_header_address(a) for a in to_addrs]
    elif not cc_addrs:
        msg["To"] = "undisclosed-recipients:;"
    if cc_addrs:
        msg["Cc"] = [_header_address(a) for a in cc_addrs]
    msg["Subject"] = _clean_header_text(subject or "")
    if reply_to_headers is not None:
        parent_raw, parent_refs = reply_to_headers
        parent = _msgid(parent_raw or "")
        if parent is None:
            raise ValueError(f"invalid message id to reply to: {parent_raw!r}")
        msg["In-Reply-To"] = f"<{parent}>"
        msg["References"] = " ".join(f"<{r}>" for r in _references(parent, parent_refs or []))

    if text is None and html is not None:
        plain = html_to_text(html)
    else:
        plain = text or ""
    msg.set_content(_text_with_signature(plain, signature), subtype="plain", charset="utf-8")
    if html is not None:
        msg.add_alternative(_html_with_signature(html, signature), subtype="html", charset="utf-8")
    for filename, content_type, data in attachments:
        _add_attachment(msg, filename, content_type, bytes(data))

    data = msg.as_bytes(policy=_POLICY)
    if len(data) > MAX_MESSAGE_BYTES:
        raise TooLarge(f"message of {len(data)} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes")
    return msg, data, message_id[1:-1]
