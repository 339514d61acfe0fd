"""Bulk mail (newsletters, lists, automatic mail, auto-replies, bounces), told at ingest from
the header fields alone to keep it out of CRM contact histories. The rules, in the order
they are checked (the first that matches is the reason):

* ``list_unsubscribe``: a ``List-Unsubscribe`` field (RFC 2369; one-click: RFC 8058).
* ``list_id``: a ``List-Id`` field (RFC 2919).
* ``precedence``: ``Precedence`` is ``bulk``, ``list`` or ``junk``: never standardised,
  the convention described in RFC 2076 §3.9, still followed by lists and mailers.
* ``auto_submitted``: ``Auto-Submitted`` with any keyword but ``no`` (RFC 3834 §5:
  ``auto-generated``, ``auto-replied``, ``auto-notified`` ...).
* ``auto_reply``: ``X-Autoreply`` or ``X-Autorespond`` (non-standard; autoresponders).
* ``delivery_report``: ``Content-Type: multipart/report; report-type=delivery-status``,
  a bounce (RFC 3464, RFC 6522), whoever sent it.
* ``noreply_sender``: the sender's local part, ``+tag`` removed, case ignored, is noreply,
  no-reply, no_reply, donotreply, do-not-reply, do_not_reply, mailer-daemon or postmaster.
  The weakest rule, on the address alone, comes last.

``headers`` is shaped like :func:`mailsync.domain.mime.header_map` (raw values by
lower-cased name). Values are unfolded and RFC 2047 decoded; a field counts only with a
non-blank text value. ``Precedence`` and ``Auto-Submitted`` are read as their first token,
comments (RFC 5322 §3.2.2) removed, cut at ``;``. Neither function raises: a rule that
cannot read its input, whatever it is, does not match.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from email.message import Message
from itertools import islice

from mailsync.domain.mimeheaders import decode_header_value

__all__ = ["bulk_reason", "is_bulk"]

Headers = Mapping[str, Sequence[str]]

_MAX_CHARS = 2000  # the tokens looked at come first: a huge value is cut, never scanned whole
_MAX_VALUES = 20  # occurrences of one field looked at
_NOREPLY = frozenset(
    "noreply no-reply no_reply donotreply do-not-reply do_not_reply mailer-daemon postmaster".split()
)
_PRECEDENCE = frozenset({"bulk", "list", "junk"})
# Not X-Auto-Response-Suppress: Outlook and Exchange put it on ordinary mail written by people,
# asking *other* systems not to auto-reply to it; it says nothing about the mail being automatic.
_AUTO_REPLY_FIELDS = ("x-autoreply", "x-autorespond")


def _values(headers: Headers, name: str) -> Iterator[str]:
    """The decoded, non-blank text values of one field; a lone ``str`` is one value."""
    raw = headers.get(name)
    items: Sequence[object] = [raw] if isinstance(raw, str | bytes) else raw or ()
    for item in islice(items, _MAX_VALUES):
        if isinstance(item, str | bytes):  # anything else is garbage, not a value
            text = item.decode("utf-8", "replace") if isinstance(item, bytes) else item
            if value := decode_header_value(text[:_MAX_CHARS]).strip():
                yield value


def _has(headers: Headers, name: str) -> bool:
    return next(_values(headers, name), None) is not None


def _token(value: str) -> str:
    """The first token of a structured value, lower-cased: comments removed, cut at ``;``."""
    kept: list[str] = []
    depth, escaped = 0, False
    for ch in value:
        if escaped:
            escaped = False
        elif depth and ch == "\\":  # quoted-pair inside a comment
            escaped = True
        elif ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif not depth:
            kept.append(ch)
    words = "".join(kept).split(";", 1)[0].split()
    return words[0].lower() if words else ""


def _delivery_report(headers: Headers) -> bool:
    msg = Message()
    msg["Content-Type"] = next(_values(headers, "content-type"), "")  # the first: the message's own
    kind = msg.get_content_type().partition("(")[0].strip()  # compat32 keeps a trailing comment
    report_type = str(msg.get_param("report-type")).strip().lower()  # not RFC 2231 encoded
    return kind == "multipart/report" and report_type == "delivery-status"


def _noreply_sender(sender: str | None) -> bool:
    if not isinstance(sender, str):
        return False
    address = sender.strip()[:_MAX_CHARS]
    if "<" in address:  # tolerate "Name <addr>" although an e-mail alone is expected
        address = address.rsplit("<", 1)[1].split(">", 1)[0]
    local = address.rpartition("@")[0] if "@" in address else address
    return local.strip().strip('"').split("+", 1)[0].lower() in _NOREPLY


_RULES: tuple[tuple[str, Callable[[Headers, str | None], bool]], ...] = (
    ("list_unsubscribe", lambda h, _s: _has(h, "list-unsubscribe")),
    ("list_id", lambda h, _s: _has(h, "list-id")),
    ("precedence", lambda h, _s: any(_token(v) in _PRECEDENCE for v in _values(h, "precedence"))),
    ("auto_submitted", lambda h, _s: any(_token(v) not in ("", "no") for v in _values(h, "auto-submitted"))),
    ("auto_reply", lambda h, _s: any(_has(h, name) for name in _AUTO_REPLY_FIELDS)),
    ("delivery_report", lambda h, _s: _delivery_report(h)),
    ("noreply_sender", lambda _h, s: _noreply_sender(s)),
)


def _matches(rule: Callable[[Headers, str | None], bool], headers: Headers, sender: str | None) -> bool:
    try:
        return bool(rule(headers, sender))
    except Exception:  # noqa: BLE001 - garbage input: the rule does not match
        return False


def bulk_reason(headers: Mapping[str, Sequence[str]], sender: str | None) -> str | None:
    """The first rule that makes the mail bulk, or None for an ordinary mail."""
    return next((reason for reason, rule in _RULES if _matches(rule, headers, sender)), None)


def is_bulk(headers: Mapping[str, Sequence[str]], sender: str | None) -> bool:
    """Whether :func:`bulk_reason` finds a rule that makes the mail bulk."""
    return bulk_reason(headers, sender) is not None
