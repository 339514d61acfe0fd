"""Messages and threads repository (DynamoDB), shared with the sync's mirror store.

The item <-> doc conversions (``message_doc``/``message_item``/``thread_doc``/
``thread_item``) live here once; :mod:`store.mirror` commits the engine's writes
with them and this repository serves the API and the mail client.

Invariants:

* An orphan message (lost its last location) has no index keys: it drops out of
  every listing at once; single reads return it and callers hide it.
* A message without links is also in the owner's "unassigned" index (GSI5).
* Every read is GetItem, BatchGetItem or one Query page; never a Scan. Pages are
  newest first and a cursor must belong to the partition it pages
  (:func:`mailsync.store.paging.page_cursor`).

Mutation paths: :meth:`MessageRepository.save` and :meth:`MessageRepository.save_thread`
(the mail side outside a sync) and ``DynamoMirrorStore.commit`` (the sync).
"""

from __future__ import annotations

from collections.abc import Iterable

from pynamodb.exceptions import DoesNotExist
from pynamodb.indexes import GlobalSecondaryIndex

from mailsync.domain.records import MessageDoc, Page, ThreadDoc
from mailsync.store import batch, keys, paging
from mailsync.store.models import MessageItem, ThreadItem

MESSAGE_FIELDS = (
    "tenant_id", "account_id", "mid", "owner", "thread_id", "folder", "locs", "message_key",
    "header_message_id", "in_reply_to", "references", "subject", "to", "cc", "bcc", "reply_to",
    "date", "received_at", "snippet", "unread", "has_attachments", "bulk", "attachments",
    "body_parts", "raw_key", "size", "visibility", "participants", "created_at", "orphan", "links",
    "provider_thread_id", "quarantine_reason", "gone_reason",
)  # fmt: skip
THREAD_FIELDS = (
    "tenant_id", "account_id", "thread_id", "owner", "members", "subject", "last_date",
    "message_count", "unread_count", "participants", "snippet", "visibility", "follow",
    "manual_links",
)  # fmt: skip


def message_doc(item: MessageItem) -> MessageDoc:
    d = {f: getattr(item, f) for f in MESSAGE_FIELDS}
    d["from"] = item.from_
    d["locs"] = dict(d["locs"] or {})
    d["references"] = list(d["references"] or [])
    d["participants"] = list(d["participants"] or [])
    d["links"] = dict(d["links"] or {})
    return d


def message_item(doc: MessageDoc) -> MessageItem:
    t, a, mid = doc["tenant_id"], doc["account_id"], doc["mid"]
    item = MessageItem(keys.message(t, mid), "M")
    for f in MESSAGE_FIELDS:
        setattr(item, f, doc.get(f))
    item.links = doc.get("links") or {}
    item.from_ = doc.get("from") or []
    if not doc.get("orphan"):  # orphans drop out of every list at once
        sk = keys.message_sort(doc["received_at"], mid)
        item.gsi1pk, item.gsi1sk = keys.owner_messages(t, doc["owner"]), sk
        item.gsi2pk, item.gsi2sk = keys.account_messages(t, a), sk
        item.gsi3pk, item.gsi3sk = keys.folder_messages(t, a, doc["folder"]), sk
        item.gsi4pk, item.gsi4sk = keys.thread_messages(t, doc["thread_id"]), sk
        if not doc.get("links"):
            item.gsi5pk, item.gsi5sk = keys.owner_unassigned(t, doc["owner"]), sk
    return item


def thread_doc(item: ThreadItem) -> ThreadDoc:
    d = {f: getattr(item, f) for f in THREAD_FIELDS}
    d["members"] = dict(d["members"] or {})
    d["follow"] = dict(d["follow"] or {})
    d["manual_links"] = dict(d["manual_links"] or {})
    return d


def thread_item(doc: ThreadDoc) -> ThreadItem:
    t = doc["tenant_id"]
    item = ThreadItem(keys.thread(t, doc["thread_id"]), "TH")
    for f in THREAD_FIELDS:
        setattr(item, f, doc.get(f))
    item.follow = doc.get("follow") or {}
    item.gsi1pk = keys.owner_threads(t, doc["owner"])
    item.gsi1sk = keys.thread_sort(doc["last_date"], doc["thread_id"])
    return item


