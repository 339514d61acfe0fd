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
* Visibility (``domain.visibility``): the owner sees every message of their accounts.
  Another user of the tenant sees a message only if it is public, linked to at
  least one contact, and they may see that contact; only through that contact's
  history, thread views reached from it and the message itself. Another tenant
  sees nothing (404).
* Deleting a contact removes its links, never mails.

Data goes through ``store.contacts`` (contacts, address indexes, links) and
``store.messages``; a message is changed only by the holder of its account's
mirror lock, after a consistent read under it (a sync merges into the same items).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from mailsync.domain import compose, contact_search
from mailsync.domain.clock import iso, utcnow
from mailsync.domain.records import CONTACT_ID_PATTERN, Contact, Link, MessageDoc, ThreadDoc, link_of
from mailsync.domain.suggestions import contact_index_keys
from mailsync.domain.visibility import WITHHELD, may_see_contact
from mailsync.errors import InvalidCursor, InvalidRequest, NotFound, Unprocessable
from mailsync.store import accounts as accounts_repo
from mailsync.store import tenants
from mailsync.store.contacts import ContactRepository, LinkRepository
from mailsync.store.messages import MessageRepository
from mailsync.store.mirror import DynamoMirrorStore
from mailsync.usecases.reading import summary, thread_view

CONTACT_ID = re.compile(CONTACT_ID_PATTERN)
BATCH_LIMIT = 500
CHUNK = 100  # messages read and written per step (one BatchGet, one BatchWrite)


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


def _check_id(cid: str) -> None:
    if not CONTACT_ID.fullmatch(cid):
        raise InvalidRequest("contact ids are 1-128 characters of letters, digits and . _ : @ -")


def _visible_contact(tenant_id: str, user_id: str, cid: str) -> Contact:
    c = ContactRepository(tenant_id).get(cid)
    if c is None or not may_see_contact(c.visible_to, user_id):
        raise NotFound("contact not found")
    return c


def get_contact(tenant_id: str, user_id: str, cid: str) -> dict[str, Any]:
    return _visible_contact(tenant_id, user_id, cid).view()


def search_contacts(
    tenant_id: str, user_id: str, q: str, *, kind: str | None = None, limit: int = 20
) -> dict[str, Any]:
    """The contact picker: contacts ``user_id`` may see whose name, a word of it or an address
    starts with ``q`` (``domain.contact_search``). Two Queries (everyone's contacts, the
    user's own), never a Scan; ``has_more`` says a longer ``q`` would narrow the list."""
    prefix = contact_search.fold(q)
    if not prefix:
        raise InvalidRequest("q must hold at least one letter, digit or sign")
    if len(prefix) > contact_search.MAX_TERM_CHARS:  # folding can lengthen ("ﷺ" is 18 letters)
        return {"items": [], "has_more": False}  # longer than any stored term: matches none
    repo = ContactRepository(tenant_id)
    # A contact can match several of its terms ("anna", "anna schmidt", "anna@..."): read more
    # entries than contacts asked for, so that duplicates seldom shorten the page.
    fetch = min(limit * 4, 200)
    found, more = repo.search(contact_search.EVERYONE, prefix, fetch)
    if user_id != contact_search.EVERYONE:
        own, own_more = repo.search(user_id, prefix, fetch)
        found, more = found + own, more or own_more
    ranked = contact_search.rank(found, prefix, kind, limit + 1)
    return {
        "items": [
            {"id": c.id, "kind": c.kind, "name": c.name, "emails": list(c.emails)} for c in ranked[:limit]
        ],
        "has_more": more or len(ranked) > limit,
    }


