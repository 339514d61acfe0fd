"""Typed records of the mail side that cross rooms (engine, store, use cases).

The stored item format is unchanged: these are the in-memory shapes only. A
message's locations are still kept in its item as ``{folder: "gen:ref"}``;
:class:`Location` is how code reads and writes one of those strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A mirrored message / thread as the engine merges it: mutable by design (a batch
# reads, merges and writes the same doc), so they stay dicts with documented keys.
# Keys: see ``store.messages.MESSAGE_FIELDS`` / ``THREAD_FIELDS`` (plus "from").
MessageDoc = dict[str, Any]
ThreadDoc = dict[str, Any]

#: A contact id (the CRM's own): 1-128 letters, digits and ``. _ : @ -``, starting with a
#: letter or digit; ECMA-262 and Python syntax alike (Python code must use ``fullmatch``:
#: its ``$`` also matches before a trailing newline).
CONTACT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"


@dataclass(frozen=True)
class Location:
    """Where one copy of a message sits: folder generation and the provider's ref.

    Encoded ``"<gen>:<ref>"`` in a message's ``locs``; the ref may itself hold ``:``.
    """

    gen: int
    ref: str

    @classmethod
    def parse(cls, encoded: str) -> Location:
        gen, ref = str(encoded).split(":", 1)
        return cls(int(gen), ref)

    def encode(self) -> str:
        return f"{self.gen}:{self.ref}"


@dataclass(frozen=True)
class Link:
    """One message in a contact's history (the link item; the message's ``links`` map
    holds how it is linked: kind, auto addresses, manual)."""

    contact_id: str
    mid: str
    account_id: str
    received_at: str
    owner: str
    visibility: str
    thread_id: str


@dataclass(frozen=True)
class TenantSettings:
    """A tenant's own settings (``GET/PATCH /v1/tenant/settings``)."""

    assign_bulk: bool = False  # auto-assign newsletters, lists and automatic mail (domain.bulk)
    allowed_origins: tuple[str, ...] = ()  # browser origins allowed by CORS (domain.cors)


@dataclass(frozen=True)
class Contact:
    """A contact pushed by the tenant: what we need to match (normalised emails) and to
    authorise (``visible_to``: user ids, or ``"*"`` for everyone in the tenant)."""

    id: str
    kind: str
    name: str
    emails: tuple[str, ...]
    visible_to: tuple[str, ...]
    created_at: str
    updated_at: str

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "emails": list(self.emails),
            "visible_to": list(self.visible_to),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True)
class Page:
    """One page of a listing, newest first; ``next_cursor`` is None on the last page."""

    items: list[Any]
    next_cursor: str | None


def link_of(doc: MessageDoc, cid: str) -> Link:
    """The contact-history entry of a message linked to contact ``cid``."""
    return Link(
        contact_id=cid,
        mid=doc["mid"],
        account_id=doc["account_id"],
        received_at=doc["received_at"],
        owner=doc["owner"],
        visibility=doc.get("visibility") or "private",
        thread_id=doc["thread_id"],
    )


def link_views(doc: MessageDoc) -> list[dict[str, str]]:
    """``[{contact_id, kind, source}]``: one entry per contact and source (auto, manual)."""
    out = []
    for cid, link in sorted((doc.get("links") or {}).items()):
        if link.get("manual"):
            out.append({"contact_id": cid, "kind": link["kind"], "source": "manual"})
        if link.get("auto"):
            out.append({"contact_id": cid, "kind": link["kind"], "source": "auto"})
    return out
