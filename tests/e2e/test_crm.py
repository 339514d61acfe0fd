"""CRM assignment and visibility over HTTP against `mailsync run` and a real Dovecot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.support.dovecot import make_mail

pytestmark = pytest.mark.e2e


def test_contacts_links_and_visibility_end_to_end(service, dovecot, imap_user):
    user, pw = imap_user
    url = service.url
    owner, colleague, outsider = service.session("olga"), service.session("colin"), service.session("oscar")
    acc = owner.post(
        f"{url}/v1/accounts",
        json={
            "email": f"{user}@example.test",
            "backfill_days": 1,
            "imap": {
                "host": dovecot.host,
                "port": dovecot.port,
                "security": "none",
                "username": user,
                "password": pw,
            },
            "smtp": {"host": dovecot.host, "port": 25, "security": "none", "username": user, "password": pw},
            "settings": {"visibility": "public"},
        },
    ).json()
    aid = acc["id"]
    earlier = datetime.now(UTC) - timedelta(hours=1)
    dovecot.append(
        user,
        "INBOX",
        make_mail(
            "Schadenmeldung",
            "Kunde K <kunde@example.org>",
            f"{user}@example.test",
            message_id="k1@example.org",
            date=earlier,
        ),
        internal_date=earlier,
    )
    dovecot.append(user, "INBOX", make_mail("Newsletter", "news@example.net", f"{user}@example.test"))
    owner.post(f"{url}/v1/accounts/{aid}/sync")
    service.wait_for(
        lambda: len(owner.get(f"{url}/v1/messages", params={"account_id": aid}).json()["items"]) == 2
    )

    # Nothing is linked yet: both wait in the unassigned list.
    unassigned = owner.get(f"{url}/v1/messages", params={"unassigned": "true"}).json()["items"]
    assert {m["subject"] for m in unassigned} == {"Schadenmeldung", "Newsletter"}

    # The contact arrives: the existing mail is linked retroactively.
    r = colleague.put(
        f"{url}/v1/contacts/k-1",
        json={
            "kind": "customer",
            "name": "Kunde K",
            "emails": [" Kunde@Example.org "],
            "visible_to": ["olga", "colin"],
        },
    )
    assert r.status_code == 201 and r.json()["emails"] == ["kunde@example.org"]
    hist = colleague.get(f"{url}/v1/contacts/k-1/messages").json()["items"]
    assert [m["subject"] for m in hist] == ["Schadenmeldung"]
    assert hist[0]["links"] == [{"contact_id": "k-1", "kind": "customer", "source": "auto"}]
    assert [
        m["subject"] for m in owner.get(f"{url}/v1/messages", params={"unassigned": "true"}).json()["items"]
    ] == ["Newsletter"]

    # A new mail from the contact is linked at ingest.
    dovecot.append(
        user,
        "INBOX",
        make_mail(
            "Re: Schadenmeldung",
            "kunde@example.org",
            f"{user}@example.test",
            in_reply_to="k1@example.org",
            references="k1@example.org",
        ),
    )
    owner.post(f"{url}/v1/accounts/{aid}/sync")
    service.wait_for(
        lambda: len(colleague.get(f"{url}/v1/contacts/k-1/messages").json()["items"]) == 2, what="ingest"
    )

    # Visibility: the colleague sees the linked public mails through the contact only.
    linked = colleague.get(f"{url}/v1/contacts/k-1/messages").json()["items"]
    assert colleague.get(f"{url}/v1/messages/{linked[0]['id']}").status_code == 200
    assert colleague.get(f"{url}/v1/threads/{linked[0]['thread_id']}").json()["message_count"] == 2
    assert colleague.get(f"{url}/v1/messages").json()["items"] == []
    assert colleague.get(f"{url}/v1/threads").json()["items"] == []
    newsletter = [m for m in owner.get(f"{url}/v1/messages").json()["items"] if m["subject"] == "Newsletter"][
        0
    ]
    assert colleague.get(f"{url}/v1/messages/{newsletter['id']}").status_code == 404
    assert outsider.get(f"{url}/v1/contacts/k-1/messages").status_code == 404
    assert outsider.get(f"{url}/v1/messages/{linked[0]['id']}").status_code == 404

    # A manual link on the newsletter's thread, then unlink.
    r = owner.post(f"{url}/v1/threads/{newsletter['thread_id']}/links", json={"contact_id": "k-1"})
    assert r.status_code == 201 and r.json()["linked"] == [newsletter["id"]]
    assert colleague.get(f"{url}/v1/messages/{newsletter['id']}").status_code == 200
    assert owner.delete(f"{url}/v1/threads/{newsletter['thread_id']}/links/k-1").status_code == 204
    assert colleague.get(f"{url}/v1/messages/{newsletter['id']}").status_code == 404

    # Private mails stay the owner's, even when linked.
    owner.patch(f"{url}/v1/accounts/{aid}/settings", json={"visibility": "private"})
    dovecot.append(user, "INBOX", make_mail("Vertraulich", "kunde@example.org", f"{user}@example.test"))
    owner.post(f"{url}/v1/accounts/{aid}/sync")
    service.wait_for(
        lambda: any(
            m["subject"] == "Vertraulich"
            for m in owner.get(f"{url}/v1/contacts/k-1/messages").json()["items"]
        )
    )
    assert {m["subject"] for m in colleague.get(f"{url}/v1/contacts/k-1/messages").json()["items"]} == {
        "Schadenmeldung",
        "Re: Schadenmeldung",
    }

    # A mail deleted at the provider leaves the contact history.
    uid = dovecot.uids(user, "INBOX")[0]
    dovecot.delete(user, "INBOX", [uid])
    owner.post(f"{url}/v1/accounts/{aid}/sync")
    service.wait_for(
        lambda: (
            [m["subject"] for m in colleague.get(f"{url}/v1/contacts/k-1/messages").json()["items"]]
            == ["Re: Schadenmeldung"]
        ),
        what="link dropped",
    )

    # Deleting the contact removes links, not mails.
    assert owner.delete(f"{url}/v1/contacts/k-1").status_code == 204
    assert owner.get(f"{url}/v1/contacts/k-1").status_code == 404
    msgs = owner.get(f"{url}/v1/messages", params={"account_id": aid}).json()["items"]
    assert len(msgs) == 3 and all(m["links"] == [] for m in msgs)
