"""Webhook delivery: fan-out of a tenant's events, signed attempts, retries, the due sweep.

Flow (docs/architecture.md, "Webhooks"):

```
stream processor ──fan_out(tenant, events, feed numbers)──► SQS standard (attempt 0, carrying the event)
SQS ──deliver_job──► attempt 0: POST (signed) ──► first record: succeeded | pending + next wait | failed
                     attempt n: claim n ──► POST ──► record
                                wait <= 900 s: SQS DelaySeconds;  longer: due index (GSI2 WDUE#)
scheduler tick ──sweep_due(now)──► due within 15 min: SQS with the remaining delay
```

Invariants:

* **Only the tenant's own endpoints**: :func:`fan_out` reads the endpoints of the tenant it is
  given (one Query per call) and skips an event of another tenant.
* **No write before the first answer**: a delivery that succeeds at once costs one small
  record (docs/performance.md 7a). A first job the queue refuses is stored pending and due at
  once; one that comes back (a crash) is stored before it is tried again.
* **Idempotent, at least once**: a delivery's id is derived from endpoint and event, so a
  second :func:`fan_out` of the same events queues nothing once the deliveries are recorded,
  and a first job finds a recorded delivery and stops. Two copies of a first job at the same
  moment may both POST (the same ``webhook-id``; one record). A retry job performs exactly the
  attempt it names, after a conditional claim, so it never sends twice.
* **The same bytes every time**: a retry reads the event back from the tenant's feed by its
  number (``event_body``); an event gone from the feed (30 days) ends the delivery ``failed``.
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
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from standardwebhooks.webhooks import Webhook

from mailsync.config import Settings, get_settings
from mailsync.domain import webhooks as wh
from mailsync.domain.clock import iso, parse_iso, utcnow
from mailsync.domain.events import Event, subscribed
from mailsync.observability import logger, metrics
from mailsync.store import webhooks as repo
from mailsync.store.events import EventFeed
from mailsync.store.webhook_queue import webhook_jobs

__all__ = [
    "begin",
    "body_bytes",
    "deliver_job",
    "enqueue",
    "event_body",
    "fan_out",
    "new_delivery",
    "sign",
    "sweep_due",
]

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


def new_delivery(
    ep: wh.Endpoint, event: Event, now: datetime, s: Settings, seq: int | None = None
) -> wh.Delivery:
    """The delivery of ``event`` to ``ep`` before its first attempt (``seq``: the event's
    number in the feed; None for an event outside it, whose body the record then keeps)."""
    return wh.Delivery(
        tenant_id=ep.tenant_id,
        endpoint_id=ep.endpoint_id,
        delivery_id=wh.delivery_id(ep.endpoint_id, event.id, event.created_at),
        event_id=event.id,
        event_type=event.type,
        event_seq=seq,
        event=event.as_dict(),
        status=wh.PENDING,
        attempts=0,
        max_attempts=_max_attempts(s),
        created_at=event.created_at,
        next_attempt_at=iso(now),
    )


def first_job(d: wh.Delivery) -> wh.Job:
    """The job of a delivery's first attempt: it carries the event."""
    return wh.Job(d.tenant_id, d.endpoint_id, d.delivery_id, 0, event=d.event, seq=d.event_seq)


def enqueue(jobs: list[wh.Job], queue: wh.WebhookQueue | None = None) -> list[int]:
    """Send jobs; returns the indexes of those the queue accepted."""
    if not jobs:
        return []
    accepted = (queue or webhook_jobs).send(jobs)
    if len(accepted) < len(jobs):
        logger.warning("webhook jobs not accepted", extra={"refused": len(jobs) - len(accepted)})
    return accepted


def begin(deliveries: list[wh.Delivery], now: datetime, queue: wh.WebhookQueue | None = None) -> None:
    """Queue the first attempts of ``deliveries``. Nothing is written while the queue takes
    them; one it refuses is stored ``pending`` and due at once, so the next sweep sends it."""
    accepted = set(enqueue([first_job(d) for d in deliveries], queue))
    refused = [d for i, d in enumerate(deliveries) if i not in accepted]
    if refused:
        repo.put_deliveries(refused, iso(now))


