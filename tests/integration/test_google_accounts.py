"""Google Workspace accounts end to end against the fake Google: hosted OAuth (PKCE,
single-use state, Workspace only), sync through the real engine and store, client,
send, push webhook and watch renewal."""

from __future__ import annotations

import json

import boto3
import pytest

from mailsync.config import get_settings
from mailsync.usecases.sync_account import sync_account
from tests.support.api import ApiClient
from tests.support.dovecot import make_mail
from tests.support.google import PUSH_AUDIENCE, REDIRECT, connect_google, finish_flow, start_flow

pytestmark = pytest.mark.integration

EMAIL = "petra@makler.example"


def drain() -> list[dict]:
    sqs, q, out = boto3.client("sqs"), get_settings().queue_url, []
    while msgs := sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10).get("Messages", []):
        for m in msgs:
            sqs.delete_message(QueueUrl=q, ReceiptHandle=m["ReceiptHandle"])
            out.append(json.loads(m["Body"]))
    return out


def subjects(api: ApiClient, account_id: str) -> dict[str, dict]:
    return {m["subject"]: m for m in api.get("/v1/messages", account_id=account_id).body["items"]}


def test_authorize_url_carries_pkce_offline_consent_and_scopes(tenant, google):
    api = ApiClient("key-t1", "alice")
    q = start_flow(api)
    assert q["access_type"] == "offline" and q["prompt"] == "consent"
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) >= 43
    assert q["scope"] == "openid email https://www.googleapis.com/auth/gmail.modify"
    assert q["client_id"] == google.client_id and q["redirect_uri"].endswith("/v1/oauth/google/callback")
    assert q["state"] and q["nonce"]
    r = api.get("/v1/oauth/google/authorize", redirect_uri="https://evil.example/steal")
    assert r.status == 422 and r.body["code"] == "redirect_not_allowed"


def test_connect_sync_and_mirror_rules(tenant, google):
    api = ApiClient("key-t1", "alice")
    status, q = connect_google(api, google, EMAIL)
    assert status == 302 and q["_location"].startswith(REDIRECT) and "account_id" in q, q
    aid = q["account_id"]
    acc = api.get(f"/v1/accounts/{aid}").body
    assert acc["provider"] == "google" and acc["email"] == EMAIL and "refresh" not in json.dumps(acc)
    assert google.mailbox(EMAIL).watch  # users.watch was called at connect
    assert {"tenant_id": "t1", "account_id": aid, "reason": "connect"} in drain()

    m1 = google.deliver(EMAIL, make_mail("Antrag", "kunde@example.org", EMAIL, message_id="a1@x"))
    sync_account("t1", aid)
    assert list(subjects(api, aid)) == ["Antrag"]
    first = subjects(api, aid)["Antrag"]

    # A label change between synced labels keeps id and thread; archive and trash remove.
    label = google.create_label(EMAIL, "Kunden")
    sync_account("t1", aid)
    google.move(EMAIL, m1, "INBOX", label)
    sync_account("t1", aid)
    moved = subjects(api, aid)["Antrag"]
    assert (
        moved["id"] == first["id"]
        and moved["folder"] == "Kunden"
        and moved["thread_id"] == first["thread_id"]
    )
    google.remove_labels(EMAIL, m1, label)  # archived: no synced label left
    sync_account("t1", aid)
    assert subjects(api, aid) == {}
    m2 = google.deliver(EMAIL, make_mail("Zweite", "kunde@example.org", EMAIL))
    sync_account("t1", aid)
    assert list(subjects(api, aid)) == ["Zweite"]
    google.trash(EMAIL, m2)
    sync_account("t1", aid)
    assert subjects(api, aid) == {}
    assert api.delete(f"/v1/accounts/{aid}").status == 204
    assert api.get(f"/v1/accounts/{aid}").status == 404


def test_consumer_gmail_is_refused(tenant, google):
    status, q = connect_google(ApiClient("key-t1", "alice"), google, "someone@gmail.com")
    assert status == 302 and q["error"] == "workspace_required" and q["_location"].startswith(REDIRECT)


def test_failures_redirect_with_an_error_code(tenant, google):
    api = ApiClient("key-t1", "alice")
    q = start_flow(api)
    status, out = finish_flow(api, {"error": "access_denied", "state": q["state"]})
    assert status == 302 and out["error"] == "access_denied"
    # The same state again: single use, reported to the redirect URI.
    status, out = finish_flow(api, {"code": "x", "state": q["state"]})
    assert status == 302 and out["error"] == "invalid_state" and out["_location"].startswith(REDIRECT)
    q = start_flow(api)
    status, out = finish_flow(api, {"code": "not-a-real-code", "state": q["state"]})
    assert status == 302 and out["error"] == "exchange_failed"
    # A forged state names no redirect we could trust: a plain 400, no redirect.
    status, out = finish_flow(api, {"code": "x", "state": "forged.signature"})
    assert status == 400 and out["_location"] == ""


