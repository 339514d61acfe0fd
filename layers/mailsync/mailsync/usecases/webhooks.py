"""Webhook delivery: fan-out of a tenant's events, signed attempts, retries, the due sweep.

Flow (docs/architecture.md, "Webhooks"):

```
stream processor ──fan_out(tenant, events)──► deliveries (BatchWrite) ──► SQS standard (attempt 0)
SQS ──deliver_job──► claim attempt n ──► POST (signed) ──► succeeded | pending + next wait | failed
                                                            wait <= 900 s: SQS DelaySeconds
                                                            longer: due index (GSI2 WDUE#)
scheduler tick ──sweep_due(now)──► due within 15 min: SQS with the remaining delay
```

Invariants:

* **Only the tenant's own endpoints**: :func:`fan_out` reads the endpoints of the tenant it is
  given (one Query per call) and skips an event of another tenant.
* **Idempotent**: a delivery's id is derived from endpoint and event, so a second
  :func:`fan_out` of the same events creates nothing (a pending delivery never tried is
  enqueued again, which is harmless); a job performs exactly the attempt it names, after a
  conditional claim, so a duplicated SQS message or a re-enqueued job never sends twice.
* **Nothing is left hanging**: every pending delivery has a due entry (``store/webhooks.py``,
  the watchdog), so a job the queue refused or lost, or a worker that died mid-attempt, is
  found by the sweep; an interrupted last attempt ends ``failed``.
* **A dead endpoint stops hurting**: after 5 days with only failures it is disabled; a disabled
  (or deleted) endpoint's pending deliveries end ``failed`` with a ``last_error`` saying so, and
  it gets no new ones. A failed POST is a recorded, scheduled retry, never an exception: only
  infrastructure errors (DynamoDB, KMS) escape :func:`deliver_job`, so the SQS batch reports
  just those records and one endpoint never holds up another.
* **Signatures** follow Standard Webhooks (``standardwebhooks``): ``webhook-id`` is the event id,
  ``webhook-signature`` one ``v1,<base64>`` per secret (two during a rotation's 24 h).
* Secrets are decrypted per attempt (the data key is cached for 5 minutes) and never logged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from standardwebhooks.webhooks import Webhook

from mailsync.config import Settings, get_settings
from mailsync.domain import webhooks as wh
from mailsync.domain.clock import iso, parse_iso, utcnow
from mailsync.domain.events import Event, subscribed
from mailsync.observability import logger, metrics
from mailsync.store import webhooks as repo
from mailsync.store.webhook_queue import webhook_jobs

__all__ = ["body_bytes", "deliver_job", "enqueue", "fan_out", "new_delivery", "sign", "sweep_due"]

SWEEP_HORIZON = timedelta(minutes=15)  # SQS delays stop at 900 s


def body_bytes(event: dict[str, Any]) -> bytes:
    """The delivered body: compact JSON of the event."""
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


def sign(secrets: Iterable[str], msg_id: str, when: datetime, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers of one attempt."""
    text = body.decode()
    signatures = " ".join(Webhook(str.__str__(s)).sign(msg_id, when, text) for s in secrets)
    return {
        "content-type": "application/json",
        "user-agent": "mailsync-webhooks/1",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signatures,
    }


def _max_attempts(s: Settings) -> int:
    return len(s.webhook_retry_schedule) + 1


def new_delivery(ep: wh.Endpoint, event: Event, now: datetime, s: Settings) -> wh.Delivery:
    return wh.Delivery(
        tenant_id=ep.tenant_id,
        endpoint_id=ep.endpoint_id,
        delivery_id=wh.delivery_id(ep.endpoint_id, event.id),
        event_id=event.id,
        event_type=event.type,
        event=event.as_dict(),
        status=wh.PENDING,
        attempts=0,
        max_attempts=_max_attempts(s),
        created_at=iso(now),
        next_attempt_at=iso(now),
    )


def enqueue(jobs: list[wh.Job], queue: wh.WebhookQueue | None = None) -> int:
    """Send jobs; a refused one is logged and left to its due entry. Returns those sent."""
    if not jobs:
        return 0
    accepted = (queue or webhook_jobs).send(jobs)
    if len(accepted) < len(jobs):
        logger.warning(
            "webhook jobs not accepted; the due index brings them back",
            extra={"refused": len(jobs) - len(accepted)},
        )
    return len(accepted)


