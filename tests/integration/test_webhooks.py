"""Webhooks (issue 15) through the real API handler, the real webhook handler and real HTTP(S)
receivers on 127.0.0.1 (moto in-process): registration rules, Standard Webhooks signatures
(verified with ``standardwebhooks``, also during a rotation), the retry schedule on an injected
clock, delivery records and manual retries, the disabled endpoint, no redirects, concurrency
within a batch, the host guard at registration and after resolution, TLS verification, tenant
isolation and idempotency (fan-out twice, a duplicated job)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from mailsync.config import get_settings
from mailsync.domain import webhooks as wh
from mailsync.domain.clock import iso, parse_iso, utcnow
from mailsync.providers.webhook_http import HttpWebhookSender
from mailsync.store import tenants
from mailsync.store import webhooks as repo
from mailsync.usecases import lifecycle, webhook_endpoints, webhooks
from tests.support.api import ApiClient, Resp
from tests.support.purge import naming
from tests.support.tls import TestCA
from tests.support.webhooks import Hooks, MemoryQueue, Receiver, atomic_dynamodb, drain, event

pytestmark = pytest.mark.integration

T0 = datetime(2026, 3, 2, 8, 0, 0, tzinfo=UTC)


def assert_error(r: Resp, status: int, code: str) -> None:
    assert r.status == status, (r.status, r.body)
    assert isinstance(r.body, dict) and r.body.get("code") == code, r.body


def answering(*addresses: str) -> Any:
    """A getaddrinfo-shaped resolver that answers ``addresses`` for every name."""

    def resolve(host: str, port: Any, *args: Any, **kw: Any) -> list[tuple[Any, ...]]:
        return [(2, 1, 6, "", (a, port or 0)) for a in addresses]

    return resolve


def private_hosts(monkeypatch: pytest.MonkeyPatch, allowed: bool) -> None:
    monkeypatch.setenv("MAILSYNC_ALLOW_PRIVATE_HOSTS", "1" if allowed else "0")
    get_settings.cache_clear()


def schedule(monkeypatch: pytest.MonkeyPatch, waits: str) -> None:
    monkeypatch.setenv("MAILSYNC_WEBHOOK_RETRY_SCHEDULE", waits)
    get_settings.cache_clear()


def run(queue: MemoryQueue, clock: list[datetime], sender: Any = None) -> list[str]:
    """Perform the queued jobs, the clock moving by each job's delay."""
    outcomes = []
    while queue.jobs:
        job = queue.pop()
        clock[0] += timedelta(seconds=job.delay)
        outcomes.append(webhooks.deliver_job(job.body(), queue=queue, now=clock[0], sender=sender))
    return outcomes


def no_due_entries() -> bool:
    far = datetime(2100, 1, 1, tzinfo=UTC)
    return all(not list(repo.due(shard, far)) for shard in range(get_settings().due_shards))


@pytest.fixture(autouse=True)
def _atomic(monkeypatch: pytest.MonkeyPatch) -> None:
    atomic_dynamodb(monkeypatch)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def hooks(tenant: dict[str, str]) -> Hooks:
    return Hooks(ApiClient(tenant["api_key"], None))


