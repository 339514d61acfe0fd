"""DynamoDB + S3 implementation of the sync engine's :class:`MirrorStore` port.

Reads are BatchGetItem / Query (strongly consistent inside the account partition,
so a replay after a crash sees its own earlier writes); writes are BatchWriteItem
in the order that keeps the mirror consistent at every instant a crash may hit:

1. S3 objects (raw MIME) - a message item never points to a missing object;
2. thread refs and thread items - a ``thread_id`` never dangles;
3. orphan markers, then message items, then locations;
4. deletions: S3 objects, messages, threads, and orphan markers last, so an
   interrupted purge is found and finished by the next run.

A sync and the mail client (write-through, send) both read, merge and write the same
message, thread and location items; each such step holds the account's lock
(:meth:`DynamoMirrorStore.lock`, a lease on the account's lock item, taken and freed
with conditional UpdateItems), so neither overwrites the other's merge. A purge holds
that lock for good (:meth:`DynamoMirrorStore.hold_for_purge`), so nothing is stored
for an account once its deletion began.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from mailsync.domain.records import MessageDoc, ThreadDoc
from mailsync.domain.sync_state import FolderState, Writes
from mailsync.errors import AccountBusy, AccountGone
from mailsync.store import blobs, keys, tenants
from mailsync.store.contacts import (
    ContactRepository,
    address_message_item,
    address_message_key,
    link_item,
    link_key,
)
from mailsync.store.messages import message_doc, message_item, thread_doc, thread_item
from mailsync.store.models import (
    AccountItem,
    AddressMessageItem,
    FolderItem,
    LinkItem,
    LocationItem,
    MessageItem,
    MirrorLockItem,
    OrphanItem,
    RefItem,
    ThreadItem,
)

__all__ = ["DynamoMirrorStore", "message_doc", "message_item", "thread_doc", "thread_item"]


def folder_state(item: FolderItem) -> FolderState:
    return FolderState(
        name=item.name,
        role=item.role,
        synced=bool(item.synced),
        present=bool(item.present),
        cursor=item.cursor,
        gen=int(item.gen or 0),
        old_gens=[int(g) for g in (item.old_gens or [])],  # type: ignore[call-overload]
        messages=int(item.messages or 0),
        initial_done=bool(item.initial_done),
        progress=item.progress,
        last_sync_at=item.last_sync_at,
        flaps=[str(f) for f in (item.flaps or [])],  # type: ignore[attr-defined]
    )


LOCK_LEASE_SECONDS = 60.0  # a holder that died frees the account after this
LOCK_WAIT_SECONDS = 30.0  # a step holds the lock for one batch (well under a second)
PURGE_HOLDER = "purge"  # the owner of a lock a purge holds until the account is gone
FOREVER = 2**53


class DynamoMirrorStore:
    def __init__(self, tenant_id: str, account_id: str, *, lock_wait: float = LOCK_WAIT_SECONDS) -> None:
        self.t = tenant_id
        self.a = account_id
        self.pk = keys.account(tenant_id, account_id)
        self.lock_wait = lock_wait
        self._held = 0  # reentrancy depth
        self._assign_bulk: bool | None = None

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the account's mirror lock (reentrant); :class:`AccountBusy` after ``lock_wait``,
        :class:`AccountGone` at once when the account is being deleted or is gone.

        The lease is an UpdateItem on the account's lock item, conditional on that item
        existing and being free. A purge holds it for good before it deletes anything and
        removes it last, so a writer that loaded the account before it was deleted can
        never store a mail after the purge began (see :func:`mailsync.store.purge`).
        """
        if self._held:
            self._held += 1
            try:
                yield
            finally:
                self._held -= 1
            return
        token, item = uuid.uuid4().hex, MirrorLockItem(self.pk, "LOCK")
        deadline, delay = time.monotonic() + self.lock_wait, 0.02
        while True:
            now = time.time()
            try:
                item.update(
                    actions=[
                        MirrorLockItem.owner.set(token),
                        MirrorLockItem.until.set(now + LOCK_LEASE_SECONDS),
                    ],
                    condition=MirrorLockItem.pk.exists()
                    & (MirrorLockItem.owner.does_not_exist() | (MirrorLockItem.until < now)),
                )
                break
            except UpdateError as e:
                if e.cause_response_code != "ConditionalCheckFailedException":
                    raise
                if self._refused_for_good():
                    continue  # the lock item was missing and has been created: try again at once
                if time.monotonic() >= deadline:
                    raise AccountBusy("the account is being written by another sync; retry") from e
                time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
                delay = min(delay * 2, 0.5)
        self._held = 1
        try:
            yield
        finally:
            self._held = 0
            try:
                item.update(
                    actions=[MirrorLockItem.owner.remove(), MirrorLockItem.until.remove()],
                    condition=MirrorLockItem.owner == token,
                )
            except UpdateError as e:
                if e.cause_response_code != "ConditionalCheckFailedException":
                    raise
                # Our lease ran out and another writer (or the purge) holds it now.

    def _refused_for_good(self) -> bool:
        """After a refused lease: raise :class:`AccountGone` when a purge holds the lock or the
        account is gone; True when the lock item was missing (an account stored before lock
        items were created with it) and is now created; False when a writer holds it."""
        try:
            held = MirrorLockItem.get(self.pk, "LOCK", consistent_read=True)
        except DoesNotExist:
            held = None
        if held is not None:
            if held.owner == PURGE_HOLDER:
                raise AccountGone()
            return False
        try:
            state = AccountItem.get(self.pk, "A", consistent_read=True, attributes_to_get=["state"]).state
        except DoesNotExist:
            raise AccountGone() from None
        if state == "deleting":
            raise AccountGone()
        try:
            MirrorLockItem(self.pk, "LOCK").save(condition=MirrorLockItem.pk.does_not_exist())
        except PutError as e:
            if e.cause_response_code != "ConditionalCheckFailedException":
                raise
        return True

    def hold_for_purge(self) -> None:
        """Take the lock for good, for a purge: wait until the writer holding it has stored
        its batch, then keep every writer out (they get :class:`AccountGone`). Idempotent:
        a resumed purge finds the lock already its own."""
        item = MirrorLockItem(self.pk, "LOCK")
        deadline, delay = time.monotonic() + max(self.lock_wait, LOCK_LEASE_SECONDS), 0.02
        while True:
            now = time.time()
            try:
                item.update(
                    actions=[MirrorLockItem.owner.set(PURGE_HOLDER), MirrorLockItem.until.set(FOREVER)],
                    condition=MirrorLockItem.owner.does_not_exist()
                    | (MirrorLockItem.until < now)
                    | (MirrorLockItem.owner == PURGE_HOLDER),
                )
                return
            except UpdateError as e:
                if e.cause_response_code != "ConditionalCheckFailedException":
                    raise
                if time.monotonic() >= deadline:
                    raise AccountBusy("the account is being written by a sync; the purge retries") from e
                time.sleep(delay * (0.5 + random.random()))  # noqa: S311 - jitter, not crypto
                delay = min(delay * 2, 0.5)

    def raw_key(self, mid: str) -> str:
        return blobs.raw_key(self.t, self.a, mid)

    def object_keys(self, doc: MessageDoc) -> list[str]:
        return blobs.message_keys(doc)

    # ------------------------------------------------------------------ reads
    def get_locations(self, folder: str, gen: int, refs: list[str]) -> dict[str, str]:
        if not refs:
            return {}
        want = {keys.location_sk(folder, gen, r): r for r in refs}
        out = {}
        for item in LocationItem.batch_get([(self.pk, sk) for sk in want], consistent_read=True):
            out[want[item.sk]] = item.mid
        return out

    def list_locations(self, folder: str, gen: int | None = None) -> Iterator[tuple[int, str, str]]:
        prefix = keys.location_prefix(folder, gen)
        for item in LocationItem.query(self.pk, LocationItem.sk.startswith(prefix), consistent_read=True):
            _, _, g, ref = item.sk.split("#", 3)
            yield int(g), ref, item.mid

    def get_messages(self, mids: Iterable[str]) -> dict[str, MessageDoc]:
        ks = [(keys.message(self.t, m), "M") for m in set(mids)]
        if not ks:
            return {}
        return {i.mid: message_doc(i) for i in MessageItem.batch_get(ks, consistent_read=True)}

    def iter_messages(self, page_size: int) -> Iterator[list[MessageDoc]]:
        """The account's messages from its index partition (GSI2), ``page_size`` a page."""
        it = MessageItem.by_account.query(keys.account_messages(self.t, self.a), page_size=page_size)
        page: list[MessageDoc] = []
        for item in it:
            page.append(message_doc(item))
            if len(page) >= page_size:
                yield page
                page = []
        if page:
            yield page

    def get_refs(self, hashes: Iterable[str]) -> dict[str, str]:
        want = {keys.ref_sk(h): h for h in set(hashes)}
        if not want:
            return {}
        return {
            want[i.sk]: i.thread_id
            for i in RefItem.batch_get([(self.pk, sk) for sk in want], consistent_read=True)
        }

    def get_threads(self, thread_ids: Iterable[str]) -> dict[str, ThreadDoc]:
        ks = [(keys.thread(self.t, th), "TH") for th in set(thread_ids)]
        if not ks:
            return {}
        return {i.thread_id: thread_doc(i) for i in ThreadItem.batch_get(ks, consistent_read=True)}

    def contacts_for(self, addresses: Iterable[str]) -> dict[str, dict[str, str]]:
        """{address: {contact_id: kind}} of the tenant's contacts having these addresses."""
        return ContactRepository(self.t).contacts_for(addresses)

    def assigns_bulk(self) -> bool:
        if self._assign_bulk is None:  # once per store, i.e. per sync run
            self._assign_bulk = tenants.settings(self.t).assign_bulk
        return self._assign_bulk

    def list_orphans(self) -> list[str]:
        return [
            i.mid
            for i in OrphanItem.query(
                self.pk, OrphanItem.sk.startswith(keys.orphan_sk("")), consistent_read=True
            )
        ]

    def get_folders(self) -> dict[str, FolderState]:
        return {
            i.name: folder_state(i)
            for i in FolderItem.query(
                self.pk, FolderItem.sk.startswith(keys.folder_sk("")), consistent_read=True
            )
        }

    # ----------------------------------------------------------------- writes
    def save_folder(self, st: FolderState) -> None:
        FolderItem(
            self.pk,
            keys.folder_sk(st.name),
            name=st.name,
            role=st.role,
            synced=st.synced,
            present=st.present,
            cursor=st.cursor,
            gen=st.gen,
            old_gens=list(st.old_gens),
            messages=st.messages,
            initial_done=st.initial_done,
            progress=st.progress,
            last_sync_at=st.last_sync_at,
            flaps=list(st.flaps) or None,  # not stored until a flap happens
        ).save()

    def delete_folder(self, name: str) -> None:
        FolderItem(self.pk, keys.folder_sk(name)).delete()

    def commit(self, w: Writes) -> None:
        for key, raw in w.raw.items():
            blobs.put_raw(key, raw)
        if w.refs:
            with RefItem.batch_write() as b:
                for h, thid in w.refs.items():
                    b.save(RefItem(self.pk, keys.ref_sk(h), thread_id=thid))
        if w.threads_put:
            with ThreadItem.batch_write() as b:
                for doc in w.threads_put.values():
                    b.save(thread_item(doc))
        # Links and the address index before the message that names them: a crash
        # leaves at most an entry whose message is not there yet (skipped on read).
        if w.links_put:
            with LinkItem.batch_write() as b:
                for ln in w.links_put:
                    b.save(link_item(self.t, ln))
        if w.addresses_put:
            with AddressMessageItem.batch_write() as b:
                for email, received, mid in w.addresses_put:
                    b.save(address_message_item(self.t, email, received, mid, self.a))
        if w.orphans_add - w.orphans_remove:
            # Before the message is marked orphan, so a crash can never hide a mail
            # that nothing would purge later.
            with OrphanItem.batch_write() as b:
                for mid in w.orphans_add - w.orphans_remove:
                    b.save(OrphanItem(self.pk, keys.orphan_sk(mid), mid=mid))
        if w.messages_put:
            with MessageItem.batch_write() as b:
                for mid, doc in w.messages_put.items():
                    if mid not in w.messages_delete:
                        b.save(message_item(doc))
        if w.locations_put or w.locations_delete:
            with LocationItem.batch_write() as b:
                for folder, gen, ref, mid in w.locations_put:
                    b.save(LocationItem(self.pk, keys.location_sk(folder, gen, ref), mid=mid, folder=folder))
                put = {keys.location_sk(f, g, r) for f, g, r, _ in w.locations_put}
                for folder, gen, ref in w.locations_delete:
                    sk = keys.location_sk(folder, gen, ref)
                    if sk not in put:
                        b.delete(LocationItem(self.pk, sk))
        # Deletions last, objects first: a crash leaves a message without its objects
        # (purged again on the next run), never objects without a message.
        if w.s3_delete:
            blobs.delete_keys(w.s3_delete)
        if w.links_delete:
            with LinkItem.batch_write() as b:
                for cid, received, mid in w.links_delete:
                    b.delete(link_key(self.t, cid, received, mid))
        if w.addresses_delete:
            with AddressMessageItem.batch_write() as b:
                for email, received, mid in w.addresses_delete:
                    b.delete(address_message_key(self.t, email, received, mid))
        if w.messages_delete:
            with MessageItem.batch_write() as b:
                for mid in w.messages_delete:
                    b.delete(MessageItem(keys.message(self.t, mid), "M"))
        if w.threads_delete - set(w.threads_put):
            with ThreadItem.batch_write() as b:
                for thid in w.threads_delete - set(w.threads_put):
                    b.delete(ThreadItem(keys.thread(self.t, thid), "TH"))
        if w.orphans_remove - w.orphans_add:
            with OrphanItem.batch_write() as b:
                for mid in w.orphans_remove - w.orphans_add:
                    b.delete(OrphanItem(self.pk, keys.orphan_sk(mid)))
