"""Fault injection: a sync may crash at any write. The next run must converge on the
exact mirror: no duplicates, nothing lost, no dangling thread, no stray S3 object."""

from __future__ import annotations

import boto3
import pytest

from mailsync.config import get_settings
from mailsync.store import keys
from mailsync.store import mirror as mirror_store
from mailsync.store.models import MessageItem, ThreadItem
from mailsync.usecases import accounts
from tests.support.accounts import connect, mirror, sync
from tests.support.crash import Crash, WriteCounter
from tests.support.dovecot import make_mail

pytestmark = pytest.mark.integration

def snapshot(acc):
    """The mirror as users see it, independent of crash timing."""
    msgs = mirror(acc)
    rows = sorted((m["subject"], m["folder"], m["unread"]) for m in msgs)
    threads = {}
    for m in msgs:
        th = ThreadItem.get(keys.thread("t1", m["thread_id"]), "TH")  # raises if dangling
        threads.setdefault(m["thread_id"], th)
    for thid, th in threads.items():
        members = [m for m in msgs if m["thread_id"] == thid]
        assert th.message_count == len(members) and set(th.members) == {m["id"] for m in members}
    by_thread = sorted(sorted(m["subject"] for m in msgs if m["thread_id"] == t) for t in threads)
    s3 = boto3.client("s3").list_objects_v2(Bucket=get_settings().bucket, Prefix=f"t/t1/a/{acc['id']}/")
    objects = {o["Key"] for o in s3.get("Contents", [])}
    assert objects == {m["raw_key"] for m in msgs}, "S3 holds exactly the mirrored mails"
    assert len({m["id"] for m in msgs}) == len(msgs)
    hidden = [
        i for i in MessageItem.batch_get([(keys.message("t1", m["id"]), "M") for m in msgs]) if i.orphan
    ]
    assert hidden == []
    return rows, by_thread


def mutate(dovecot, user):
    """A realistic delta: new mails and replies, a move, a delete, a flag change."""
    uids = dovecot.uids(user, "INBOX")
    dovecot.append(
        user, "INBOX", make_mail("Re: A", message_id="a2@x", in_reply_to="a1@x", references="a1@x")
    )
    dovecot.append(user, "INBOX", make_mail("D", message_id="d1@x"))
    dovecot.move(user, "INBOX", [uids[0]], "Archive")
    dovecot.delete(user, "INBOX", [uids[1]])
    dovecot.set_seen(user, "INBOX", [uids[2]], True)
    dovecot.move(user, "INBOX", [uids[3]], "Junk")


def seed(dovecot, user):
    dovecot.append(user, "INBOX", make_mail("A", message_id="a1@x"))
    dovecot.append(user, "INBOX", make_mail("B", message_id="b1@x"))
    dovecot.append(user, "INBOX", make_mail("C", message_id="c1@x"))
    dovecot.append(user, "INBOX", make_mail("E", message_id="e1@x"))
    dovecot.append(user, "Archive", make_mail("Re: C", message_id="c2@x", in_reply_to="c1@x"))


def test_crash_at_every_write_converges(tenant, dovecot, monkeypatch):
    counter = WriteCounter(monkeypatch)
    # A crash at the lock's release leaves the lease to run out; keep that wait short here.
    monkeypatch.setattr(mirror_store, "LOCK_LEASE_SECONDS", 1.0)

    # Reference: the same scenario without crashes.
    ref_user = dovecot.new_user("ref")
    ref = connect(dovecot, ref_user)
    seed(dovecot, ref_user[0])
    sync(ref)
    mutate(dovecot, ref_user[0])
    sync(ref)
    expected = snapshot(ref)
    assert expected[0] == [
        ("A", "Archive", True),
        ("C", "INBOX", False),
        ("D", "INBOX", True),
        ("Re: A", "INBOX", True),
        ("Re: C", "Archive", True),
    ]

    # How many writes does the delta sync make? Crash at each of them in turn.
    probe_user = dovecot.new_user("probe")
    probe = connect(dovecot, probe_user)
    seed(dovecot, probe_user[0])
    sync(probe)
    mutate(dovecot, probe_user[0])
    start = counter.n
    sync(probe)
    total = counter.n - start
    assert total >= 8

    crashed = 0
    for k in range(1, total + 1):
        user = dovecot.new_user(f"crash{k}")
        acc = connect(dovecot, user)
        seed(dovecot, user[0])
        sync(acc)
        mutate(dovecot, user[0])
        counter.crash_at = counter.n + k
        try:
            sync(acc)
        except Crash:
            crashed += 1
        finally:
            counter.crash_at = None
        sync(acc)  # the next run
        assert snapshot(acc) == expected, f"diverged after a crash at write {k} of {total}"
    assert crashed == total


def test_crash_during_initial_load_resumes_without_duplicates(tenant, dovecot, monkeypatch):
    counter = WriteCounter(monkeypatch)
    user = dovecot.new_user("initial")
    acc = connect(dovecot, user)
    for i in range(30):
        dovecot.append(user[0], "INBOX", make_mail(f"m{i:02d}", message_id=f"m{i}@x"))
    monkeypatch.setenv("MAILSYNC_SYNC_BATCH_SIZE", "7")
    get_settings.cache_clear()
    counter.crash_at = counter.n + 25  # inside the second or third batch of 7
    with pytest.raises(Crash):
        sync(acc)
    counter.crash_at = None
    folders = {f["name"]: f for f in accounts.list_folders("t1", "alice", acc["id"])}
    partial = len(mirror(acc))
    assert 7 <= folders["INBOX"]["messages"] <= partial < 30  # the batches before the crash were kept
    sync(acc)
    assert [m["subject"] for m in mirror(acc)] == [f"m{i:02d}" for i in range(30)]
