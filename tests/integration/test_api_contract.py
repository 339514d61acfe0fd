"""The public HTTP contract, through the real API handler (in-process) against moto and Dovecot.

Auth matrix, tenant/user isolation, account creation errors, state changes, paging
and cursors, message/thread views (sanitised HTML, attachments, headers), credentials
never leaving the service, and a robustness sweep: bad input is a 4xx with a JSON
``code``, never a 5xx.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from mailsync.config import get_settings
from mailsync.observability import logger as service_logger
from mailsync.usecases.sync_account import sync_account
from mailsync_local.runner import LambdaContext, to_event
from tests.support.api import ApiClient, Resp
from tests.support.dovecot import free_port, make_mail

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


# ------------------------------------------------------------------ helpers
def server(dovecot: Any, user: str, password: str, **over: Any) -> dict[str, Any]:
    return {
        "host": dovecot.host,
        "port": dovecot.port,
        "security": "none",
        "username": user,
        "password": password,
        **over,
    }


def account_body(dovecot: Any, imap_user: tuple[str, str], **extra: Any) -> dict[str, Any]:
    user, pw = imap_user
    s = server(dovecot, user, pw)
    return {"email": f"{user}@example.test", "imap": s, "smtp": dict(s), **extra}


def assert_error(r: Resp, status: int, code: str | None = None) -> None:
    assert r.status == status, (r.status, r.body)
    assert isinstance(r.body, dict) and isinstance(r.body.get("code"), str), r.body
    assert isinstance(r.body.get("message"), str), r.body
    if code is not None:
        assert r.body["code"] == code, r.body


def raw_call(
    client: ApiClient, method: str, path: str, raw: bytes, headers: dict[str, str] | None = None
) -> Resp:
    """Call the handler with an arbitrary body (not necessarily JSON)."""
    h = {"Content-Type": "application/json", "Authorization": f"Bearer {client.api_key}"}
    if client.user is not None:
        h["X-User-Id"] = client.user
    h.update(headers or {})
    out = client.handler(to_event(method, path, h, raw, "127.0.0.1"), LambdaContext("api"))
    text = out.get("body") or ""
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = text
    return Resp(int(out["statusCode"]), body, out.get("headers") or {})


def pages(client: ApiClient, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        r = client.get(path, limit=limit, cursor=cursor, **params)
        assert r.status == 200, r.body
        out.append(r.body)
        cursor = r.body["next_cursor"]
        if cursor is None:
            return out
        assert len(out) < 20


def iso_utc(s: str) -> datetime:
    d = datetime.fromisoformat(s.replace("Z", "+00:00"))
    assert d.utcoffset() == timedelta(0), s
    return d


# ----------------------------------------------------------------- fixtures
@pytest.fixture
def api(tenant: dict[str, str]) -> ApiClient:
    return ApiClient("key-t1", "alice")


@pytest.fixture
def bob(api: ApiClient) -> ApiClient:
    return api.as_user("bob")


@pytest.fixture
def other_tenant(api: ApiClient) -> ApiClient:
    # Same user id, other tenant.
    return api.as_user("alice", "key-t2")


@pytest.fixture
def acc(api: ApiClient, dovecot: Any, imap_user: tuple[str, str]) -> dict[str, Any]:
    r = api.post("/v1/accounts", account_body(dovecot, imap_user, backfill_days=2))
    assert r.status == 201, r.body
    return r.body


@pytest.fixture
def mailbox(acc: dict[str, Any], dovecot: Any, imap_user: tuple[str, str]) -> dict[str, Any]:
    """A synced account with a three-mail thread and one unrelated mail."""
    user, _ = imap_user
    base = NOW - timedelta(hours=3)
    first = make_mail(
        "Angebot",
        message_id="offer@example.com",
        date=base,
        from_="Carol <carol@example.com>",
        to="Alice <alice@example.test>",
    )
    second = make_mail(
        "Re: Angebot",
        message_id="offer-re1@example.com",
        in_reply_to="offer@example.com",
        references="offer@example.com",
        date=base + timedelta(minutes=10),
        from_="Alice <alice@example.test>",
        to="Carol <carol@example.com>",
    )
    third = make_mail(
        "Re: Angebot",
        message_id="offer-re2@example.com",
        in_reply_to="offer-re1@example.com",
        references=["offer@example.com", "offer-re1@example.com"],
        date=base + timedelta(minutes=20),
        from_="Carol <carol@example.com>",
        to="Alice <alice@example.test>",
        cc="Dave <dave@example.com>",
    )
    other = make_mail("Unrelated", message_id="other@example.com", date=base + timedelta(minutes=30))
    # Appended out of order: the thread must be ordered by date, not by arrival.
    dovecot.append(user, "INBOX", third, internal_date=base + timedelta(minutes=20))
    dovecot.append(user, "INBOX", first, internal_date=base)
    dovecot.append(user, "INBOX", other, internal_date=base + timedelta(minutes=30))
    dovecot.append(user, "Archive", second, flags=[b"\\Seen"], internal_date=base + timedelta(minutes=10))
    assert sync_account("t1", acc["id"])["status"] == "ok"
    return acc


# ------------------------------------------------------------------- auth
AUTH_ROUTES = [
    ("GET", "/v1/accounts", None),
    ("GET", "/v1/messages", None),
    ("GET", "/v1/threads", None),
    ("GET", "/v1/providers/detect", None),  # required query param missing: still 401 first
    ("GET", "/v1/accounts/acc_x/folders", None),
    ("POST", "/v1/accounts", {"backfill_days": 99, "bogus": True, "imap": "nope"}),
    ("POST", "/v1/accounts", None),
    ("PATCH", "/v1/accounts/acc_x/settings", {"visibility": "everyone", "extra": 1}),
    ("POST", "/v1/accounts/acc_x/sync", None),
    ("DELETE", "/v1/accounts/acc_x", None),
    ("GET", "/v1/messages/m_x", None),
    ("GET", "/v1/threads/th_x", None),
]


@pytest.mark.parametrize(("method", "path", "body"), AUTH_ROUTES)
@pytest.mark.parametrize(
    ("api_key", "headers"),
    [
        pytest.param(None, {}, id="no-header"),
        pytest.param(None, {"Authorization": "Basic a2V5LXQxOg=="}, id="wrong-scheme"),
        pytest.param(None, {"Authorization": "key-t1"}, id="no-scheme"),
        pytest.param(None, {"Authorization": "Bearer "}, id="empty-token"),
        pytest.param("nope", {}, id="unknown-key"),
        pytest.param("KEY-T1", {}, id="key-case"),
    ],
)
def test_unauthenticated_requests_get_401_before_validation(tenant, method, path, body, api_key, headers):
    c = ApiClient(api_key, "alice")
    r = c.call(method, path, body, headers=headers)
    assert_error(r, 401, "unauthorized")


@pytest.mark.parametrize(("method", "path", "body"), AUTH_ROUTES)
@pytest.mark.parametrize("user", [None, "", "   "])
def test_missing_user_gets_400_before_validation(tenant, method, path, body, user):
    c = ApiClient("key-t1", user)
    r = c.call(method, path, body)
    assert_error(r, 400, "missing_user")


def test_invalid_user_header_is_refused(tenant):
    for user in ["a#b", "x" * 257]:
        assert_error(ApiClient("key-t1", user).get("/v1/accounts"), 400, "missing_user")


def test_openapi_is_public_and_valid_keys_pass(tenant):
    r = ApiClient(None, None).get("/v1/openapi.json")
    assert r.status == 200 and "paths" in r.body
    for key in ("key-t1", "key-t2"):
        r = ApiClient(key, "alice").get("/v1/accounts")
        assert r.status == 200 and r.body == {"items": [], "next_cursor": None}


# -------------------------------------------------------------- detection
@pytest.mark.parametrize(
    ("email", "provider_host"),
    [
        ("someone@gmail.com", "imap.gmail.com"),
        ("someone@outlook.com", "outlook.office365.com"),
        ("someone@gmx.de", "imap.gmx.net"),
        ("someone@web.de", "imap.web.de"),
        ("someone@t-online.de", "secureimap.t-online.de"),
        ("someone@icloud.com", "imap.mail.me.com"),
        ("someone@yahoo.com", "imap.mail.yahoo.com"),
    ],
)
def test_detect_known_providers(api, email, provider_host):
    r = api.get("/v1/providers/detect", email=email)
    assert r.status == 200, r.body
    d = r.body
    assert d["email"] == email and d["domain"] == email.split("@")[1]
    assert d["provider"]
    assert d["imap"]["host"] == provider_host
    assert d["imap"]["port"] and d["smtp"]["host"] and d["smtp"]["port"]
    assert set(d["source"]) >= {"imap", "smtp"}


def test_detect_fallback_and_bad_address(api):
    r = api.get("/v1/providers/detect", email="info@unknown-company.invalid")
    assert r.status == 200, r.body
    assert r.body["imap"]["host"] and r.body["smtp"]["host"]
    assert set(r.body["source"]) >= {"imap", "smtp"}
    assert_error(api.get("/v1/providers/detect", email="not-an-address"), 400)
    assert_error(api.get("/v1/providers/detect"), 422, "invalid_request")


# --------------------------------------------------------------- accounts
def test_account_object_shape(api, acc, dovecot, imap_user):
    user, _ = imap_user
    assert set(acc) >= {
        "id",
        "email",
        "provider",
        "owner",
        "state",
        "error",
        "settings",
        "sync",
        "created_at",
    }
    assert acc["email"] == f"{user}@example.test"
    assert acc["owner"] == "alice"
    assert acc["state"] == "initial_sync" and acc["error"] is None
    assert set(acc["settings"]) == {
        "folder_mode",
        "folders",
        "visibility",
        "auto_assign",
        "signature",
        "exclude",
    }
    assert set(acc["sync"]) >= {"started_at", "last_success_at", "messages", "folders_total", "folders_done"}
    iso_utc(acc["created_at"])
    iso_utc(acc["sync"]["started_at"])
    assert api.get(f"/v1/accounts/{acc['id']}").body == acc
    listed = api.get("/v1/accounts").body
    assert listed == {"items": [acc], "next_cursor": None}

    assert sync_account("t1", acc["id"])["status"] == "ok"
    after = api.get(f"/v1/accounts/{acc['id']}").body
    assert after["state"] == "active"
    iso_utc(after["sync"]["last_success_at"])
    folders = api.get(f"/v1/accounts/{acc['id']}/folders")
    assert folders.status == 200
    names = {f["name"]: f for f in folders.body["items"]}
    assert "INBOX" in names and names["INBOX"]["role"] == "inbox" and names["INBOX"]["synced"] is True
    for f in folders.body["items"]:
        assert set(f) >= {"name", "role", "synced", "messages"}


def test_settings_patch(api, acc):
    aid = acc["id"]
    r = api.patch(f"/v1/accounts/{aid}/settings", {"visibility": "public", "signature": "Grüße\n-- A"})
    assert r.status == 200, r.body
    assert r.body["settings"]["visibility"] == "public"
    assert r.body["settings"]["signature"] == "Grüße\n-- A"
    r = api.patch(f"/v1/accounts/{aid}/settings", {"folder_mode": "selected", "folders": ["INBOX"]})
    assert r.status == 200 and r.body["settings"]["folders"] == ["INBOX"]
    assert api.get(f"/v1/accounts/{aid}").body["settings"]["folder_mode"] == "selected"
    assert_error(
        api.patch(f"/v1/accounts/{aid}/settings", {"folders": ["INBOX", "Nope"]}), 422, "unknown_folder"
    )
    assert_error(
        api.patch(f"/v1/accounts/{aid}/settings", {"visibility": "everyone"}), 422, "invalid_request"
    )
    assert_error(api.patch(f"/v1/accounts/{aid}/settings", {"colour": "red"}), 422, "invalid_request")
    assert api.get(f"/v1/accounts/{aid}").body["settings"]["folders"] == ["INBOX"]


def test_create_with_known_provider_email_and_password_reaches_login(api, monkeypatch):
    # gmail.com is detected; the login cannot succeed here, but it must be a 422, not a 500.
    monkeypatch.setenv("MAILSYNC_ALLOW_PRIVATE_HOSTS", "0")
    get_settings.cache_clear()
    r = api.post("/v1/accounts", {"email": "someone@gmail.com", "password": "x"})
    assert r.status == 422, r.body
    assert r.body["code"] in {"auth_failed", "connection_failed"}
    assert api.get("/v1/accounts").body["items"] == []


def test_bad_password_is_auth_failed(api, dovecot, imap_user):
    user, _ = imap_user
    r = api.post("/v1/accounts", account_body(dovecot, (user, "wrong-password")))
    assert_error(r, 422, "auth_failed")
    assert api.get("/v1/accounts").body["items"] == []


def test_closed_port_is_connection_failed(api, dovecot, imap_user):
    body = account_body(dovecot, imap_user)
    body["imap"]["port"] = free_port()
    assert_error(api.post("/v1/accounts", body), 422, "connection_failed")


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "10.0.0.1", "192.168.1.1", "169.254.169.254", "::1"]
)
def test_private_hosts_are_refused_with_the_guard_on(api, dovecot, imap_user, monkeypatch, host):
    monkeypatch.setenv("MAILSYNC_ALLOW_PRIVATE_HOSTS", "0")
    get_settings.cache_clear()
    body = account_body(dovecot, imap_user)
    body["imap"].update(host=host, security="ssl", port=993)
    body["smtp"].update(host="smtp.example.com", security="ssl", port=465)
    assert_error(api.post("/v1/accounts", body), 422, "host_not_allowed")
    # The SMTP side is guarded too.
    body = account_body(dovecot, imap_user)
    body["imap"].update(host="1.1.1.1", security="ssl", port=993)  # public, no DNS needed
    body["smtp"].update(host=host, security="ssl", port=465)
    assert_error(api.post("/v1/accounts", body), 422, "host_not_allowed")
    assert api.get("/v1/accounts").body["items"] == []


def test_same_mailbox_twice_is_409(api, acc, dovecot, imap_user, bob):
    assert_error(api.post("/v1/accounts", account_body(dovecot, imap_user)), 409, "account_exists")
    # Another user of the same tenant cannot connect it either; the address is case-insensitive.
    body = account_body(dovecot, imap_user)
    body["email"] = body["email"].upper()
    assert_error(bob.post("/v1/accounts", body), 409, "account_exists")
    assert len(api.get("/v1/accounts").body["items"]) == 1


@pytest.mark.parametrize(
    "extra",
    [
        {"backfill_days": 31},
        {"backfill_days": -1},
        {"backfill_days": "ten"},
        {"unknown_field": 1},
        {"settings": {"visibility": "public", "nope": 1}},
    ],
)
def test_invalid_create_bodies_are_422(api, dovecot, imap_user, extra):
    assert_error(api.post("/v1/accounts", account_body(dovecot, imap_user, **extra)), 422, "invalid_request")
    assert api.get("/v1/accounts").body["items"] == []


def test_create_with_unknown_selected_folder(api, dovecot, imap_user):
    body = account_body(dovecot, imap_user, settings={"folder_mode": "selected", "folders": ["Nope"]})
    assert_error(api.post("/v1/accounts", body), 422, "unknown_folder")


def test_backfill_30_is_accepted(api, dovecot, imap_user):
    r = api.post("/v1/accounts", account_body(dovecot, imap_user, backfill_days=30))
    assert r.status == 201, r.body


def test_pause_resume_sync(api, acc):
    aid = acc["id"]
    r = api.post(f"/v1/accounts/{aid}/sync")
    assert r.status == 202 and r.body == {"account_id": aid, "queued": True}
    r = api.post(f"/v1/accounts/{aid}/pause")
    assert r.status == 200 and r.body["state"] == "paused"
    assert api.get(f"/v1/accounts/{aid}").body["state"] == "paused"
    assert_error(api.post(f"/v1/accounts/{aid}/sync"), 409, "account_paused")
    r = api.post(f"/v1/accounts/{aid}/resume")
    assert r.status == 200 and r.body["state"] in {"initial_sync", "active"}
    assert api.post(f"/v1/accounts/{aid}/sync").status == 202
    # Resume of a running account is a no-op.
    assert api.post(f"/v1/accounts/{aid}/resume").status == 200


def test_delete_account_purges(api, mailbox):
    aid = mailbox["id"]
    msgs = api.get("/v1/messages").body["items"]
    assert msgs
    r = api.delete(f"/v1/accounts/{aid}")
    assert r.status == 204
    assert_error(api.get(f"/v1/accounts/{aid}"), 404, "not_found")
    assert_error(api.delete(f"/v1/accounts/{aid}"), 404, "not_found")
    assert_error(api.get(f"/v1/messages/{msgs[0]['id']}"), 404, "not_found")
    assert_error(api.get(f"/v1/threads/{msgs[0]['thread_id']}"), 404, "not_found")
    assert api.get("/v1/messages").body == {"items": [], "next_cursor": None}
    assert api.get("/v1/threads").body == {"items": [], "next_cursor": None}
    assert api.get("/v1/accounts").body == {"items": [], "next_cursor": None}


# -------------------------------------------------------------- isolation
def test_other_tenant_and_other_user_see_nothing(api, mailbox, bob, other_tenant):
    aid = mailbox["id"]
    msg = api.get("/v1/messages").body["items"][0]
    th = api.get("/v1/threads").body["items"][0]
    page = api.get("/v1/messages", limit=1).body
    assert page["next_cursor"]
    for intruder in (bob, other_tenant):
        for method, path, body in [
            ("GET", f"/v1/accounts/{aid}", None),
            ("GET", f"/v1/accounts/{aid}/folders", None),
            ("PATCH", f"/v1/accounts/{aid}/settings", {"visibility": "public"}),
            ("PATCH", f"/v1/accounts/{aid}/settings", {"folder_mode": "selected", "folders": ["INBOX"]}),
            ("POST", f"/v1/accounts/{aid}/sync", None),
            ("POST", f"/v1/accounts/{aid}/pause", None),
            ("POST", f"/v1/accounts/{aid}/resume", None),
            ("DELETE", f"/v1/accounts/{aid}", None),
            ("GET", f"/v1/messages/{msg['id']}", None),
            ("GET", f"/v1/threads/{th['id']}", None),
        ]:
            assert_error(intruder.call(method, path, body), 404, "not_found")
        assert_error(intruder.get("/v1/messages", account_id=aid), 404, "not_found")
        assert_error(intruder.get("/v1/messages", account_id=aid, folder="INBOX"), 404, "not_found")
        assert_error(intruder.get("/v1/messages", thread_id=th["id"]), 404, "not_found")
        for path in ("/v1/accounts", "/v1/messages", "/v1/threads"):
            assert intruder.get(path).body == {"items": [], "next_cursor": None}, path
        # Alice's cursor must not page through alice's data for someone else.
        r = intruder.get("/v1/messages", limit=1, cursor=page["next_cursor"])
        assert 400 <= r.status < 500 or r.body["items"] == [], r.body
        if r.status >= 400:
            assert_error(r, r.status)
    # Nothing changed for alice.
    after = api.get(f"/v1/accounts/{aid}").body
    assert after["state"] == "active" and after["settings"] == mailbox["settings"]
    assert api.get(f"/v1/messages/{msg['id']}").status == 200


def test_same_mailbox_may_be_connected_in_another_tenant(api, acc, other_tenant, dovecot, imap_user):
    r = other_tenant.post("/v1/accounts", account_body(dovecot, imap_user))
    assert r.status == 201, r.body
    assert r.body["id"] != acc["id"]
    assert [a["id"] for a in api.get("/v1/accounts").body["items"]] == [acc["id"]]


# ----------------------------------------------------------------- paging
def test_message_pages_are_newest_first_without_overlap(api, acc, dovecot, imap_user, bob):
    user, _ = imap_user
    base = NOW - timedelta(hours=5)
    for i in range(7):
        when = base + timedelta(minutes=7 * i)
        dovecot.append(user, "INBOX", make_mail(f"mail {i}", date=when), internal_date=when)
    assert sync_account("t1", acc["id"])["status"] == "ok"

    for params in ({}, {"account_id": acc["id"]}, {"account_id": acc["id"], "folder": "INBOX"}):
        got = pages(api, "/v1/messages", 3, **params)
        assert [len(p["items"]) for p in got] == [3, 3, 1], params
        assert got[-1]["next_cursor"] is None
        items = [m for p in got for m in p["items"]]
        assert [m["subject"] for m in items] == [f"mail {i}" for i in reversed(range(7))]
        assert len({m["id"] for m in items}) == 7
        dates = [iso_utc(m["date"]) for m in items]
        assert dates == sorted(dates, reverse=True)

    first = api.get("/v1/messages", limit=3).body
    m = first["items"][0]
    assert set(m) >= {
        "id", "account_id", "thread_id", "folder", "subject", "from", "to", "cc",
        "date", "snippet", "unread", "has_attachments", "visibility",
    }  # fmt: skip
    assert m["from"] == [{"name": "Alice", "email": "alice@example.com"}]
    assert m["to"] == [{"name": "Bob", "email": "bob@example.com"}]
    assert m["unread"] is True and m["has_attachments"] is False and m["folder"] == "INBOX"

    # Default limit is 50: everything on one page.
    r = api.get("/v1/messages")
    assert len(r.body["items"]) == 7 and r.body["next_cursor"] is None

    # Thread pages too.
    th = pages(api, "/v1/threads", 3)
    assert [t["subject"] for p in th for t in p["items"]] == [f"mail {i}" for i in reversed(range(7))]
    assert th[-1]["next_cursor"] is None

    # Bad limits and cursors.
    for limit in (0, 201, -1):
        assert_error(api.get("/v1/messages", limit=limit), 422, "invalid_request")
        assert_error(api.get("/v1/threads", limit=limit), 422, "invalid_request")
    assert api.get("/v1/messages", limit=200).status == 200
    for bad in ("not-a-cursor", "!!!", "eyJ4IjoxfQ", base64.urlsafe_b64encode(b"[1,2]").decode(), "\u00fc"):
        assert_error(api.get("/v1/messages", cursor=bad), 400, "invalid_cursor")
        assert_error(api.get("/v1/threads", cursor=bad), 400, "invalid_cursor")
    # A message cursor is not a thread cursor, nor one of another list.
    assert_error(api.get("/v1/threads", cursor=first["next_cursor"]), 400, "invalid_cursor")
    assert_error(
        api.get("/v1/messages", account_id=acc["id"], cursor=first["next_cursor"]), 400, "invalid_cursor"
    )
    # Another user with alice's cursor: never alice's data.
    r = bob.get("/v1/messages", limit=3, cursor=first["next_cursor"])
    assert (400 <= r.status < 500 and r.body.get("code")) or r.body["items"] == [], r.body


def test_tampered_cursor_is_refused_not_a_500(api, acc, dovecot, imap_user):
    user, _ = imap_user
    for i in range(3):
        dovecot.append(user, "INBOX", make_mail(f"m{i}"), internal_date=NOW - timedelta(minutes=30 - i))
    sync_account("t1", acc["id"])
    cur = api.get("/v1/messages", limit=1).body["next_cursor"]
    lek = json.loads(base64.urlsafe_b64decode(cur + "=" * (-len(cur) % 4)))

    def enc(d: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(d).encode()).decode().rstrip("=")

    gsi = next(k for k in lek if k.startswith("gsi") and k.endswith("pk"))
    tampered = [
        {**lek, "pk": {"N": "1"}},
        {**lek, "sk": "M"},
        {**lek, "pk": {"S": "T#t2#M#x"}},
        {gsi: lek[gsi]},
        {**lek, "extra": {"S": "x"}},
        {**lek, "pk": {"S": "T#t1#M#" + "x" * 1100}},
    ]
    for t in tampered:
        assert_error(api.get("/v1/messages", limit=1, cursor=enc(t)), 400, "invalid_cursor")
    # The untouched cursor still works.
    r = api.get("/v1/messages", limit=1, cursor=enc(lek))
    assert r.status == 200 and len(r.body["items"]) == 1


# ------------------------------------------------------ message / thread
def test_message_detail_is_sanitized_with_attachments_and_headers(api, acc, dovecot, imap_user):
    user, _ = imap_user
    html = (
        "<html><body><p>Hallo <b>Welt</b></p>"
        "<script>alert('x')</script>"
        '<img src="https://tracker.example/x.gif" onerror="alert(2)" alt="pixel">'
        '<a href="javascript:alert(1)">click</a>'
        '<a href="https://example.com/ok" onclick="steal()">ok</a>'
        "</body></html>"
    )
    data = b"%PDF-1.4\n" + bytes(range(256)) * 10
    raw = make_mail(
        "Rechnung",
        message_id="invoice@example.com",
        in_reply_to="order@example.com",
        references=["start@example.com", "order@example.com"],
        body="Hallo Welt\n",
        html=html,
        attachment=("rechnung.pdf", "application/pdf", data),
        from_="Shop <shop@example.com>",
        to="Alice <alice@example.test>",
        cc="Bob <bob@example.com>",
    )
    dovecot.append(user, "INBOX", raw)
    assert sync_account("t1", acc["id"])["status"] == "ok"
    summary = api.get("/v1/messages").body["items"][0]
    assert summary["has_attachments"] is True
    assert "text" not in summary and "html" not in summary

    r = api.get(f"/v1/messages/{summary['id']}")
    assert r.status == 200, r.body
    m = r.body
    for k, v in summary.items():
        assert m[k] == v, k
    assert "Hallo Welt" in m["text"]
    out = m["html"].lower()
    assert "hallo" in out and "welt" in out
    for bad in ("<script", "alert('x')", "onerror", "onclick", "javascript:"):
        assert bad not in out, bad
    assert "https://tracker.example/x.gif" in m["html"]
    assert 'src="https://tracker.example' not in out and "<img src" not in out
    assert 'href="https://tracker.example/x.gif"' in m["html"]
    assert 'href="https://example.com/ok"' in m["html"]

    assert len(m["attachments"]) == 1
    att = m["attachments"][0]
    assert set(att) >= {"id", "filename", "content_type", "size"}
    assert att["filename"] == "rechnung.pdf" and att["content_type"] == "application/pdf"
    assert att["size"] == len(data)
    assert m["headers"] == {
        "message_id": "<invoice@example.com>",
        "in_reply_to": "<order@example.com>",
        "references": ["<start@example.com>", "<order@example.com>"],
    } or m["headers"] == {
        "message_id": "invoice@example.com",
        "in_reply_to": "order@example.com",
        "references": ["start@example.com", "order@example.com"],
    }
    assert m["from"] == [{"name": "Shop", "email": "shop@example.com"}]
    assert m["cc"] == [{"name": "Bob", "email": "bob@example.com"}]
    iso_utc(m["date"])


def test_thread_views(api, mailbox, bob):
    threads = api.get("/v1/threads").body
    assert threads["next_cursor"] is None
    assert [t["subject"].removeprefix("Re: ") for t in threads["items"]] == ["Unrelated", "Angebot"]
    th = threads["items"][1]
    assert set(th) >= {"id", "subject", "participants", "message_count", "last_date", "unread", "snippet"}
    assert th["message_count"] == 3 and th["unread"] is True
    emails = {p["email"] for p in th["participants"]}
    assert {"carol@example.com", "alice@example.test"} <= emails
    for p in th["participants"]:
        assert set(p) == {"name", "email"}
    iso_utc(th["last_date"])

    r = api.get(f"/v1/threads/{th['id']}")
    assert r.status == 200, r.body
    detail = r.body
    assert detail["id"] == th["id"] and detail["message_count"] == 3
    msgs = detail["messages"]
    assert [m["subject"] for m in msgs] == ["Angebot", "Re: Angebot", "Re: Angebot"]
    dates = [iso_utc(m["date"]) for m in msgs]
    assert dates == sorted(dates)
    assert {m["folder"] for m in msgs} == {"INBOX", "Archive"}
    assert [m["unread"] for m in msgs] == [True, False, True]
    assert all(m["thread_id"] == th["id"] for m in msgs)

    # The thread's messages as a list: newest first.
    listed = api.get("/v1/messages", thread_id=th["id"]).body["items"]
    assert [m["id"] for m in listed] == [m["id"] for m in reversed(msgs)]
    # Folder filter.
    archive = api.get("/v1/messages", account_id=mailbox["id"], folder="Archive").body["items"]
    assert [m["id"] for m in archive] == [msgs[1]["id"]]
    assert_error(api.get("/v1/messages", folder="INBOX"), 400, "invalid_request")
    assert_error(api.get("/v1/threads/th_nope"), 404, "not_found")
    assert_error(api.get("/v1/messages/m_nope"), 404, "not_found")
    assert_error(api.get("/v1/accounts/acc_nope"), 404, "not_found")


# ------------------------------------------------------------ credentials
class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.buf = io.StringIO()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.buf.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - a broken record must not hide the others
            self.buf.write(repr(record.__dict__) + "\n")


def test_credentials_never_leave_the_service(api, dovecot, capsys, caplog, monkeypatch):
    user = "cred-" + datetime.now(UTC).strftime("%H%M%S%f")
    password = "Pw-" + base64.b16encode(user.encode()).decode() + "-Zz9"
    dovecot.add_user(user, password)

    capture = _Capture()
    capture.setFormatter(service_logger.registered_formatter)
    service_log = logging.getLogger(service_logger.name)
    service_log.addHandler(capture)
    old_level = service_logger.log_level
    service_logger.setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    try:
        # A failed login and a rejected body first: their answers must not echo it either.
        bad = api.post("/v1/accounts", account_body(dovecot, (user, password + "x")))
        assert_error(bad, 422, "auth_failed")
        invalid = api.post("/v1/accounts", account_body(dovecot, (user, password), backfill_days=99))
        assert_error(invalid, 422, "invalid_request")
        wrong_type = api.post("/v1/accounts", {"email": f"{user}@example.test", "password": password, "x": 1})
        assert_error(wrong_type, 422)

        r = api.post("/v1/accounts", account_body(dovecot, (user, password)))
        assert r.status == 201, r.body
        aid = r.body["id"]
        dovecot.append(user, "INBOX", make_mail("hello"))
        assert sync_account("t1", aid)["status"] == "ok"
        responses = [
            bad,
            invalid,
            wrong_type,
            r,
            api.get(f"/v1/accounts/{aid}"),
            api.get("/v1/accounts"),
            api.get(f"/v1/accounts/{aid}/folders"),
            api.patch(f"/v1/accounts/{aid}/settings", {"signature": "x"}),
            api.post(f"/v1/accounts/{aid}/pause"),
            api.post(f"/v1/accounts/{aid}/resume"),
            api.post("/v1/accounts", account_body(dovecot, (user, password))),  # 409
            api.get("/v1/messages"),
        ]
    finally:
        service_log.removeHandler(capture)
        service_logger.setLevel(old_level)

    # (a) API answers
    for resp in responses:
        text = json.dumps(resp.body) + json.dumps(resp.headers)
        assert password not in text, resp.body
    assert "password" not in json.dumps(r.body)

    # (b) DynamoDB holds only an envelope
    ddb = boto3.client("dynamodb")
    dump = []
    for table in ddb.list_tables()["TableNames"]:
        for page in ddb.get_paginator("scan").paginate(TableName=table):
            dump.extend(page["Items"])
    text = json.dumps(dump)
    assert password not in text
    assert base64.b64encode(password.encode()).decode() not in text
    creds = [i for i in dump if i.get("sk", {}).get("S") == "CRED" and aid in i["pk"]["S"]]
    assert len(creds) == 1
    envelope = creds[0]["envelope"]
    env = envelope.get("M") or json.loads(envelope.get("S", "{}"))
    assert {"key", "nonce", "ct"} <= set(env)

    # S3 objects neither
    s3 = boto3.client("s3")
    bucket = get_settings().bucket
    for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
        assert password.encode() not in s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()

    # (c) logs
    out, err = capsys.readouterr()
    logs = capture.buf.getvalue() + caplog.text + out + err
    assert "account connected" in logs  # the capture works
    assert password not in logs


# ------------------------------------------------------------- robustness
def _big(n: int) -> str:
    return "x" * n


MALFORMED_BODIES: list[tuple[str, str, bytes]] = [
    ("POST", "/v1/accounts", b"not json"),
    ("POST", "/v1/accounts", b"{"),
    ("POST", "/v1/accounts", b"[1, 2, 3]"),
    ("POST", "/v1/accounts", b'"string"'),
    ("POST", "/v1/accounts", b"42"),
    ("POST", "/v1/accounts", b"null"),
    ("POST", "/v1/accounts", b"{}"),
    ("POST", "/v1/accounts", b"\xff\xfe\x00binary"),
    ("POST", "/v1/accounts", b'{"email": "a@b.c", "password": "x", "email": 5}'),
    ("POST", "/v1/accounts", b'{"email": NaN}'),
    ("PATCH", "/v1/accounts/acc_x/settings", b"not json"),
    ("PATCH", "/v1/accounts/acc_x/settings", b"[]"),
]

# Bodies with other content types than JSON.
OTHER_CONTENT_TYPES: list[tuple[str, bytes]] = [
    ("text/plain", b"hello"),
    ("application/xml", b"<a/>"),
    ("application/x-www-form-urlencoded", b"email=a%40b.de&password=x"),
    ("multipart/form-data; boundary=zzz", b"--zzz\r\ngarbage"),
    ("multipart/form-data", b"no boundary"),
]

MALFORMED_JSON: list[tuple[str, str, Any]] = [
    ("POST", "/v1/accounts", {"email": 5, "password": []}),
    ("POST", "/v1/accounts", {"email": "a@gmail.com"}),
    ("POST", "/v1/accounts", {"password": "x"}),
    ("POST", "/v1/accounts", {"imap": "imap.example.com"}),
    (
        "POST",
        "/v1/accounts",
        {"imap": {"host": "h", "port": "x", "security": "ssl", "username": "u", "password": "p"}},
    ),
    (
        "POST",
        "/v1/accounts",
        {"imap": {"host": "h", "port": 0, "security": "ssl", "username": "u", "password": "p"}},
    ),
    (
        "POST",
        "/v1/accounts",
        {"imap": {"host": "h", "port": 993, "security": "tls", "username": "u", "password": "p"}},
    ),
    (
        "POST",
        "/v1/accounts",
        {"imap": {"host": "", "port": 993, "security": "ssl", "username": "u", "password": "p"}},
    ),
    (
        "POST",
        "/v1/accounts",
        {"imap": {"host": "h", "port": 993, "security": "ssl", "username": "u@x.de", "password": "p"}},
    ),
    (
        "POST",
        "/v1/accounts",
        {
            "email": "a@example.com",
            "imap": {"host": "h", "port": 993, "security": "ssl", "username": "noat", "password": "p"},
        },
    ),
    ("POST", "/v1/accounts", {"email": "no-at", "password": "x"}),
    ("POST", "/v1/accounts", {"email": "@", "password": "x"}),
    ("POST", "/v1/accounts", {"email": "a@", "password": "x"}),
    ("POST", "/v1/accounts", {"email": "a@..", "password": "x"}),
    ("POST", "/v1/accounts", {"email": "a@b@c", "password": "x"}),
    ("POST", "/v1/accounts", {"email": "a b@example.com\r\nX: y", "password": "x"}),
    ("POST", "/v1/accounts", {"email": "ü@\u0000.de", "password": "x"}),
    ("POST", "/v1/accounts", {"email": _big(100_000) + "@gmail.com", "password": "x"}),
    ("POST", "/v1/accounts", {"email": "a@gmail.com", "password": _big(1_000_000)}),
    ("POST", "/v1/accounts", {"email": "a@" + _big(300) + ".com", "password": "x"}),
    ("POST", "/v1/accounts", {"email": "a@" + ".".join(["x" * 70] * 4), "password": "x"}),
    ("POST", "/v1/accounts", {"email": "a@gmail.com", "password": "x", "backfill_days": 1.5}),
    ("POST", "/v1/accounts", {"email": "a@gmail.com", "password": "x", "backfill_days": 10**30}),
    ("POST", "/v1/accounts", {"email": "a@gmail.com", "password": "x", "settings": []}),
    ("POST", "/v1/accounts", {"email": "a@gmail.com", "password": "x", "settings": {"folders": "INBOX"}}),
    ("POST", "/v1/accounts", {"email": "a@gmail.com", "password": "x", "settings": {"folders": [1, 2]}}),
    ("PATCH", "/v1/accounts/acc_x/settings", {"folders": "INBOX"}),
    ("PATCH", "/v1/accounts/acc_x/settings", {"folders": [_big(10)] * 501}),
    ("PATCH", "/v1/accounts/acc_x/settings", {"signature": _big(20_001)}),
    ("PATCH", "/v1/accounts/acc_x/settings", {"auto_assign": "maybe"}),
    ("PATCH", "/v1/accounts/acc_x/settings", {"visibility": None, "folder_mode": 3}),
]

ODD_IDS = [
    "%2F",
    "..",
    "%2E%2E",
    "..%2F..%2Fetc",
    "'",
    "%27%20OR%201%3D1--",
    "%22",
    "%00",
    "a%23b",
    "T%23t2%23A%23acc",
    "%C3%BC%E2%9C%93",
    "%FF",
    "%",
    "x" * 3000,
    "%20",
    "a%0Ab",
]

ODD_QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("/v1/messages", {"limit": "abc"}),
    ("/v1/messages", {"limit": "1e3"}),
    ("/v1/messages", {"limit": ""}),
    ("/v1/messages", {"limit": "3.5"}),
    ("/v1/messages", {"cursor": _big(3000)}),
    ("/v1/messages", {"cursor": "%%%"}),
    ("/v1/messages", {"account_id": _big(65)}),
    ("/v1/messages", {"account_id": "acc_nope"}),
    ("/v1/messages", {"account_id": "a#b"}),
    ("/v1/messages", {"thread_id": "th_nope"}),
    ("/v1/messages", {"thread_id": "'\""}),
    ("/v1/messages", {"folder": "INBOX"}),
    ("/v1/messages", {"account_id": "acc_nope", "folder": _big(1025)}),
    ("/v1/threads", {"limit": "-5"}),
    ("/v1/threads", {"cursor": "e30"}),
    ("/v1/providers/detect", {"email": ""}),
    ("/v1/providers/detect", {"email": "ab"}),
    ("/v1/providers/detect", {"email": "no-at-sign"}),
    ("/v1/providers/detect", {"email": "@@@"}),
    ("/v1/providers/detect", {"email": _big(400)}),
    ("/v1/providers/detect", {"email": "a@" + _big(300)}),
    ("/v1/providers/detect", {"email": "a@b\u0000c.de"}),
]


def _problem(r: Resp, what: Any) -> str | None:
    """None when ``r`` is a 4xx with a JSON ``{code, message}``; a description otherwise."""
    ok = (
        400 <= r.status < 500
        and isinstance(r.body, dict)
        and isinstance(r.body.get("code"), str)
        and isinstance(r.body.get("message"), str)
    )
    return None if ok else f"{what!r:.160} -> {r.status} {r.body!r:.200}"


def test_malformed_requests_are_4xx_never_5xx(api, acc, monkeypatch):
    # Guard on: nothing here may reach a real network host.
    monkeypatch.setenv("MAILSYNC_ALLOW_PRIVATE_HOSTS", "0")
    get_settings.cache_clear()
    problems: list[str | None] = []
    for method, path, raw in MALFORMED_BODIES:
        problems.append(_problem(raw_call(api, method, path, raw), (method, path, raw[:40])))
        real = path.replace("acc_x", acc["id"])
        problems.append(_problem(raw_call(api, method, real, raw), (method, real, raw[:40])))
    for content_type, raw in OTHER_CONTENT_TYPES:
        for path in ("/v1/accounts", f"/v1/accounts/{acc['id']}/settings"):
            method = "POST" if path == "/v1/accounts" else "PATCH"
            r = raw_call(api, method, path, raw, {"Content-Type": content_type})
            problems.append(_problem(r, (method, path, content_type)))
    for method, path, body in MALFORMED_JSON:
        problems.append(_problem(api.call(method, path, body), (method, path, str(body)[:80])))
        real = path.replace("acc_x", acc["id"])
        problems.append(_problem(api.call(method, real, body), (method, real, str(body)[:80])))
    for odd in ODD_IDS:
        for method, path, body in [
            ("GET", f"/v1/accounts/{odd}", None),
            ("GET", f"/v1/accounts/{odd}/folders", None),
            ("PATCH", f"/v1/accounts/{odd}/settings", {"visibility": "public"}),
            ("POST", f"/v1/accounts/{odd}/sync", None),
            ("POST", f"/v1/accounts/{odd}/pause", None),
            ("POST", f"/v1/accounts/{odd}/resume", None),
            ("DELETE", f"/v1/accounts/{odd}", None),
            ("GET", f"/v1/messages/{odd}", None),
            ("GET", f"/v1/threads/{odd}", None),
        ]:
            problems.append(_problem(api.call(method, path, body), (method, path[:80])))
    for path, params in ODD_QUERIES:
        problems.append(
            _problem(api.get(path, **params), (path, {k: str(v)[:40] for k, v in params.items()}))
        )
    for method, path in [
        ("PUT", "/v1/accounts"),
        ("GET", "/v1/nope"),
        ("POST", "/v1/messages"),
        ("GET", "/v1"),
    ]:
        problems.append(_problem(api.call(method, path), (method, path)))
    # Odd headers.
    for headers in (
        {"Authorization": "Bearer " + _big(10_000)},
        {"Authorization": "Bearer \u00fc\u00e4"},
        {"Authorization": "Bearer key-t1 extra"},
        {"X-User-Id": _big(5000)},
    ):
        c = ApiClient(None, "alice") if "Authorization" in headers else api.as_user(None)
        problems.append(_problem(c.call("GET", "/v1/accounts", headers=headers), headers.keys()))
    r = raw_call(api, "POST", "/v1/accounts", b"hello", {"Content-Type": "text/plain"})
    assert_error(r, 415, "unsupported_media_type")
    assert_error(api.get("/v1/accounts/" + "x" * 3000), 422, "invalid_request")
    bad = [p for p in problems if p]
    assert not bad, "\n".join(bad)
    # Unicode that is valid input works.
    r = api.patch(f"/v1/accounts/{acc['id']}/settings", {"signature": "Grüße 🌍 \u202e"})
    assert r.status == 200 and r.body["settings"]["signature"] == "Grüße 🌍 \u202e"
    # The account survived all of it.
    assert api.get(f"/v1/accounts/{acc['id']}").status == 200
