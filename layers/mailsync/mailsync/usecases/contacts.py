"""Contacts, links and visibility: what makes the mirror a CRM feature.

Rules (exact; see README "Who sees which mail"):

* Contacts are pushed by the tenant (``customer`` or ``intermediary``); we keep
  only what we need to match (normalised emails) and to authorise (``visible_to``).
* A mail is linked automatically (source ``auto``) to every contact whose address
  takes part in it, when its account's ``auto_assign`` is on: at ingest (the sync
  engine) and retroactively when a contact is created or gains an address (a
  Query on the address index, never a Scan). Removing an address removes the
  auto links that depended on it only.
* A manual thread link is a snapshot of the thread's messages; ``follow`` also
  links messages that join the thread later (the engine applies it at ingest).
* Visibility: the owner sees every message of their accounts. Another user of the
  tenant sees a message only if it is public, linked to at least one contact, and
  they may see that contact; only through that contact's history, thread views
  reached from it and the message itself. Another tenant sees nothing (404).
* Deleting a contact removes its links, never mails.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from pynamodb.exceptions import DoesNotExist

from mailsync.domain import compose
from mailsync.domain.clock import iso, utcnow
from mailsync.domain.sync import link_entry
from mailsync.errors import InvalidCursor, InvalidRequest, NotFound, Unprocessable
from mailsync.store import keys, repo
from mailsync.store.mirror import DynamoMirrorStore, message_doc, message_item, thread_doc, thread_item
from mailsync.store.models import (
    AddressContactsItem,
    AddressMessageItem,
    ContactItem,
    LinkItem,
    MessageItem,
    ThreadItem,
)
from mailsync.usecases.reading import page_cursor, summary, thread_view

CONTACT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")
BATCH_LIMIT = 500


# ------------------------------------------------------------------ helpers
def normalise_emails(emails: Iterable[str]) -> list[str]:
    out: list[str] = []
    for raw in emails:
        try:
            addr = compose.parse_address(str(raw).strip())
        except compose.InvalidAddress as e:
            raise Unprocessable(str(e), code="invalid_address") from e
        if addr.name:
            raise Unprocessable(f"{raw!r}: give the bare address, without a name", code="invalid_address")
        email = addr.email.strip().lower()
        if email not in out:
            out.append(email)
    return out


def may_see_contact(contact: dict[str, Any] | ContactItem, user_id: str) -> bool:
    visible_to = contact["visible_to"] if isinstance(contact, dict) else contact.visible_to
    return "*" in (visible_to or []) or user_id in (visible_to or [])


def contact_view(c: ContactItem) -> dict[str, Any]:
    return {
        "id": c.contact_id,
        "kind": c.kind,
        "name": c.name,
        "emails": list(c.emails or []),
        "visible_to": list(c.visible_to or []),
        "created_at": c.created_at,
        "updated_at": c.updated_at,
    }


def _get(tenant_id: str, cid: str) -> ContactItem | None:
    try:
        return ContactItem.get(keys.contact(tenant_id, cid), "C")
    except DoesNotExist:
        return None


def _check_id(cid: str) -> None:
    if not CONTACT_ID.match(cid):
        raise InvalidRequest("contact ids are 1-128 characters of letters, digits and . _ : @ -")


def get_contact(tenant_id: str, user_id: str, cid: str) -> dict[str, Any]:
    c = _get(tenant_id, cid)
    if c is None or not may_see_contact(c, user_id):
        raise NotFound("contact not found")
    return contact_view(c)


# -------------------------------------------------------------- writes
def put_contact(tenant_id: str, cid: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create or replace a contact; returns (contact, created)."""
    _check_id(cid)
    emails = normalise_emails(body.get("emails") or [])
    visible_to = list(dict.fromkeys(body.get("visible_to") or []))
    old = _get(tenant_id, cid)
    now = iso(utcnow())
    item = ContactItem(
        keys.contact(tenant_id, cid),
        "C",
        contact_id=cid,
        kind=body["kind"],
        name=body.get("name") or "",
        emails=emails,
        visible_to=visible_to,
        created_at=old.created_at if old else now,
        updated_at=now,
    )
    old_emails: list[str] = [str(e) for e in (old.emails or [])] if old else []
    added = [e for e in emails if e not in old_emails]
    removed = [e for e in old_emails if e not in emails]
    kind_changed = old is not None and old.kind != body["kind"]
    item.save()
    for e in emails if kind_changed else added:
        _remember_address(tenant_id, e, cid, body["kind"])
    for e in removed:
        _forget_address(tenant_id, e, cid)
    if removed or kind_changed:
        _unlink_addresses(tenant_id, cid, set(removed), new_kind=body["kind"] if kind_changed else None)
    if added:
        _link_addresses(tenant_id, cid, body["kind"], added)
    return contact_view(item), old is None


