"""Outbound events end to end over `mailsync run` (issue 15): a local receiver registered as a
webhook endpoint gets a mail appended in Dovecot as a signed ``message.created`` and its
deletion as ``message.deleted``, through moto's stream, the events function, the webhook queue
and its consumer; the feed shows the same events."""

from __future__ import annotations

import json

import pytest
from standardwebhooks.webhooks import Webhook

from tests.support.webhooks import Receiver

pytestmark = pytest.mark.e2e


def _events(receiver: Receiver, secret: str) -> list[dict]:
    out = []
    for r in list(receiver.requests):
        verified = Webhook(secret).verify(r.body, r.headers)  # raises unless signed with the secret
        assert r.headers["webhook-id"] == verified["id"]
        out.append(verified)
    return out


@pytest.mark.parametrize("mailbox", ["imap"], indirect=True)
def test_dovecot_mail_arrives_as_signed_webhooks_and_in_the_feed(service, mailbox):
    receiver = Receiver()
    user = mailbox.user("events-alice")  # not shared: other scenarios count alice's mails
    http = service.session(user)
    aid = None
    try:
        tenant = service.session(user=None)
        r = tenant.post(
            f"{service.url}/v1/webhook-endpoints",
            json={
                "url": receiver.url(),
                "events": ["message.created", "message.deleted"],
                "description": "CRM",
            },
        )
        assert r.status_code == 201, r.text
        secret = r.json()["secret"]
        assert secret.startswith("whsec_")

        aid = mailbox.connect(http)["id"]
        ref = mailbox.deliver("Angebot", "Kunde <kunde@example.com>", message_id="ev-offer@example.com")
        mailbox.sync(http, aid)

        def created() -> list[dict]:
            return [
                e for e in _events(receiver, secret)
                if e["type"] == "message.created" and e["data"]["account_id"] == aid
            ]  # fmt: skip

        (offer,) = service.wait_for(created, timeout=120, what="a signed message.created")
        assert offer["data"]["subject"] == "Angebot" and offer["data"]["owner"] == user
        assert "password" not in json.dumps(offer)

        mailbox.delete(ref)
        mailbox.sync(http, aid)

        def deleted() -> list[dict]:
            return [e for e in _events(receiver, secret) if e["type"] == "message.deleted"]

        (gone,) = service.wait_for(deleted, timeout=120, what="a signed message.deleted")
        assert gone["data"]["id"] == offer["data"]["id"] and gone["data"]["reason"] == "deleted_at_provider"
        assert all(e["type"] in ("message.created", "message.deleted") for e in _events(receiver, secret))

        ids: list[str] = []  # the whole feed, page by page (other scenarios fill it too)
        cursor = None
        while True:
            page = tenant.get(
                f"{service.url}/v1/events",
                params={"types": "message.created,message.deleted", "limit": 500, "after": cursor},
            ).json()
            ids += [e["id"] for e in page["items"]]
            cursor = page["next_cursor"]
            if not page["has_more"]:
                break
        assert offer["id"] in ids and gone["id"] in ids and ids.index(offer["id"]) < ids.index(gone["id"])
    finally:
        receiver.close()
        if aid:
            http.delete(f"{service.url}/v1/accounts/{aid}")