class MessageRepository:
    """A tenant's messages and threads."""

    def __init__(self, tenant_id: str) -> None:
        self.t = tenant_id

    # ---------------------------------------------------------------- messages
    def get(self, mid: str) -> MessageDoc | None:
        try:
            return message_doc(MessageItem.get(keys.message(self.t, mid), "M"))
        except DoesNotExist:
            return None

    def get_many(self, mids: Iterable[str]) -> dict[str, MessageDoc]:
        """One BatchGet (eventually consistent); missing ids are absent."""
        ks = [(keys.message(self.t, m), "M") for m in dict.fromkeys(mids)]
        return {i.mid: message_doc(i) for i in MessageItem.batch_get(ks)} if ks else {}

    def get_many_with_accounts(
        self, mids: Iterable[str], account_ids: Iterable[str]
    ) -> tuple[dict[str, MessageDoc], set[str]]:
        """The messages, and which of the accounts are live, in one BatchGetItem."""
        mkeys = [(keys.message(self.t, m), "M") for m in mids]
        raw, live = batch.with_live_accounts(self.t, mkeys, account_ids)
        docs = [message_doc(MessageItem.from_raw_data(raw[k])) for k in mkeys if k in raw]
        return {d["mid"]: d for d in docs}, live

    def get_threads_with_accounts(
        self, thread_ids: Iterable[str], account_ids: Iterable[str]
    ) -> tuple[dict[str, ThreadDoc], set[str]]:
        """:meth:`get_threads` and the live accounts among ``account_ids``, in one BatchGetItem."""
        tkeys = [(keys.thread(self.t, th), "TH") for th in thread_ids]
        raw, live = batch.with_live_accounts(self.t, tkeys, account_ids)
        docs = [thread_doc(ThreadItem.from_raw_data(raw[k])) for k in tkeys if k in raw]
        return {d["thread_id"]: d for d in docs}, live

    def of_thread(self, thread_id: str) -> list[MessageDoc]:
        """Every (non-orphan) message of a thread, oldest first (one Query)."""
        return [
            message_doc(m)
            for m in MessageItem.by_thread.query(
                keys.thread_messages(self.t, thread_id), scan_index_forward=True
            )
        ]

    def page_of_owner(self, user_id: str, limit: int, cursor: str | None) -> Page:
        return self._page(MessageItem.by_owner, "gsi1pk", keys.owner_messages(self.t, user_id), limit, cursor)

    def page_of_account(self, account_id: str, limit: int, cursor: str | None) -> Page:
        pk = keys.account_messages(self.t, account_id)
        return self._page(MessageItem.by_account, "gsi2pk", pk, limit, cursor)

    def page_of_folder(self, account_id: str, folder: str, limit: int, cursor: str | None) -> Page:
        pk = keys.folder_messages(self.t, account_id, folder)
        return self._page(MessageItem.by_folder, "gsi3pk", pk, limit, cursor)

    def page_of_thread(self, thread_id: str, limit: int, cursor: str | None) -> Page:
        pk = keys.thread_messages(self.t, thread_id)
        return self._page(MessageItem.by_thread, "gsi4pk", pk, limit, cursor)

    def page_unassigned(self, user_id: str, limit: int, cursor: str | None) -> Page:
        pk = keys.owner_unassigned(self.t, user_id)
        return self._page(MessageItem.unassigned, "gsi5pk", pk, limit, cursor)

    def _page(
        self, index: GlobalSecondaryIndex[MessageItem], attr: str, pk: str, limit: int, cursor: str | None
    ) -> Page:
        lek = paging.page_cursor(self.t, cursor, attr, pk)
        it = index.query(pk, scan_index_forward=False, limit=limit, page_size=limit, last_evaluated_key=lek)
        docs = [message_doc(m) for m in it]
        return Page(docs, paging.encode_cursor(it.last_evaluated_key))

    def save(self, docs: Iterable[MessageDoc]) -> None:
        """Write messages (one BatchWrite). The caller holds the account's mirror lock
        and read them consistently under it: a sync merges into the same items."""
        docs = list(docs)
        if not docs:
            return
        with MessageItem.batch_write() as b:
            for d in docs:
                b.save(message_item(d))

    # ----------------------------------------------------------------- threads
    def get_thread(self, thread_id: str) -> ThreadDoc | None:
        try:
            return thread_doc(ThreadItem.get(keys.thread(self.t, thread_id), "TH"))
        except DoesNotExist:
            return None

    def get_threads(self, thread_ids: Iterable[str]) -> dict[str, ThreadDoc]:
        ks = [(keys.thread(self.t, th), "TH") for th in dict.fromkeys(thread_ids)]
        return {i.thread_id: thread_doc(i) for i in ThreadItem.batch_get(ks)} if ks else {}

    def page_threads_of_owner(self, user_id: str, limit: int, cursor: str | None) -> Page:
        pk = keys.owner_threads(self.t, user_id)
        lek = paging.page_cursor(self.t, cursor, "gsi1pk", pk)
        it = ThreadItem.by_owner.query(
            pk, scan_index_forward=False, limit=limit, page_size=limit, last_evaluated_key=lek
        )
        threads = [thread_doc(t) for t in it]
        return Page(threads, paging.encode_cursor(it.last_evaluated_key))

    def save_thread(self, thread: ThreadDoc) -> None:
        """Write a thread (under the account's mirror lock, like :meth:`save`)."""
        thread_item(thread).save()
