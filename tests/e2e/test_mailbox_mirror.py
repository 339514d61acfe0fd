"""The issue's "done when" walk-through, over HTTP against `mailsync run`, for every provider
(a real Dovecot, the fake Google; tests/e2e/mailboxes.py)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e


def _messages(service, http, **params):
    r = http.get(service.url + "/v1/messages", params=params)
    assert r.status_code == 200, r.text
    return r.json()["items"]


def test_auth_and_spec(service):
    anon = service.session(user=None, api_key=None)
    anon.headers.pop("Authorization", None)
    r = anon.get(service.url + "/v1/accounts")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    r = service.session(user=None).get(service.url + "/v1/accounts")
    assert r.status_code == 400 and r.json()["code"] == "missing_user"
    r = service.session(api_key="wrong").get(service.url + "/v1/accounts")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    spec = anon.get(service.url + "/v1/openapi.json").json()
    for path in ("/v1/accounts", "/v1/accounts/{account_id}", "/v1/messages", "/v1/threads/{thread_id}"):
        assert path in spec["paths"], path
    docs = anon.get(service.url + "/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_mirror_walkthrough(service, mailbox):
    http = service.session(mailbox.user("alice"))
    url = service.url
    acc = mailbox.connect(http)
    aid = acc["id"]
    assert acc["provider"] == mailbox.provider and acc["email"] == mailbox.self_address
    assert "password" not in json.dumps(acc) and "refresh" not in json.dumps(acc)
    # IMAP answers the POST before any sync; an OAuth callback already queued the first one.
    assert acc["state"] == "initial_sync" or mailbox.provider != "imap" and acc["state"] == "active"

    # New mail arrives and shows up within seconds (worker consumes the queue).
    offer = mailbox.deliver("Angebot", "Kunde <kunde@example.com>", message_id="offer-1@example.com")
    mailbox.sync(http, aid)
    msgs = service.wait_for(lambda: _messages(service, http, account_id=aid), what="first mail")
    assert [m["subject"] for m in msgs] == ["Angebot"] and msgs[0]["unread"] is True
    assert msgs[0]["folder"] == mailbox.inbox
    mid = msgs[0]["id"]
    service.wait_for(lambda: http.get(f"{url}/v1/accounts/{aid}").json()["state"] == "active", what="active")

    # Read at the provider -> unread false here.
    mailbox.mark_read(offer)
    mailbox.sync(http, aid)
    service.wait_for(lambda: http.get(f"{url}/v1/messages/{mid}").json()["unread"] is False, what="seen")

    # Moved to another synced folder (Gmail: a label change): same id and thread, new folder.
    mailbox.move(offer, mailbox.extra)
    mailbox.sync(http, aid)
    service.wait_for(
        lambda: http.get(f"{url}/v1/messages/{mid}").json().get("folder") == mailbox.extra, what="move"
    )
    assert [(m["id"], m["thread_id"]) for m in _messages(service, http, account_id=aid)] == [
        (mid, msgs[0]["thread_id"])
    ]

    # Archived (out of every synced folder; Gmail: INBOX removed) and trashed mails disappear.
    for subject, act in (("Archiviert", mailbox.archive), ("Papierkorb", mailbox.trash)):
        ref = mailbox.deliver(subject, "x@example.com")
        mailbox.sync(http, aid)
        got = service.wait_for(
            lambda s=subject: [m for m in _messages(service, http, account_id=aid) if m["subject"] == s],
            what=subject,
        )
        act(ref)
        mailbox.sync(http, aid)
        service.wait_for(
            lambda g=got: http.get(f"{url}/v1/messages/{g[0]['id']}").status_code == 404,
            what=f"{subject} gone",
        )
    assert [m["id"] for m in _messages(service, http, account_id=aid)] == [mid]

    # Settings: sync INBOX only -> the mail in the other folder disappears.
    r = http.patch(
        f"{url}/v1/accounts/{aid}/settings", json={"folder_mode": "selected", "folders": [mailbox.inbox]}
    )
    assert r.status_code == 200, r.text
    service.wait_for(lambda: http.get(f"{url}/v1/messages/{mid}").status_code == 404, what="folder off")
    folders = {f["name"]: f for f in http.get(f"{url}/v1/accounts/{aid}/folders").json()["items"]}
    assert folders[mailbox.inbox]["synced"] and not folders[mailbox.extra]["synced"]
    r = http.patch(f"{url}/v1/accounts/{aid}/settings", json={"folders": ["Nope"]})
    assert r.status_code == 422 and r.json()["code"] == "unknown_folder"

    # A mail deleted at the provider disappears.
    ref = mailbox.deliver("Kurz", "x@example.com")
    mailbox.sync(http, aid)
    short = service.wait_for(
        lambda: [m for m in _messages(service, http, account_id=aid) if m["subject"] == "Kurz"]
    )
    mailbox.delete(ref)
    mailbox.sync(http, aid)
    service.wait_for(
        lambda: http.get(f"{url}/v1/messages/{short[0]['id']}").status_code == 404, what="delete"
    )

    # Another user of the tenant sees nothing of alice's.
    bob = service.session(mailbox.user("bob"))
    assert bob.get(f"{url}/v1/accounts/{aid}").status_code == 404
    assert bob.get(f"{url}/v1/messages").json()["items"] == []

    # Delete the account: everything is gone.
    mailbox.deliver("Letzte", "x@example.com")
    mailbox.sync(http, aid)
    last = service.wait_for(
        lambda: [m for m in _messages(service, http, account_id=aid) if m["subject"] == "Letzte"]
    )
    assert http.delete(f"{url}/v1/accounts/{aid}").status_code == 204
    assert http.get(f"{url}/v1/accounts/{aid}").status_code == 404
    assert http.get(f"{url}/v1/messages/{last[0]['id']}").status_code == 404
    assert http.get(f"{url}/v1/threads/{last[0]['thread_id']}").status_code == 404
    assert http.get(f"{url}/v1/messages").json()["items"] == []


def test_admin_create_tenant_against_runner(service):
    created = service.admin("create-tenant", "Maklerbüro Nord")
    assert set(created) == {"tenant_id", "api_key"}
    s = service.session("carol", api_key=created["api_key"])
    r = s.get(service.url + "/v1/accounts")
    assert r.status_code == 200 and r.json()["items"] == []
