"""Webhook endpoints and their deliveries (GetItem / Query / batched writes, never a Scan).

Items (docs/architecture.md, table design):

* endpoint ``T#<t>`` / ``WH#<endpoint>`` (the tenant partition: one Query lists them, and the
  tenant purge finds them);
* delivery ``T#<t>#WH#<endpoint>`` / ``D#<delivery>``, TTL 30 days, ~0.5 KB: the id begins with
  the event's time, so the partition read backwards is "all, newest first"; GSI1 by status;
  GSI2 the webhook due index while a pending delivery waits.

Invariants:

* **Secrets** are stored as KMS envelopes (``store/crypto.py``) under a context naming
  tenant and endpoint; plaintext leaves this module only as :class:`~mailsync.store.crypto.Secret`.
* **A record is written at the first answer** (:func:`put_delivery`, conditional on a new id),
  never before: until then the delivery is its first job in the queue. The record names the
  event's number in the feed instead of copying it (only a ``ping`` is kept inline).
* **Every pending record has a due entry** (a watchdog): at its next attempt when that is
  more than 15 minutes away (the scheduler's sweep enqueues it), else a little after the
  moment the queued job should have run (:data:`WATCHDOG`), so a job the queue lost or a
  worker that died mid-attempt is picked up again by the sweep. Succeeded and failed
  deliveries have none (sparse index).
* **Attempts after the first are claimed**: :func:`claim` moves ``attempts`` from ``n`` to
  ``n + 1`` only if it is ``n`` and the delivery is pending, and every later write of that
  attempt is conditional on ``attempts == n + 1``: a duplicated job or a stale writer
  changes nothing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, UpdateError

from mailsync.config import get_settings
from mailsync.domain import webhooks as wh
from mailsync.domain.clock import iso, parse_iso
from mailsync.store import crypto, keys, paging
from mailsync.store.models import PartitionItem, WebhookDeliveryItem, WebhookEndpointItem

#: How long after its intended time a queued attempt is looked for again by the sweep (well
#: beyond the 10 s send and SQS's own delivery delays).
WATCHDOG = timedelta(minutes=30)


def _conditional_failed(e: Exception) -> bool:
    return getattr(e, "cause_response_code", "") == "ConditionalCheckFailedException"


# ------------------------------------------------------------------ endpoints
def secret_context(tenant_id: str, endpoint_id: str) -> dict[str, str]:
    return {"tenant_id": tenant_id, "endpoint_id": endpoint_id, "purpose": "webhook_secret"}


def _envelope(tenant_id: str, endpoint_id: str, secret: str) -> dict[str, Any]:
    return crypto.encrypt(
        {"secret": secret}, key_id=get_settings().kms_key_id, context=secret_context(tenant_id, endpoint_id)
    )


def _endpoint(i: WebhookEndpointItem) -> wh.Endpoint:
    envelopes = (i.secret,) + ((i.previous_secret,) if i.previous_secret else ())
    return wh.Endpoint(
        tenant_id=i.tenant_id,
        endpoint_id=i.endpoint_id,
        url=i.url,
        events=[str(e) for e in i.events or []],
        description=i.description or "",
        enabled=bool(i.enabled),
        created_at=i.created_at,
        updated_at=i.updated_at,
        disabled_reason=i.disabled_reason,
        failing_since=i.failing_since,
        previous_until=i.previous_until,
        envelopes=envelopes,
    )


def _ref(tenant_id: str, endpoint_id: str) -> WebhookEndpointItem:
    return WebhookEndpointItem(keys.tenant(tenant_id), keys.webhook_endpoint_sk(endpoint_id))


def create_endpoint(ep: wh.Endpoint, secret: str) -> wh.Endpoint:
    """Store a new endpoint with its secret (encrypted); conditional on a new id."""
    item = WebhookEndpointItem(
        keys.tenant(ep.tenant_id),
        keys.webhook_endpoint_sk(ep.endpoint_id),
        tenant_id=ep.tenant_id,
        endpoint_id=ep.endpoint_id,
        url=ep.url,
        events=list(ep.events),
        description=ep.description,
        enabled=ep.enabled,
        secret=_envelope(ep.tenant_id, ep.endpoint_id, secret),
        created_at=ep.created_at,
        updated_at=ep.updated_at,
    )
    item.save(condition=WebhookEndpointItem.pk.does_not_exist())
    return _endpoint(item)


def list_endpoints(tenant_id: str, *, consistent: bool = False) -> list[wh.Endpoint]:
    """Every endpoint of the tenant: one Query of its partition (at most ``MAX_ENDPOINTS``)."""
    return [
        _endpoint(i)
        for i in WebhookEndpointItem.query(
            keys.tenant(tenant_id),
            WebhookEndpointItem.sk.startswith(keys.WEBHOOK_ENDPOINTS),
            consistent_read=consistent,
        )
    ]


def get_endpoint(tenant_id: str, endpoint_id: str) -> wh.Endpoint | None:
    try:
        return _endpoint(
            WebhookEndpointItem.get(
                keys.tenant(tenant_id), keys.webhook_endpoint_sk(endpoint_id), consistent_read=True
            )
        )
    except DoesNotExist:
        return None


def update_endpoint(
    tenant_id: str,
    endpoint_id: str,
    now: str,
    *,
    url: str | None = None,
    events: list[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> wh.Endpoint | None:
    """The tenant's change; None when there is no such endpoint. ``enabled=True`` clears
    ``disabled_reason`` and ``failing_since``; ``enabled=False`` sets ``disabled_reason``
    ``manual``."""
    item = _ref(tenant_id, endpoint_id)
    actions: list[Any] = [WebhookEndpointItem.updated_at.set(now)]
    if url is not None:
        actions.append(WebhookEndpointItem.url.set(url))
    if events is not None:
        actions.append(WebhookEndpointItem.events.set(events))  # type: ignore[arg-type]
    if description is not None:
        actions.append(WebhookEndpointItem.description.set(description))
    if enabled is True:
        actions += [
            WebhookEndpointItem.enabled.set(True),
            WebhookEndpointItem.disabled_reason.remove(),
            WebhookEndpointItem.failing_since.remove(),
        ]
    elif enabled is False:
        actions += [WebhookEndpointItem.enabled.set(False), WebhookEndpointItem.disabled_reason.set("manual")]
    try:
        item.update(actions=actions, condition=WebhookEndpointItem.pk.exists())
    except UpdateError as e:
        if _conditional_failed(e):
            return None
        raise
    return _endpoint(item)


def rotate_secret(tenant_id: str, endpoint_id: str, secret: str, now: datetime) -> bool:
    """The new secret signs from now on; the current one keeps signing for the overlap
    (a second rotation within it drops the oldest). False when there is no such endpoint.
    Conditional on the secret read: of two rotations at once, each ends with its own secret
    current or previous, never lost unseen (the loser reads again)."""
    envelope = _envelope(tenant_id, endpoint_id, secret)
    for _ in range(5):
        try:
            current = WebhookEndpointItem.get(
                keys.tenant(tenant_id), keys.webhook_endpoint_sk(endpoint_id), consistent_read=True
            )
        except DoesNotExist:
            return False
        try:
            _ref(tenant_id, endpoint_id).update(
                actions=[
                    WebhookEndpointItem.secret.set(envelope),
                    WebhookEndpointItem.previous_secret.set(current.secret),
                    WebhookEndpointItem.previous_until.set(iso(now + wh.ROTATION_OVERLAP)),
                    WebhookEndpointItem.updated_at.set(iso(now)),
                ],
                condition=WebhookEndpointItem.secret == current.secret,
            )
            return True
        except UpdateError as e:
            if not _conditional_failed(e):
                raise
    raise RuntimeError("the secret kept changing during the rotation")


def signing_secrets(ep: wh.Endpoint, now: datetime) -> list[crypto.Secret]:
    """The secrets that sign a delivery now: the current one, and the previous one during
    the overlap after a rotation."""
    envelopes = list(ep.envelopes[:1])
    if len(ep.envelopes) > 1 and ep.previous_until and parse_iso(ep.previous_until) > now:
        envelopes.append(ep.envelopes[1])
    context = secret_context(ep.tenant_id, ep.endpoint_id)
    return [crypto.decrypt(e, context=context)["secret"] for e in envelopes]


def mark_failing(tenant_id: str, endpoint_id: str, since: str) -> None:
    """Start the failing period (only if none is running: written once per period)."""
    try:
        _ref(tenant_id, endpoint_id).update(
            actions=[WebhookEndpointItem.failing_since.set(since)],
            condition=WebhookEndpointItem.pk.exists() & WebhookEndpointItem.failing_since.does_not_exist(),
        )
    except UpdateError as e:
        if not _conditional_failed(e):
            raise


def clear_failing(tenant_id: str, endpoint_id: str) -> None:
    try:
        _ref(tenant_id, endpoint_id).update(
            actions=[WebhookEndpointItem.failing_since.remove()],
            condition=WebhookEndpointItem.failing_since.exists(),
        )
    except UpdateError as e:
        if not _conditional_failed(e):
            raise


def disable(tenant_id: str, endpoint_id: str, reason: str, now: str) -> bool:
    """Disable an enabled endpoint; False when it was not (or is gone)."""
    try:
        _ref(tenant_id, endpoint_id).update(
            actions=[
                WebhookEndpointItem.enabled.set(False),
                WebhookEndpointItem.disabled_reason.set(reason),
                WebhookEndpointItem.updated_at.set(now),
            ],
            condition=WebhookEndpointItem.enabled == True,  # noqa: E712 - a pynamodb condition
        )
    except UpdateError as e:
        if _conditional_failed(e):
            return False
        raise
    return True


def delete_endpoint(tenant_id: str, endpoint_id: str) -> bool:
    """Delete the endpoint item; False when there was none."""
    try:
        _ref(tenant_id, endpoint_id).delete(condition=WebhookEndpointItem.pk.exists())
    except DeleteError as e:
        if _conditional_failed(e):
            return False
        raise
    return True


def purge_deliveries(
    tenant_id: str,
    endpoint_id: str,
    *,
    deadline: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> bool:
    """Delete an endpoint's deliveries, a page at a time; False when out of time (the rest
    expires by TTL within 30 days, or the tenant purge finishes it)."""
    pk = keys.webhook_deliveries(tenant_id, endpoint_id)
    while True:
        page = list(PartitionItem.query(pk, consistent_read=True, limit=200, attributes_to_get=["pk", "sk"]))
        if not page:
            return True
        with PartitionItem.batch_write() as b:
            for i in page:
                b.delete(PartitionItem(pk, i.sk))
        if deadline is not None and clock() >= deadline:
            return False


# ----------------------------------------------------------------- deliveries
def _shard(delivery_id: str) -> int:
    digest = hashlib.sha1(delivery_id.encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:4], "big") % get_settings().due_shards


def _due_keys(d: wh.Delivery | WebhookDeliveryItem, due_at: str) -> tuple[str, str]:
    return (
        keys.webhook_due_shard(_shard(d.delivery_id)),
        keys.webhook_due_sort(due_at, d.tenant_id, d.endpoint_id, d.delivery_id),
    )


def _delivery(i: WebhookDeliveryItem) -> wh.Delivery:
    return wh.Delivery(
        tenant_id=i.tenant_id,
        endpoint_id=i.endpoint_id,
        delivery_id=i.delivery_id,
        event_id=i.event_id,
        event_type=i.event_type,
        event_seq=None if i.event_seq is None else int(i.event_seq),
        event=i.event,
        status=i.status,
        attempts=int(i.attempts or 0),
        max_attempts=int(i.max_attempts),
        created_at=i.created_at,
        last_status_code=None if i.last_status_code is None else int(i.last_status_code),
        last_error=i.last_error,
        next_attempt_at=i.next_attempt_at,
        last_attempt_at=i.last_attempt_at,
    )


def _new_item(d: wh.Delivery, due_at: str | None) -> WebhookDeliveryItem:
    gsi2pk, gsi2sk = _due_keys(d, due_at) if due_at else (None, None)
    return WebhookDeliveryItem(
        keys.webhook_deliveries(d.tenant_id, d.endpoint_id),
        keys.delivery_sk(d.delivery_id),
        tenant_id=d.tenant_id,
        endpoint_id=d.endpoint_id,
        delivery_id=d.delivery_id,
        event_id=d.event_id,
        event_type=d.event_type,
        event_seq=d.event_seq,
        event=d.event if d.event_seq is None else None,  # in the feed: not copied
        status=d.status,
        attempts=d.attempts,
        max_attempts=d.max_attempts,
        last_status_code=d.last_status_code,
        last_error=wh.error_text(d.last_error) if d.last_error else None,
        next_attempt_at=d.next_attempt_at if d.status == wh.PENDING else None,
        last_attempt_at=d.last_attempt_at,
        created_at=d.created_at,
        ttl=int((parse_iso(d.created_at) + wh.RETENTION).timestamp()),
        gsi1pk=keys.deliveries_by_status(d.tenant_id, d.endpoint_id, d.status),
        gsi1sk=d.delivery_id,
        gsi2pk=gsi2pk,
        gsi2sk=gsi2sk,
    )


def existing_deliveries(tenant_id: str, pairs: Iterable[tuple[str, str]]) -> dict[str, tuple[str, int]]:
    """``{delivery id: (status, attempts)}`` of the (endpoint, delivery) pairs already stored
    (BatchGet, 100 keys a request, consistent)."""
    wanted = [(keys.webhook_deliveries(tenant_id, ep), keys.delivery_sk(d)) for ep, d in pairs]
    out: dict[str, tuple[str, int]] = {}
    for i in WebhookDeliveryItem.batch_get(
        wanted, consistent_read=True, attributes_to_get=["pk", "sk", "delivery_id", "status", "attempts"]
    ):
        out[i.delivery_id] = (i.status, int(i.attempts or 0))
    return out


def put_deliveries(deliveries: list[wh.Delivery], due_at: str) -> None:
    """BatchWrite of deliveries still to be tried (25 a request), each with its due entry:
    the first attempts the queue refused (the sweep sends them)."""
    with WebhookDeliveryItem.batch_write() as b:
        for d in deliveries:
            b.save(_new_item(d, due_at))


def put_delivery(d: wh.Delivery, due_at: str | None = None) -> bool:
    """The first record of a delivery, conditional on its id being new; False when one
    exists. A ``pending`` one gets its due entry at ``due_at``; a finished one none."""
    try:
        _new_item(d, due_at if d.status == wh.PENDING else None).save(
            condition=WebhookDeliveryItem.pk.does_not_exist()
        )
    except PutError as e:
        if _conditional_failed(e):
            return False
        raise
    return True


def delivery_recorded(tenant_id: str, endpoint_id: str, delivery_id: str) -> bool:
    """Whether the delivery has a record (a consistent GetItem of its keys only)."""
    try:
        WebhookDeliveryItem.get(
            keys.webhook_deliveries(tenant_id, endpoint_id),
            keys.delivery_sk(delivery_id),
            consistent_read=True,
            attributes_to_get=["pk", "sk"],
        )
    except DoesNotExist:
        return False
    return True


def _dref(tenant_id: str, endpoint_id: str, delivery_id: str) -> WebhookDeliveryItem:
    return WebhookDeliveryItem(keys.webhook_deliveries(tenant_id, endpoint_id), keys.delivery_sk(delivery_id))


def get_delivery(tenant_id: str, endpoint_id: str, delivery_id: str) -> wh.Delivery | None:
    try:
        return _delivery(
            WebhookDeliveryItem.get(
                keys.webhook_deliveries(tenant_id, endpoint_id),
                keys.delivery_sk(delivery_id),
                consistent_read=True,
            )
        )
    except DoesNotExist:
        return None


def claim(d: wh.Delivery, attempt: int, now: datetime) -> bool:
    """Take attempt ``attempt`` (0-based): ``attempts`` ``attempt`` → ``attempt + 1``, only
    while pending; the watchdog moves past the send. False when someone else took it."""
    item = _dref(d.tenant_id, d.endpoint_id, d.delivery_id)
    gsi2pk, gsi2sk = _due_keys(d, iso(now + WATCHDOG))
    try:
        item.update(
            actions=[
                WebhookDeliveryItem.attempts.set(attempt + 1),
                WebhookDeliveryItem.last_attempt_at.set(iso(now)),
                WebhookDeliveryItem.gsi2pk.set(gsi2pk),
                WebhookDeliveryItem.gsi2sk.set(gsi2sk),
            ],
            condition=(WebhookDeliveryItem.attempts == attempt) & (WebhookDeliveryItem.status == wh.PENDING),
        )
    except UpdateError as e:
        if _conditional_failed(e):
            return False
        raise
    return True


def record(
    d: wh.Delivery,
    attempts: int,
    status: str,
    *,
    status_code: int | None,
    error: str | None,
    next_attempt_at: str | None = None,
    due_at: str | None = None,
) -> bool:
    """The outcome of attempt number ``attempts`` (conditional on it being the last claimed):
    ``succeeded`` / ``failed`` (the due entry goes), or ``pending`` again with the next
    attempt's time and its due entry at ``due_at``."""
    item = _dref(d.tenant_id, d.endpoint_id, d.delivery_id)
    actions: list[Any] = [
        WebhookDeliveryItem.status.set(status),
        WebhookDeliveryItem.gsi1pk.set(keys.deliveries_by_status(d.tenant_id, d.endpoint_id, status)),
    ]
    actions.append(
        WebhookDeliveryItem.last_status_code.set(status_code)
        if status_code is not None
        else WebhookDeliveryItem.last_status_code.remove()
    )
    actions.append(
        WebhookDeliveryItem.last_error.set(wh.error_text(error))
        if error
        else WebhookDeliveryItem.last_error.remove()
    )
    if status == wh.PENDING and next_attempt_at and due_at:
        gsi2pk, gsi2sk = _due_keys(d, due_at)
        actions += [
            WebhookDeliveryItem.next_attempt_at.set(next_attempt_at),
            WebhookDeliveryItem.gsi2pk.set(gsi2pk),
            WebhookDeliveryItem.gsi2sk.set(gsi2sk),
        ]
    else:
        actions += [
            WebhookDeliveryItem.next_attempt_at.remove(),
            WebhookDeliveryItem.gsi2pk.remove(),
            WebhookDeliveryItem.gsi2sk.remove(),
        ]
    try:
        item.update(
            actions=actions,
            condition=(WebhookDeliveryItem.attempts == attempts) & (WebhookDeliveryItem.status == wh.PENDING),
        )
    except UpdateError as e:
        if _conditional_failed(e):
            return False
        raise
    return True


