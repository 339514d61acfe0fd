"""The account's mirror lock: a sync and the mail client (write-through, send) read, merge and
write the same message items; each step holds the lock, so neither overwrites the other's
merge (moto DynamoDB, the real engine and store)."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailsync.domain.ports import FolderInfo, Upsert
from mailsync.domain.sync import SyncEngine
from mailsync.errors import AccountBusy
from mailsync.store import keys
from mailsync.store.mirror import DynamoMirrorStore
from mailsync.store.models import MirrorLockItem
from tests.support.dovecot import make_mail
from tests.support.providers import engine_mirror, store_account

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


def folders(engine: SyncEngine, store: DynamoMirrorStore) -> None:
    """INBOX and Sent, mirrored and caught up."""
    states = engine.reconcile_folders([FolderInfo("INBOX", "inbox"), FolderInfo("Sent", "sent")], "all", [])
    for st in states.values():
        st.cursor, st.initial_done = {"phase": "delta"}, True
        store.save_folder(st)


def locs_of(store: DynamoMirrorStore, folder: str, ref: str) -> dict[str, Any]:
    (mid,) = store.get_locations(folder, 0, [ref]).values()
    return dict(store.get_messages([mid])[mid]["locs"])


def test_a_second_writer_waits_and_merges_instead_of_overwriting(aws):
    """The race CI once hit: a sync stores a mail's INBOX copy while the send path stores its
    Sent copy (one Message-ID). The first writer pauses between its read and its write; the
    second must wait for it and then merge, so the mail keeps both copies."""
    store_a, ctx = engine_mirror("a_lock", "carla@example.com", NOW - timedelta(days=1))
    engine_a = SyncEngine(store_a, ctx)
    folders(engine_a, store_a)
    raw = make_mail("Re: Police", "carla@example.com", "carla@example.com", message_id="r1@x")

    read_done = threading.Event()
    original = store_a.get_messages

    def slow_read(mids: Any) -> dict[str, dict[str, Any]]:
        out = original(mids)
        read_done.set()
        time.sleep(0.5)  # the window in which an unlocked second writer overwrote the merge
        return out

    store_a.get_messages = slow_read  # type: ignore[method-assign]
    first = threading.Thread(target=engine_a.apply_local, args=([Upsert("INBOX", "7", raw, True, NOW)],))
    first.start()
    assert read_done.wait(10)
    store_b = DynamoMirrorStore("t1", "a_lock")
    started = time.monotonic()
    SyncEngine(store_b, ctx).apply_local([Upsert("Sent", "3", raw, False, NOW)])
    waited = time.monotonic() - started
    first.join(10)

    assert waited > 0.2  # it waited for the first writer instead of writing alongside it
    assert locs_of(store_b, "INBOX", "7") == {"INBOX": "0:7", "Sent": "0:3"}
    assert MirrorLockItem.get(keys.account("t1", "a_lock"), "LOCK").owner is None  # released


def test_lock_is_reentrant_per_writer_exclusive_per_account_and_expires(aws):
    for tenant, account in (("t1", "acc_1"), ("t1", "acc_2"), ("t2", "acc_1")):
        store_account(tenant, account, "alice", f"{account}@example.com")
    a = DynamoMirrorStore("t1", "acc_1")
    b = DynamoMirrorStore("t1", "acc_1", lock_wait=0.3)
    other_account = DynamoMirrorStore("t1", "acc_2", lock_wait=0.3)
    other_tenant = DynamoMirrorStore("t2", "acc_1", lock_wait=0.3)
    with a.lock():
        with a.lock():  # reentrant: the engine nests steps (apply_local -> apply_batch)
            pass
        with pytest.raises(AccountBusy) as busy:
            with b.lock():
                pass
        assert busy.value.status == 503 and busy.value.code == "account_busy"
        with other_account.lock(), other_tenant.lock():  # isolated by tenant and account
            pass
    with b.lock():  # free again after the holder left
        pass

    # A holder that died (never released) frees the account when its lease runs out.
    MirrorLockItem(keys.account("t1", "acc_1"), "LOCK", owner="killed", until=time.time() + 0.5).save()
    started = time.monotonic()
    with DynamoMirrorStore("t1", "acc_1", lock_wait=5).lock():
        assert time.monotonic() - started >= 0.3


def test_a_purge_shuts_out_a_writer_that_loaded_the_account_before_it_was_deleted(aws):
    """The race CI hit: a sync running while its account is deleted stored one more batch
    after the purge, so a mail of the deleted account showed up. The purge takes the lock for
    good (after the batch in flight); a later batch is refused, and so is one after the purge
    removed the lock item itself."""
    from mailsync.config import get_settings
    from mailsync.errors import AccountGone
    from mailsync.store import accounts
    from mailsync.store.purge import purge_account
    from tests.support.accounts import mirror

    store, ctx = engine_mirror("a_race", "dora@example.com", NOW - timedelta(days=1))
    engine = SyncEngine(store, ctx)
    folders(engine, store)
    engine.apply_local(
        [Upsert("INBOX", "1", make_mail("Eins", "x@example.com", "dora@example.com"), True, NOW)]
    )
    assert [m["subject"] for m in mirror({"id": "a_race"})] == ["Eins"]

    acc = accounts.get_account("t1", "a_race")
    assert acc is not None
    accounts.save_account(acc.with_(state="deleting", next_due=None), get_settings().due_shards)
    store.hold_for_purge()
    late = make_mail("Zwei", "x@example.com", "dora@example.com")
    with pytest.raises(AccountGone):  # at once, not after lock_wait
        engine.apply_local([Upsert("INBOX", "2", late, True, NOW)])
    purge_account("t1", "a_race", "dora@example.com")
    with pytest.raises(AccountGone):  # the lock item is gone with the account
        SyncEngine(DynamoMirrorStore("t1", "a_race"), ctx).apply_local(
            [Upsert("INBOX", "2", late, True, NOW)]
        )
    assert mirror({"id": "a_race"}) == []
    assert list(MirrorLockItem.query(keys.account("t1", "a_race"))) == []


def test_an_account_stored_without_a_lock_item_gets_one_on_first_use(aws):
    store_account("t1", "a_old", "alice", "old@example.com")  # save_account: no lock item
    with DynamoMirrorStore("t1", "a_old").lock():
        assert MirrorLockItem.get(keys.account("t1", "a_old"), "LOCK").owner
    assert MirrorLockItem.get(keys.account("t1", "a_old"), "LOCK").owner is None
