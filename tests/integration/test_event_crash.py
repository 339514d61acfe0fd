"""No event lost, none invented (issue 15): crashes in the sync and in the event pipeline.

The property: replaying a tenant's feed (created → the message's state, updated → its new
state, deleted → gone) reproduces the mirror exactly, whatever crashed where. A crash is a
kill at the n-th AWS write (tests/support/crash.py), either

* in the **sync**, between any two mirror writes: the events come from the writes that were
  committed, the next run commits the rest, and its events complete the picture; or
* in the **event pipeline** (feed counter, event puts, delivery records): the stream batch
  is not acknowledged and is delivered again, so its events are written again, same ids.

`make test` crashes at a deterministic sample of the points; MAILSYNC_CRASH_ALL=1
(`make fuzz`) at every one.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from mailsync.store import mirror as mirror_store
from mailsync_local.streams import EventsContext
from tests.support.accounts import connect, mirror, sync
from tests.support.crash import Faults, Point, points, run_crashing, sample
from tests.support.dovecot import make_mail
from tests.support.events import EventLog

pytestmark = pytest.mark.integration

DEFAULT_POINTS = 4


def seed(dovecot: Any, user: str) -> None:
    for sub, mid in (("A", "a1@x"), ("B", "b1@x"), ("C", "c1@x"), ("E", "e1@x")):
        dovecot.append(user, "INBOX", make_mail(sub, message_id=mid))


def mutate(dovecot: Any, user: str) -> None:
    """New mails, a move between synced folders, a delete, a flag change, a move to Junk."""
    uids = dovecot.uids(user, "INBOX")
    dovecot.append(user, "INBOX", make_mail("Re: A", message_id="a2@x", in_reply_to="a1@x"))
    dovecot.append(user, "INBOX", make_mail("D", message_id="d1@x"))
    dovecot.move(user, "INBOX", [uids[0]], "Archive")
    dovecot.delete(user, "INBOX", [uids[1]])
    dovecot.set_seen(user, "INBOX", [uids[2]], True)
    dovecot.move(user, "INBOX", [uids[3]], "Junk")


def replay(events: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """The mirror a tenant rebuilds from the feed; an update or delete of a mail never
    created is an invented event."""
    state: dict[str, tuple[str, str, bool]] = {}
    created: set[str] = set()
    for e in events:
        d = e["data"]
        if e["type"] == "message.created":
            created.add(d["id"])
            state[d["id"]] = (d["subject"], d["folder"], d["unread"])
        elif e["type"] == "message.updated":
            assert d["id"] in created, f"update of a mail never created: {e}"
            state[d["id"]] = (d["subject"], d["folder"], d["unread"])
        elif e["type"] == "message.deleted":
            assert d["id"] in created, f"delete of a mail never created: {e}"
            state.pop(d["id"], None)
    return sorted(state.values())


def mirrored(acc: dict[str, Any]) -> list[tuple[str, str, bool]]:
    return sorted((m["subject"], m["folder"], m["unread"]) for m in mirror(acc))


def _points(total: int, seed_: str) -> list[Point]:
    every = points(total, 0)
    size = len(every) if os.environ.get("MAILSYNC_CRASH_ALL") == "1" else DEFAULT_POINTS
    return sample(every, size, seed_)


@pytest.fixture
def faults(monkeypatch: pytest.MonkeyPatch) -> Faults:
    monkeypatch.setattr(mirror_store, "LOCK_LEASE_SECONDS", 0.05)  # a killed holder's lease
    return Faults(monkeypatch)


def test_crash_in_the_sync_loses_no_event(tenant, dovecot, faults):
    probe_user = dovecot.new_user("probe")
    probe = connect(dovecot, probe_user)
    seed(dovecot, probe_user[0])
    sync(probe)
    mutate(dovecot, probe_user[0])
    with faults.run():
        sync(probe)
    total = faults.counts["aws"]
    assert total >= 8
    expected = mirrored(probe)

    log = EventLog("t1")
    for point in _points(total, "event-sync"):
        user = dovecot.new_user("crash")
        acc = connect(dovecot, user)
        seed(dovecot, user[0])
        sync(acc)
        mutate(dovecot, user[0])
        run_crashing(faults, point, lambda acc=acc: sync(acc))
        sync(acc)  # the next run finishes the job
        assert mirrored(acc) == expected
        log.drain()
        mine = [e for e in log.seen if e["data"].get("account_id") == acc["id"]]
        assert replay(mine) == expected, f"the feed diverged from the mirror after a crash at {point}"


def test_crash_in_the_event_pipeline_loses_no_event(tenant, dovecot, faults):
    log = EventLog("t1")
    user = dovecot.new_user("pipe")
    acc = connect(dovecot, user)
    seed(dovecot, user[0])
    sync(acc)
    mutate(dovecot, user[0])
    sync(acc)
    expected = mirrored(acc)

    # How many writes does processing the whole stream make? Then crash at each in turn,
    # each time on a fresh copy of the same records (the batches, delivered again).
    with faults.run():
        log.drain()
    total = faults.counts["aws"]
    assert replay(log.seen) == expected and total >= 3
    batches = [list(b) for b in log.batches]

    for point in _points(total, "event-pipeline"):
        fresh = EventLog("t1")  # a reader from the start of the feed
        fresh.drain()
        before = len(fresh.seen)

        def deliver_all(fresh: EventLog = fresh) -> None:
            for records in batches:
                fresh.handler({"Records": records}, EventsContext())

        run_crashing(faults, point, deliver_all)
        deliver_all()  # the event source mapping retries the batches that were not acknowledged
        fresh.drain()
        again = fresh.seen[before:]
        assert replay(again) == expected, f"events lost after a crash at {point}"
        assert {e["id"] for e in again} == {e["id"] for e in log.seen}, "same ids on redelivery"
