"""The issue's "done when" walk-through, over HTTP against `mailsync run` and a real Dovecot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.dovecot import make_mail

pytestmark = pytest.mark.e2e


def _connect(service, dovecot, imap_user, http):
    user, pw = imap_user
    r = http.post(
        service.url + "/v1/accounts",
        json={
            "email": f"{user}@example.test",
            "imap": {
                "host": dovecot.host,
                "port": dovecot.port,
                "security": "none",
                "username": user,
                "password": pw,
            },
            "smtp": {"host": dovecot.host, "port": 25, "security": "none", "username": user, "password": pw},
        },
    )
    assert r.status_code == 201, r.text
    return r.json()


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


def test_mirror_walkthrough(service, dovecot, imap_user):
    user, _ = imap_user
    http = service.session("alice")
    acc = _connect(service, dovecot, imap_user, http)
    aid = acc["id"]
    assert acc["state"] == "initial_sync" and "password" not in json.dumps(acc)

    # New mail arrives and shows up within seconds (worker consumes the queue).
    dovecot.append(
        user,
        "INBOX",
        make_mail("Angebot", "Kunde <kunde@example.com>", "a@example.test", message_id="offer-1@example.com"),
    )
    http.post(f"{service.url}/v1/accounts/{aid}/sync")
    msgs = service.wait_for(lambda: _messages(service, http, account_id=aid), what="first mail")
    assert [m["subject"] for m in msgs] == ["Angebot"] and msgs[0]["unread"] is True
    mid = msgs[0]["id"]
    service.wait_for(
        lambda: http.get(f"{service.url}/v1/accounts/{aid}").json()["state"] == "active", what="active"
    )

    # Read at the provider -> unread false here.
    uid = dovecot.uids(user, "INBOX")[-1]
    dovecot.set_seen(user, "INBOX", [uid], True)
    http.post(f"{service.url}/v1/accounts/{aid}/sync")
    service.wait_for(
        lambda: http.get(f"{service.url}/v1/messages/{mid}").json()["unread"] is False, what="seen"
    )

    # Moved to Archive (synced): same id, new folder.
    dovecot.move(user, "INBOX", [uid], "Archive")
    http.post(f"{service.url}/v1/accounts/{aid}/sync")
    service.wait_for(
        lambda: http.get(f"{service.url}/v1/messages/{mid}").json()["folder"] == "Archive", what="move"
    )
    assert len(_messages(service, http, account_id=aid)) == 1

    # Settings: sync INBOX only -> the Archive mail disappears.
    r = http.patch(
        f"{service.url}/v1/accounts/{aid}/settings", json={"folder_mode": "selected", "folders": ["INBOX"]}
    )
    assert r.status_code == 200, r.text
    service.wait_for(
        lambda: http.get(f"{service.url}/v1/messages/{mid}").status_code == 404, what="folder off"
    )
    folders = {f["name"]: f for f in http.get(f"{service.url}/v1/accounts/{aid}/folders").json()["items"]}
    assert folders["INBOX"]["synced"] and not folders["Archive"]["synced"]
    r = http.patch(f"{service.url}/v1/accounts/{aid}/settings", json={"folders": ["Nope"]})
    assert r.status_code == 422 and r.json()["code"] == "unknown_folder"

    # A mail deleted at the provider disappears.
    dovecot.append(user, "INBOX", make_mail("Kurz", "x@example.com", "a@example.test"))
    http.post(f"{service.url}/v1/accounts/{aid}/sync")
    short = service.wait_for(
        lambda: [m for m in _messages(service, http, account_id=aid) if m["subject"] == "Kurz"]
    )
    dovecot.delete(user, "INBOX", dovecot.uids(user, "INBOX"))
    http.post(f"{service.url}/v1/accounts/{aid}/sync")
    service.wait_for(
        lambda: http.get(f"{service.url}/v1/messages/{short[0]['id']}").status_code == 404, what="delete"
    )

    # Another user of the tenant sees nothing of alice's.
    bob = service.session("bob")
    assert bob.get(f"{service.url}/v1/accounts/{aid}").status_code == 404
    assert bob.get(f"{service.url}/v1/messages").json()["items"] == []

    # Delete the account: everything is gone.
    dovecot.append(user, "INBOX", make_mail("Letzte", "x@example.com", "a@example.test"))
    http.post(f"{service.url}/v1/accounts/{aid}/sync")
    last = service.wait_for(
        lambda: [m for m in _messages(service, http, account_id=aid) if m["subject"] == "Letzte"]
    )
    assert http.delete(f"{service.url}/v1/accounts/{aid}").status_code == 204
    assert http.get(f"{service.url}/v1/accounts/{aid}").status_code == 404
    assert http.get(f"{service.url}/v1/messages/{last[0]['id']}").status_code == 404
    assert http.get(f"{service.url}/v1/threads/{last[0]['thread_id']}").status_code == 404
    assert http.get(f"{service.url}/v1/messages").json()["items"] == []


def test_admin_create_tenant_against_runner(service):
    exe = Path(sys.executable).parent / "mailsync"
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": service.moto,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-central-1",
    }
    out = subprocess.run(
        [str(exe), "admin", "create-tenant", "Maklerbüro Nord"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    created = json.loads(out.stdout)
    assert set(created) == {"tenant_id", "api_key"}
    s = service.session("carol", api_key=created["api_key"])
    r = s.get(service.url + "/v1/accounts")
    assert r.status_code == 200 and r.json()["items"] == []
