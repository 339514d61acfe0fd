"""The mail client over HTTP against `mailsync run`, for every provider: a real Dovecot and a
real SMTP server, or the fake Google (Gmail sends and files Sent itself)."""

from __future__ import annotations

import base64

import pytest

pytestmark = pytest.mark.e2e


def test_client_routes_end_to_end(service, mailbox):
    http = service.session(mailbox.user("carla"))
    url = service.url
    aid = mailbox.connect(http)["id"]
    assert (
        http.patch(f"{url}/v1/accounts/{aid}/settings", json={"signature": "Carla Maklerin"}).status_code
        == 200
    )
    service.wait_for(lambda: http.get(f"{url}/v1/accounts/{aid}").json()["state"] == "active", what="active")

    # Send with an attachment, twice with the same key: delivered once, shown at once in Sent.
    body = {
        "to": [mailbox.recipient],
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
    assert r1.json()["id"] == r2.json()["id"] and r1.json()["folder"] == mailbox.sent
    assert mailbox.received("Police") == 1
    sent_id = r1.json()["id"]
    sent = http.get(f"{url}/v1/messages/{sent_id}").json()
    sent_ref = mailbox.ref_of(sent)
    assert mailbox.folders_of(sent_ref) == {mailbox.sent}
    att = sent["attachments"][0]
    got = http.get(f"{url}/v1/messages/{sent_id}/attachments/{att['id']}")
    assert got.status_code == 200 and got.content == b"%PDF police"

    # The recipient answers; it arrives in our INBOX and joins the thread.
    answer = {"to": [mailbox.self_address], "subject": "Re: Police", "text": "Danke", "reply_to": sent_id}
    # Replied to at once: before any sync has brought the provider's Sent copy back.
    reply = http.post(f"{url}/v1/accounts/{aid}/send", json=answer)
    assert reply.status_code == 202, reply.text
    mailbox.loopback()
    mailbox.sync(http, aid)
    thread_id = r1.json()["thread_id"]
    assert reply.json()["thread_id"] == thread_id
    # Sent to ourselves: one message, in Sent at once and in INBOX once the sync saw it.
    service.wait_for(
        lambda: (
            http.get(f"{url}/v1/messages/{reply.json()['id']}").json()["folders"]
            == [mailbox.inbox, mailbox.sent]
        ),
        what="reply in INBOX",
    )
    assert http.get(f"{url}/v1/threads/{thread_id}").json()["message_count"] == 2
    reply_ref = mailbox.ref_of(http.get(f"{url}/v1/messages/{reply.json()['id']}").json())

    # Mark the thread read and move it; then delete one mail. Every write reaches the provider.
    r = http.patch(f"{url}/v1/threads/{thread_id}", json={"unread": False, "folder": mailbox.extra})
    assert r.status_code == 200 and {m["folder"] for m in r.json()["items"]} == {mailbox.extra}, r.text
    assert mailbox.count(mailbox.sent) == 0 and mailbox.count(mailbox.inbox) == 0  # every copy moved
    # IMAP and Graph hold the reply to ourselves twice (from INBOX and Sent); Gmail once, with
    # both labels.
    assert mailbox.count(mailbox.extra) == (2 if mailbox.provider == "google" else 3)
    assert mailbox.folders_of(sent_ref) == mailbox.folders_of(reply_ref) == {mailbox.extra}
    assert not mailbox.is_unread(sent_ref)
    r = http.patch(f"{url}/v1/messages/{sent_id}", json={"unread": True})
    assert r.status_code == 200 and r.json()["unread"] is True
    assert mailbox.is_unread(sent_ref)
    r = http.patch(f"{url}/v1/messages/{sent_id}", json={"unread": False})
    assert r.status_code == 200 and r.json()["unread"] is False and not mailbox.is_unread(sent_ref)
    assert http.delete(f"{url}/v1/messages/{sent_id}").status_code == 204
    assert http.get(f"{url}/v1/messages/{sent_id}").status_code == 404
    assert mailbox.count(mailbox.trash_folder) == 1
    assert mailbox.trash_folder in mailbox.folders_of(sent_ref)

    # After another sync nothing is duplicated and the thread is as we left it. A sync that was
    # running during the writes may have listed the old state; the one asked for here runs
    # after it (one account's syncs run one at a time) and sees the provider as we left it.
    mailbox.sync(http, aid)

    def listing() -> list[dict]:
        return list(http.get(f"{url}/v1/messages", params={"account_id": aid}).json()["items"])

    service.wait_for(
        lambda: [(m["subject"], m["folder"]) for m in listing()] == [("Re: Police", mailbox.extra)],
        what="the mirror as the client left it",
    )
    msgs = listing()
    r = http.patch(f"{url}/v1/messages/{msgs[0]['id']}", json={"folder": "Nirgendwo"})
    assert r.status_code == 422 and r.json()["code"] == "unknown_folder"
