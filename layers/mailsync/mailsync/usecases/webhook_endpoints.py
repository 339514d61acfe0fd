"""A tenant's webhook endpoints and their deliveries, as the API offers them.

Invariants:

* A tenant sees, changes and lists the deliveries of its own endpoints only: the endpoints live
  in its partition, so another tenant's id is 404 ``not_found``.
* The signing secret leaves the service twice only: in the answer of :func:`create_endpoint`
  and of :func:`rotate_secret`.
* A URL is checked when it is stored (create, PATCH): ``https`` (``http`` only where private
  hosts are allowed), no user info, at most 2048 characters, and its host must resolve to
  public addresses only (422 ``host_not_allowed``; unresolvable: ``host_unresolvable``). The
  check is repeated at every delivery, after resolution (``providers/webhook_http.py``).
* At most :data:`~mailsync.domain.webhooks.MAX_ENDPOINTS` endpoints per tenant (409
  ``endpoint_limit``; two concurrent creates may pass it by one).
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from mailsync.config import get_settings
from mailsync.domain import hostguard
from mailsync.domain import webhooks as wh
from mailsync.domain.clock import iso, utcnow
from mailsync.domain.events import PING, Event, check_types, event_id
from mailsync.errors import (
    DeliveryPending,
    EndpointDisabled,
    EndpointLimit,
    InvalidRequest,
    NotFound,
    Unprocessable,
)
from mailsync.store import webhooks as repo
from mailsync.usecases import webhooks as delivery

#: The DNS lookup of the registration check (tests answer with chosen addresses).
RESOLVER: Callable[..., Any] = socket.getaddrinfo

DELETE_BUDGET_SECONDS = 10.0  # deliveries purged in the DELETE; the rest expire by TTL


def public_view(ep: wh.Endpoint) -> dict[str, Any]:
    return {
        "id": ep.endpoint_id,
        "url": ep.url,
        "events": list(ep.events),
        "description": ep.description,
        "enabled": ep.enabled,
        "disabled_reason": None if ep.enabled else (ep.disabled_reason or "manual"),
        "created_at": ep.created_at,
        "updated_at": ep.updated_at,
    }


def delivery_view(d: wh.Delivery) -> dict[str, Any]:
    return {
        "id": d.delivery_id,
        "event_id": d.event_id,
        "event_type": d.event_type,
        "status": d.status,
        "attempts": d.attempts,
        "last_status_code": d.last_status_code,
        "last_error": d.last_error,
        "next_attempt_at": d.next_attempt_at if d.status == wh.PENDING else None,
        "created_at": d.created_at,
    }


def check_url(url: str) -> str:
    """``url`` if the service may call it (see the module docstring); raises 422."""
    allow = get_settings().allow_private_hosts
    try:
        target = wh.parse_url(url, allow_http=allow)
    except wh.InvalidUrl as e:
        raise Unprocessable(str(e), code="invalid_url") from e
    try:
        hostguard.check_host(target.host, allow_private=allow, resolver=RESOLVER)
    except hostguard.HostNotAllowed as e:
        raise Unprocessable(f"host {target.host} is not allowed", code="host_not_allowed") from e
    except hostguard.HostUnresolvable as e:
        raise Unprocessable(f"host {target.host} does not resolve", code="host_unresolvable") from e
    return url


def _events(events: list[str]) -> list[str]:
    if not events:
        raise InvalidRequest('events: name at least one event type, or ["*"]')
    return check_types(events)


def _endpoint(tenant_id: str, endpoint_id: str) -> wh.Endpoint:
    ep = repo.get_endpoint(tenant_id, endpoint_id)
    if ep is None:
        raise NotFound("no such webhook endpoint")
    return ep


def create_endpoint(
    tenant_id: str, url: str, events: list[str], description: str = "", *, now: datetime | None = None
) -> dict[str, Any]:
    types = _events(events)
    check_url(url)
    if len(repo.list_endpoints(tenant_id, consistent=True)) >= wh.MAX_ENDPOINTS:
        raise EndpointLimit(f"a tenant has at most {wh.MAX_ENDPOINTS} webhook endpoints")
    stamp = iso(now or utcnow())
    secret = wh.new_secret()
    ep = wh.Endpoint(
        tenant_id=tenant_id,
        endpoint_id=wh.new_endpoint_id(),
        url=url,
        events=types,
        description=description,
        enabled=True,
        created_at=stamp,
        updated_at=stamp,
    )
    stored = repo.create_endpoint(ep, secret)
    view = public_view(stored)
    view.pop("disabled_reason")
    return {**view, "secret": secret}


def list_endpoints(tenant_id: str) -> list[dict[str, Any]]:
    return [
        public_view(ep)
        for ep in sorted(repo.list_endpoints(tenant_id, consistent=True), key=lambda e: e.created_at)
    ]


def get_endpoint(tenant_id: str, endpoint_id: str) -> dict[str, Any]:
    return public_view(_endpoint(tenant_id, endpoint_id))


def update_endpoint(tenant_id: str, endpoint_id: str, changes: dict[str, Any]) -> dict[str, Any]:
    """PATCH: ``url``, ``events``, ``description``, ``enabled`` (true clears ``disabled_reason``)."""
    _endpoint(tenant_id, endpoint_id)
    url = changes.get("url")
    if url is not None:
        check_url(url)
    events = changes.get("events")
    updated = repo.update_endpoint(
        tenant_id,
        endpoint_id,
        iso(utcnow()),
        url=url,
        events=_events(events) if events is not None else None,
        description=changes.get("description"),
        enabled=changes.get("enabled"),
    )
    if updated is None:
        raise NotFound("no such webhook endpoint")
    if changes.get("enabled") is False:
        delivery.fail_pending(tenant_id, endpoint_id, "the endpoint is disabled (manual)")
    return public_view(updated)


def delete_endpoint(tenant_id: str, endpoint_id: str) -> None:
    """The endpoint and (within a budget) its deliveries; the rest expire by their TTL."""
    _endpoint(tenant_id, endpoint_id)
    repo.purge_deliveries(tenant_id, endpoint_id, deadline=time.monotonic() + DELETE_BUDGET_SECONDS)
    if not repo.delete_endpoint(tenant_id, endpoint_id):
        raise NotFound("no such webhook endpoint")


def rotate_secret(tenant_id: str, endpoint_id: str, *, now: datetime | None = None) -> dict[str, str]:
    """A new secret; the old one keeps signing, next to it, for 24 hours."""
    _endpoint(tenant_id, endpoint_id)
    secret = wh.new_secret()
    if not repo.rotate_secret(tenant_id, endpoint_id, secret, now or utcnow()):
        raise NotFound("no such webhook endpoint")
    return {"secret": secret}


def send_test(
    tenant_id: str, endpoint_id: str, *, now: datetime | None = None, queue: wh.WebhookQueue | None = None
) -> dict[str, Any]:
    """A ``ping`` event (``data: {}``) to this endpoint only, as a delivery like any other."""
    ep = _endpoint(tenant_id, endpoint_id)
    if not ep.enabled:
        raise EndpointDisabled("the endpoint is disabled; enable it first")
    now = now or utcnow()
    event = Event(
        id=event_id(f"ping#{tenant_id}#{endpoint_id}#{uuid.uuid4().hex}"),
        type=PING,
        created_at=iso(now),
        tenant_id=tenant_id,
        data={},
    )
    d = delivery.new_delivery(ep, event, now, get_settings())  # not in the feed: the body travels inline
    delivery.begin([d], now, queue)
    return {"delivery_id": d.delivery_id, "event_id": event.id, "status": d.status}


def list_deliveries(
    tenant_id: str, endpoint_id: str, status: str | None, limit: int, cursor: str | None
) -> dict[str, Any]:
    _endpoint(tenant_id, endpoint_id)
    items, next_cursor = repo.list_deliveries(tenant_id, endpoint_id, status, limit, cursor)
    return {"items": [delivery_view(d) for d in items], "next_cursor": next_cursor}


def retry_delivery(
    tenant_id: str,
    endpoint_id: str,
    delivery_id: str,
    *,
    now: datetime | None = None,
    queue: wh.WebhookQueue | None = None,
) -> dict[str, Any]:
    """Send a finished delivery once more (one attempt: a failure ends it ``failed`` again)."""
    ep = _endpoint(tenant_id, endpoint_id)
    d = repo.get_delivery(tenant_id, endpoint_id, delivery_id)
    if d is None:
        raise NotFound("no such delivery")
    if not ep.enabled:
        raise EndpointDisabled("the endpoint is disabled; enable it first")
    if d.status == wh.PENDING or not repo.reopen(d, now or utcnow()):
        raise DeliveryPending("the delivery is pending: its next attempt is scheduled")
    delivery.enqueue([wh.Job(tenant_id, endpoint_id, delivery_id, d.attempts)], queue)
    return {"delivery_id": delivery_id, "status": wh.PENDING}
