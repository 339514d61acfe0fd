"""The mail client over HTTP against `mailsync run`, a real Dovecot and a real SMTP server."""

from __future__ import annotations

import base64

import pytest

pytestmark = pytest.mark.e2e


def test_client_routes_end_to_end(service, dovecot, imap_user, smtp_server):
    user, pw = imap_user
    rcpt_user, _ = dovecot.new_user("e2ercpt")
    http = service.session("carla")
    url = service.url
    acc = http.post(
        f"{url}/v1/accounts",
        json={
            "email": smtp_server.address(user),
            "imap": {
                "host": dovecot.host,
                "port": dovecot.port,
                "security": "none",
                "username": user,
                "password": pw,
            },
            "smtp": {
                "host": smtp_server.host,
                "port": smtp_server.port,
                "security": "none",
                "username": user,
                "password": pw,
            },
        },
    ).json()
    aid = acc["id"]
    assert (
        http.patch(f"{url}/v1/accounts/{aid}/settings", json={"signature": "Carla Maklerin"}).status_code
        == 200
    )
    service.wait_for(lambda: http.get(f"{url}/v1/accounts/{aid}").json()["state"] == "active", what="active")

    # Send with an attachment, twice with the same key: delivered once, shown at once in Sent.
    body = {
        "to": [smtp_server.address(rcpt_user)],
        "subject": "Police",
        "text": "Anbei die Police.",
        "attachments": [
            {
                "filename": "police.pdf",
                "content_type": "application/pdf",
                "content_base64": base64.b64encode(b"%PDF police").decode(),
            }
        ],
    }
    r1 = http.post(f"{url}/v1/accounts/{aid}/send", json=body, headers={"Idempotency-Key": "e2e-1"})
    r2 = http.post(f"{url}/v1/accounts/{aid}/send", json=body, headers={"Idempotency-Key": "e2e-1"})
    assert r1.status_code == r2.status_code == 202, r1.text
    assert r1.json()["id"] == r2.json()["id"] and r1.json()["folder"] == "Sent"
    assert len(dovecot.uids(rcpt_user, "INBOX")) == 1
    sent_id = r1.json()["id"]
    att = http.get(f"{url}/v1/messages/{sent_id}").json()["attachments"][0]
    got = http.get(f"{url}/v1/messages/{sent_id}/attachments/{att['id']}")
    assert got.status_code == 200 and got.content == b"%PDF police"

    # The recipient answers; it arrives in our INBOX and joins the thread.
    reply = http.post(
        f"{url}/v1/accounts/{aid}/send",
        json={
            "to": [smtp_server.address(user)],
            "subject": "Re: Police",
            "text": "Danke",
            "reply_to": sent_id,
        },
    )
    assert reply.status_code == 202
    http.post(f"{url}/v1/accounts/{aid}/sync")
    thread_id = r1.json()["thread_id"]
    assert reply.json()["thread_id"] == thread_id
    # Sent to ourselves: one message, in Sent at once and in INBOX once the sync saw it.
    service.wait_for(
        lambda: http.get(f"{url}/v1/messages/{reply.json()['id']}").json()["folders"] == ["INBOX", "Sent"],
        what="reply in INBOX",
    )
    assert http.get(f"{url}/v1/threads/{thread_id}").json()["message_count"] == 2

    # Mark the thread read and archive it; then delete one mail.
    r = http.patch(f"{url}/v1/threads/{thread_id}", json={"unread": False, "folder": "Archive"})
    assert r.status_code == 200 and {m["folder"] for m in r.json()["items"]} == {"Archive"}
    assert dovecot.uids(user, "Sent") == [] and dovecot.uids(user, "INBOX") == []  # every copy moved
    assert len(dovecot.uids(user, "Archive")) == 3
    r = http.patch(f"{url}/v1/messages/{sent_id}", json={"unread": True})
    assert r.status_code == 200 and r.json()["unread"] is True
    assert http.delete(f"{url}/v1/messages/{sent_id}").status_code == 204
    assert http.get(f"{url}/v1/messages/{sent_id}").status_code == 404
    assert len(dovecot.uids(user, "Trash")) == 1

    # After another sync nothing is duplicated and the thread is as we left it.
    http.post(f"{url}/v1/accounts/{aid}/sync")
    import time

    time.sleep(3)
    msgs = http.get(f"{url}/v1/messages", params={"account_id": aid}).json()["items"]
    assert [(m["subject"], m["folder"]) for m in msgs] == [("Re: Police", "Archive")]
    r = http.patch(f"{url}/v1/messages/{msgs[0]['id']}", json={"folder": "Nirgendwo"})
    assert r.status_code == 422 and r.json()["code"] == "unknown_folder"
