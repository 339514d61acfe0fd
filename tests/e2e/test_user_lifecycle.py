"""Issue 12 over HTTP against `mailsync run`, for every provider: a user deleted while mail
keeps arriving. Colleagues' views drop the user's mail as soon as the DELETE answers, the
background purge (the runner's queue worker) finishes, and the user can connect again
from scratch."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.e2e


def test_a_user_deleted_with_mail_flowing(service, mailbox):
    url, tag = service.url, uuid.uuid4().hex[:8]
    alice_id, bob_id = mailbox.user(f"alice-{tag}"), mailbox.user(f"bob-{tag}")
    alice, bob, tenant = service.session(alice_id), service.session(bob_id), service.session(None)
    kunde = f"kunde-{tag}@example.com"

    acc = mailbox.connect(alice, settings={"visibility": "public"})
    aid = acc["id"]
    r = alice.put(
        f"{url}/v1/contacts/crm-{tag}",
        json={"kind": "customer", "name": "Kunde", "emails": [kunde], "visible_to": ["*"]},
    )
    assert r.status_code in (200, 201), r.text

    def history(who):
        r = who.get(f"{url}/v1/contacts/crm-{tag}/messages")
        assert r.status_code == 200, r.text
        return [m["subject"] for m in r.json()["items"]]

    mailbox.deliver("Vor dem Löschen", f"Kunde <{kunde}>")
    mailbox.sync(alice, aid)
    service.wait_for(lambda: history(bob) == ["Vor dem Löschen"], what="bob sees alice's public mail")
    seen = alice.get(f"{url}/v1/messages", params={"account_id": aid}).json()["items"][0]

    # Mail keeps arriving, and a sync is on its way, while the tenant deletes alice.
    for i in range(3):
        mailbox.deliver(f"Während {i}", f"Kunde <{kunde}>")
    mailbox.sync(alice, aid)
    r = tenant.delete(f"{url}/v1/users/{alice_id}")
    assert r.status_code == 202, r.text
    assert r.json() == {"user_id": alice_id, "accounts": 1, "state": "purging"}

    # At once, before the purge is done: nothing of alice's in bob's views.
    assert history(bob) == []
    assert bob.get(f"{url}/v1/messages/{seen['id']}").status_code == 404
    assert bob.get(f"{url}/v1/threads/{seen['thread_id']}").status_code == 404
    assert alice.get(f"{url}/v1/accounts").json()["items"] == []

    # The background purge finishes; the user is then unknown.
    service.wait_for(
        lambda: tenant.get(f"{url}/v1/users/{alice_id}").status_code == 404, timeout=60, what="purge done"
    )
    gone = tenant.get(f"{url}/v1/users/{alice_id}").json()
    assert gone["code"] == "user_not_found"
    assert alice.get(f"{url}/v1/messages").json()["items"] == []
    assert alice.get(f"{url}/v1/accounts/{aid}").status_code == 404
    assert history(bob) == [] and history(alice) == []
    assert bob.get(f"{url}/v1/contacts/crm-{tag}").json()["visible_to"] == ["*"]  # contacts stay

    # Connecting again starts from scratch: a new account that syncs what arrives now.
    again = mailbox.connect(alice, settings={"visibility": "public"})
    assert again["id"] != aid
    assert tenant.get(f"{url}/v1/users/{alice_id}").json() == {
        "user_id": alice_id,
        "state": "active",
        "accounts": 1,
    }
    mailbox.deliver("Danach", f"Kunde <{kunde}>")
    mailbox.sync(alice, again["id"])
    service.wait_for(lambda: history(bob) == ["Danach"], what="the new account's mail")