def reopen(d: wh.Delivery, now: datetime) -> bool:
    """A manual retry: pending again for exactly one more attempt; False while it is pending."""
    item = _dref(d.tenant_id, d.endpoint_id, d.delivery_id)
    gsi2pk, gsi2sk = _due_keys(d, iso(now + WATCHDOG))
    try:
        item.update(
            actions=[
                WebhookDeliveryItem.status.set(wh.PENDING),
                WebhookDeliveryItem.gsi1pk.set(
                    keys.deliveries_by_status(d.tenant_id, d.endpoint_id, wh.PENDING)
                ),
                WebhookDeliveryItem.max_attempts.set(d.attempts + 1),
                WebhookDeliveryItem.next_attempt_at.set(iso(now)),
                WebhookDeliveryItem.gsi2pk.set(gsi2pk),
                WebhookDeliveryItem.gsi2sk.set(gsi2sk),
            ],
            condition=(WebhookDeliveryItem.status != wh.PENDING)
            & (WebhookDeliveryItem.attempts == d.attempts),
        )
    except UpdateError as e:
        if _conditional_failed(e):
            return False
        raise
    return True


def list_deliveries(
    tenant_id: str, endpoint_id: str, status: str | None, limit: int, cursor: str | None
) -> tuple[list[wh.Delivery], str | None]:
    """A page of an endpoint's deliveries, newest first: the endpoint's partition (all; the
    ids sort by time) or GSI1 (one status)."""
    if status:
        pk = keys.deliveries_by_status(tenant_id, endpoint_id, status)
        start = paging.page_cursor(tenant_id, cursor, "gsi1pk", pk)
        it = WebhookDeliveryItem.by_status.query(
            pk, scan_index_forward=False, limit=limit, page_size=limit, last_evaluated_key=start
        )
    else:
        pk = keys.webhook_deliveries(tenant_id, endpoint_id)
        start = paging.page_cursor(tenant_id, cursor, "pk", pk)
        it = WebhookDeliveryItem.query(
            pk,
            WebhookDeliveryItem.sk.startswith(keys.delivery_sk("")),
            scan_index_forward=False,
            limit=limit,
            page_size=limit,
            last_evaluated_key=start,
        )
    items = [_delivery(i) for i in it]
    return items, paging.encode_cursor(it.last_evaluated_key)


