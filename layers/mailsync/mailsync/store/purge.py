"""The purges: remove everything an account, a contact or a whole tenant left behind.

Account deletion, user deletion and tenant offboarding all end in :func:`purge_account`
(the sync worker resumes it when it finds an account in ``deleting``).

Invariants:

* **Nothing is stored once a purge began.** It first holds the account's mirror lock for
  good (:meth:`DynamoMirrorStore.hold_for_purge`), after the batch in flight; every
  later writer is refused with ``AccountGone``.
* **Idempotent and resumable.** Each step deletes what is still there, so a purge that
  died at any point is finished by running it again. The account item goes last: while
  it exists (in ``deleting``, off the due index), the purge can be found and resumed.
* **In proportion, in pieces.** The account partition is swept a page at a time with
  consistent Queries (locations and orphan markers name every mail; refs name the
  threads), then the account's message index once more for a mail whose location a
  crashed sync never wrote. With a ``deadline`` it returns False between pages, so a
  100,000-mail account is purged by a chain of jobs, each well inside Lambda's limit.
* **Per mail, children first:** thread, contact links, the address index, S3 objects,
  then the message; a crash in between leaves a message that the next run finds again.
* **Isolation.** Every key is built from the tenant and account being purged; contacts
  stay (only this account's mails leave their histories) unless the tenant itself goes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from pynamodb.exceptions import DeleteError, DoesNotExist
from pynamodb.models import Model

from mailsync.domain import contact_search, suggestions
from mailsync.domain.records import Contact
from mailsync.observability import logger
from mailsync.store import blobs, idempotency, keys, watches, webhooks
from mailsync.store.contacts import address_message_key, link_key
from mailsync.store.messages import message_doc
from mailsync.store.mirror import DynamoMirrorStore
from mailsync.store.models import (
    AccountItem,
    AddressContactsItem,
    ContactItem,
    EmailLockItem,
    MessageItem,
    MirrorLockItem,
    OAuthStateItem,
    PartitionItem,
    TenantMemberItem,
    ThreadItem,
)
from mailsync.store.models_index import ContactSearchItem, DomainContactsItem, NameContactsItem

PAGE = 200  # items per sweep step: one BatchGet of messages (2 requests) and its deletes


def purge_account(
    tenant_id: str,
    account_id: str,
    email: str,
    *,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Remove everything of an account; True when it is gone, False when ``deadline``
    (of ``clock``) came first and the purge must be run again to go on."""
    pk = keys.account(tenant_id, account_id)
    DynamoMirrorStore(tenant_id, account_id).hold_for_purge()
    mails = 0

    def out_of_time() -> bool:
        return deadline is not None and clock() >= deadline

    # 1. The partition, a page at a time: cursors, credentials, locations, orphans, refs.
    while True:
        page = [
            i
            for i in PartitionItem.query(pk, PartitionItem.sk > "A", consistent_read=True, limit=PAGE)
            if i.sk != "LOCK"
        ]
        if not page:
            break
        mids = {i.mid for i in page if i.mid and i.sk.startswith(("L#", "O#"))}
        threads = {i.thread_id for i in page if i.thread_id and i.sk.startswith("R#")}
        mails += _delete_mails(tenant_id, account_id, mids, threads)
        _delete_all(page)
        if out_of_time():
            return False
    # 2. A mail stored without its location (a sync that died between the two writes).
    listed = MessageItem.by_account.query(keys.account_messages(tenant_id, account_id))
    for chunk in _chunks(m.mid for m in listed):
        mails += _delete_mails(tenant_id, account_id, set(chunk), set())
        if out_of_time():
            return False
    # 3. Objects, send idempotency records, the mailbox lock and the push channels.
    blobs.delete_prefix(blobs.account_prefix(tenant_id, account_id))
    idempotency.delete_partition(pk)
    try:
        EmailLockItem(keys.email_lock(tenant_id, email), "E").delete(
            condition=EmailLockItem.account_id == account_id  # a later account's lock stays
        )
    except DeleteError as e:
        if e.cause_response_code != "ConditionalCheckFailedException":
            raise
    watches.remove_gmail_watch(tenant_id, account_id, email)
    watches.remove_graph_watch(tenant_id, account_id)
    # 4. The tenant's entry, the lock and, last, the account item.
    TenantMemberItem(keys.tenant(tenant_id), keys.tenant_member_sk("A", account_id)).delete()
    MirrorLockItem(pk, "LOCK").delete()
    AccountItem(pk, "A").delete()
    logger.info("account purged", extra={"tenant_id": tenant_id, "account_id": account_id, "mails": mails})
    return True


