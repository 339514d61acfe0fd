"""Outbound events: the record every tenant receives, by webhook and from the feed.

Invariants:

* An event is ``{"id", "type", "created_at", "data"}`` (``Event.as_dict``). Its ``id`` is
  derived from the committed change that caused it (the DynamoDB stream record's
  ``eventID`` and the event's place among that record's events, see
  ``domain/derive.py``), so the same change yields the same id on every redelivery of a
  stream batch: receivers deduplicate by ``id`` (Standard Webhooks' ``webhook-id``).
* ``data`` never carries a body, an attachment or a credential: only the fields the tables
  below name.
* ``ping`` is the only event that no data change causes (``POST
  /v1/webhook-endpoints/{id}/test``); it goes to that one endpoint and not to the feed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

MESSAGE_CREATED = "message.created"
MESSAGE_UPDATED = "message.updated"
MESSAGE_DELETED = "message.deleted"
THREAD_LINKED = "thread.linked"
THREAD_UNLINKED = "thread.unlinked"
ACCOUNT_CONNECTED = "account.connected"
ACCOUNT_DELETED = "account.deleted"
ACCOUNT_INITIAL_SYNC_COMPLETED = "account.initial_sync_completed"
ACCOUNT_STATE_CHANGED = "account.state_changed"
SEND_SUCCEEDED = "send.succeeded"
SEND_FAILED = "send.failed"
USER_PURGED = "user.purged"
PING = "ping"

EVENT_TYPES: tuple[str, ...] = (
    MESSAGE_CREATED,
    MESSAGE_UPDATED,
    MESSAGE_DELETED,
    THREAD_LINKED,
    THREAD_UNLINKED,
    ACCOUNT_CONNECTED,
    ACCOUNT_DELETED,
    ACCOUNT_INITIAL_SYNC_COMPLETED,
    ACCOUNT_STATE_CHANGED,
    SEND_SUCCEEDED,
    SEND_FAILED,
    USER_PURGED,
    PING,
)
WILDCARD = "*"

# message.deleted reasons
DELETED_AT_PROVIDER = "deleted_at_provider"
MOVED_TO_UNSYNCED_FOLDER = "moved_to_unsynced_folder"
FOLDER_UNSYNCED = "folder_unsynced"
DELETED_BY_USER = "deleted_by_user"
EXCLUDED = "excluded"  # an exclusion rule of the account matches it (domain.exclusions)
DELETE_REASONS = (DELETED_AT_PROVIDER, MOVED_TO_UNSYNCED_FOLDER, FOLDER_UNSYNCED, DELETED_BY_USER, EXCLUDED)


class UnknownEventType(ValueError):
    """A subscription or a feed filter names a type that does not exist (422 ``unknown_event_type``)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(f"unknown event type(s): {', '.join(names)}; known: {', '.join(EVENT_TYPES)}")
        self.names = names


def check_types(types: list[str], *, wildcard: bool = True) -> list[str]:
    """``types`` deduplicated in order; raises :class:`UnknownEventType` for a name not in
    :data:`EVENT_TYPES` (``"*"`` allowed alone when ``wildcard``)."""
    allowed = set(EVENT_TYPES) | ({WILDCARD} if wildcard else set())
    unknown = [t for t in types if t not in allowed]
    if unknown:
        raise UnknownEventType(unknown)
    out = list(dict.fromkeys(types))
    return [WILDCARD] if WILDCARD in out else out


def subscribed(types: list[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to ``types`` receives ``event_type``. ``ping`` is sent
    only on request (``/test``), so a subscription never matches it by itself."""
    return event_type != PING and (WILDCARD in types or event_type in types)


def event_id(source: str, n: int = 0) -> str:
    """``evt_`` + 26 hex digits of SHA-256 over the change's identity (stable, unguessable
    enough to carry no information, short enough for a header)."""
    return "evt_" + hashlib.sha256(f"{source}#{n}".encode()).hexdigest()[:26]


@dataclass(frozen=True)
class Event:
    """One outbound event of a tenant (see the module docstring)."""

    id: str
    type: str
    created_at: str  # ISO 8601 UTC, the commit time of the change (stream record)
    tenant_id: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The public JSON shape (the tenant id is the receiver's own: not repeated)."""
        return {"id": self.id, "type": self.type, "created_at": self.created_at, "data": self.data}
