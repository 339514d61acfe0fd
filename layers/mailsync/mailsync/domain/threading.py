"""Pure helpers for conversation threading (JWZ-style, RFC 5256).

The store groups messages into threads in two ways:

1. By reference: a message joins the thread of any message named in its
   In-Reply-To / References headers (RFC 5322 §3.6.4, the "REFERENCES"
   algorithm of RFC 5256 §3 and Jamie Zawinski's description of it).
   :func:`thread_candidates` lists those ids in the order they should be tried,
   :func:`root_id` names the conversation's first message.
2. Fallback for clients that drop the headers: the base subject (RFC 5256
   §2.1, extended with common localised prefixes) together with the set of
   participants, :func:`subject_key`.

Invariants: every function is pure and total (never raises for a
:class:`ParsedMessage`); message ids returned here are lower-cased exactly like
:func:`mailsync.domain.mime.message_key`, so they can be compared with stored
message keys; a message never lists itself as a candidate.
"""

from __future__ import annotations

import hashlib
import json
import re

from mailsync.domain.models import ParsedMessage

__all__ = ["REPLY_PREFIXES", "base_subject", "root_id", "subject_key", "thread_candidates"]

# Reply / forward markers: English (RFC 5256: re, fw, fwd), German (AW, WG,
# Antw), Scandinavian (SV, VS), Dutch (Antw, Doorst), French (TR), Spanish (RV),
# Italian (RIF).
REPLY_PREFIXES = ("re", "fwd", "fw", "aw", "wg", "antw", "sv", "vs", "tr", "rv", "rif", "doorst")

_BLOB = r"\[[^\[\]]*\]"
# subj-leader: (blob WSP)* ("re"/"fw"/"fwd" ...) [counter] WSP* [blob] ":"
_LEADER = re.compile(
    rf"^(?:{_BLOB}\s*)*(?:{'|'.join(REPLY_PREFIXES)})(?:\s*\[\d+\]|\s*\(\d+\)|\^\d+)?\s*(?:{_BLOB}\s*)?[:：]\s*",
    re.IGNORECASE,
)
_LEADING_BLOB = re.compile(rf"^{_BLOB}\s*")
_TRAILER = re.compile(r"\s*\(fwd\)\s*$", re.IGNORECASE)
_FWD_WRAPPER = re.compile(r"^\[fwd:\s*(.*)\]$", re.IGNORECASE | re.DOTALL)


def base_subject(subject: str | None) -> str:
    """The RFC 5256 §2.1 base subject, lower-cased and whitespace-collapsed.

    ``"Re: AW: [team] Fwd: Quarterly  Report (fwd)"`` → ``"quarterly report"``.
    A leading ``[list]`` tag is removed only when something remains after it.
    """
    text = " ".join(str(subject or "").split())
    while True:
        before = text
        # (2) remove trailers
        while True:
            stripped = _TRAILER.sub("", text)
            if stripped == text:
                break
            text = stripped
        # (3)-(5) remove leaders and leading blobs, repeatedly
        while True:
            previous = text
            text = _LEADER.sub("", text, count=1)
            blob = _LEADING_BLOB.match(text)
            if blob and text[blob.end() :].strip():
                text = text[blob.end() :]
            if text == previous:
                break
        # (6) [fwd: ...] wrapper
        wrapped = _FWD_WRAPPER.match(text)
        if wrapped:
            text = wrapped.group(1).strip()
        if text == before:
            break
    return " ".join(text.split()).lower()


def _norm(message_id: str | None) -> str | None:
    if not message_id:
        return None
    value = message_id.strip().strip("<>").strip().lower()
    return value or None


def thread_candidates(parsed: ParsedMessage) -> list[str]:
    """Ids of messages this one may belong with, best first: In-Reply-To, then
    References from the newest (last) to the oldest. Deduplicated, lower-cased,
    without the message's own id."""
    own = _norm(parsed.message_id)
    ordered = [parsed.in_reply_to, *reversed(parsed.references or [])]
    out: list[str] = []
    for candidate in ordered:
        value = _norm(candidate)
        if value and value != own and value not in out:
            out.append(value)
    return out


def root_id(parsed: ParsedMessage) -> str | None:
    """The conversation's root: the first (oldest) Reference, else In-Reply-To,
    else the message's own id; lower-cased; ``None`` when there is none."""
    for candidate in (*(parsed.references or [])[:1], parsed.in_reply_to, parsed.message_id):
        value = _norm(candidate)
        if value:
            return value
    return None


def subject_key(parsed: ParsedMessage, account_email: str) -> str | None:
    """``sha256`` hex of (base subject, sorted participant e-mails) or ``None``
    when the base subject is empty.

    Participants are From, To and Cc, lower-cased, without the account's own
    address, so the copy in Sent (from the user to X) and the reply in the
    inbox (from X to the user) get the same key. Bcc and Reply-To are left out:
    Bcc is only visible on the sender's copy and Reply-To is often a shared
    no-reply/list address, so either would split one conversation.
    """
    subject = base_subject(parsed.subject)
    if not subject:
        return None
    own = (account_email or "").strip().lower()
    people = {
        address.key
        for address in (*parsed.from_, *parsed.to, *parsed.cc)
        if address.key and address.key != own
    }
    canonical = json.dumps([subject, sorted(people)], ensure_ascii=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