def _delete_mails(tenant_id: str, account_id: str, mids: set[str], threads: set[str]) -> int:
    """Delete these mails of the account with everything hanging on them (children first);
    returns how many message items were still there."""
    ks = [(keys.message(tenant_id, m), "M") for m in mids]
    got = (message_doc(m) for m in MessageItem.batch_get(ks)) if ks else iter(())
    found = [d for d in got if d["account_id"] == account_id]  # never another account's mail
    threads |= {d["thread_id"] for d in found}
    _delete_all(ThreadItem(keys.thread(tenant_id, th), "TH") for th in threads)
    _delete_all(
        link_key(tenant_id, cid, d["received_at"], d["mid"]) for d in found for cid in d.get("links") or {}
    )
    _delete_all(
        address_message_key(tenant_id, e, d["received_at"], d["mid"])
        for d in found
        for e in d.get("participants") or []
    )
    blobs.delete_keys([k for d in found for k in blobs.message_keys(d)])
    _delete_all(MessageItem(keys.message(tenant_id, d["mid"]), "M") for d in found)
    return len(found)


def _delete_all(items: Iterable[Model]) -> None:
    """BatchWriteItem deletes of ``items`` (one model per call; duplicates once)."""
    unique = list({(i.pk, i.sk): i for i in items}.values())  # type: ignore[attr-defined]
    if not unique:
        return
    with type(unique[0]).batch_write() as b:
        for i in unique:
            b.delete(i)


def _chunks(mids: Iterable[str], size: int = PAGE) -> Iterable[list[str]]:
    chunk: list[str] = []
    for mid in mids:
        chunk.append(mid)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


# ---------------------------------------------------------------- tenant side
def purge_contact(tenant_id: str, contact_id: str) -> None:
    """A contact with its history partition, its address entries and its domain and name
    entries (tenant purge only: a user's contact deletion goes through the contact use case;
    every contact of the tenant goes, so the shared entries go whole)."""
    pk = keys.contact(tenant_id, contact_id)
    try:
        item = ContactItem.get(pk, "C", consistent_read=True)
        emails, name = [str(e) for e in item.emails or []], item.name or ""
        visible_to = tuple(str(u) for u in item.visible_to or [])
    except DoesNotExist:
        emails, name, visible_to = [], "", ()
    _delete_all(AddressContactsItem(keys.address_contacts(tenant_id, e), "E") for e in emails)
    c = Contact(contact_id, "customer", name, tuple(emails), visible_to, "", "")
    _delete_all(
        ContactSearchItem(keys.contact_search(tenant_id, a), keys.contact_search_sk(t, contact_id))
        for a, t in contact_search.entries(c)
    )
    domains, name_key = suggestions.contact_index_keys(c)
    _delete_all(DomainContactsItem(keys.domain_contacts(tenant_id, d), "D") for d in domains)
    if name_key:
        _delete_all([NameContactsItem(keys.name_contacts(tenant_id, name_key), "N")])
    _delete_all(PartitionItem.query(pk, consistent_read=True))  # the contact and its links
    TenantMemberItem(keys.tenant(tenant_id), keys.tenant_member_sk("C", contact_id)).delete()


def purge_tenant_objects(tenant_id: str) -> int:
    """Whatever is left under the tenant's S3 prefix (accounts remove their own)."""
    return blobs.delete_prefix(blobs.tenant_prefix(tenant_id))


def purge_webhook_endpoint(tenant_id: str, endpoint_id: str) -> None:
    """A webhook endpoint: its deliveries first, the endpoint item (``T#<t>`` / ``WH#<id>``,
    which names them) last, so a purge that dies in between finds them again."""
    webhooks.purge_deliveries(tenant_id, endpoint_id)
    webhooks.delete_endpoint(tenant_id, endpoint_id)


def purge_oauth_state(tenant_id: str, state_hash: str) -> None:
    OAuthStateItem(f"OAUTH#{state_hash}", "S").delete()
    TenantMemberItem(keys.tenant(tenant_id), keys.tenant_member_sk("S", state_hash)).delete()


def tenant_members(tenant_id: str, kind: str, limit: int = PAGE) -> list[tuple[str, str | None]]:
    """(id, owner) of up to ``limit`` entries of one kind in the tenant's partition (consistent)."""
    prefix = keys.tenant_member_sk(kind, "")
    return [
        (i.sk[len(prefix) :], i.owner)
        for i in TenantMemberItem.query(
            keys.tenant(tenant_id), TenantMemberItem.sk.startswith(prefix), consistent_read=True, limit=limit
        )
    ]


def forget_member(tenant_id: str, kind: str, ident: str) -> None:
    """Drop a tenant partition entry whose thing is already gone."""
    TenantMemberItem(keys.tenant(tenant_id), keys.tenant_member_sk(kind, ident)).delete()