def fan_out(
    tenant_id: str,
    events: list[Event],
    *,
    positions: dict[str, int] | None = None,
    endpoints: list[wh.Endpoint] | None = None,
    queue: wh.WebhookQueue | None = None,
    now: datetime | None = None,
) -> int:
    """For each enabled endpoint of the tenant subscribed to an event's type, queue the first
    attempt of its delivery (id derived from endpoint and event: a redelivered stream batch
    names the same deliveries, and those already recorded are not sent again). Returns the
    deliveries queued.

    ``positions``: the events' numbers in the tenant's feed (``EventFeed.append``), which a
    retry reads the body back by. ``endpoints``: the tenant's endpoints if the caller has them
    (else one Query). Cost: one Query, one BatchGet per 100 (endpoint, event) pairs (reads),
    one SendMessageBatch per 10 jobs, **no write**."""
    s = get_settings()
    now = now or utcnow()
    positions = positions or {}
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
                d = new_delivery(ep, event, now, s, positions.get(event.id))
                wanted.setdefault(d.delivery_id, d)
    if not wanted:
        return 0
    recorded = repo.existing_deliveries(tenant_id, [(d.endpoint_id, d.delivery_id) for d in wanted.values()])
    # A recorded delivery is on its way (or done); one recorded but never tried (its first
    # job was refused) is left to the sweep, which already has it due.
    new = [d for d in wanted.values() if d.delivery_id not in recorded]
    oversize = [d for d in new if len(body_bytes(d.event or {})) > wh.MAX_BODY_BYTES]
    for d in oversize:
        repo.put_delivery(_finished(d, wh.FAILED, 0, now, None, "the event body exceeds 256 KB"))
    begin([d for d in new if d not in oversize], now, queue)
    if new:
        metrics.add_metric(name="WebhookDeliveriesCreated", unit="Count", value=len(new))
    return len(new) - len(oversize)


def _finished(
    d: wh.Delivery,
    status: str,
    attempts: int,
    now: datetime,
    status_code: int | None,
    error: str | None,
    next_attempt_at: str | None = None,
) -> wh.Delivery:
    return replace(
        d,
        status=status,
        attempts=attempts,
        last_status_code=status_code,
        last_error=error,
        last_attempt_at=iso(now) if attempts else None,
        next_attempt_at=next_attempt_at,
    )


def _error_text(r: wh.Response) -> str:
    if r.error:
        return r.error
    if r.status is not None and 300 <= r.status < 400:
        return f"HTTP {r.status}: redirects are not followed"
    return f"HTTP {r.status}"


def _unusable(ep: wh.Endpoint | None) -> str | None:
    """Why an endpoint takes no delivery now (deleted, disabled), or None."""
    if ep is None:
        return "the endpoint was deleted"
    if not ep.enabled:
        return f"the endpoint is disabled ({ep.disabled_reason or 'manual'})"
    return None


def _retry_plan(
    attempts: int, d: wh.Delivery, now: datetime, s: Settings
) -> tuple[int, datetime, str] | None:
    """After failed attempt number ``attempts``: (wait, next attempt, due entry), or None when
    it was the last. A wait the queue can hold (≤ 900 s) is a delayed job, its due entry the
    watchdog after it; a longer one is only the due entry, which the sweep turns into a job."""
    wait = wh.next_wait(attempts, s.webhook_retry_schedule, d.max_attempts)
    if wait is None:
        return None
    at = now + timedelta(seconds=wait)
    return wait, at, iso(at + repo.WATCHDOG if wait <= wh.SQS_MAX_DELAY else at)


def deliver_job(
    body: dict[str, Any],
    *,
    sender: wh.WebhookSender | None = None,
    queue: wh.WebhookQueue | None = None,
    now: datetime | None = None,
    settings: Settings | None = None,
    received: int = 1,
) -> str:
    """Perform the attempt a job names (the SQS consumer calls this per record; ``received``
    is the message's receive count). Returns what became of it: ``succeeded``, ``retry``,
    ``failed`` or ``stale`` (nothing to do: another job did it, or the delivery is gone)."""
    s = settings or get_settings()
    job = wh.Job.from_body(body)
    now = now or utcnow()
    if job.attempt == 0 and job.event is not None:
        d = _from_first_job(job, s, now)
        if received <= 1:
            return _first_attempt(d, sender=sender, queue=queue, now=now, s=s)
        # The job came back (a crash, an infrastructure error): write it down before trying
        # again, so that its due entry finds it even if the queue gives up on the message.
        repo.put_delivery(d, iso(now + repo.WATCHDOG))
    return _claimed_attempt(job, sender=sender, queue=queue, now=now, s=s)


def _from_first_job(job: wh.Job, s: Settings, now: datetime) -> wh.Delivery:
    event = job.event or {}
    return wh.Delivery(
        tenant_id=job.tenant_id,
        endpoint_id=job.endpoint_id,
        delivery_id=job.delivery_id,
        event_id=str(event.get("id", "")),
        event_type=str(event.get("type", "")),
        event_seq=job.seq,
        event=event,
        status=wh.PENDING,
        attempts=0,
        max_attempts=_max_attempts(s),
        created_at=str(event.get("created_at") or iso(now)),
        next_attempt_at=iso(now),
    )