def pending_deliveries(tenant_id: str, endpoint_id: str, limit: int = 500) -> list[wh.Delivery]:
    """Up to ``limit`` pending deliveries of an endpoint (GSI1)."""
    pk = keys.deliveries_by_status(tenant_id, endpoint_id, wh.PENDING)
    return [_delivery(i) for i in WebhookDeliveryItem.by_status.query(pk, limit=limit)]


def due(shard: int, until: datetime) -> Iterator[tuple[wh.Delivery, str]]:
    """Pending deliveries whose due entry is at or before ``until`` in ``shard`` (GSI2, oldest
    first), with the entry's sort key (to move it conditionally)."""
    for i in WebhookDeliveryItem.due.query(
        keys.webhook_due_shard(shard), WebhookDeliveryItem.gsi2sk < iso(until + timedelta(seconds=1))
    ):
        if i.gsi2sk:
            yield _delivery(i), i.gsi2sk


def move_due(d: wh.Delivery, seen: str, due_at: str) -> bool:
    """Move a due entry from ``seen`` to ``due_at`` unless someone moved it meanwhile."""
    _, gsi2sk = _due_keys(d, due_at)
    try:
        _dref(d.tenant_id, d.endpoint_id, d.delivery_id).update(
            actions=[WebhookDeliveryItem.gsi2sk.set(gsi2sk)], condition=WebhookDeliveryItem.gsi2sk == seen
        )
    except UpdateError as e:
        if _conditional_failed(e):
            return False
        raise
    return True
