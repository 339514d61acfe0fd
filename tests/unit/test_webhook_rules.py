"""The pure rules of webhook delivery (domain/webhooks.py) and its settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from mailsync.config import Settings
from mailsync.domain import webhooks as wh

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "allow_http", "target"),
    [
        ("https://hooks.example/x?a=1", False, ("https", "hooks.example", 443, "/x?a=1", "hooks.example")),
        ("https://hooks.example:8443", False, ("https", "hooks.example", 8443, "/", "hooks.example:8443")),
        ("https://[2001:db8::1]/h", False, ("https", "2001:db8::1", 443, "/h", "[2001:db8::1]")),
        ("http://127.0.0.1:9000/h", True, ("http", "127.0.0.1", 9000, "/h", "127.0.0.1:9000")),
    ],
)
def test_parse_url(url: str, allow_http: bool, target: tuple[object, ...]) -> None:
    t = wh.parse_url(url, allow_http=allow_http)
    assert (t.scheme, t.host, t.port, t.target, t.host_header) == target


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example/x",  # plain http without private hosts
        "ftp://hooks.example/x",
        "https:///x",
        "https://user:pw@hooks.example/x",
        "https://hooks.example/x#frag",
        "https://hooks.example:99999/x",
        "https://hooks.example/" + "x" * wh.URL_MAX,
    ],
)
def test_parse_url_refuses(url: str) -> None:
    with pytest.raises(wh.InvalidUrl):
        wh.parse_url(url, allow_http=False)


def test_next_wait_follows_the_schedule_then_stops() -> None:
    schedule = (5, 300, 1800)
    waits = [wh.next_wait(n, schedule, len(schedule) + 1) for n in range(1, 5)]
    assert waits == [5, 300, 1800, None]
    assert wh.next_wait(8, schedule, 9) is None  # a manual retry past the schedule: one attempt
    assert wh.next_wait(1, schedule, 1) is None


def test_disable_after_five_days_of_failures() -> None:
    since = datetime(2026, 3, 1, tzinfo=UTC)
    assert not wh.should_disable(None, since + timedelta(days=30))
    assert not wh.should_disable(since, since + timedelta(days=5) - timedelta(seconds=1))
    assert wh.should_disable(since, since + timedelta(days=5))


def test_ids_and_secrets() -> None:
    at = "2026-03-02T08:00:00.123Z"
    assert (
        wh.delivery_id("we_1", "evt_1", at)
        == wh.delivery_id("we_1", "evt_1", at)
        != wh.delivery_id("we_2", "evt_1", at)
    )
    # Ids sort by the event's time (newest first is the partition read backwards), to the ms.
    ids = [wh.delivery_id("we_1", f"evt_{i}", t) for i, t in enumerate(
        ["2026-03-02T08:00:00Z", "2026-03-02T08:00:00.001Z", "2026-03-02T08:00:01.000Z", "2026-03-03T00:00:00Z"]
    )]  # fmt: skip
    assert ids == sorted(ids) and len(set(ids)) == 4
    secret = wh.new_secret()
    assert secret.startswith("whsec_") and secret != wh.new_secret()
    job = wh.Job("t1", "we_1", "dlv_1", 3, delay=60)
    assert wh.Job.from_body(job.body()) == wh.Job("t1", "we_1", "dlv_1", 3)
    first = wh.Job("t1", "we_1", "dlv_1", 0, event={"id": "evt_1", "type": "ping", "data": {}}, seq=7)
    assert wh.Job.from_body(first.body()) == first
    assert len(wh.error_text("x" * 5000)) == wh.ERROR_MAX and wh.error_text("short") == "short"


def test_retry_schedule_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILSYNC_WEBHOOK_RETRY_SCHEDULE", " 1, 2,30 ")
    assert Settings().webhook_retry_schedule == (1, 2, 30)
    for bad in ("", "5,x", "0", "86401", ",".join(["1"] * 21)):
        monkeypatch.setenv("MAILSYNC_WEBHOOK_RETRY_SCHEDULE", bad)
        with pytest.raises(ValidationError):
            Settings()
    monkeypatch.delenv("MAILSYNC_WEBHOOK_RETRY_SCHEDULE")
    assert Settings().webhook_retry_schedule == (5, 300, 1800, 7200, 18000, 36000, 36000)
