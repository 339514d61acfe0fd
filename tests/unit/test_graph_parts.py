"""Pure parts of the Graph provider: Retry-After, timestamps, expiry detection, error mapping,
delta rows -> changes (with the ``known`` hook), per-mailbox limits, and MsalTokenSource's
use of msal (a stub application, no network)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from mailsync.domain.ports import AuthFailed, ProviderError, Remove, SetFlags, Upsert
from mailsync.providers.graph import GraphProvider, MsalTokenSource, budget_for, semaphore_for
from mailsync.providers.graph.client import _api_error, _error_info
from mailsync.providers.graph.sync import _is_expired, _parse_dt
from mailsync.providers.http import retry_after as _retry_after
from tests.fakes.graph import _mime_from_json, graph_error

pytestmark = pytest.mark.unit

SINCE = datetime(2026, 1, 1, tzinfo=UTC)


def test_retry_after_seconds_and_http_date():
    assert _retry_after("7") == 7.0 and _retry_after("0") == 0.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 <= (_retry_after(later) or 0) <= 31


def test_graph_timestamps():
    assert _parse_dt("2026-01-02T03:04:05Z") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert _parse_dt("2026-01-02T03:04:05.1234567Z") == datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert _parse_dt("2026-01-02T03:04:05") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert _parse_dt("") is None and _parse_dt("garbage") is None


def test_expired_delta_detection_and_error_mapping():
    assert _is_expired(410, "")
    assert _is_expired(400, "syncStateNotFound") and _is_expired(400, "SyncStateNotFound")
    assert _is_expired(400, "resyncRequired")
    assert not _is_expired(400, "BadRequest") and not _is_expired(404, "ErrorItemNotFound")
    body = graph_error("ErrorItemNotFound", "The specified object was not found in the store.")
    assert _error_info(body) == ("ErrorItemNotFound", "The specified object was not found in the store.")
    assert _error_info("plain text") == ("", "plain text")
    assert isinstance(_api_error(401, "InvalidAuthenticationToken", "x"), AuthFailed)
    err = _api_error(404, "ErrorItemNotFound", "gone")
    assert not isinstance(err, AuthFailed) and getattr(err, "status", None) == 404


class StubProvider(GraphProvider):
    def __init__(self, mime: dict[str, bytes], **kw: Any) -> None:
        super().__init__(lambda: "token", user="u@example.com", **kw)
        self.mime = mime
        self.fetched: list[str] = []

    def fetch_mime(self, ids: list[str]) -> dict[str, bytes]:
        self.fetched.extend(ids)
        return {i: self.mime[i] for i in ids if i in self.mime}


def row(
    mid: str, *, read: bool = False, when: str = "2026-01-05T10:00:00Z", conv: str = "c1"
) -> dict[str, Any]:
    return {"id": mid, "isRead": read, "receivedDateTime": when, "conversationId": conv}


def test_rows_become_changes_and_known_ids_skip_the_mime():
    p = StubProvider(
        {"new": b"Subject: n\r\n\r\nx", "moved-in": b"Subject: m\r\n\r\nx"},
        known=lambda folder, refs: {"seen"} & set(refs),
    )
    rows = [
        row("new"),
        row("seen", read=True),
        {"id": "gone", "@removed": {"reason": "deleted"}},
        {"id": "away", "@removed": {"reason": "changed"}},
        row("old", when="2025-12-01T00:00:00Z"),
        row("moved-in", conv="c2"),
        row("vanished"),  # deleted before its MIME was fetched
    ]
    out = p._resolve("Inbox", rows, SINCE, initial=False)
    assert [c for c in out if isinstance(c, Remove)] == [Remove("Inbox", "gone"), Remove("Inbox", "away")]
    assert [c for c in out if isinstance(c, SetFlags)] == [SetFlags("Inbox", "seen", False)]
    ups = {c.ref: c for c in out if isinstance(c, Upsert)}
    assert set(ups) == {"new", "moved-in"}
    assert ups["new"].unread and ups["moved-in"].thread_hint == "c2"
    assert ups["new"].internal_date == datetime(2026, 1, 5, 10, tzinfo=UTC)
    assert p.fetched == ["new", "moved-in", "vanished"]  # not "seen", not "old"


def test_initial_rounds_ignore_the_known_hook():
    calls: list[Any] = []

    def known(folder: str, refs: list[str]) -> set[str]:
        calls.append(refs)
        return set(refs)

    p = StubProvider({"a": b"Subject: a\r\n\r\nx"}, known=known)
    out = p._resolve("Inbox", [row("a")], SINCE, initial=True)
    assert [type(c) for c in out] == [Upsert] and calls == []


def test_limits_are_shared_per_mailbox():
    assert budget_for("Alice@Contoso.test") is budget_for("alice@contoso.test")
    assert budget_for("alice@contoso.test").limit == 9_000 and budget_for("alice@contoso.test").window == 600
    sem = semaphore_for("ALICE@contoso.test")
    assert sem is semaphore_for("alice@contoso.test")
    for _ in range(4):
        assert sem.acquire(blocking=False)
    assert not sem.acquire(blocking=False)  # a fifth request waits
    for _ in range(4):
        sem.release()
    p = StubProvider({}, api_base="https://graph.example/v1.0")
    assert p._same_origin("https://graph.example/v1.0/me/mailFolders('x')/messages/delta?$deltatoken=1")
    assert not p._same_origin("https://evil.example/v1.0/me")


class StubApp:
    def __init__(self, result: Any, accounts: list[dict[str, Any]] | None = None) -> None:
        self.result = result
        self.accounts = [{"home_account_id": "uid.utid", "username": "a@x"}] if accounts is None else accounts
        self.calls: list[tuple[list[str], bool]] = []

    def get_accounts(self, username: str | None = None) -> list[dict[str, Any]]:
        return self.accounts

    def acquire_token_silent_with_error(
        self, scopes: list[str], account: Any, force_refresh: bool = False
    ) -> Any:
        self.calls.append((scopes, force_refresh))
        return self.result


def source_with(app: StubApp) -> MsalTokenSource:
    s = MsalTokenSource("cid", "secret", "https://login.microsoftonline.com/organizations", None)
    s._app = app
    return s


def test_token_source_maps_msal_results():
    app = StubApp({"access_token": "at", "token_type": "Bearer"})
    s = source_with(app)
    assert s() == "at" and app.calls == [(["Mail.ReadWrite", "Mail.Send", "User.Read"], False)]
    s.invalidate()
    assert s() == "at" and app.calls[-1][1] is True
    assert s() == "at" and app.calls[-1][1] is False  # force_refresh only once
    for error in ("invalid_grant", "interaction_required"):
        with pytest.raises(AuthFailed, match=error):
            source_with(StubApp({"error": error, "error_description": "AADSTS70008: expired\r\nTrace"}))()
    with pytest.raises(ProviderError) as exc:
        source_with(StubApp({"error": "temporarily_unavailable"}))()
    assert not isinstance(exc.value, AuthFailed)
    with pytest.raises(AuthFailed):
        source_with(StubApp(None))()
    with pytest.raises(AuthFailed):
        source_with(StubApp({"access_token": "x"}, accounts=[]))()


def test_token_source_turns_instance_discovery_off_for_unknown_hosts(monkeypatch):
    import msal

    seen: list[dict[str, Any]] = []

    class App:
        def __init__(self, client_id: str, **kw: Any) -> None:
            seen.append(kw)

    monkeypatch.setattr(msal, "ConfidentialClientApplication", App)
    MsalTokenSource("cid", "s", "https://127.0.0.1:8443/organizations", None, http_client="session").app()
    MsalTokenSource("cid", "s", "https://login.microsoftonline.com/organizations", None).app()
    assert seen[0]["instance_discovery"] is False and seen[0]["http_client"] == "session"
    assert "instance_discovery" not in seen[1] and "http_client" not in seen[1]
    assert seen[0]["authority"] == "https://127.0.0.1:8443/organizations"


def test_fake_builds_mime_from_a_json_message():
    from tests.fakes.graph import Mailbox

    raw = _mime_from_json(
        {
            "subject": "Hi",
            "body": {"contentType": "HTML", "content": "<p>x</p>"},
            "toRecipients": [{"emailAddress": {"address": "b@example.com", "name": "B"}}],
            "internetMessageHeaders": [{"name": "In-Reply-To", "value": "<a@example.com>"}],
        },
        Mailbox("a@contoso.test", "oid", "tid", "A"),
    )
    assert b"To: B <b@example.com>" in raw and b"In-Reply-To: <a@example.com>" in raw
    assert b"text/html" in raw and b"From: A <a@contoso.test>" in raw
