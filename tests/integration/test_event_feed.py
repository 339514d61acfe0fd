"""The event feed never lets a reader skip an event (issue 15), and answers like its spec.

The classic trap: an event committed with an earlier position after a reader passed that
position. These tests hold a writer between taking its number and writing it, let another
writer finish first, and read in between (store/events.py explains the mechanism).
"""

from __future__ import annotations

import random
import threading
import time

import pytest

from mailsync.domain.events import Event
from mailsync.store.events import SETTLE_MS, EventFeed
from tests.support.api import ApiClient

pytestmark = pytest.mark.integration


def event(n: int, type_: str = "message.created", tenant: str = "t1") -> Event:
    return Event(
        id=f"evt_{n}", type=type_, created_at="2026-12-03T10:00:00.000Z", tenant_id=tenant, data={"n": n}
    )


class Clock:
    def __init__(self) -> None:
        self.ms = int(time.time() * 1000)

    def __call__(self) -> int:
        return self.ms


def read_all(feed: EventFeed, cursor: str | None, **kw) -> tuple[list[str], str]:
    ids: list[str] = []
    while True:
        page = feed.page(cursor, **kw)
        ids += [e.id for e in page.items]
        cursor = page.next_cursor
        if not page.has_more or not page.items:
            return ids, cursor


def test_a_slow_writer_holds_readers_back_until_it_writes(tenant):
    clock = Clock()
    slow, fast, reader = (EventFeed("t1", now_ms=clock) for _ in range(3))
    (held,) = slow.allocate(1)  # writer A took number 1 and is still writing
    clock.ms += 5
    fast.append([event(2)])  # writer B took number 2 and finished first
    ids, cursor = read_all(reader, None)
    assert ids == []  # the reader waits at the gap instead of passing it

    clock.ms += 5
    assert slow._put(held, event(1), clock.ms - 10)  # A lands
    ids, cursor = read_all(reader, cursor)
    assert ids == ["evt_1", "evt_2"]


def test_a_dead_writer_is_closed_and_its_event_renumbered(tenant):
    clock = Clock()
    dead, other, reader = (EventFeed("t1", now_ms=clock) for _ in range(3))
    (abandoned,) = dead.allocate(1)  # took number 1, then died
    taken_at = clock.ms
    other.append([event(2)])
    clock.ms += SETTLE_MS + 1
    ids, cursor = read_all(reader, None)
    assert ids == ["evt_2"]  # the gap was old enough: closed with a tombstone, passed

    # The writer was only slow, not dead: its put loses to the tombstone, and append()
    # renumbers the event after the reader's position, so the reader still sees it.
    assert dead._put(abandoned, event(1), taken_at) is False
    dead.append([event(1)])
    ids, _ = read_all(reader, cursor)
    assert ids == ["evt_1"]


def test_concurrent_writers_never_make_a_reader_skip(tenant, monkeypatch):
    """Writers that stall at random between numbering and writing, a reader paging all the
    while: at the end the reader has seen every event, each once."""
    rng = random.Random(15)
    put = EventFeed._put

    def stalling_put(self, seq, e, taken_at):
        time.sleep(rng.random() * 0.02)
        return put(self, seq, e, taken_at)

    monkeypatch.setattr(EventFeed, "_put", stalling_put)
    writers, per_writer = 4, 25
    done = threading.Event()

    def write(w: int) -> None:
        f = EventFeed("t1", workers=2)
        for i in range(per_writer):
            f.append([event(w * 1000 + i * 2), event(w * 1000 + i * 2 + 1)])

    seen: list[str] = []

    def read() -> None:
        f, cursor = EventFeed("t1"), None
        while True:
            finished = done.is_set()
            page = f.page(cursor, limit=50)
            seen.extend(e.id for e in page.items)
            cursor = page.next_cursor
            if finished and not page.has_more:
                return
            time.sleep(0.005)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    reader = threading.Thread(target=read)
    reader.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    reader.join(timeout=60)
    expected = {f"evt_{w * 1000 + j}" for w in range(writers) for j in range(per_writer * 2)}
    assert set(seen) == expected and len(seen) == len(expected)


def test_feed_route_filters_pages_and_isolates_tenants(tenant):
    EventFeed("t1").append([event(1), event(2, "account.connected"), event(3), event(4, "send.failed")])
    EventFeed("t2").append([event(9, tenant="t2")])
    api = ApiClient("key-t1", None)
    r = api.get("/v1/events", limit=2)
    assert r.status == 200, r.body
    assert [e["id"] for e in r.body["items"]] == ["evt_1", "evt_2"] and r.body["has_more"] is True
    assert set(r.body["items"][0]) == {"id", "type", "created_at", "data"}
    r2 = api.get("/v1/events", after=r.body["next_cursor"])
    assert [e["id"] for e in r2.body["items"]] == ["evt_3", "evt_4"]
    r3 = api.get("/v1/events", after=r2.body["next_cursor"])
    assert r3.body["items"] == [] and r3.body["next_cursor"] == r2.body["next_cursor"]

    only = api.get("/v1/events", types="send.failed,account.connected")
    assert [e["id"] for e in only.body["items"]] == ["evt_2", "evt_4"]
    other = ApiClient("key-t2", None).get("/v1/events")
    assert [e["id"] for e in other.body["items"]] == ["evt_9"]  # never another tenant's

    bad = api.get("/v1/events", types="message.created,mail.exploded")
    assert bad.status == 422 and bad.body["code"] == "unknown_event_type"
    assert api.get("/v1/events", after="not-a-cursor").body["code"] == "invalid_cursor"
    assert api.get("/v1/events", limit=501).status == 422
    assert ApiClient("nope", None).get("/v1/events").status == 401


def test_events_older_than_30_days_are_not_served(tenant):
    old = EventFeed("t1", now_ms=lambda: int((time.time() - 31 * 86400) * 1000))
    old.append([event(1)])
    EventFeed("t1").append([event(2)])
    ids, _ = read_all(EventFeed("t1"), None)
    assert ids == ["evt_2"]