def fan_out(
    tenant_id: str,
    events: list[Event],
    *,
    endpoints: list[wh.Endpoint] | None = None,
    queue: wh.WebhookQueue | None = None,
    now: datetime | None = None,
) -> int:
    """For each enabled endpoint of the tenant subscribed to an event's type: create the
    delivery (id derived from endpoint id + event id, so a redelivered stream batch creates no
    second delivery) and enqueue its first attempt. Returns the deliveries created.

    ``endpoints``: the tenant's endpoints if the caller has them already (else one Query,
    cached for this call only). Cost: one Query, one BatchGet per 100 (endpoint, event) pairs,
    one BatchWrite per 25 new deliveries, one SendMessageBatch per 10 jobs."""
    s = get_settings()
    now = now or utcnow()
    eps = endpoints if endpoints is not None else repo.list_endpoints(tenant_id)
    eps = [e for e in eps if e.enabled and e.tenant_id == tenant_id]
    foreign = sum(1 for ev in events if ev.tenant_id != tenant_id)
    if foreign:
        logger.warning("fan_out was given events of another tenant; skipped", extra={"skipped": foreign})
    wanted: dict[str, wh.Delivery] = {}
    for event in events:
        if event.tenant_id != tenant_id:
            continue
        for ep in eps:
            if subscribed(ep.events, event.type):
                d = new_delivery(ep, event, now, s)
                wanted.setdefault(d.delivery_id, d)
    if not wanted:
        return 0
    existing = repo.existing_deliveries(tenant_id, [(d.endpoint_id, d.delivery_id) for d in wanted.values()])
    new = [d for d in wanted.values() if d.delivery_id not in existing]
    repo.put_deliveries(new, iso(now + repo.WATCHDOG))
    # A pending delivery never tried (an earlier fan_out died before its SendMessageBatch)
    # is enqueued again: its claim makes a duplicate harmless.
    again = [
        d for d in wanted.values() if d.delivery_id in existing and existing[d.delivery_id] == (wh.PENDING, 0)
    ]
    enqueue([wh.Job(d.tenant_id, d.endpoint_id, d.delivery_id, 0) for d in [*new, *again]], queue)
    if new:
        metrics.add_metric(name="WebhookDeliveriesCreated", unit="Count", value=len(new))
    return len(new)


def _error_text(r: wh.Response) -> str:
    if r.error:
        return r.error
    if r.status is not None and 300 <= r.status < 400:
        return f"HTTP {r.status}: redirects are not followed"
    return f"HTTP {r.status}"


def deliver_job(
    body: dict[str, Any],
    *,
    sender: wh.WebhookSender | None = None,
    queue: wh.WebhookQueue | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
) -> str:
    """Perform the attempt a job names (the SQS consumer calls this per record). Returns what
    became of it: ``succeeded``, ``retry``, ``failed`` or ``stale`` (nothing to do: another job
    did it, or the delivery is gone)."""
    s = settings or get_settings()
    job = wh.Job.from_body(body)
    now = now or utcnow()
    d = repo.get_delivery(job.tenant_id, job.endpoint_id, job.delivery_id)
    if d is None or d.status != wh.PENDING or d.attempts != job.attempt:
        return "stale"
    if d.attempts >= d.max_attempts:  # the last attempt was claimed, then its worker died
        repo.record(
            d, d.attempts, wh.FAILED, status_code=d.last_status_code, error="the last attempt was interrupted"
        )
        return "failed"
    ep = repo.get_endpoint(job.tenant_id, job.endpoint_id)
    if ep is None or not ep.enabled:
        reason = (
            "the endpoint was deleted"
            if ep is None
            else f"the endpoint is disabled ({ep.disabled_reason or 'manual'})"
        )
        repo.record(d, d.attempts, wh.FAILED, status_code=d.last_status_code, error=reason)
        return "failed"
    payload = body_bytes(d.event)
    if len(payload) > wh.MAX_BODY_BYTES:
        repo.record(d, d.attempts, wh.FAILED, status_code=None, error="the event body exceeds 256 KB")
        return "failed"
    secrets = repo.signing_secrets(ep, now)
    if not repo.claim(d, job.attempt, now):
        return "stale"
    answer = (sender or _default_sender()).post(ep.url, payload, sign(secrets, d.event_id, now, payload))
    attempts = job.attempt + 1
    metrics.add_metric(name="WebhookAttempts", unit="Count", value=1)
    if answer.ok:
        repo.record(d, attempts, wh.SUCCEEDED, status_code=answer.status, error=None)
        if ep.failing_since:
            repo.clear_failing(ep.tenant_id, ep.endpoint_id)
        return "succeeded"
    error = _error_text(answer)
    wait = wh.next_wait(attempts, s.webhook_retry_schedule, d.max_attempts)
    outcome = "failed"
    if wait is None:
        repo.record(d, attempts, wh.FAILED, status_code=answer.status, error=error)
        metrics.add_metric(name="WebhookDeliveriesFailed", unit="Count", value=1)
    else:
        at = now + timedelta(seconds=wait)
        short = wait <= wh.SQS_MAX_DELAY
        due_at = at + repo.WATCHDOG if short else at
        repo.record(
            d,
            attempts,
            wh.PENDING,
            status_code=answer.status,
            error=error,
            next_attempt_at=iso(at),
            due_at=iso(due_at),
        )
        if short:
            enqueue([wh.Job(d.tenant_id, d.endpoint_id, d.delivery_id, attempts, delay=wait)], queue)
        outcome = "retry"
    _after_failure(ep, now)
    return outcome


