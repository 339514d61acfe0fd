"""Plain domain values shared by the sync engine, the store and the API.

Free of AWS and HTTP. Times are timezone-aware UTC ``datetime`` objects; emails
are kept as the user wrote them for display and lower-cased for matching
(:attr:`Address.key`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Address:
    name: str | None
    email: str  # as written (display)

    @property
    def key(self) -> str:
        """The normalised form used for matching (trimmed, lower-cased)."""
        return self.email.strip().lower()

    def as_dict(self) -> dict[str, str | None]:
        return {"name": self.name, "email": self.email}


@dataclass(frozen=True)
class AttachmentInfo:
    id: str  # stable within the message: the MIME part path, e.g. "2" or "2.1"
    filename: str | None
    content_type: str
    size: int  # decoded bytes


@dataclass(frozen=True)
class BodyPart:
    """Where one body part sits in the raw message, to be rendered when read.

    ``start``/``end`` delimit the encoded payload (``raw[start:end]``); ``cte`` is
    the lower-cased Content-Transfer-Encoding, ``charset`` the declared charset.
    """

    kind: str  # "text" (text/plain) or "html" (text/html)
    start: int
    end: int
    cte: str
    charset: str | None

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "cte": self.cte,
            "charset": self.charset,
        }


@dataclass
class ParsedMessage:
    """What we keep of one RFC 5322 message after parsing."""

    message_id: str | None  # without angle brackets, e.g. "abc@example.com"
    in_reply_to: str | None  # without angle brackets
    references: list[str]  # oldest first, without angle brackets
    subject: str
    from_: list[Address]
    to: list[Address]
    cc: list[Address]
    bcc: list[Address]
    reply_to: list[Address]
    date: datetime | None  # the Date header, UTC; None when missing or unparsable
    text: str | None  # text/plain body (or text derived from html when there is none)
    html: str | None  # sanitized HTML (see mailsync.domain.sanitize), never raw
    snippet: str  # first ~200 chars of the text, whitespace collapsed
    attachments: list[AttachmentInfo] = field(default_factory=list)
    size: int = 0  # raw size in bytes
    # Located body parts (mailsync.domain.scan); None: render by parsing the whole raw.
    body_parts: list[BodyPart] | None = None
    # Why the mail was not parsed (mailsync.domain.mimelimits.screen, or an unreadable
    # body); None for every mail read normally. A quarantined mail keeps its header fields.
    quarantine_reason: str | None = None
    # A newsletter, list, automatic or auto-reply mail (mailsync.domain.bulk).
    bulk: bool = False

    @property
    def has_attachments(self) -> bool:
        return bool(self.attachments)
