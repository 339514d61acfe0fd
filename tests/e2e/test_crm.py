"""CRM assignment and visibility over HTTP against `mailsync run`, for every provider
(a real Dovecot, the fake Google; tests/e2e/mailboxes.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

pytestmark = pytest.mark.e2e


def test_contacts_links_and_visibility_end_to_end(service, mailbox):
    url = service.url
    owner_id, colleague_id = mailbox.user("olga"), mailbox.user("colin")
    owner, colleague = service.session(owner_id), service.session(colleague_id)
    outsider = service.session(mailbox.user("oscar"))
    # Contacts are tenant-wide: each provider's run has its own contact and customer address.
    contact = "k-1" if mailbox.provider == "imap" else f"k-1-{mailbox.provider}"
    domain = "example.org" if mailbox.provider == "imap" else f"{mailbox.provider}.example.org"
    customer = f"kunde@{domain}"
    acc = mailbox.connect(owner, backfill_days=1, settings={"visibility": "public"})
    aid = acc["id"]
    assert acc["settings"]["visibility"] == "public"
    earlier = datetime.now(UTC) - timedelta(hours=1)
    first = mailbox.deliver(
        "Schadenmeldung",
        f"Kunde K <{customer}>",
        message_id=f"k1@{domain}",
        date=earlier,
    )
    mailbox.deliver("Newsletter", "news@example.net")
    mailbox.sync(owner, aid)
    service.wait_for(
        lambda: len(owner.get(f"{url}/v1/messages", params={"account_id": aid}).json()["items"]) == 2
    )

    # Nothing is linked yet: both wait in the unassigned list.
    unassigned = owner.get(f"{url}/v1/messages", params={"unassigned": "true"}).json()["items"]
    assert {m["subject"] for m in unassigned} == {"Schadenmeldung", "Newsletter"}

    # The contact arrives: the existing mail is linked retroactively.
    r = colleague.put(
        f"{url}/v1/contacts/{contact}",
        json={
            "kind": "customer",
            "name": "Kunde K",
            "emails": [f" Kunde@{domain.capitalize()} "],
            "visible_to": [owner_id, colleague_id],
        },
    )
    assert r.status_code == 201 and r.json()["emails"] == [customer], r.text
    hist = colleague.get(f"{url}/v1/contacts/{contact}/messages").json()["items"]
    assert [m["subject"] for m in hist] == ["Schadenmeldung"]
    assert hist[0]["links"] == [{"contact_id": contact, "kind": "customer", "source": "auto"}]
    assert [
        m["subject"] for m in owner.get(f"{url}/v1/messages", params={"unassigned": "true"}).json()["items"]
    ] == ["Newsletter"]

    # A new mail from the contact is linked at ingest.
    mailbox.deliver(
        "Re: Schadenmeldung",
        customer,
        in_reply_to=first.message_id,
        references=first.message_id,
    )
    mailbox.sync(owner, aid)
    service.wait_for(
        lambda: len(colleague.get(f"{url}/v1/contacts/{contact}/messages").json()["items"]) == 2,
        what="ingest",
    )

    # Visibility: the colleague sees the linked public mails through the contact only.
    linked = colleague.get(f"{url}/v1/contacts/{contact}/messages").json()["items"]
    assert colleague.get(f"{url}/v1/messages/{linked[0]['id']}").status_code == 200
    assert colleague.get(f"{url}/v1/threads/{linked[0]['thread_id']}").json()["message_count"] == 2
    assert colleague.get(f"{url}/v1/messages").json()["items"] == []
    assert colleague.get(f"{url}/v1/threads").json()["items"] == []
    newsletter = [m for m in owner.get(f"{url}/v1/messages").json()["items"] if m["subject"] == "Newsletter"][
        0
    ]
    assert colleague.get(f"{url}/v1/messages/{newsletter['id']}").status_code == 404
    assert outsider.get(f"{url}/v1/contacts/{contact}/messages").status_code == 404
    assert outsider.get(f"{url}/v1/messages/{linked[0]['id']}").status_code == 404

    # A manual link on the newsletter's thread, then unlink.
    r = owner.post(f"{url}/v1/threads/{newsletter['thread_id']}/links", json={"contact_id": contact})
    assert r.status_code == 201 and r.json()["linked"] == [newsletter["id"]]
    assert colleague.get(f"{url}/v1/messages/{newsletter['id']}").status_code == 200
    assert owner.delete(f"{url}/v1/threads/{newsletter['thread_id']}/links/{contact}").status_code == 204
    assert colleague.get(f"{url}/v1/messages/{newsletter['id']}").status_code == 404

    # Private mails stay the owner's, even when linked.
    owner.patch(f"{url}/v1/accounts/{aid}/settings", json={"visibility": "private"})
    mailbox.deliver("Vertraulich", customer)
    mailbox.sync(owner, aid)
    service.wait_for(
        lambda: any(
            m["subject"] == "Vertraulich"
            for m in owner.get(f"{url}/v1/contacts/{contact}/messages").json()["items"]
        )
    )
    assert {m["subject"] for m in colleague.get(f"{url}/v1/contacts/{contact}/messages").json()["items"]} == {
        "Schadenmeldung",
        "Re: Schadenmeldung",
    }

    # A mail deleted at the provider leaves the contact history.
    mailbox.delete(first)
    mailbox.sync(owner, aid)
    service.wait_for(
        lambda: (
            [m["subject"] for m in colleague.get(f"{url}/v1/contacts/{contact}/messages").json()["items"]]
            == ["Re: Schadenmeldung"]
        ),
        what="link dropped",
    )

    # Deleting the contact removes links, not mails.
    assert owner.delete(f"{url}/v1/contacts/{contact}").status_code == 204
    assert owner.get(f"{url}/v1/contacts/{contact}").status_code == 404
    msgs = owner.get(f"{url}/v1/messages", params={"account_id": aid}).json()["items"]
    assert len(msgs) == 3 and all(m["links"] == [] for m in msgs)
