"""The one purge: remove everything an account left in the table and the bucket.

Used by account deletion (and the sync worker finding an account in ``deleting``); the
coming user deletion and tenant offboarding call it per account.

Invariants:

* Idempotent and resumable: every step deletes what is still there, so a purge
  interrupted at any point is finished by running it again (the account stays in
  ``deleting``, off the due index, until its own item goes last).
* Contacts stay; only the account's mails leave their histories (links) and the
  address → messages index.
* Order: mail items through the mirror store's own deletion path (links, address index,
  messages, threads), then S3 objects, the email lock, the push-channel records, the
  account partition (folders and cursors, credentials, locations, refs, orphans, lock),
  and the account item last: while it exists, the purge can be found and resumed.
"""

from __future__ import annotations

from mailsync.domain.sync import Writes
from mailsync.observability import logger
from mailsync.store import blobs, keys, watches
from mailsync.store.mirror import DynamoMirrorStore
from mailsync.store.models import AccountItem, EmailLockItem, LocationItem, MessageItem


def purge_account(tenant_id: str, account_id: str, email: str) -> None:
    """Remove everything of an account. Idempotent; safe to re-run after a crash."""
    pk = keys.account(tenant_id, account_id)
    DynamoMirrorStore(tenant_id, account_id).hold_for_purge()  # no writer stores anything from here
    account_items = list(LocationItem.query(pk))  # every item type in the partition
    mids = {i.sk[2:] for i in account_items if i.sk.startswith("O#")}
    mids.update(m.mid for m in MessageItem.by_account.query(keys.account_messages(tenant_id, account_id)))
    w = Writes(messages_delete=mids)
    for m in MessageItem.batch_get([(keys.message(tenant_id, mid), "M") for mid in mids]) if mids else []:
        w.threads_delete.add(m.thread_id)
        w.links_delete.extend((cid, m.received_at, m.mid) for cid in (m.links or {}))
        w.addresses_delete.extend((str(e), m.received_at, m.mid) for e in (m.participants or []))
    DynamoMirrorStore(tenant_id, account_id).commit(w)
    blobs.delete_prefix(blobs.account_prefix(tenant_id, account_id))
    EmailLockItem(keys.email_lock(tenant_id, email), "E").delete()
    watches.remove_gmail_watch(tenant_id, account_id, email)
    watches.remove_graph_watch(tenant_id, account_id)
    with LocationItem.batch_write() as b:
        for i in account_items:
            if i.sk != "A":
                b.delete(LocationItem(pk, i.sk))
    AccountItem(pk, "A").delete()
    logger.info(
        "account purged",
        extra={
            "tenant_id": tenant_id,
            "account_id": account_id,
            "messages": len(mids),
            "threads": len(w.threads_delete),
        },
    )