def test_reconnect_keeps_mails_and_revoked_access_sets_auth_error(tenant, google):
    api = ApiClient("key-t1", "alice")
    _, q = connect_google(api, google, EMAIL)
    aid = q["account_id"]
    google.deliver(EMAIL, make_mail("Bleibt", "kunde@example.org", EMAIL))
    sync_account("t1", aid)
    google.revoke_user(EMAIL)
    assert sync_account("t1", aid)["status"] == "auth_error"
    gone = api.get(f"/v1/accounts/{aid}").body
    assert gone["state"] == "auth_error" and gone["health"]["action"] == "reauthenticate"
    assert gone["health"]["last_error"]["code"] == "auth_failed"
    _, q2 = connect_google(api, google, EMAIL)
    assert q2["account_id"] == aid
    # The reconnect clears auth_error at once: healthy, nothing for the user to do.
    back = api.get(f"/v1/accounts/{aid}").body
    assert back["state"] == "active" and back["error"] is None, back
    assert back["health"]["action"] is None and back["health"]["consecutive_failures"] == 0
    assert list(subjects(api, aid)) == ["Bleibt"]
    assert sync_account("t1", aid)["status"] == "ok"
    assert api.get(f"/v1/accounts/{aid}").body["state"] == "active"


def test_client_and_send(tenant, google):
    api = ApiClient("key-t1", "alice")
    _, q = connect_google(api, google, EMAIL)
    aid = q["account_id"]
    mid = google.deliver(EMAIL, make_mail("Frage", "kunde@example.org", EMAIL, message_id="f1@x"))
    sync_account("t1", aid)
    msg = subjects(api, aid)["Frage"]
    assert api.patch(f"/v1/messages/{msg['id']}", {"unread": False}).body["unread"] is False
    assert "UNREAD" not in google.labels_of(EMAIL, mid)
    r = api.post(
        f"/v1/accounts/{aid}/send",
        {"to": ["kunde@example.org"], "subject": "Re: Frage", "text": "Antwort", "reply_to": msg["id"]},
    )
    assert r.status == 202, r.body
    assert r.body["folder"] == "SENT" and r.body["thread_id"] == msg["thread_id"]
    sync_account("t1", aid)  # history brings the Sent copy back: recognised, no duplicate
    assert sorted(subjects(api, aid)) == ["Frage", "Re: Frage"]
    assert api.delete(f"/v1/messages/{msg['id']}").status == 204
    assert "TRASH" in google.labels_of(EMAIL, mid)
    sync_account("t1", aid)
    assert sorted(subjects(api, aid)) == ["Re: Frage"]


def _push(token: str | None, body) -> int:
    api = ApiClient(None, None)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return api.call("POST", "/v1/webhooks/google", body, headers=headers).status


def test_push_webhook(tenant, google):
    api = ApiClient("key-t1", "alice")
    _, q = connect_google(api, google, EMAIL)
    aid = q["account_id"]
    sync_account("t1", aid)
    drain()
    google.deliver(EMAIL, make_mail("Neu", "kunde@example.org", EMAIL))
    envelope = google.push_envelope(EMAIL)
    good = google.push_token(PUSH_AUDIENCE)
    assert _push(good, envelope) == 204
    assert _push(good, envelope) == 204  # a replay (Pub/Sub redelivers)
    assert drain() == [{"tenant_id": "t1", "account_id": aid, "reason": "push"}]  # enqueued once
    assert _push(google.push_token(PUSH_AUDIENCE, forged=True), envelope) == 401
    assert _push(google.push_token("https://other.example/hook"), envelope) == 401
    assert _push(google.push_token(PUSH_AUDIENCE, email="intruder@example.com"), envelope) == 401
    assert _push(None, envelope) == 401
    import base64

    unknown = google.push_envelope(EMAIL)
    unknown["message"]["data"] = base64.b64encode(
        b'{"emailAddress": "nobody@unknown.example", "historyId": 9}'
    ).decode()
    assert _push(good, unknown) == 204  # acked, nothing to do
    assert _push(good, {"message": {"data": "!!!"}}) == 204
    assert drain() == []
    sync_account("t1", aid)  # caught up: a push for an old historyId is skipped
    assert _push(good, google.push_envelope(EMAIL)) == 204
    assert drain() == []


def test_watch_renewal_runs_once_per_period(tenant, google):
    from mailsync.usecases.google import renew_watches

    api = ApiClient("key-t1", "alice")
    connect_google(api, google, EMAIL)
    now = 2_000_000_000
    assert renew_watches(now=now) == 1
    assert renew_watches(now=now + 60) == 0  # a concurrent or repeated run loses the lease
    assert renew_watches(now=now + 86_400) == 1


def test_backfill_window_loads_older_mail(tenant, google):
    from datetime import UTC, datetime, timedelta
    from urllib.parse import parse_qs, urlsplit

    api = ApiClient("key-t1", "alice")
    google.add_user(EMAIL)
    old = datetime.now(UTC) - timedelta(days=3)
    google.deliver(
        EMAIL, make_mail("vor drei Tagen", "kunde@example.org", EMAIL, date=old), internal_date=old
    )
    ancient = datetime.now(UTC) - timedelta(days=20)
    google.deliver(
        EMAIL, make_mail("zu alt", "kunde@example.org", EMAIL, date=ancient), internal_date=ancient
    )
    r = api.get("/v1/oauth/google/authorize", redirect_uri=REDIRECT, backfill_days=7)
    q = {k: v[0] for k, v in parse_qs(urlsplit(r.body["url"]).query).items()}
    code = google.authorize(
        EMAIL, code_challenge=q["code_challenge"], redirect_uri=q["redirect_uri"], nonce=q["nonce"]
    )
    _, out = finish_flow(api, {"code": code, "state": q["state"]})
    sync_account("t1", out["account_id"])
    assert list(subjects(api, out["account_id"])) == ["vor drei Tagen"]
    assert api.get(f"/v1/accounts/{out['account_id']}").body["backfill_days"] == 7
