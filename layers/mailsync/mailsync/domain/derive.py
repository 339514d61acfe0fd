"""Outbound events derived from committed item changes (the main table's stream).

Each :class:`ItemChange` is one committed write of an item that matters to tenants: a
message, an account, a thread (its manual links), a user's purge record or a send record.
:func:`derive` compares the images before and after and yields the events the change
means. It is pure: the same change always yields the same events with the same ids, which
is what makes a redelivered stream batch harmless (receivers deduplicate by id).

Rules (docs/architecture.md, "Events"):

* **message.created** when a message item appears (not orphaned). **message.updated** when
  ``unread``, ``folder`` or ``links`` of a live message differ, with ``changes`` naming
  them; a message that becomes an orphan (lost its last location) is *not yet* an event:
  it may be found in another synced folder later in the run, and a move between synced
  folders is one ``message.updated`` (``folder``), never a delete and a create. When the
  orphan is rescued, the rescue is the update. **message.deleted** when the item is removed,
  with the ``gone_reason`` the sync wrote when the mail lost its last location.
* Removals while the account is being purged are not events one by one: the caller drops
  them (:func:`derive` takes ``account_purging``), and the account's removal is the one
  ``account.deleted``.
* **thread.linked / thread.unlinked** from the thread's ``manual_links`` map (contact →
  the snapshot of message ids linked by hand); re-linking with other messages is a new
  ``thread.linked``.
* **account.connected** on insert, **account.deleted** on removal,
  **account.initial_sync_completed** when ``health.initial_done_at`` is first set,
  **account.state_changed** whenever ``state`` differs (but for ``deleting``: the
  account.deleted that follows says it).
* **send.succeeded / send.failed** when a send record is written (not when it expires).
* **user.purged** when a user's purge record is removed after the purge finished.
* No event carries a body, an attachment or a credential.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mailsync.domain import events as ev
from mailsync.domain.records import link_views

INSERT, MODIFY, REMOVE = "INSERT", "MODIFY", "REMOVE"


@dataclass(frozen=True)
class ItemChange:
    """One committed write of an item (a decoded stream record, ``store/streams.py``)."""

    source: str  # the stream record's eventID: stable across redeliveries
    name: str  # INSERT | MODIFY | REMOVE
    kind: str  # message | account | thread | user_purge | send
    tenant_id: str
    pk: str
    sk: str
    at: str  # commit time, ISO 8601 UTC (ms)
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    ttl_expiry: bool = False  # removed by DynamoDB's TTL, not by us

    @property
    def account_id(self) -> str | None:
        img = self.new or self.old or {}
        return img.get("account_id")


def message_summary(doc: dict[str, Any]) -> dict[str, Any]:
    """The summary an event carries: the fields of issue 15, never a body or an attachment."""
    return {
        "id": doc.get("mid"),
        "account_id": doc.get("account_id"),
        "owner": doc.get("owner"),
        "thread_id": doc.get("thread_id"),
        "folder": doc.get("folder"),
        "subject": doc.get("subject") or "",
        "from": doc.get("from") or [],
        "to": doc.get("to") or [],
        "cc": doc.get("cc") or [],
        "date": doc.get("date"),
        "snippet": doc.get("snippet") or "",
        "unread": bool(doc.get("unread")),
        "links": link_views(doc),
        "visibility": doc.get("visibility") or "private",
    }


def _live(img: dict[str, Any] | None) -> bool:
    return bool(img) and not img.get("orphan")  # type: ignore[union-attr]


def _message(c: ItemChange) -> list[tuple[str, dict[str, Any]]]:
    old, new = c.old, c.new
    if c.name == REMOVE:
        if not old:
            return []
        reason = old.get("gone_reason") or ev.DELETED_AT_PROVIDER
        data = {"id": old.get("mid"), "account_id": old.get("account_id"), "thread_id": old.get("thread_id")}
        return [(ev.MESSAGE_DELETED, {**data, "reason": reason})]
    if not _live(new):
        return []  # orphaned: deleted only once it is purged (it may be rescued)
    assert new is not None
    if not old:
        return [(ev.MESSAGE_CREATED, message_summary(new))]
    before, after = message_summary(old), message_summary(new)
    changes = [f for f in ("unread", "folder", "links") if before[f] != after[f]]
    if not changes:
        return []
    return [(ev.MESSAGE_UPDATED, {**after, "changes": changes})]


def _thread(c: ItemChange) -> list[tuple[str, dict[str, Any]]]:
    if c.name == REMOVE:
        return []  # the thread went with its last message: those are the events
    old = (c.old or {}).get("manual_links") or {}
    new = (c.new or {}).get("manual_links") or {}
    thid = (c.new or c.old or {}).get("thread_id")
    out: list[tuple[str, dict[str, Any]]] = []
    for cid in sorted(set(old) | set(new)):
        o, n = old.get(cid), new.get(cid)
        if n is not None and (o is None or o.get("mids") != n.get("mids")):
            out.append(
                (
                    ev.THREAD_LINKED,
                    {
                        "thread_id": thid,
                        "contact_id": cid,
                        "message_ids": list(n.get("mids") or []),
                        "source": "manual",
                        "follow": bool(n.get("follow")),
                    },
                )
            )
        elif n is None and o is not None:
            data = {"thread_id": thid, "contact_id": cid, "message_ids": list(o.get("mids") or [])}
            out.append((ev.THREAD_UNLINKED, {**data, "source": "manual"}))
    return out


def _account_data(img: dict[str, Any]) -> dict[str, Any]:
    return {
        "account_id": img.get("account_id"),
        "owner": img.get("owner"),
        "email": img.get("email"),
        "provider": img.get("provider"),
    }


def _action(error: dict[str, Any] | None, action_of: Callable[[str], str | None]) -> str | None:
    if not error:
        return None
    return error.get("action") or action_of(str(error.get("code") or ""))


def _account(c: ItemChange, action_of: Callable[[str], str | None]) -> list[tuple[str, dict[str, Any]]]:
    old, new = c.old, c.new
    if c.name == INSERT and new:
        return [(ev.ACCOUNT_CONNECTED, _account_data(new))]
    if c.name == REMOVE and old:
        return [(ev.ACCOUNT_DELETED, _account_data(old))]
    if not (old and new):
        return []
    out: list[tuple[str, dict[str, Any]]] = []
    if old.get("state") != new.get("state") and new.get("state") != "deleting":
        # (deleting: the account's removal is the event, account.deleted)
        err = new.get("error") if isinstance(new.get("error"), dict) else None
        data = {
            "account_id": new.get("account_id"),
            "owner": new.get("owner"),
            "from": old.get("state"),
            "to": new.get("state"),
            "error": err,
            "action": _action(err, action_of),
        }
        out.append((ev.ACCOUNT_STATE_CHANGED, data))
    done_before = ((old.get("health") or {}) if isinstance(old.get("health"), dict) else {}).get(
        "initial_done_at"
    )
    done_now = ((new.get("health") or {}) if isinstance(new.get("health"), dict) else {}).get(
        "initial_done_at"
    )
    if done_now and not done_before:
        out.append((ev.ACCOUNT_INITIAL_SYNC_COMPLETED, _account_data(new)))
    return out


def _send(c: ItemChange) -> list[tuple[str, dict[str, Any]]]:
    if c.name != INSERT or not c.new:
        return []  # the record expiring (TTL) is no event
    n = c.new
    data = {
        "account_id": n.get("account_id"),
        "owner": n.get("owner"),
        "message_id": n.get("message_id"),
        "recipients": n.get("recipients") or [],
        "error": n.get("error"),
    }
    return [(ev.SEND_SUCCEEDED if n.get("status") == "succeeded" else ev.SEND_FAILED, data)]


def _user_purge(c: ItemChange) -> list[tuple[str, dict[str, Any]]]:
    if c.name != REMOVE or not c.old:
        return []  # the record is removed when the purge has run to its end
    o = c.old
    return [(ev.USER_PURGED, {"user_id": o.get("user_id"), "accounts": list(o.get("account_ids") or [])})]


def derive(
    c: ItemChange,
    *,
    account_purging: bool = False,
    action_of: Callable[[str], str | None] = lambda code: None,
) -> list[ev.Event]:
    """The events of one committed change (see the module docstring).

    ``account_purging``: the change's account is being deleted (or is gone); its messages'
    removals are then covered by the one ``account.deleted``. ``action_of`` maps an error
    code to the action the user must take (``domain.health``)."""
    if c.kind == "message":
        if c.name == REMOVE and account_purging:
            return []
        found = _message(c)
    elif c.kind == "thread":
        found = [] if account_purging else _thread(c)
    elif c.kind == "account":
        found = _account(c, action_of)
    elif c.kind == "send":
        found = _send(c)
    elif c.kind == "user_purge":
        found = _user_purge(c)
    else:
        found = []
    return [
        ev.Event(
            id=ev.event_id(f"{c.tenant_id}#{c.source}", n),
            type=t,
            created_at=c.at,
            tenant_id=c.tenant_id,
            data=d,
        )
        for n, (t, d) in enumerate(found)
    ]
