"""Helpers for the CRM assignment tests: contacts, links, histories, dated mails."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email import policy
from typing import Any

from tests.support.api import ApiClient
from tests.support.dovecot import make_mail

# Mails are dated inside the backfill window of accounts connected with ``backfill_days=2``;
# ``at(i)`` gives strictly increasing dates so "newest first" is well defined.
BASE = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)


def at(i: int) -> datetime:
    return BASE + timedelta(minutes=i)


def append(dovecot: Any, user: str, i: int, subject: str, folder: str = "INBOX", **kw: Any) -> int:
    """APPEND a mail dated ``at(i)`` (header Date and INTERNALDATE); returns its UID."""
    raw = make_mail(subject, date=at(i), **kw)
    return dovecot.append(user, folder, raw, internal_date=at(i))


def with_bcc(raw: bytes, bcc: str) -> bytes:
    msg = email.message_from_bytes(raw, policy=policy.default)
    msg["Bcc"] = bcc
    return msg.as_bytes()


def contact_body(
    emails: list[str],
    *,
    kind: str = "customer",
    name: str = "Kunde",
    visible_to: list[str] | None = None,
) -> dict[str, Any]:
    return {"kind": kind, "name": name, "emails": emails, "visible_to": visible_to or ["*"]}


def put_contact(api: ApiClient, cid: str, emails: list[str], **kw: Any) -> dict[str, Any]:
    r = api.call("PUT", f"/v1/contacts/{cid}", contact_body(emails, **kw))
    assert r.status in (200, 201), (r.status, r.body)
    return r.body


def links(api: ApiClient, mid: str) -> list[dict[str, Any]]:
    r = api.get(f"/v1/messages/{mid}")
    assert r.status == 200, (r.status, r.body)
    return r.body["links"]


def linked(api: ApiClient, mid: str) -> set[tuple[str, str]]:
    """``{(contact_id, source)}`` of a message."""
    return {(ln["contact_id"], ln["source"]) for ln in links(api, mid)}


def contact_ids(api: ApiClient, mid: str) -> set[str]:
    return {ln["contact_id"] for ln in links(api, mid)}


def history(api: ApiClient, cid: str, what: str = "messages", **params: Any) -> list[str]:
    """Ids in a contact's history (all pages), in the order served."""
    out: list[str] = []
    cursor = None
    while True:
        r = api.get(f"/v1/contacts/{cid}/{what}", cursor=cursor, **params)
        assert r.status == 200, (r.status, r.body)
        out += [item["id"] for item in r.body["items"]]
        cursor = r.body["next_cursor"]
        if not cursor:
            return out


def unassigned(api: ApiClient) -> list[str]:
    r = api.get("/v1/messages", unassigned="true", limit=200)
    assert r.status == 200, (r.status, r.body)
    return [m["id"] for m in r.body["items"]]


def own_message_ids(api: ApiClient) -> list[str]:
    r = api.get("/v1/messages", limit=200)
    assert r.status == 200, (r.status, r.body)
    return [m["id"] for m in r.body["items"]]


def own_thread_ids(api: ApiClient) -> list[str]:
    r = api.get("/v1/threads", limit=200)
    assert r.status == 200, (r.status, r.body)
    return [t["id"] for t in r.body["items"]]
