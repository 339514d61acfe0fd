"""Microsoft 365 accounts end to end against the fake identity platform + Graph: hosted
OAuth with msal (PKCE, single-use state), sync through the real engine and store, client,
send, change notifications (validation handshake, clientState, lifecycle events) and
subscription renewal."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from mailsync.config import get_settings
from mailsync.usecases.sync_account import sync_account
from tests.fakes.graph import FakeGraph
from tests.support.api import ApiClient
from tests.support.dovecot import make_mail
from tests.support.microsoft import (
    PUBLIC_URL,
    REDIRECT,
    connect_microsoft,
    finish_flow,
    post_webhook,
    start_flow,
)

pytestmark = pytest.mark.integration

EMAIL = "petra@contoso.test"


def drain() -> list[dict]:
    sqs, q, out = boto3.client("sqs"), get_settings().queue_url, []
    while msgs := sqs.receive_message(QueueUrl=q, MaxNumberOfMessages=10).get("Messages", []):
        for m in msgs:
            sqs.delete_message(QueueUrl=q, ReceiptHandle=m["ReceiptHandle"])
            out.append(json.loads(m["Body"]))
    return out


def subjects(api: ApiClient, account_id: str) -> dict[str, dict]:
    return {m["subject"]: m for m in api.get("/v1/messages", account_id=account_id).body["items"]}


def connect(api: ApiClient, fake: FakeGraph, email: str = EMAIL) -> str:
    status, q = connect_microsoft(api, fake, email)
    assert status == 302 and q["_location"].startswith(REDIRECT) and "account_id" in q, q
    return q["account_id"]


def subscription_of(fake: FakeGraph, email: str = EMAIL) -> str:
    (sid,) = [s.id for s in fake.subscriptions.values() if s.user == email.lower()]
    return sid


def test_authorize_url_carries_pkce_state_and_scopes(tenant, microsoft):
    api = ApiClient("key-t1", "alice")
    url = start_flow(api)
    assert url.startswith(microsoft.authority + "/oauth2/v2.0/authorize")
    q = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert q["client_id"] == microsoft.client_id and q["response_type"] == "code"
    assert q["redirect_uri"] == f"{PUBLIC_URL}/v1/oauth/microsoft/callback"
    assert q["code_challenge_method"] == "S256" and len(q["code_challenge"]) >= 43
    assert {"offline_access", "Mail.ReadWrite", "Mail.Send", "User.Read"} <= set(q["scope"].split())
    assert q["state"] and "." in q["state"] and q["nonce"]
    r = api.get("/v1/oauth/microsoft/authorize", redirect_uri="https://evil.example/steal")
    assert r.status == 422 and r.body["code"] == "redirect_not_allowed"


def test_connect_sync_move_and_delete(tenant, microsoft):
    api = ApiClient("key-t1", "alice")
    aid = connect(api, microsoft)
    acc = api.get(f"/v1/accounts/{aid}").body
    assert acc["provider"] == "microsoft" and acc["email"] == EMAIL
    assert "refresh" not in json.dumps(acc) and "token" not in json.dumps(acc)
    sub = microsoft.subscriptions[subscription_of(microsoft)]
    assert sub.notification_url == sub.lifecycle_url == f"{PUBLIC_URL}/v1/webhooks/microsoft"
    assert sub.change_type == "created,updated,deleted" and sub.client_state
    assert {"tenant_id": "t1", "account_id": aid, "reason": "connect"} in drain()

    m1 = microsoft.deliver(EMAIL, make_mail("Antrag", "kunde@example.org", EMAIL, message_id="a1@x"))
    assert sync_account("t1", aid)["status"] == "ok"
    assert list(subjects(api, aid)) == ["Antrag"]
    first = subjects(api, aid)["Antrag"]

    # A move between synced folders keeps id, thread and links; no duplicate appears.
    microsoft.create_folder(EMAIL, "Kunden")
    sync_account("t1", aid)
    microsoft.move(EMAIL, m1, "Kunden")
    sync_account("t1", aid)
    items = api.get("/v1/messages", account_id=aid).body["items"]
    assert len(items) == 1
    moved = items[0]
    assert moved["id"] == first["id"] and moved["folder"] == "Kunden"
    assert moved["thread_id"] == first["thread_id"]

    microsoft.delete(EMAIL, m1)
    sync_account("t1", aid)
    assert subjects(api, aid) == {}
    late = microsoft.notification(sub.id)  # one Graph sent just before the deletion
    assert api.delete(f"/v1/accounts/{aid}").status == 204
    assert api.get(f"/v1/accounts/{aid}").status == 404
    # The subscription is deleted at Graph, so Microsoft stops notifying us about the mailbox.
    assert sub.id not in microsoft.subscriptions
    # And our index of it is gone: a notification still in flight finds nothing to sync.
    assert post_webhook(late).status == 202
    assert [j for j in drain() if j.get("reason") != "purge"] == []


def test_failures_redirect_with_an_error_code(tenant, microsoft):
    api = ApiClient("key-t1", "alice")
    url = start_flow(api)
    params = microsoft.login(url, EMAIL, deny=True)
    status, out = finish_flow(api, params)
    assert status == 302 and out["error"] == "access_denied" and out["_location"].startswith(REDIRECT)
    status, out = finish_flow(api, params)  # the same state again: single use
    assert status == 302 and out["error"] == "invalid_state"
    url = start_flow(api)
    params = microsoft.login(url, EMAIL)
    status, out = finish_flow(api, {**params, "code": "not-a-real-code"})
    assert status == 302 and out["error"] == "exchange_failed"
    status, out = finish_flow(api, {"code": "x", "state": "forged.signature"})
    assert status == 400 and out["_location"] == ""


def test_reconnect_keeps_mails_and_revoked_access_sets_auth_error(tenant, microsoft):
    api = ApiClient("key-t1", "alice")
    aid = connect(api, microsoft)
    microsoft.deliver(EMAIL, make_mail("Bleibt", "kunde@example.org", EMAIL))
    sync_account("t1", aid)
    microsoft.revoke_user(EMAIL)  # refresh tokens answer invalid_grant, access tokens 401
    assert sync_account("t1", aid)["status"] == "auth_error"
    gone = api.get(f"/v1/accounts/{aid}").body
    assert gone["state"] == "auth_error" and gone["health"]["action"] == "reauthenticate"
    assert gone["health"]["last_error"]["code"] == "auth_failed"
    assert connect(api, microsoft) == aid
    # The reconnect clears auth_error at once: healthy, nothing for the user to do.
    back = api.get(f"/v1/accounts/{aid}").body
    assert back["state"] == "active" and back["error"] is None, back
    assert back["health"]["action"] is None and back["health"]["consecutive_failures"] == 0
    assert list(subjects(api, aid)) == ["Bleibt"]
    assert sync_account("t1", aid)["status"] == "ok"
    assert api.get(f"/v1/accounts/{aid}").body["state"] == "active"


def test_refreshed_tokens_are_stored_again(tenant, microsoft):
    from mailsync.store import accounts as repo

    api = ApiClient("key-t1", "alice")
    aid = connect(api, microsoft)
    before = repo.get_credentials_envelope("t1", aid)
    microsoft.expire_access_tokens()
    assert sync_account("t1", aid)["status"] == "ok"
    assert repo.get_credentials_envelope("t1", aid) != before


def test_client_and_send(tenant, microsoft):
    api = ApiClient("key-t1", "alice")
    aid = connect(api, microsoft)
    mid = microsoft.deliver(EMAIL, make_mail("Frage", "kunde@example.org", EMAIL, message_id="f1@x"))
    sync_account("t1", aid)
    msg = subjects(api, aid)["Frage"]
    assert api.patch(f"/v1/messages/{msg['id']}", {"unread": False}).body["unread"] is False
    assert microsoft.message(EMAIL, mid).is_read
    r = api.post(
        f"/v1/accounts/{aid}/send",
        {"to": ["kunde@example.org"], "subject": "Re: Frage", "text": "Antwort", "reply_to": msg["id"]},
    )
    assert r.status == 202, r.body
    assert microsoft.requests  # createReply + send went to Graph
    sync_account("t1", aid)  # the delta brings the Sent copy back: recognised, no duplicate
    assert sorted(subjects(api, aid)) == ["Frage", "Re: Frage"]
    assert len(api.get("/v1/messages", account_id=aid).body["items"]) == 2
    assert subjects(api, aid)["Re: Frage"]["thread_id"] == msg["thread_id"]
    r = api.post(f"/v1/accounts/{aid}/send", {"to": ["kunde@example.org"], "subject": "Neu", "text": "Hallo"})
    assert r.status == 202, r.body
    sync_account("t1", aid)
    assert sorted(subjects(api, aid)) == ["Frage", "Neu", "Re: Frage"]
    assert api.delete(f"/v1/messages/{msg['id']}").status == 204
    assert microsoft.folder_of(EMAIL, mid) == "deleteditems"
    sync_account("t1", aid)
    assert sorted(subjects(api, aid)) == ["Neu", "Re: Frage"]


def test_writes_before_the_sent_copy_synced_back_reach_graph(tenant, microsoft):
    """sendMail does not name the Sent copy; until the delta brings it the mirror holds a
    pending ref. A move, a read flag or a delete in that window must still reach the copy
    Graph filed (found by its internetMessageId), and the next sync must not bring it back."""
    api = ApiClient("key-t1", "alice")
    aid = connect(api, microsoft)
    microsoft.create_folder(EMAIL, "Kunden")
    sync_account("t1", aid)
    sent = api.post(
        f"/v1/accounts/{aid}/send", {"to": ["kunde@example.org"], "subject": "Police", "text": "x"}
    )
    other = api.post(
        f"/v1/accounts/{aid}/send", {"to": ["kunde@example.org"], "subject": "Tarif", "text": "y"}
    )
    assert sent.status == other.status == 202, sent.body
    (copy,) = [m for m in microsoft.messages_in(EMAIL, "sentitems") if b"Police" in m.raw]

    r = api.patch(f"/v1/threads/{sent.body['thread_id']}", {"folder": "Kunden", "unread": True})
    assert r.status == 200, r.body
    assert microsoft.folder_of(EMAIL, copy.immutable_id) != "sentitems"
    assert microsoft.message(EMAIL, copy.immutable_id).is_read is False
    assert api.delete(f"/v1/messages/{other.body['id']}").status == 204
    assert [m for m in microsoft.messages_in(EMAIL, "sentitems")] == []
    assert len(microsoft.messages_in(EMAIL, "deleteditems")) == 1

    sync_account("t1", aid)
    sync_account("t1", aid)
    msgs = api.get("/v1/messages", account_id=aid).body["items"]
    assert [(m["subject"], m["folder"], m["unread"]) for m in msgs] == [("Police", "Kunden", True)]


# ------------------------------------------------------------------------------- webhook


def test_validation_handshake():
    r = ApiClient(None, None).call(
        "POST", "/v1/webhooks/microsoft?validationToken=Validation%3A%20Testing%20client%20%26%20more"
    )
    assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
    assert r.body == "Validation: Testing client & more"


def test_notifications_check_client_state_and_never_call_graph(tenant, microsoft):
    api = ApiClient("key-t1", "alice")
    aid = connect(api, microsoft)
    sync_account("t1", aid)
    drain()
    sid = subscription_of(microsoft)
    mid = microsoft.deliver(EMAIL, make_mail("Neu", "kunde@example.org", EMAIL))
    calls = sum(microsoft.requests.values())
    good = microsoft.notification(sid, "created", mid)
    good["value"].append(microsoft.notification(sid, "updated", mid)["value"][0])
    assert post_webhook(good).status == 202
    assert drain() == [{"tenant_id": "t1", "account_id": aid, "reason": "push"}]  # one per account
    bad = microsoft.notification(sid, "created", mid)
    bad["value"][0]["clientState"] = "forged"
    assert post_webhook(bad).status == 202
    missing = microsoft.notification(sid, "created", mid)
    del missing["value"][0]["clientState"]
    assert post_webhook(missing).status == 202
    unknown = microsoft.notification(sid, "created", mid)
    unknown["value"][0]["subscriptionId"] = "00000000-0000-0000-0000-000000000000"
    assert post_webhook(unknown).status == 202
    assert post_webhook({"nonsense": True}).status == 202
    assert drain() == []  # dropped (and logged), nothing enqueued
    assert sum(microsoft.requests.values()) == calls  # the webhook never called Graph
    sync_account("t1", aid)
    assert list(subjects(api, aid)) == ["Neu"]


@pytest.mark.parametrize("event", ["missed", "reauthorizationRequired", "subscriptionRemoved"])
def test_lifecycle_events(tenant, microsoft, event):
    api = ApiClient("key-t1", "alice")
    aid = connect(api, microsoft)
    sync_account("t1", aid)
    drain()
    sid = subscription_of(microsoft)
    if event == "reauthorizationRequired":  # Graph asks near the end of the subscription's life
        microsoft.subscriptions[sid].expiration -= timedelta(hours=12)
    before = microsoft.subscriptions[sid].expiration
    payload = microsoft.lifecycle_event(sid, event)
    if event == "subscriptionRemoved":
        microsoft.subscriptions.pop(sid)  # Graph dropped it
    calls = sum(microsoft.requests.values())
    assert post_webhook(payload).status == 202
    assert sum(microsoft.requests.values()) == calls  # no Graph call inside the webhook
    assert drain() == [{"tenant_id": "t1", "account_id": aid, "reason": event}]
    forged = microsoft.lifecycle_event(sid, event) if sid in microsoft.subscriptions else dict(payload)
    forged = json.loads(json.dumps(forged))
    forged["value"][0]["clientState"] = "forged"
    assert post_webhook(forged).status == 202 and drain() == []

    microsoft.deliver(EMAIL, make_mail("Danach", "kunde@example.org", EMAIL))
    assert sync_account("t1", aid)["status"] == "ok"  # the enqueued sync runs a delta ...
    assert list(subjects(api, aid)) == ["Danach"]
    if event == "reauthorizationRequired":  # ... and renews the subscription
        assert list(microsoft.subscriptions) == [sid]
        assert microsoft.subscriptions[sid].expiration > before
    elif event == "subscriptionRemoved":  # ... or recreates it
        new = subscription_of(microsoft)
        assert new != sid
        assert post_webhook(microsoft.notification(new)).status == 202
        assert drain() == [{"tenant_id": "t1", "account_id": aid, "reason": "push"}]
    else:
        assert list(microsoft.subscriptions) == [sid]


def test_subscription_renewal_runs_once_per_period(tenant, microsoft):
    from mailsync.usecases.microsoft import renew_subscriptions

    api = ApiClient("key-t1", "alice")
    aid = connect(api, microsoft)
    sid = subscription_of(microsoft)
    now = 2_000_000_000
    assert renew_subscriptions(now=now) == 1
    assert renew_subscriptions(now=now + 60) == 0  # a concurrent or repeated run loses the lease
    microsoft.subscriptions.pop(sid)  # expired meanwhile: marked, the next sync recreates it
    assert renew_subscriptions(now=now + 86_400) == 0
    assert sync_account("t1", aid)["status"] == "ok"
    assert subscription_of(microsoft) != sid