# -------------------------------------------------------------- writes
def put_contact(tenant_id: str, cid: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Create or replace a contact; returns (contact, created)."""
    _check_id(cid)
    contacts = ContactRepository(tenant_id)
    emails = normalise_emails(body.get("emails") or [])
    visible_to = list(dict.fromkeys(body.get("visible_to") or []))
    old = contacts.get(cid)
    now = iso(utcnow())
    new = Contact(
        id=cid,
        kind=body["kind"],
        name=body.get("name") or "",
        emails=tuple(emails),
        visible_to=tuple(visible_to),
        created_at=old.created_at if old else now,
        updated_at=now,
    )
    old_emails: list[str] = list(old.emails) if old else []
    added = [e for e in emails if e not in old_emails]
    removed = [e for e in old_emails if e not in emails]
    kind_changed = old is not None and old.kind != body["kind"]
    contacts.put(new)
    for e in emails if kind_changed else added:
        contacts.add_address(e, cid, body["kind"])
    for e in removed:
        contacts.remove_address(e, cid)
    _reindex(contacts, cid, old, new)
    if removed or kind_changed:
        _unlink_addresses(tenant_id, cid, set(removed), new_kind=body["kind"] if kind_changed else None)
    if added:
        _link_addresses(tenant_id, cid, body["kind"], added)
    return new.view(), old is None


def _update_messages(
    tenant_id: str, mids: list[str], change: Callable[[MessageDoc], bool]
) -> list[MessageDoc]:
    """Apply ``change`` to the messages ``mids`` and write those it changed (True), under each
    account's mirror lock with a consistent read (a sync merges into the same items)."""
    by_account: dict[str, list[str]] = {}
    for d in MessageRepository(tenant_id).get_many(mids).values():
        by_account.setdefault(d["account_id"], []).append(d["mid"])
    messages = MessageRepository(tenant_id)
    changed: list[MessageDoc] = []
    for account_id, ids in by_account.items():
        store = DynamoMirrorStore(tenant_id, account_id)
        with store.lock():
            got = store.get_messages(ids)
            mine = [got[m] for m in ids if m in got and change(got[m])]
            messages.save(mine)
        changed.extend(mine)
    return changed


def _link_addresses(tenant_id: str, cid: str, kind: str, emails: list[str]) -> int:
    """Retroactive auto links: every mirrored message an added address takes part in."""
    contacts, links = ContactRepository(tenant_id), LinkRepository(tenant_id)
    auto_assign: dict[str, bool] = {}
    known: list[bool] = []

    def assign_bulk() -> bool:  # one GetItem, only once a bulk mail would be linked
        if not known:
            known.append(tenants.settings(tenant_id).assign_bulk)
        return known[0]

    linked = 0
    for email in emails:
        pending = contacts.messages_with(email)
        for i in range(0, len(pending), CHUNK):
            entries: list[Link] = []

            def add_link(d: MessageDoc, email: str = email, entries: list[Link] = entries) -> bool:
                if d.get("orphan"):
                    return False
                if d["account_id"] not in auto_assign:
                    acc = accounts_repo.get_account(tenant_id, d["account_id"])
                    auto_assign[d["account_id"]] = bool(acc and acc.settings.auto_assign)
                if not auto_assign[d["account_id"]]:
                    return False
                if d.get("bulk") and not assign_bulk():
                    return False
                link = d["links"].setdefault(cid, {"kind": kind, "auto": [], "manual": False})
                if email in link["auto"]:
                    return False
                link["auto"] = sorted({*link["auto"], email})
                entries.append(link_of(d, cid))
                return True

            changed = _update_messages(tenant_id, pending[i : i + CHUNK], add_link)
            links.put(entries)
            linked += len(changed)
    return linked


def _unlink_addresses(tenant_id: str, cid: str, removed: set[str], *, new_kind: str | None = None) -> None:
    """Drop auto links that depended only on removed addresses; update kinds."""
    links = LinkRepository(tenant_id)
    all_links = links.of_contact(cid)
    for i in range(0, len(all_links), CHUNK):
        chunk = all_links[i : i + CHUNK]
        drop: set[str] = set()

        def narrow(d: MessageDoc, drop: set[str] = drop) -> bool:
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
        # Unlinked, or the message is gone.
        links.delete(ln for ln in chunk if ln.mid in drop or ln.mid not in kept)


def delete_contact(tenant_id: str, cid: str) -> None:
    contacts, links = ContactRepository(tenant_id), LinkRepository(tenant_id)
    c = contacts.get(cid)
    if c is None:
        raise NotFound("contact not found")
    all_links = links.of_contact(cid)
    for i in range(0, len(all_links), CHUNK):
        chunk = all_links[i : i + CHUNK]
        _update_messages(tenant_id, [ln.mid for ln in chunk], lambda d: d["links"].pop(cid, None) is not None)
        links.delete(chunk)
    for e in c.emails:
        contacts.remove_address(e, cid)
    _reindex(contacts, cid, c, None)
    contacts.delete(cid)


def _reindex(contacts: ContactRepository, cid: str, old: Contact | None, new: Contact | None) -> None:
    """The search entries (the contact picker), and the domain → contacts and name → contacts
    entries (suggestions) that changed, as the address entries above: what the old contact was indexed under and the new one is not goes,
    what is new (or all of it, when the kind changed) is written."""
    old_domains, old_name = contact_index_keys(old) if old else (frozenset(), None)
    new_domains, new_name = contact_index_keys(new) if new else (frozenset(), None)
    rewrite = old is not None and new is not None and old.kind != new.kind
    contacts.reindex_search(old, new)
    for d in sorted(old_domains - new_domains):
        contacts.remove_index_entry("domain", d, cid)
    if old_name and old_name != new_name:
        contacts.remove_index_entry("name", old_name, cid)
    if new is None:
        return
    for d in sorted(new_domains if rewrite else new_domains - old_domains):
        contacts.add_index_entry("domain", d, cid, new.kind)
    if new_name and (rewrite or new_name != old_name):
        contacts.add_index_entry("name", new_name, cid, new.kind)


def reindex_contacts(tenant_id: str) -> int:
    """Write the index entries (search, domain → contacts, name → contacts) of every contact
    of the tenant: for contacts stored before those entries existed (ops: ``mailsync admin
    reindex-contacts``). Idempotent; one paged Query, a BatchGet per 100 contacts and the
    entries' writes. Returns the number of contacts indexed."""
    contacts = ContactRepository(tenant_id)
    done = 0
    ids = list(contacts.all_ids())
    for i in range(0, len(ids), 100):
        for cid, c in contacts.get_many(ids[i : i + 100]).items():
            _reindex(contacts, cid, None, c)
            done += 1
    return done


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
def _own_thread(messages: MessageRepository, user_id: str, thread_id: str) -> ThreadDoc:
    th = messages.get_thread(thread_id)
    if th is None or th["owner"] != user_id:
        raise NotFound("thread not found")
    return th


def _thread_under_lock(
    store: DynamoMirrorStore, messages: MessageRepository, th: ThreadDoc
) -> tuple[ThreadDoc, list[MessageDoc]]:
    """The thread and its messages read again, consistently, by the holder of the account's
    mirror lock (a sync may have merged into them since the index was read)."""
    mids = [d["mid"] for d in messages.of_thread(th["thread_id"])]
    fresh = store.get_threads([th["thread_id"]]).get(th["thread_id"]) or th
    got = store.get_messages(mids)
    return fresh, [got[m] for m in mids if m in got]  # in the index's order


def link_thread(tenant_id: str, user_id: str, thread_id: str, cid: str, follow: bool) -> dict[str, Any]:
    messages = MessageRepository(tenant_id)
    th = _own_thread(messages, user_id, thread_id)
    c = ContactRepository(tenant_id).get(cid)
    if c is None:
        raise NotFound("contact not found")
    store = DynamoMirrorStore(tenant_id, th["account_id"])
    with store.lock():
        th, docs = _thread_under_lock(store, messages, th)
        entries, linked = [], []
        for d in docs:
            if d.get("orphan"):
                continue
            link = d["links"].setdefault(cid, {"kind": c.kind, "auto": [], "manual": False})
            link["manual"] = True
            entries.append(link_of(d, cid))
            linked.append(d["mid"])
        LinkRepository(tenant_id).put(entries)
        messages.save(d for d in docs if d["mid"] in linked)
        if follow:
            th["follow"] = {**th.get("follow", {}), cid: c.kind}
        else:
            th.get("follow", {}).pop(cid, None)
        # The snapshot this link made: the thread.linked event names it (domain/derive.py).
        th["manual_links"] = {
            **(th.get("manual_links") or {}),
            cid: {"mids": linked, "follow": follow, "at": iso(utcnow())},
        }
        messages.save_thread(th)
    return {"thread_id": thread_id, "contact_id": cid, "follow": follow, "linked": linked}


def unlink_thread(tenant_id: str, user_id: str, thread_id: str, cid: str) -> None:
    messages = MessageRepository(tenant_id)
    th = _own_thread(messages, user_id, thread_id)
    store = DynamoMirrorStore(tenant_id, th["account_id"])
    with store.lock():
        th, docs = _thread_under_lock(store, messages, th)
        changed, unlinked = [], []
        for d in docs:
            link = d["links"].get(cid)
            if not link or not link["manual"]:
                continue
            link["manual"] = False
            if not link["auto"]:
                del d["links"][cid]
                unlinked.append(link_of(d, cid))
            changed.append(d)
        LinkRepository(tenant_id).delete(unlinked)
        messages.save(changed)
        dropped = (th.get("manual_links") or {}).pop(cid, None) is not None
        if cid in th.get("follow", {}) or dropped:
            th.get("follow", {}).pop(cid, None)
            messages.save_thread(th)  # thread.unlinked when the hand-made link goes


# ------------------------------------------------------------- histories
def contact_messages(
    tenant_id: str, user_id: str, cid: str, *, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    """One Query on the contact's links plus one BatchGet of the page's messages and their
    accounts (a mail of an account being deleted, or of a user being purged, is left out)."""
    _visible_contact(tenant_id, user_id, cid)
    page = LinkRepository(tenant_id).page_visible_of_contact(cid, user_id, limit, cursor)
    links: list[Link] = page.items
    docs, live = MessageRepository(tenant_id).get_many_with_accounts(
        (ln.mid for ln in links), {ln.account_id for ln in links}
    )
    items = [
        summary(docs[ln.mid], user_id)
        for ln in links
        if ln.mid in docs and not docs[ln.mid].get("orphan") and ln.account_id in live
    ]
    return {"items": items, "next_cursor": page.next_cursor}


def contact_threads(
    tenant_id: str, user_id: str, cid: str, *, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    """The threads of the contact's visible messages, ordered by their newest linked message.

    Threads are deduplicated over the contact's whole (visibility-filtered) link
    list, so the cost is one Query over the contact's links plus one BatchGet of
    the page's threads; the cursor is the offset into that ordered list.
    """
    _visible_contact(tenant_id, user_id, cid)
    offset = _offset(cursor)
    order: list[str] = []
    newest: dict[str, list[Link]] = {}
    for ln in LinkRepository(tenant_id).visible_of_contact(cid, user_id):
        if ln.thread_id not in newest:
            order.append(ln.thread_id)
            newest[ln.thread_id] = []
        newest[ln.thread_id].append(ln)
    page = order[offset : offset + limit]
    threads, live = MessageRepository(tenant_id).get_threads_with_accounts(
        page, {newest[th][0].account_id for th in page}
    )
    threads = {th: doc for th, doc in threads.items() if doc["account_id"] in live}
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
            view["last_date"] = visible[0].received_at
            newest_hidden = WITHHELD.get(visible[0].visibility, WITHHELD["metadata"])
            view["snippet"] = (
                None if "snippet" in newest_hidden else (members.get(visible[0].mid) or {}).get("s", "")
            )
            if all("subject" in WITHHELD.get(ln.visibility, WITHHELD["metadata"]) for ln in visible):
                view["subject"] = None
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
