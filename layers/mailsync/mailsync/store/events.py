"""The tenant's event feed (``GET /v1/events``): an ordered log that a reader never skips.

Layout: partition ``T#<t>#EV``; the counter ``#SEQ`` holds the last sequence number handed
out; each event is the item ``<seq, 20 digits>``. Events expire after 30 days (TTL), and
the reader also drops older ones, since TTL deletes lag.

**The trap, and why this feed does not fall into it.** Writers run concurrently (one per
stream shard). Ordering by commit time, or by a number taken before the write, lets a
reader pass position *n+1* while *n* is still being written; when *n* lands, the reader
has skipped it for good. Here:

1. A writer takes a block of numbers with one atomic ``ADD`` on the counter, then writes
   each event with a *conditional* put (``attribute_not_exists``). It writes a number only
   within :data:`WRITE_WINDOW_MS` of taking it; later, or when the put's condition fails,
   it takes new numbers (the event keeps its id: receivers see it once, maybe twice).
2. A reader returns events in order and stops at the first *gap* (a number taken but not
   yet written) unless the event after the gap was numbered more than :data:`SETTLE_MS`
   ago. Then it closes the gap with a *tombstone* (the same conditional put): exactly one
   of the writer and the reader wins each number. If the writer won, the reader reads the
   event; if the reader won, the writer's put fails and it renumbers (step 1).
3. Gaps older than :data:`SKIP_MS` (events removed by TTL) are passed without tombstones:
   no writer can still be writing there (step 1 bounds a writer to the write window).

So a reader that resumes from its last cursor sees every event at least once, in feed
order (tests/integration/test_event_feed.py races writers against readers).

Cost: a block of events costs one ``UpdateItem`` plus one conditional ``PutItem`` per event
(1 write unit each, as in a batch: conditions are not allowed in ``BatchWriteItem``). A
feed page is one or a few ``Query`` pages of this partition (never a Scan).

Mutation path: :meth:`EventFeed.append` (the stream processor) and the reader's
tombstones, nothing else.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist, PutError

from mailsync.domain.events import Event
from mailsync.errors import InvalidCursor
from mailsync.store import keys
from mailsync.store.models import EventCounterItem, EventItem

RETENTION_SECONDS = 30 * 86400
WRITE_WINDOW_MS = 60_000  # a writer writes a number within a minute of taking it, or renumbers
SETTLE_MS = 10_000  # a younger gap may still be written: the reader waits for it
SKIP_MS = 3_600_000  # an older gap cannot be written any more: passed without a tombstone
PAGE = 100
MAX_QUERY_PAGES = 5  # per feed call: bounds the cost of a call that filters by type
MAX_TOMBSTONES = 200  # per feed call


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(frozen=True)
class FeedPage:
    items: list[Event]
    next_cursor: str
    has_more: bool


def encode_position(seq: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"ev": seq}).encode()).decode().rstrip("=")


def decode_position(cursor: str | None) -> int:
    """The feed position of a cursor (0: the start); a forged one is ``invalid_cursor``."""
    if not cursor:
        return 0
    try:
        got = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as e:
        raise InvalidCursor("cursor is not valid") from e
    seq = got.get("ev") if isinstance(got, dict) else None
    if not isinstance(seq, int) or isinstance(seq, bool) or not 0 <= seq < 10**19:
        raise InvalidCursor("cursor is not valid")
    return seq


class EventFeed:
    """One tenant's feed. ``now_ms`` is the clock (tests race writers and readers with it)."""

    def __init__(self, tenant_id: str, *, now_ms: Callable[[], int] = _now_ms, workers: int = 8) -> None:
        self.tenant_id = tenant_id
        self.pk = keys.events(tenant_id)
        self.now_ms = now_ms
        self.workers = workers

    # ------------------------------------------------------------------ writing
    def allocate(self, n: int) -> list[int]:
        """Take ``n`` consecutive numbers (one atomic ``ADD``)."""
        counter = EventCounterItem(self.pk, keys.EVENT_COUNTER)
        counter.update(actions=[EventCounterItem.seq.add(n)])
        top = int(counter.seq)
        return list(range(top - n + 1, top + 1))

    def _put(self, seq: int, e: Event, taken_at: int) -> bool:
        """Write ``e`` at ``seq`` unless a reader closed it or the window passed."""
        if self.now_ms() - taken_at > WRITE_WINDOW_MS:
            return False
        item = EventItem(
            self.pk,
            keys.event_sk(seq),
            event_id=e.id,
            type=e.type,
            created_at=e.created_at,
            allocated_at=taken_at,
            data=e.data,
            ttl=int(taken_at / 1000) + RETENTION_SECONDS,
        )
        try:
            item.save(condition=EventItem.sk.does_not_exist())
        except PutError as err:
            if err.cause_response_code != "ConditionalCheckFailedException":
                raise
            return False  # a reader's tombstone won this number
        return True

    def append(self, events: list[Event]) -> dict[str, int]:
        """Append ``events`` in order; returns each event's number (by event id), renumbering
        included (a webhook retry reads the event back by it: :meth:`get`)."""
        pending = list(events)
        positions: dict[str, int] = {}
        with ThreadPoolExecutor(max_workers=max(1, min(self.workers, len(pending)))) as pool:
            while pending:
                seqs = self.allocate(len(pending))
                at = [self.now_ms()] * len(seqs)
                ok = list(pool.map(self._put, seqs, pending, at))
                positions.update(
                    (e.id, seq) for e, seq, wrote in zip(pending, seqs, ok, strict=True) if wrote
                )
                pending = [e for e, wrote in zip(pending, ok, strict=True) if not wrote]
        return positions

    def get(self, seq: int) -> Event | None:
        """The event numbered ``seq`` (a consistent GetItem); None for a tombstone, or once
        it expired."""
        try:
            item = EventItem.get(self.pk, keys.event_sk(seq), consistent_read=True)
        except DoesNotExist:
            return None
        return None if item.type is None else self._event(item)

    def _event(self, item: EventItem) -> Event:
        return Event(
            id=str(item.event_id),
            type=str(item.type),
            created_at=str(item.created_at),
            tenant_id=self.tenant_id,
            data=dict(item.data or {}),
        )

    # ------------------------------------------------------------------ reading
    def _tombstone(self, seq: int) -> bool:
        """Close ``seq`` for good; False when its event was written first."""
        now = self.now_ms()
        item = EventItem(self.pk, keys.event_sk(seq), allocated_at=now, ttl=now // 1000 + RETENTION_SECONDS)
        try:
            item.save(condition=EventItem.sk.does_not_exist())
        except PutError as err:
            if err.cause_response_code != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def _query(self, after: int) -> Iterable[EventItem]:
        return EventItem.query(
            self.pk,
            EventItem.sk > keys.event_sk(after),
            consistent_read=True,
            limit=PAGE,
            page_size=PAGE,
        )

    def page(self, cursor: str | None, *, types: set[str] | None = None, limit: int = 100) -> FeedPage:
        """Events after ``cursor``, oldest first (see the module docstring for the order)."""
        position = decode_position(cursor)
        oldest = int(time.time()) - RETENTION_SECONDS
        out: list[Event] = []
        tombstones = 0
        for _ in range(MAX_QUERY_PAGES):
            items = list(self._query(position))
            if not items:
                return FeedPage(out, encode_position(position), False)
            for item in items:
                seq = int(item.sk)
                if seq > position + 1:  # a gap: numbers taken, not written (yet)
                    age = self.now_ms() - int(item.allocated_at)
                    if age < SETTLE_MS:
                        return FeedPage(out, encode_position(position), True)
                    if age < SKIP_MS:
                        for missing in range(position + 1, seq):
                            if tombstones >= MAX_TOMBSTONES or not self._tombstone(missing):
                                # written meanwhile (or enough work): read on from here next time
                                return FeedPage(out, encode_position(position), True)
                            tombstones += 1
                            position = missing
                position = seq
                if item.type is None or (types and item.type not in types):
                    continue  # a tombstone, or filtered out: passed, never shown
                if int(item.ttl) - RETENTION_SECONDS < oldest:
                    continue  # older than 30 days (TTL deletes lag)
                out.append(self._event(item))
                if len(out) >= limit:
                    return FeedPage(out, encode_position(position), True)
            if len(items) < PAGE:
                return FeedPage(out, encode_position(position), False)
        return FeedPage(out, encode_position(position), True)
