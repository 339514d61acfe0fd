"""Pure parts of the Gmail provider: quota budget, Retry-After, history records -> net changes,
and the batch wire format (round trip through the fake's request handler, no sockets)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests

from mailsync.providers.gmail import budget_for
from mailsync.providers.gmail.client import _batch_body, _parse_batch_response
from mailsync.providers.gmail.sync import _apply_record
from mailsync.providers.http import QuotaBudget
from mailsync.providers.http import retry_after as _retry_after
from tests.fakes.gmail import FakeGoogle

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_budget_sleeps_until_the_oldest_spend_leaves_the_window():
    c = Clock()
    b = QuotaBudget(10, clock=c, sleep=c.sleep)
    b.spend(6)
    c.now += 20
    b.spend(4)
    assert c.slept == [] and b.used == 10
    b.spend(5)  # must wait until the first 6 units are 60 s old
    assert c.slept == [pytest.approx(40.0)]
    assert b.used == 9 and b.total == 15


def test_budget_caps_a_single_spend_at_the_limit_and_is_shared_per_user():
    c = Clock()
    b = QuotaBudget(10, clock=c, sleep=c.sleep)
    b.spend(50)
    assert b.used == 10
    assert budget_for("Alice@Example.com") is budget_for("alice@example.com")
    with pytest.raises(ValueError):
        QuotaBudget(0)


def test_retry_after_seconds_and_http_date():
    assert _retry_after("7") == 7.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (_retry_after(later) or 0) <= 31


def rec(rid: int, **kinds: list[tuple[str, list[str], list[str] | None]]) -> dict:
    out: dict = {"id": str(rid), "messages": []}
    for key, entries in kinds.items():
        out[key] = []
        for mid, labels, changed in entries:
            e: dict = {"message": {"id": mid, "threadId": mid, "labelIds": labels}}
            if changed is not None:
                e["labelIds"] = changed
            out[key].append(e)
    return out


def net(records: list[dict], label: str) -> tuple[dict[str, str], dict[str, bool]]:
    state: dict[str, str] = {}
    flags: dict[str, bool] = {}
    for r in records:
        _apply_record(r, label, state, flags)
    return state, flags


def test_history_records_net_effect_per_label():
    records = [
        rec(1, messagesAdded=[("a", ["INBOX", "UNREAD"], None)]),
        rec(2, messagesAdded=[("b", ["Label_1"], None)]),  # another label
        rec(3, labelsAdded=[("c", ["INBOX", "Label_1"], ["Label_1"])]),  # c gains Label_1 (not INBOX news)
        rec(4, labelsRemoved=[("d", ["UNREAD"], ["INBOX"])]),  # archive
        rec(5, labelsAdded=[("e", ["INBOX", "TRASH"], ["TRASH"])]),  # trash
        rec(6, labelsRemoved=[("f", ["INBOX"], ["UNREAD"])]),  # read
        rec(7, messagesDeleted=[("g", [], None)]),
        rec(8, labelsRemoved=[("a", ["UNREAD"], ["INBOX"])]),  # a added then archived
        rec(9, labelsRemoved=[("h", ["INBOX"], ["TRASH"])]),  # untrash
        rec(10, messagesAdded=[("i", ["DRAFT"], None)]),
    ]
    state, flags = net(records, "INBOX")
    # archived or trashed: "moved" (message.deleted says moved_to_unsynced_folder); deleted: "remove"
    assert state == {"a": "moved", "d": "moved", "e": "moved", "g": "remove", "h": "add"}
    assert flags == {"f": False}
    state, flags = net(records, "Label_1")
    assert state == {"b": "add", "c": "add", "e": "moved", "g": "remove"}
    assert flags == {}


def test_unread_flags_follow_the_last_record():
    records = [
        rec(1, labelsRemoved=[("a", ["INBOX"], ["UNREAD"])]),
        rec(2, labelsAdded=[("a", ["INBOX", "UNREAD"], ["UNREAD"])]),
    ]
    assert net(records, "INBOX") == ({}, {"a": True})
    assert net(records, "SENT") == ({}, {})


def test_batch_wire_format_round_trip():
    g = FakeGoogle()  # not started: its request handler is called directly
    tokens = g.issue_tokens("alice@acme.test")
    mid = g.deliver("alice@acme.test", b"Subject: hi\r\nMessage-ID: <x@y>\r\n\r\nbody\r\n")
    body = _batch_body(
        "batch_x",
        [
            (0, "GET", f"messages/{mid}?format=raw", None),
            (1, "GET", "messages/nope?format=minimal", None),
            (2, "POST", f"messages/{mid}/modify", {"removeLabelIds": ["UNREAD"]}),
        ],
    )
    resp = g.handle(
        "POST",
        "/batch/gmail/v1",
        {
            "authorization": f"Bearer {tokens['access_token']}",
            "content-type": "multipart/mixed; boundary=batch_x",
        },
        body,
    )
    assert resp.status == 200
    r = requests.Response()
    r.status_code = resp.status
    r._content = resp.body
    r.headers.update(resp.headers)
    parts = _parse_batch_response(r)
    assert set(parts) == {0, 1, 2}
    assert parts[0].status == 200 and parts[0].body["id"] == mid and parts[0].body["raw"]
    assert parts[1].status == 404 and parts[1].body["error"]["errors"][0]["reason"] == "notFound"
    assert parts[1].body["error"]["status"] == "NOT_FOUND"
    assert parts[2].status == 200 and "UNREAD" not in parts[2].body["labelIds"]
    assert g.quota["alice@acme.test"] == 15 and g.batch_sizes == [3]