def _remember_address(tenant_id: str, email: str, cid: str, kind: str) -> None:
    try:
        item = AddressContactsItem.get(keys.address_contacts(tenant_id, email), "E", consistent_read=True)
    except DoesNotExist:
        item = AddressContactsItem(keys.address_contacts(tenant_id, email), "E", contacts={})
    item.contacts = {**(item.contacts or {}), cid: kind}
    item.save()


def _forget_address(tenant_id: str, email: str, cid: str) -> None:
    try:
        item = AddressContactsItem.get(keys.address_contacts(tenant_id, email), "E")
    except DoesNotExist:
        return
    contacts = dict(item.contacts or {})
    contacts.pop(cid, None)
    if contacts:
        item.contacts = contacts
        item.save()
    else:
        item.delete()


def _save_messages(docs: list[dict[str, Any]]) -> None:
    with MessageItem.batch_write() as b:
        for d in docs:
            b.save(message_item(d))


def _update_messages(
    tenant_id: str, mids: list[str], change: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """Apply ``change`` to the messages ``mids`` and write those it changed (True), under each
    account's mirror lock with a consistent read (a sync merges into the same items)."""
    by_account: dict[str, list[str]] = {}
    for m in MessageItem.batch_get([(keys.message(tenant_id, mid), "M") for mid in mids]):
        by_account.setdefault(m.account_id, []).append(m.mid)
    changed: list[dict[str, Any]] = []
    for account_id, ids in by_account.items():
        store = DynamoMirrorStore(tenant_id, account_id)
        with store.lock():
            got = store.get_messages(ids)
            mine = [got[m] for m in ids if m in got and change(got[m])]
            _save_messages(mine)
        changed.extend(mine)
    return changed


def _link_addresses(tenant_id: str, cid: str, kind: str, emails: list[str]) -> int:
    """Retroactive auto links: every mirrored message an added address takes part in."""
    auto_assign: dict[str, bool] = {}
    linked = 0
    for email in emails:
        pending = [i.mid for i in AddressMessageItem.query(keys.address_messages(tenant_id, email))]
        for i in range(0, len(pending), 100):
            entries: list[dict[str, Any]] = []

            def add_link(d: dict[str, Any], email: str = email, entries: list[Any] = entries) -> bool:
                if d.get("orphan"):
                    return False
                if d["account_id"] not in auto_assign:
                    acc = repo.get_account(tenant_id, d["account_id"])
                    auto_assign[d["account_id"]] = bool(
                        acc and (acc["settings"] or {}).get("auto_assign", True)
                    )
                if not auto_assign[d["account_id"]]:
                    return False
                link = d["links"].setdefault(cid, {"kind": kind, "auto": [], "manual": False})
                if email in link["auto"]:
                    return False
                link["auto"] = sorted({*link["auto"], email})
                entries.append(link_entry(d, cid))
                return True

            changed = _update_messages(tenant_id, pending[i : i + 100], add_link)
            _put_links(tenant_id, entries)
            linked += len(changed)
    return linked


def _put_links(tenant_id: str, entries: list[dict[str, Any]]) -> None:
    with LinkItem.batch_write() as b:
        for ln in entries:
            b.save(
                LinkItem(
                    keys.contact(tenant_id, ln["contact_id"]),
                    keys.link_sk(ln["received_at"], ln["mid"]),
                    mid=ln["mid"],
                    owner=ln["owner"],
                    visibility=ln["visibility"],
                    thread_id=ln["thread_id"],
                    account_id=ln.get("account_id", ""),
                )
            )


def _contact_links(tenant_id: str, cid: str) -> list[LinkItem]:
    return list(LinkItem.query(keys.contact(tenant_id, cid), LinkItem.sk.startswith("L#")))


def _unlink_addresses(tenant_id: str, cid: str, removed: set[str], *, new_kind: str | None = None) -> None:
    """Drop auto links that depended only on removed addresses; update kinds."""
    links = _contact_links(tenant_id, cid)
    for i in range(0, len(links), 100):
        chunk = links[i : i + 100]
        drop: set[str] = set()

        def narrow(d: dict[str, Any], drop: set[str] = drop) -> bool:
            if cid not in d["links"]:
                return False
            link = d["links"][cid]
            if new_kind:
                link["kind"] = new_kind
            link["auto"] = [e for e in link["auto"] if e not in removed]
            if not link["auto"] and not link["manual"]:
                del d["links"][cid]
                drop.add(d["mid"])
            return True

        kept = {d["mid"] for d in _update_messages(tenant_id, [ln.mid for ln in chunk], narrow)}
        with LinkItem.batch_write() as b:
            for ln in chunk:
                if ln.mid in drop or ln.mid not in kept:  # unlinked, or the message is gone
                    b.delete(ln)


def delete_contact(tenant_id: str, cid: str) -> None:
    c = _get(tenant_id, cid)
    if c is None:
        raise NotFound("contact not found")
    links = _contact_links(tenant_id, cid)
    for i in range(0, len(links), 100):
        chunk = links[i : i + 100]
        _update_messages(tenant_id, [ln.mid for ln in chunk], lambda d: d["links"].pop(cid, None) is not None)
        with LinkItem.batch_write() as b:
            for ln in chunk:
                b.delete(ln)
    for e in c.emails or []:
        _forget_address(tenant_id, str(e), cid)
    c.delete()


def batch_put(tenant_id: str, contacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if len(contacts) > BATCH_LIMIT:
        raise InvalidRequest(f"at most {BATCH_LIMIT} contacts per batch")
    ids = [c["id"] for c in contacts]
    if len(set(ids)) != len(ids):
        raise InvalidRequest("contact ids must be unique within a batch")
    for c in contacts:  # validate everything before writing anything
        _check_id(c["id"])
        normalise_emails(c.get("emails") or [])
    out = []
    for c in contacts:
        _, created = put_contact(tenant_id, c["id"], c)
        out.append({"id": c["id"], "status": "created" if created else "replaced"})
    return out


# --------------------------------------------------------- manual links
def _own_thread(tenant_id: str, user_id: str, thread_id: str) -> dict[str, Any]:
    try:
        th = thread_doc(ThreadItem.get(keys.thread(tenant_id, thread_id), "TH"))
    except DoesNotExist:
        raise NotFound("thread not found") from None
    if th["owner"] != user_id:
        raise NotFound("thread not found")
    return th


def _thread_under_lock(tenant_id: str, th: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The thread and its messages read again, consistently, by the holder of the account's
    mirror lock (a sync may have merged into them since the index was read)."""
    store = DynamoMirrorStore(tenant_id, th["account_id"])
    mids = [m.mid for m in MessageItem.by_thread.query(keys.thread_messages(tenant_id, th["thread_id"]))]
    fresh = store.get_threads([th["thread_id"]]).get(th["thread_id"]) or th
    got = store.get_messages(mids)
    return fresh, [got[m] for m in mids if m in got]  # in the index's order


def link_thread(tenant_id: str, user_id: str, thread_id: str, cid: str, follow: bool) -> dict[str, Any]:
    th = _own_thread(tenant_id, user_id, thread_id)
    c = _get(tenant_id, cid)
    if c is None:
        raise NotFound("contact not found")
    with DynamoMirrorStore(tenant_id, th["account_id"]).lock():
        th, docs = _thread_under_lock(tenant_id, th)
        entries, linked = [], []
        for d in docs:
            if d.get("orphan"):
                continue
            link = d["links"].setdefault(cid, {"kind": c.kind, "auto": [], "manual": False})
            link["manual"] = True
            entries.append(link_entry(d, cid))
            linked.append(d["mid"])
        _put_links(tenant_id, entries)
        _save_messages([d for d in docs if d["mid"] in linked])
        if follow:
            th["follow"] = {**th.get("follow", {}), cid: c.kind}
        else:
            th.get("follow", {}).pop(cid, None)
        thread_item(th).save()
    return {"thread_id": thread_id, "contact_id": cid, "follow": follow, "linked": linked}


def unlink_thread(tenant_id: str, user_id: str, thread_id: str, cid: str) -> None:
    th = _own_thread(tenant_id, user_id, thread_id)
    with DynamoMirrorStore(tenant_id, th["account_id"]).lock():
        th, docs = _thread_under_lock(tenant_id, th)
        changed = []
        with LinkItem.batch_write() as b:
            for d in docs:
                link = d["links"].get(cid)
                if not link or not link["manual"]:
                    continue
                link["manual"] = False
                if not link["auto"]:
                    del d["links"][cid]
                    b.delete(LinkItem(keys.contact(tenant_id, cid), keys.link_sk(d["received_at"], d["mid"])))
                changed.append(d)
        _save_messages(changed)
        if cid in th.get("follow", {}):
            th["follow"].pop(cid)
            thread_item(th).save()


# ------------------------------------------------------------- histories
def contact_messages(
    tenant_id: str, user_id: str, cid: str, *, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    """One Query on the contact's links plus one BatchGet of the page's messages."""
    c = _get(tenant_id, cid)
    if c is None or not may_see_contact(c, user_id):
        raise NotFound("contact not found")
    pk = keys.contact(tenant_id, cid)
    lek = page_cursor(tenant_id, cursor, "pk", pk)
    it = LinkItem.query(
        pk,
        LinkItem.sk.startswith("L#"),
        filter_condition=(LinkItem.owner == user_id) | (LinkItem.visibility == "public"),
        scan_index_forward=False,
        limit=limit,
        page_size=limit,
        last_evaluated_key=lek,
    )
    links = list(it)
    docs = (
        {
            m.mid: message_doc(m)
            for m in MessageItem.batch_get([(keys.message(tenant_id, ln.mid), "M") for ln in links])
        }
        if links
        else {}
    )
    items = [with_links(docs[ln.mid]) for ln in links if ln.mid in docs and not docs[ln.mid].get("orphan")]
    return {"items": items, "next_cursor": repo.encode_cursor(it.last_evaluated_key)}


def contact_threads(
    tenant_id: str, user_id: str, cid: str, *, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    """The threads of the contact's visible messages, ordered by their newest linked message.

    Threads are deduplicated over the contact's whole (visibility-filtered) link
    list, so the cost is one Query over the contact's links plus one BatchGet of
    the page's threads; the cursor is the offset into that ordered list.
    """
    c = _get(tenant_id, cid)
    if c is None or not may_see_contact(c, user_id):
        raise NotFound("contact not found")
    offset = _offset(cursor)
    order: list[str] = []
    newest: dict[str, list[LinkItem]] = {}
    for ln in LinkItem.query(
        keys.contact(tenant_id, cid),
        LinkItem.sk.startswith("L#"),
        filter_condition=(LinkItem.owner == user_id) | (LinkItem.visibility == "public"),
        scan_index_forward=False,
    ):
        if ln.thread_id not in newest:
            order.append(ln.thread_id)
            newest[ln.thread_id] = []
        newest[ln.thread_id].append(ln)
    page = order[offset : offset + limit]
    threads = (
        {
            t.thread_id: thread_doc(t)
            for t in ThreadItem.batch_get([(keys.thread(tenant_id, th), "TH") for th in page])
        }
        if page
        else {}
    )
    items = []
    for th in page:
        if th not in threads:
            continue
        view = thread_view(threads[th])
        if threads[th]["owner"] != user_id:  # a colleague: aggregates of what they may see
            visible = newest[th]
            members = threads[th].get("members") or {}
            view["message_count"] = len(visible)
            view["unread_count"] = sum(1 for ln in visible if (members.get(ln.mid) or {}).get("u"))
            view["unread"] = view["unread_count"] > 0
            view["last_date"] = visible[0].sk.split("#")[1]
            view["snippet"] = (members.get(visible[0].mid) or {}).get("s", "")
        items.append(view)
    more = offset + limit < len(order)
    return {"items": items, "next_cursor": _encode_offset(offset + limit) if more else None}


def _encode_offset(n: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": n}).encode()).decode().rstrip("=")


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        n = data["offset"]
    except (ValueError, KeyError, TypeError) as e:
        raise InvalidCursor("cursor is not valid") from e
    if not isinstance(n, int) or n < 0:
        raise InvalidCursor("cursor is not valid")
    return n


def with_links(doc: dict[str, Any]) -> dict[str, Any]:
    return summary(doc)


def visible_to_user(tenant_id: str, user_id: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The docs ``user_id`` may see (one BatchGet of the contacts involved)."""
    foreign = [
        d for d in docs if d["owner"] != user_id and d.get("visibility") == "public" and d.get("links")
    ]
    foreign_ids = {d["mid"] for d in foreign}
    cids = {cid for d in foreign for cid in d["links"]}
    contacts = (
        {
            c.contact_id: c
            for c in ContactItem.batch_get([(keys.contact(tenant_id, cid), "C") for cid in cids])
        }
        if cids
        else {}
    )
    out = []
    for d in docs:
        if d.get("orphan"):
            continue
        if d["owner"] == user_id or (
            d["mid"] in foreign_ids
            and any(cid in contacts and may_see_contact(contacts[cid], user_id) for cid in d["links"])
        ):
            out.append(d)
    return out
