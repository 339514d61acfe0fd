"""Outbound events: the stream processor and the feed (issue 15).

``process_stream`` is what the events function runs for each batch of the main table's
stream (and what the local runner runs for moto's stream): decode each record, derive its
events (``domain/derive.py``), append them to each tenant's feed (``store/events.py``),
then hand them to the tenant's webhook endpoints (``usecases/webhooks.fan_out``).

Invariants:

* **Derived from committed data.** An event exists because a write was committed; a crash
  anywhere before the batch is finished makes the stream deliver the same records again
  (the event source mapping retries the batch), which yields the same events with the
  same ids. Nothing is lost; a redelivery may repeat an event in the feed and in webhooks,
  never under another id.
* **Purges are one event.** A message removed while its account is being deleted (or after
  it is gone) yields nothing: the account's removal yields the one ``account.deleted``.
  One ``GetItem`` per account of a batch that removes messages answers that.
* **Tenant isolation.** Every event carries the tenant of the item's key; feeds and
  fan-out are per tenant.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from mailsync.domain import events as ev
from mailsync.domain.derive import REMOVE, ItemChange, derive
from mailsync.domain.health import ERRORS
from mailsync.observability import logger, metrics
from mailsync.store import accounts as accounts_repo
from mailsync.store import streams
from mailsync.store.events import EventFeed, FeedPage

#: ``fan_out(tenant, events, positions)``: the events' numbers in the tenant's feed by id.
FanOut = Callable[[str, list[ev.Event], dict[str, int]], int]


def _action_of(code: str) -> str | None:
    known = ERRORS.get(code)
    return known.action if known else None


def _default_fan_out(tenant_id: str, events: list[ev.Event], positions: dict[str, int]) -> int:
    from mailsync.usecases import webhooks

    return webhooks.fan_out(tenant_id, events, positions=positions)


def derive_all(
    changes: Iterable[ItemChange], *, purging: Callable[[str, str], bool] | None = None
) -> list[ev.Event]:
    """The events of ``changes`` in stream order. ``purging(tenant, account)`` says whether
    an account is being deleted (asked once per account, only for removals)."""
    asked: dict[tuple[str, str], bool] = {}

    def is_purging(c: ItemChange) -> bool:
        if c.name != REMOVE or c.kind not in ("message", "thread") or not c.account_id:
            return False
        key = (c.tenant_id, c.account_id)
        if key not in asked:
            asked[key] = (purging or account_purging)(*key)
        return asked[key]

    out: list[ev.Event] = []
    for c in changes:
        out.extend(derive(c, account_purging=is_purging(c), action_of=_action_of))
    return out


def account_purging(tenant_id: str, account_id: str) -> bool:
    acc = accounts_repo.get_account(tenant_id, account_id)
    return acc is None or acc.state == "deleting"


def process_stream(records: list[dict[str, Any]], *, fan_out: FanOut | None = None) -> dict[str, int]:
    """One stream batch: derive, append to the feeds, fan out. Raises on any failure, so
    that the whole batch is delivered again (every step is idempotent by event id)."""
    changes = [c for r in records if (c := streams.decode(r)) is not None]
    found = derive_all(changes)
    by_tenant: dict[str, list[ev.Event]] = {}
    for e in found:
        by_tenant.setdefault(e.tenant_id, []).append(e)
    deliveries = 0
    for tenant_id, events in by_tenant.items():
        positions = EventFeed(tenant_id).append(events)
        deliveries += (fan_out or _default_fan_out)(tenant_id, events, positions)
    if found:
        metrics.add_metric(name="EventsDerived", unit="Count", value=len(found))
        logger.info(
            "events derived",
            extra={"records": len(records), "events": len(found), "deliveries": deliveries},
        )
    return {"records": len(records), "events": len(found), "deliveries": deliveries}


def feed(tenant_id: str, cursor: str | None, types: list[str], limit: int) -> FeedPage:
    """``GET /v1/events``: the tenant's events after ``cursor``, oldest first."""
    # An unknown type raises UnknownEventType: 422 ``unknown_event_type`` (mapped once, api/app.py).
    wanted = set(ev.check_types(types, wildcard=False)) if types else None
    return EventFeed(tenant_id).page(cursor, types=wanted, limit=limit)