def _first_attempt(
    d: wh.Delivery,
    *,
    sender: wh.WebhookSender | None,
    queue: wh.WebhookQueue | None,
    now: datetime,
    s: Settings,
) -> str:
    """Attempt 0 of a job that carries its event: no write before the POST; its answer is
    the delivery's first record (conditional: a copy of the job that got there first wins)."""
    if repo.delivery_recorded(d.tenant_id, d.endpoint_id, d.delivery_id):
        return "stale"  # a duplicated job, or a redelivered stream batch: already on its way
    ep = repo.get_endpoint(d.tenant_id, d.endpoint_id)
    reason = _unusable(ep)
    if reason or ep is None:
        repo.put_delivery(_finished(d, wh.FAILED, 0, now, None, reason))
        return "failed"
    payload = body_bytes(d.event or {})

    def first_record(
        status: str,
        code: int | None,
        error: str | None,
        next_at: str | None = None,
        due_at: str | None = None,
    ) -> bool:
        return repo.put_delivery(_finished(d, status, 1, now, code, error, next_attempt_at=next_at), due_at)

    secrets = repo.signing_secrets(ep, now)
    return _send(d, ep, payload, secrets, 1, first_record, sender=sender, queue=queue, now=now, s=s)


def event_body(d: wh.Delivery) -> dict[str, Any] | None:
    """The body of a recorded delivery: kept inline (a ping), or read back from the feed."""
    if d.event_seq is None:
        return d.event
    found = EventFeed(d.tenant_id).get(d.event_seq)
    return found.as_dict() if found is not None and found.id == d.event_id else None


def _claimed_attempt(
    job: wh.Job, *, sender: wh.WebhookSender | None, queue: wh.WebhookQueue | None, now: datetime, s: Settings
) -> str:
    """Attempt ``n`` of a recorded delivery, after a conditional claim."""
    d = repo.get_delivery(job.tenant_id, job.endpoint_id, job.delivery_id)
    if d is None or d.status != wh.PENDING or d.attempts != job.attempt:
        return "stale"
    if d.attempts >= d.max_attempts:  # the last attempt was claimed, then its worker died
        repo.record(
            d, d.attempts, wh.FAILED, status_code=d.last_status_code, error="the last attempt was interrupted"
        )
        return "failed"
    ep = repo.get_endpoint(job.tenant_id, job.endpoint_id)
    reason = _unusable(ep)
    if reason or ep is None:
        repo.record(d, d.attempts, wh.FAILED, status_code=d.last_status_code, error=reason)
        return "failed"
    event = event_body(d)
    if event is None:
        repo.record(d, d.attempts, wh.FAILED, status_code=d.last_status_code, error="the event has expired")
        return "failed"
    payload = body_bytes(event)
    if len(payload) > wh.MAX_BODY_BYTES:
        repo.record(d, d.attempts, wh.FAILED, status_code=None, error="the event body exceeds 256 KB")
        return "failed"
    secrets = repo.signing_secrets(ep, now)
    if not repo.claim(d, job.attempt, now):
        return "stale"
    attempts = job.attempt + 1

    def result(
        status: str,
        code: int | None,
        error: str | None,
        next_at: str | None = None,
        due_at: str | None = None,
    ) -> bool:
        # After a won claim only a stale writer loses this write; the outcome stands as sent.
        repo.record(
            d, attempts, status, status_code=code, error=error, next_attempt_at=next_at, due_at=due_at
        )
        return True

    return _send(d, ep, payload, secrets, attempts, result, sender=sender, queue=queue, now=now, s=s)


Write = Callable[..., bool]


def _send(
    d: wh.Delivery,
    ep: wh.Endpoint,
    payload: bytes,
    secrets: list[Any],
    attempts: int,
    write: Write,
    *,
    sender: wh.WebhookSender | None,
    queue: wh.WebhookQueue | None,
    now: datetime,
    s: Settings,
) -> str:
    """POST attempt number ``attempts`` (1-based), signed, and write its outcome with
    ``write(status, status_code, error, next_attempt_at, due_at)`` (False: another writer got
    there first, the outcome is ``stale``); schedule the retry and mind the endpoint's health.
    ``secrets`` are decrypted by the caller, before a claim that a KMS error must not waste."""
    answer = (sender or _default_sender()).post(ep.url, payload, sign(secrets, d.event_id, now, payload))
    metrics.add_metric(name="WebhookAttempts", unit="Count", value=1)
    if answer.ok:
        if not write(wh.SUCCEEDED, answer.status, None):
            return "stale"
        if ep.failing_since:
            repo.clear_failing(ep.tenant_id, ep.endpoint_id)
        return "succeeded"
    error = _error_text(answer)
    plan = _retry_plan(attempts, d, now, s)
    if plan is None:
        if not write(wh.FAILED, answer.status, error):
            return "stale"
        metrics.add_metric(name="WebhookDeliveriesFailed", unit="Count", value=1)
        outcome = "failed"
    else:
        wait, at, due_at = plan
        if not write(wh.PENDING, answer.status, error, iso(at), due_at):
            return "stale"
        if wait <= wh.SQS_MAX_DELAY:
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