# ------------------------------------------------------------------ registration
def test_register_list_change_delete(hooks: Hooks, receiver: Receiver) -> None:
    ep = hooks.create(receiver.url(), ["message.created", "message.deleted", "message.created"], "CRM prod")
    assert set(ep) == {"id", "url", "events", "description", "enabled", "secret", "created_at", "updated_at"}
    assert ep["events"] == ["message.created", "message.deleted"] and ep["enabled"] is True
    assert ep["secret"].startswith("whsec_") and len(Webhook(ep["secret"])._whsecret) == 32

    listed = hooks.api.get("/v1/webhook-endpoints").body["items"]
    assert [e["id"] for e in listed] == [ep["id"]]
    assert "secret" not in listed[0] and listed[0]["disabled_reason"] is None
    assert "secret" not in hooks.get(ep["id"]).body

    r = hooks.api.patch(f"/v1/webhook-endpoints/{ep['id']}", {"events": ["*"], "description": "all"})
    assert r.status == 200 and r.body["events"] == ["*"] and r.body["description"] == "all", r.body
    r = hooks.api.patch(f"/v1/webhook-endpoints/{ep['id']}", {"enabled": False})
    assert r.body["enabled"] is False and r.body["disabled_reason"] == "manual"
    assert_error(hooks.api.post(f"/v1/webhook-endpoints/{ep['id']}/test"), 409, "endpoint_disabled")

    assert hooks.api.delete(f"/v1/webhook-endpoints/{ep['id']}").status == 204
    assert_error(hooks.get(ep["id"]), 404, "not_found")
    assert_error(hooks.api.delete(f"/v1/webhook-endpoints/{ep['id']}"), 404, "not_found")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"events": ["message.created", "message.exploded"]}, "unknown_event_type"),
        ({"events": []}, "invalid_request"),
        ({"url": "ftp://hooks.example/x"}, "invalid_url"),
        ({"url": "https://user:pw@hooks.example/x"}, "invalid_url"),
        ({"url": "https://hooks.example/" + "x" * 2048}, "invalid_request"),
        ({"description": "d" * 501}, "invalid_request"),
    ],
)
def test_invalid_registrations_are_422(
    hooks: Hooks, receiver: Receiver, body: dict[str, Any], code: str
) -> None:
    full = {"url": receiver.url(), "events": ["*"], "description": "", **body}
    assert_error(hooks.api.post("/v1/webhook-endpoints", full), 422, code)
    ep = hooks.create(receiver.url())
    if "events" in body or "url" in body:
        assert_error(hooks.api.patch(f"/v1/webhook-endpoints/{ep['id']}", body), 422, code)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "https://internal.example/hook",  # a name that resolves to a private address
    ],
)
def test_registration_refuses_private_hosts(hooks: Hooks, monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    private_hosts(monkeypatch, False)
    monkeypatch.setattr(webhook_endpoints, "RESOLVER", answering("10.0.0.7"))
    assert_error(
        hooks.api.post("/v1/webhook-endpoints", {"url": url, "events": ["*"]}), 422, "host_not_allowed"
    )


def test_plain_http_only_where_private_hosts_are_allowed(
    hooks: Hooks, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    private_hosts(monkeypatch, False)
    monkeypatch.setattr(webhook_endpoints, "RESOLVER", answering("93.184.216.34"))
    r = hooks.api.post("/v1/webhook-endpoints", {"url": "http://hooks.example/x", "events": ["*"]})
    assert_error(r, 422, "invalid_url")
    assert hooks.create("https://hooks.example/x")["url"] == "https://hooks.example/x"
    private_hosts(monkeypatch, True)
    assert hooks.create(receiver.url())["url"].startswith("http://")


def test_at_most_twenty_endpoints_per_tenant(hooks: Hooks, receiver: Receiver) -> None:
    for n in range(wh.MAX_ENDPOINTS):
        hooks.create(receiver.url(f"/{n}"))
    r = hooks.api.post("/v1/webhook-endpoints", {"url": receiver.url("/21"), "events": ["*"]})
    assert_error(r, 409, "endpoint_limit")


# -------------------------------------------------------------------- signatures
def test_deliveries_are_signed_and_verify_with_standardwebhooks(hooks: Hooks, receiver: Receiver) -> None:
    ep = hooks.create(receiver.url(), ["message.created"])
    ev = event(1, data={"id": "m1", "subject": "Grüße"})
    assert webhooks.fan_out("t1", [ev, event(2, type_="thread.linked")]) == 1  # subscribed to one type
    drain()
    (req,) = receiver.requests
    assert Webhook(ep["secret"]).verify(req.body, req.headers) == ev.as_dict()
    assert req.body == json.dumps(ev.as_dict(), separators=(",", ":"), ensure_ascii=False).encode()
    assert req.headers["webhook-id"] == ev.id
    assert req.headers["content-type"] == "application/json"
    assert abs(int(req.headers["webhook-timestamp"]) - time.time()) < 60
    assert req.headers["webhook-signature"].startswith("v1,") and " " not in req.headers["webhook-signature"]
    (d,) = hooks.deliveries(ep["id"], "succeeded")
    assert d["event_id"] == ev.id and d["event_type"] == "message.created"
    assert (d["attempts"], d["last_status_code"], d["last_error"], d["next_attempt_at"]) == (
        1,
        200,
        None,
        None,
    )


def test_rotation_signs_with_both_secrets_for_24_hours(hooks: Hooks, receiver: Receiver) -> None:
    ep = hooks.create(receiver.url())
    old = ep["secret"]
    new = hooks.rotate(ep["id"])
    assert new != old and new.startswith("whsec_")
    webhooks.fan_out("t1", [event(1)])
    drain()
    req = receiver.requests[-1]
    assert len(req.headers["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(req.body, req.headers)
    Webhook(new).verify(req.body, req.headers)

    # A rotation whose 24 hours are over (its clock set back 25 h): only the newest secret signs.
    newest = webhook_endpoints.rotate_secret("t1", ep["id"], now=utcnow() - timedelta(hours=25))["secret"]
    webhooks.fan_out("t1", [event(2)])
    drain()
    req = receiver.requests[-1]
    assert len(req.headers["webhook-signature"].split(" ")) == 1
    Webhook(newest).verify(req.body, req.headers)
    for stale in (old, new):
        with pytest.raises(WebhookVerificationError):
            Webhook(stale).verify(req.body, req.headers)


def test_ping_goes_to_that_endpoint_only(hooks: Hooks, receiver: Receiver) -> None:
    ep = hooks.create(receiver.url("/a"), ["message.created"])
    hooks.create(receiver.url("/b"))
    r = hooks.api.post(f"/v1/webhook-endpoints/{ep['id']}/test")
    assert r.status == 202 and r.body["status"] == "pending", r.body
    drain()
    (req,) = receiver.requests
    assert req.path == "/a"
    body = Webhook(ep["secret"]).verify(req.body, req.headers)
    assert body["type"] == "ping" and body["data"] == {} and body["id"] == r.body["event_id"]
    (d,) = hooks.deliveries(ep["id"])
    assert d["id"] == r.body["delivery_id"] and d["event_type"] == "ping" and d["status"] == "succeeded"


# ------------------------------------------------------------------------ retries
def test_retry_schedule_follows_the_configured_waits_then_fails(
    hooks: Hooks, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Short waits ride on SQS DelaySeconds, long ones (over 900 s) on the due index, which the
    sweep reads no earlier than 15 minutes ahead."""
    schedule(monkeypatch, "5,300,1800,7200")
    receiver.status = 500
    ep = hooks.create(receiver.url())
    queue, clock = MemoryQueue(), [T0]
    assert webhooks.fan_out("t1", [event(1)], queue=queue, now=T0) == 1
    while True:
        run(queue, clock)
        (d,) = hooks.deliveries(ep["id"])
        if d["status"] != "pending":
            break
        due = parse_iso(d["next_attempt_at"])
        assert webhooks.sweep_due(due - timedelta(minutes=16), queue=queue) == 0
        clock[0] = due - timedelta(minutes=10)
        assert webhooks.sweep_due(clock[0], queue=queue) == 1
        assert queue.jobs[0].delay == 600
    stamps = [int(r.headers["webhook-timestamp"]) for r in receiver.requests]
    assert stamps[0] == int(T0.timestamp())
    assert [b - a for a, b in zip(stamps, stamps[1:], strict=False)] == [5, 300, 1800, 7200]
    assert (d["status"], d["attempts"], d["last_status_code"], d["next_attempt_at"]) == (
        "failed",
        5,
        500,
        None,
    )
    assert d["last_error"] == "HTTP 500"
    assert no_due_entries()


def test_default_schedule_is_the_documented_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILSYNC_WEBHOOK_RETRY_SCHEDULE", raising=False)
    get_settings.cache_clear()
    assert get_settings().webhook_retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)


def test_failed_deliveries_are_listed_and_retried_by_hand(
    hooks: Hooks, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule(monkeypatch, "1")  # two attempts
    receiver.status = 500
    ep = hooks.create(receiver.url())
    queue, clock = MemoryQueue(), [utcnow()]
    webhooks.fan_out("t1", [event(1)], queue=queue, now=clock[0])
    assert run(queue, clock) == ["retry", "failed"]
    (failed,) = hooks.deliveries(ep["id"], "failed")
    assert (failed["attempts"], failed["last_status_code"]) == (2, 500)
    assert hooks.deliveries(ep["id"], "pending") == [] and hooks.deliveries(ep["id"], "succeeded") == []

    retry = f"/v1/webhook-endpoints/{ep['id']}/deliveries/{failed['id']}/retry"
    assert hooks.api.post(retry).status == 202
    drain()  # one attempt only: failed again
    (again,) = hooks.deliveries(ep["id"], "failed")
    assert again["attempts"] == 3 and len(receiver.requests) == 3

    receiver.status = 204
    assert hooks.api.post(retry).status == 202
    assert_error(hooks.api.post(retry), 409, "delivery_pending")  # its attempt is queued
    drain()
    (ok,) = hooks.deliveries(ep["id"], "succeeded")
    assert (ok["id"], ok["attempts"], ok["last_status_code"], ok["last_error"]) == (
        failed["id"],
        4,
        204,
        None,
    )
    Webhook(ep["secret"]).verify(receiver.requests[-1].body, receiver.requests[-1].headers)
    assert receiver.requests[-1].body == receiver.requests[0].body  # the very same event
    assert_error(
        hooks.api.post(f"/v1/webhook-endpoints/{ep['id']}/deliveries/dlv_nope/retry"), 404, "not_found"
    )


def test_an_endpoint_failing_for_five_days_is_disabled_and_enabled_again(
    hooks: Hooks, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    schedule(monkeypatch, "86400")
    receiver.status = 503
    ep = hooks.create(receiver.url())
    queue = MemoryQueue()

    def at(when: datetime, n: int) -> list[str]:
        webhooks.fan_out("t1", [event(n)], queue=queue, now=when)
        return run(queue, [when])

    assert at(T0, 1) == ["retry"]
    assert repo.get_endpoint("t1", ep["id"]).failing_since == iso(T0)  # type: ignore[union-attr]
    assert at(T0 + timedelta(days=4), 2) == ["retry"]
    assert repo.get_endpoint("t1", ep["id"]).failing_since == iso(T0)  # type: ignore[union-attr]
    assert hooks.get(ep["id"]).body["enabled"] is True
    assert at(T0 + timedelta(days=5, minutes=1), 3) == ["retry"]

    r = hooks.get(ep["id"])
    assert (r.body["enabled"], r.body["disabled_reason"]) == (False, "failing")
    assert hooks.deliveries(ep["id"], "pending") == []
    for d in hooks.deliveries(ep["id"], "failed"):
        assert "disabled" in d["last_error"], d
    assert webhooks.fan_out("t1", [event(4)], queue=queue) == 0  # no new deliveries

    r = hooks.api.patch(f"/v1/webhook-endpoints/{ep['id']}", {"enabled": True})
    assert (r.body["enabled"], r.body["disabled_reason"]) == (True, None), r.body
    assert repo.get_endpoint("t1", ep["id"]).failing_since is None  # type: ignore[union-attr]
    receiver.status = 200
    assert at(T0 + timedelta(days=6), 5) == ["succeeded"]


def test_a_lost_job_is_found_again_by_the_sweep(hooks: Hooks, receiver: Receiver) -> None:
    """The queue refused the first attempt: it is written down, due at once, and the next
    sweep sends it (once: the sweep moves its due entry on)."""
    ep = hooks.create(receiver.url())
    now = utcnow()
    assert webhooks.fan_out("t1", [event(1)], queue=MemoryQueue(accept=False), now=now) == 1
    assert [d["status"] for d in hooks.deliveries(ep["id"])] == ["pending"]
    queue = MemoryQueue()
    assert webhooks.sweep_due(now + timedelta(minutes=1), queue=queue) == 1
    assert webhooks.sweep_due(now + timedelta(minutes=2), queue=queue) == 0
    assert run(queue, [now + timedelta(minutes=2)]) == ["succeeded"]
    assert receiver.requests[0].headers["webhook-id"] == event(1).id
    assert hooks.deliveries(ep["id"])[0]["status"] == "succeeded" and no_due_entries()


# ------------------------------------------------------------------------ delivery
def test_no_redirect_is_followed(hooks: Hooks, receiver: Receiver) -> None:
    receiver.status, receiver.location = 302, receiver.url("/elsewhere")
    ep = hooks.create(receiver.url())
    webhooks.fan_out("t1", [event(1)])
    drain()
    assert [r.path for r in receiver.requests] == ["/hook"]
    (d,) = hooks.deliveries(ep["id"], "pending")
    assert (d["attempts"], d["last_status_code"]) == (1, 302)
    assert "redirects are not followed" in d["last_error"]


def test_a_slow_endpoint_does_not_delay_another_in_the_same_batch(hooks: Hooks) -> None:
    slow, fast = Receiver(), Receiver()
    try:
        slow.delay = 3.0
        hooks.create(slow.url())
        ep_fast = hooks.create(fast.url())
        assert webhooks.fan_out("t1", [event(1)]) == 2
        started = time.monotonic()
        drain()
        assert time.monotonic() - started >= 3.0  # the batch waited for the slow one …
        assert fast.requests[0].at - started < 2.0  # … but the fast one did not
        assert hooks.deliveries(ep_fast["id"], "succeeded")
    finally:
        slow.close()
        fast.close()


def test_host_guard_again_at_delivery_after_resolution(
    hooks: Hooks, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that answered a public address at registration and answers loopback now (DNS
    rebinding) is refused after resolution; so is an answer with one private address."""
    private_hosts(monkeypatch, False)
    monkeypatch.setattr(webhook_endpoints, "RESOLVER", answering("93.184.216.34"))
    ep = hooks.create(f"https://hooks.example.test:{receiver.port}/hook")
    queue = MemoryQueue()
    webhooks.fan_out("t1", [event(1), event(2)], queue=queue)
    for job, answer in zip(
        list(queue.jobs), [answering("127.0.0.1"), answering("93.184.216.34", "10.0.0.1")], strict=True
    ):
        queue.jobs.clear()
        assert (
            webhooks.deliver_job(job.body(), queue=queue, sender=HttpWebhookSender(resolver=answer))
            == "retry"
        )
    for d in hooks.deliveries(ep["id"]):
        assert d["attempts"] == 1 and d["last_status_code"] is None
        assert d["last_error"].startswith(
            "host_not_allowed: hooks.example.test resolves to a non-public address"
        )
    assert receiver.requests == []


def test_tls_is_verified_against_the_host_name(
    hooks: Hooks, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = TestCA(tmp_path / "ca")
    tls = Receiver(tls=ca.issue("hooks", dns=("hooks.test",)))
    try:
        names = answering("127.0.0.1")  # every name is this machine: the certificate decides
        monkeypatch.setattr(webhook_endpoints, "RESOLVER", names)
        sender = HttpWebhookSender(resolver=names)
        ep = hooks.create(f"https://hooks.test:{tls.port}/hook")
        queue, clock = MemoryQueue(), [utcnow()]
        webhooks.fan_out("t1", [event(1)], queue=queue, now=clock[0])
        assert run(queue, clock, sender)[:1] == ["retry"]  # the default CA bundle does not know it
        (d,) = hooks.deliveries(ep["id"])
        assert d["last_error"].startswith("tls_error") and tls.requests == []

        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca.bundle))  # the CAs requests would trust
        get_settings.cache_clear()
        clock[0] = utcnow()  # signatures are checked against the receiver's clock
        webhooks.fan_out("t1", [event(2)], queue=queue, now=clock[0])
        assert run(queue, clock, sender) == ["succeeded"]
        assert tls.requests[0].headers["host"] == f"hooks.test:{tls.port}"
        Webhook(ep["secret"]).verify(tls.requests[0].body, tls.requests[0].headers)

        other = hooks.create(f"https://other.test:{tls.port}/hook")  # trusted CA, wrong name
        webhooks.fan_out("t1", [event(3)], queue=queue, now=clock[0])
        run(queue, clock, sender)
        (d,) = hooks.deliveries(other["id"])
        assert d["status"] == "pending" and d["last_error"].startswith("tls_error")
        assert [r.headers["host"].split(":")[0] for r in tls.requests] == ["hooks.test", "hooks.test"]
    finally:
        tls.close()


# ------------------------------------------------------------------ isolation, dupes
def test_tenants_never_see_or_reach_each_others_endpoints(hooks: Hooks, receiver: Receiver) -> None:
    mine = hooks.create(receiver.url("/a"))
    other_receiver = Receiver()
    try:
        other = Hooks(ApiClient("key-t2", None))
        theirs = other.create(other_receiver.url("/b"))
        base = f"/v1/webhook-endpoints/{mine['id']}"
        for method, path, body in [
            ("GET", base, None),
            ("PATCH", base, {"description": "mine now"}),
            ("DELETE", base, None),
            ("GET", f"{base}/deliveries", None),
            ("POST", f"{base}/rotate-secret", None),
            ("POST", f"{base}/test", None),
            (
                "POST",
                f"{base}/deliveries/{wh.delivery_id(mine['id'], event(1).id, event(1).created_at)}/retry",
                None,
            ),
        ]:
            assert_error(other.api.call(method, path, body), 404, "not_found")
        assert [e["id"] for e in other.api.get("/v1/webhook-endpoints").body["items"]] == [theirs["id"]]

        assert webhooks.fan_out("t1", [event(1)]) == 1
        assert webhooks.fan_out("t1", [event(2, tenant_id="t2")]) == 0  # another tenant's event
        drain()
        assert [r.path for r in receiver.requests] == ["/a"] and other_receiver.requests == []
        assert hooks.get(mine["id"]).body["description"] == "CRM"
    finally:
        other_receiver.close()


def test_fan_out_twice_creates_no_second_delivery(hooks: Hooks, receiver: Receiver) -> None:
    """A redelivered stream batch: a delivery already recorded is not queued again. One queued
    twice before its first answer is sent at least once, always under its event's id, and
    recorded once."""
    ep = hooks.create(receiver.url())
    events = [event(1), event(2)]
    assert webhooks.fan_out("t1", events) == 2
    assert webhooks.fan_out("t1", events) == 2  # redelivered before the first jobs ran
    drain()
    got = [r.headers["webhook-id"] for r in receiver.requests]
    assert set(got) == {e.id for e in events} and len(got) <= 4
    assert webhooks.fan_out("t1", events) == 0  # recorded now: nothing is queued
    assert drain() == 0 and len(receiver.requests) == len(got)
    assert sorted(d["event_id"] for d in hooks.deliveries(ep["id"])) == sorted(e.id for e in events)


def test_a_duplicated_job_sends_once(hooks: Hooks, receiver: Receiver) -> None:
    """SQS may deliver a message twice. A retry job claims its attempt, so it sends once even
    when two copies run at the same moment; a first job sends once when the copies come one
    after the other, and at least once (the same webhook-id, one record) when they overlap."""
    ep = hooks.create(receiver.url())
    queue = MemoryQueue()
    webhooks.fan_out("t1", [event(1)], queue=queue)
    (first,) = queue.jobs
    assert [webhooks.deliver_job(first.body()) for _ in range(2)] == ["succeeded", "stale"]
    assert len(receiver.requests) == 1

    def at_once(job: wh.Job) -> list[str]:
        outcomes: list[str] = []
        threads = [
            threading.Thread(target=lambda: outcomes.append(webhooks.deliver_job(job.body())))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sorted(outcomes)

    # Two copies of a first job in flight at once: both may POST; one record.
    receiver.delay = 0.5
    queue = MemoryQueue()
    webhooks.fan_out("t1", [event(2)], queue=queue)
    outcomes = at_once(queue.jobs[0])
    assert outcomes == ["stale", "succeeded"]
    assert {r.headers["webhook-id"] for r in receiver.requests[1:]} == {event(2).id}
    assert [d["event_id"] for d in hooks.deliveries(ep["id"])].count(event(2).id) == 1

    # Two copies of a retry job in flight at once: one claim wins, one POST.
    receiver.status, receiver.delay = 500, 0.0
    queue = MemoryQueue()
    webhooks.fan_out("t1", [event(3)], queue=queue)
    assert webhooks.deliver_job(queue.pop().body(), queue=queue) == "retry"
    (retry,) = queue.jobs
    assert retry.attempt == 1 and retry.event is None
    receiver.status, receiver.delay = 200, 0.5
    before = len(receiver.requests)
    assert at_once(retry) == ["stale", "succeeded"] and len(receiver.requests) == before + 1


def test_a_first_job_that_comes_back_is_written_down_before_it_is_tried_again(
    hooks: Hooks, receiver: Receiver
) -> None:
    """A first attempt whose worker died (the message is received a second time) is stored
    pending with a due entry before it is tried again, so the sweep finds it even if the
    queue gives up on the message; the attempt itself is made once."""
    ep = hooks.create(receiver.url())
    queue = MemoryQueue()
    now = utcnow()
    webhooks.fan_out("t1", [event(1)], queue=queue, positions=None, now=now)
    job = queue.pop()
    receiver.status = 500
    assert webhooks.deliver_job(job.body(), queue=queue, received=2, now=now) == "retry"
    (d,) = hooks.deliveries(ep["id"])
    assert (d["status"], d["attempts"], d["last_status_code"]) == ("pending", 1, 500)
    assert webhooks.deliver_job(job.body(), queue=queue, received=3, now=now) == "stale"
    assert len(receiver.requests) == 1


def test_a_retry_sends_the_very_same_body_read_back_from_the_feed(
    hooks: Hooks, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record does not copy the event: a retry reads it back from the tenant's feed by
    its number and sends the same bytes; an event gone from the feed ends the delivery."""
    from mailsync.store import keys
    from mailsync.store.events import EventFeed
    from mailsync.store.models import EventItem, WebhookDeliveryItem

    schedule(monkeypatch, "5")
    ep = hooks.create(receiver.url())
    events = [event(1), event(2), event(3)]
    positions = EventFeed("t1").append(events)
    queue = MemoryQueue()
    receiver.status = 503
    assert webhooks.fan_out("t1", events, positions=positions, queue=queue, now=T0) == 3
    first = [webhooks.deliver_job(queue.pop().body(), queue=queue, now=T0) for _ in range(3)]
    assert first == ["retry"] * 3 and len(queue.jobs) == 3
    stored = list(WebhookDeliveryItem.query(keys.webhook_deliveries("t1", ep["id"])))
    assert sorted(int(i.event_seq) for i in stored) == sorted(positions.values())
    assert all(i.event is None for i in stored)  # the body stays in the feed
    assert all(len(json.dumps(i.serialize())) < 1024 for i in stored)  # one write unit a copy
    EventItem(keys.events("t1"), keys.event_sk(positions[event(3).id])).delete()  # expired
    receiver.status = 200
    assert run(queue, [T0]) == ["succeeded", "succeeded", "failed"]
    by_event = {d["event_id"]: d for d in hooks.deliveries(ep["id"])}
    assert by_event[event(3).id]["last_error"] == "the event has expired"
    sent = [r.body for r in receiver.requests]
    assert len(sent) == 5 and sent[3:] == sent[:2]


def test_tenant_purge_removes_endpoints_and_deliveries(tenant: dict[str, str], receiver: Receiver) -> None:
    gone = "t_webhooks_gone_4e1d"
    tenants.create_tenant(gone, "Leaving", "key-webhooks-gone", "2026-01-01T00:00:00Z")
    leaving = Hooks(ApiClient("key-webhooks-gone", None))
    ep = leaving.create(receiver.url())
    webhooks.fan_out(gone, [event(1, tenant_id=gone), event(2, tenant_id=gone)])
    drain()
    assert len(leaving.deliveries(ep["id"])) == 2
    kept = Hooks(ApiClient(tenant["api_key"], None)).create(receiver.url("/kept"))
    lifecycle.delete_tenant(gone, gone)
    assert lifecycle.purge_tenant_step(gone)["status"] == "purged"
    assert naming([gone]) == []
    assert repo.get_endpoint("t1", kept["id"]) is not None


def test_deleting_an_endpoint_deletes_its_deliveries(hooks: Hooks, receiver: Receiver) -> None:
    ep = hooks.create(receiver.url())
    webhooks.fan_out("t1", [event(1)])
    drain()
    assert hooks.api.delete(f"/v1/webhook-endpoints/{ep['id']}").status == 204
    assert naming([ep["id"]]) == []


def test_the_readme_receiver_verifies_our_deliveries(hooks: Hooks) -> None:
    """The README's ten-line receiver, run as written (its secret and port filled in): it
    accepts our deliveries (204) and refuses a forged one (400)."""
    import http.client
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    code = re.search(r"<!-- webhook-receiver -->\n```python\n(.*?)```", readme, re.S)
    assert code, "the README has no receiver snippet"
    lines = code.group(1).strip().splitlines()
    assert lines[-1] == 'HTTPServer(("", 8080), Receiver).serve_forever()'
    ep = hooks.create("http://127.0.0.1:9/")  # its URL follows once the receiver listens
    namespace: dict[str, Any] = {}
    exec("\n".join(lines[:-1]).replace('"whsec_..."', repr(ep["secret"])), namespace)  # noqa: S102
    from http.server import HTTPServer

    server = HTTPServer(("127.0.0.1", 0), namespace["Receiver"])
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        assert hooks.api.patch(f"/v1/webhook-endpoints/{ep['id']}", {"url": url}).status == 200
        webhooks.fan_out("t1", [event(1)])
        drain()
        (d,) = hooks.deliveries(ep["id"])
        assert (d["status"], d["last_status_code"]) == ("succeeded", 204)

        conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
        forged = b'{"id":"evt_x","type":"message.created","created_at":"","data":{}}'
        headers = {
            "webhook-id": "evt_x",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1,AAAA",
        }
        conn.request("POST", "/", body=forged, headers=headers)
        assert conn.getresponse().status == 400
    finally:
        server.shutdown()
        server.server_close()


def test_an_event_delivered_at_once_costs_a_few_write_units(hooks: Hooks, receiver: Receiver) -> None:
    """Issue 15's cost rule, metered at the botocore level (bench/meter.py): an event in the
    feed plus its delivery to one endpoint that answers at once is at most 4 write units (the
    feed's event item, a share of its counter, the delivery record and its status-index entry)."""
    from bench.meter import Meter
    from mailsync.store.events import EventFeed

    hooks.create(receiver.url())
    events = [event(i) for i in range(1, 11)]
    meter = Meter().install()
    try:
        before = meter.snap()
        positions = EventFeed("t1").append(events)
        assert webhooks.fan_out("t1", events, positions=positions) == 10
        drain()
        spent = meter.snap() - before
    finally:
        meter.uninstall()
    assert len(receiver.requests) == 10
    assert spent.wcu / len(events) <= 4, spent.as_dict()
    assert spent.ops["PutItem"] == 20 and spent.ops["UpdateItem"] == 1, spent.ops
