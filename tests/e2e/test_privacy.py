"""Privacy over HTTP against `mailsync run`, for every provider (issue 16): a colleague sees a
`metadata` mail without its subject, snippet or body, and a mail from an excluded address
never arrives (tests/e2e/mailboxes.py: a real Dovecot, the fake Google and Microsoft)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.e2e


def test_a_colleague_sees_a_metadata_mail_without_its_subject(service, mailbox):
    url = service.url
    owner_id, colleague_id = mailbox.user("mona"), mailbox.user("carl")
    owner, colleague = service.session(owner_id), service.session(colleague_id)
    domain = f"{mailbox.provider}.privacy.example"
    contact = f"k-meta-{mailbox.provider}"
    r = owner.put(
        f"{url}/v1/contacts/{contact}",
        json={
            "kind": "customer",
            "name": "Kunde M",
            "emails": [f"kunde@{domain}"],
            "visible_to": [owner_id, colleague_id],
        },
    )
    assert r.status_code in (200, 201), r.text
    acc = mailbox.connect(owner, settings={"visibility": "metadata"})
    aid = acc["id"]
    assert acc["settings"]["visibility"] == "metadata"
    mailbox.deliver("Diagnose vertraulich", f"Kunde M <kunde@{domain}>", message_id=f"meta@{domain}")
    mailbox.sync(owner, aid)

    def colleague_view():
        items = colleague.get(f"{url}/v1/contacts/{contact}/messages").json()["items"]
        return items or None

    (seen,) = service.wait_for(colleague_view, what="the mail in the colleague's history")
    assert seen["subject"] is None and seen["snippet"] is None
    assert seen["from"][0]["email"] == f"kunde@{domain}" and seen["date"]
    assert set(seen["redacted"]) == {"subject", "snippet", "body", "attachments"}
    assert colleague.get(f"{url}/v1/messages/{seen['id']}").status_code == 404
    mine = owner.get(f"{url}/v1/messages/{seen['id']}").json()
    assert mine["subject"] == "Diagnose vertraulich" and not mine.get("redacted")


def test_a_mail_from_an_excluded_address_never_arrives(service, mailbox):
    url = service.url
    owner = service.session(mailbox.user("erna"))
    acc = mailbox.connect(owner)
    aid = acc["id"]
    doctor = f"praxis@{mailbox.provider}.arzt.example"
    r = owner.patch(f"{url}/v1/accounts/{aid}/settings", json={"exclude": {"addresses": [doctor.upper()]}})
    assert r.status_code == 200 and r.json()["settings"]["exclude"]["addresses"] == [doctor], r.text
    bad = owner.patch(f"{url}/v1/accounts/{aid}/settings", json={"exclude": {"domains": ["not a domain"]}})
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_domain"
    mailbox.deliver("Befund", f"Praxis <{doctor}>")
    mailbox.deliver("Angebot", f"kunde@{mailbox.provider}.erna.example")
    mailbox.sync(owner, aid)

    def arrived():
        items = owner.get(f"{url}/v1/messages", params={"account_id": aid}).json()["items"]
        return items if any(m["subject"] == "Angebot" for m in items) else None

    items = service.wait_for(arrived, what="the ordinary mail")
    # The excluded mail came before it, in the same sync: it would be here by now.
    assert [m["subject"] for m in items] == ["Angebot"]
