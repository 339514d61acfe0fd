"""Sync health over HTTP against `mailsync run` and a real Dovecot: a changed password turns
the account into `auth_error` with action `reauthenticate`, and `PUT credentials` brings it
back with every mail kept."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.e2e.mailboxes import ImapMailbox

pytestmark = pytest.mark.e2e


def _messages(service: Any, http: Any, aid: str) -> list[dict[str, Any]]:
    r = http.get(service.url + "/v1/messages", params={"account_id": aid})
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def test_changed_password_auth_error_then_put_credentials_keeps_every_mail(
    service: Any, dovecot: Any, smtp_server: Any
) -> None:
    mailbox = ImapMailbox(service, dovecot, smtp_server, dovecot.new_user("health"))
    http = service.session("alice")
    url = service.url
    aid = mailbox.connect(http)["id"]
    for i in range(3):
        mailbox.deliver(f"Vorher {i}", message_id=f"before-{i}-{uuid.uuid4().hex[:6]}@example.com")
    mailbox.sync(http, aid)
    before = service.wait_for(
        lambda: len(m := _messages(service, http, aid)) == 3 and m, what="the first three mails"
    )
    service.wait_for(lambda: http.get(f"{url}/v1/accounts/{aid}").json()["state"] == "active", what="active")

    new_pw = "neu-" + uuid.uuid4().hex
    dovecot.add_user(mailbox.login, new_pw)  # changed at the provider
    r = http.post(f"{url}/v1/accounts/{aid}/sync")
    # 409 auth_error: the runner's own poll (every 2 s) found the changed password first.
    assert r.status_code == 202 or (r.status_code == 409 and r.json()["code"] == "auth_error"), r.text
    acc = service.wait_for(
        lambda: (a := http.get(f"{url}/v1/accounts/{aid}").json())["state"] == "auth_error" and a,
        what="auth_error",
    )
    assert acc["health"]["action"] == "reauthenticate"
    assert (
        acc["health"]["last_error"]["code"] == "auth_failed" and acc["error"] == acc["health"]["last_error"]
    )
    assert new_pw not in str(acc) and mailbox.password not in str(acc)
    # The mails stay visible while the account waits for the user.
    assert {m["id"] for m in _messages(service, http, aid)} == {m["id"] for m in before}

    mailbox.deliver("Danach", message_id=f"after-{uuid.uuid4().hex[:6]}@example.com")
    r = http.put(f"{url}/v1/accounts/{aid}/credentials", json={"password": "falsch"})
    assert r.status_code == 422 and r.json()["code"] == "auth_failed", r.text
    r = http.put(f"{url}/v1/accounts/{aid}/credentials", json={"password": new_pw})
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "active" and r.json()["health"]["action"] is None
    # The sync PUT queued fetches what arrived meanwhile.
    after = service.wait_for(
        lambda: len(m := _messages(service, http, aid)) == 4 and m, what="the mail after the fix"
    )
    assert {m["id"] for m in before} <= {m["id"] for m in after}
    runs = http.get(f"{url}/v1/accounts/{aid}/syncs").json()["items"]
    assert any(r["outcome"] == "error" and r["error"]["code"] == "auth_failed" for r in runs), runs
    assert http.get(f"{url}/v1/accounts/{aid}").json()["state"] == "active"