def _after_failure(ep: wh.Endpoint, now: datetime) -> None:
    """Start the endpoint's failing period, or disable it after 5 days of failures (its
    pending deliveries then end ``failed``)."""
    if ep.failing_since is None:
        repo.mark_failing(ep.tenant_id, ep.endpoint_id, iso(now))
        return
    if not wh.should_disable(parse_iso(ep.failing_since), now):
        return
    if repo.disable(ep.tenant_id, ep.endpoint_id, wh.DISABLED_FAILING, iso(now)):
        logger.warning(
            "webhook endpoint disabled after 5 days of failures",
            extra={"tenant_id": ep.tenant_id, "endpoint_id": ep.endpoint_id},
        )
        metrics.add_metric(name="WebhookEndpointsDisabled", unit="Count", value=1)
        fail_pending(ep.tenant_id, ep.endpoint_id, "the endpoint is disabled (failing)")


def fail_pending(tenant_id: str, endpoint_id: str, reason: str) -> int:
    """End an endpoint's pending deliveries as ``failed`` (a page; later ones end when their
    job or the sweep finds the endpoint disabled)."""
    n = 0
    for d in repo.pending_deliveries(tenant_id, endpoint_id):
        n += repo.record(d, d.attempts, wh.FAILED, status_code=d.last_status_code, error=reason)
    return n


def sweep_due(now: datetime | None = None, *, queue: wh.WebhookQueue | None = None) -> int:
    """The scheduler's tick: enqueue the pending deliveries due within 15 minutes with the
    remaining delay, and move each due entry on to its watchdog time (conditionally: an entry
    that moved meanwhile is left alone). One Query per shard; returns the jobs sent."""
    s = get_settings()
    now = now or utcnow()
    sent = 0
    for shard in range(s.due_shards):
        found = list(repo.due(shard, now + SWEEP_HORIZON))
        for start in range(0, len(found), 10):
            page = found[start : start + 10]
            jobs = []
            for d, _seen in page:
                at = parse_iso(d.next_attempt_at) if d.next_attempt_at else now
                delay = max(0, min(wh.SQS_MAX_DELAY, int((at - now).total_seconds())))
                jobs.append(wh.Job(d.tenant_id, d.endpoint_id, d.delivery_id, d.attempts, delay=delay))
            accepted = set((queue or webhook_jobs).send(jobs))
            for i, (d, seen) in enumerate(page):
                if i in accepted:
                    at = max(now, parse_iso(d.next_attempt_at) if d.next_attempt_at else now)
                    repo.move_due(d, seen, iso(at + repo.WATCHDOG))
            sent += len(accepted)
    if sent:
        metrics.add_metric(name="WebhookJobsSwept", unit="Count", value=sent)
    return sent


def _default_sender() -> wh.WebhookSender:
    from mailsync.providers.webhook_http import HttpWebhookSender

    return HttpWebhookSender()
