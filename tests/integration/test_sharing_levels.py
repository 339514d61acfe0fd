"""Sharing levels (issue 16) against the real mirror (Dovecot + moto): what a colleague sees
of a mail at each level, on every route that shows mail, and the owner's per-mail override.

alice has four accounts, one per level (private, metadata, subject, public); each holds one
mail from the customer, with an attachment, linked to contact ``k1`` which bob may see. The
owner always sees everything; dave, who may not see ``k1``, sees nothing at any level.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.accounts import connect, mirror, sync
from tests.support.api import ApiClient
from tests.support.crm import append, history, put_contact

pytestmark = pytest.mark.integration

KUNDE = "kunde@kunde.test"
LEVELS = ("private", "metadata", "subject", "public")
PDF = ("police.pdf", "application/pdf", b"%PDF-1.4 police")
WITHHELD = {
    "metadata": ["subject", "snippet", "body", "attachments"],
    "subject": ["body", "attachments"],
    "public": [],
}


@pytest.fixture
def world(tenant: Any, dovecot: Any) -> dict[str, Any]:
    alice = ApiClient("key-t1", "alice")
    put_contact(alice, "k1", [KUNDE], visible_to=["alice", "bob"])
    mails = {}
    for i, level in enumerate(LEVELS):
        imap_user = dovecot.new_user(level)
        acc = connect(dovecot, imap_user, owner="alice", backfill_days=2)
        r = alice.patch(f"/v1/accounts/{acc['id']}/settings", {"visibility": level})
        assert r.status == 200 and r.body["settings"]["visibility"] == level, r.body
        append(dovecot, imap_user[0], i, f"Vertrag {level}", from_=KUNDE, to=acc["email"],
               body=f"Gesundheitsdaten {level}\n", attachment=PDF)  # fmt: skip
        sync(acc)
        (m,) = mirror(acc)
        mails[level] = {"id": m["id"], "thread_id": m["thread_id"], "account": acc, "user": imap_user[0]}
    return {"alice": alice, "bob": ApiClient("key-t1", "bob"), "dave": ApiClient("key-t1", "dave"), **mails}


def seen_in_history(api: ApiClient) -> dict[str, dict[str, Any]]:
    r = api.get("/v1/contacts/k1/messages", limit=200)
    assert r.status == 200, r.body
    return {m["id"]: m for m in r.body["items"]}


def test_a_colleague_sees_each_level_as_the_table_says(world: dict[str, Any]) -> None:
    bob = world["bob"]
    listed = seen_in_history(bob)
    threads = {t["id"]: t for t in bob.get("/v1/contacts/k1/threads", limit=200).body["items"]}
    for level in LEVELS:
        m = world[level]
        get = bob.get(f"/v1/messages/{m['id']}")
        att = bob.raw("GET", f"/v1/messages/{m['id']}/attachments/2")[0]
        thread = bob.get(f"/v1/threads/{m['thread_id']}")
        if level == "private":
            assert m["id"] not in listed and m["thread_id"] not in threads
            assert (get.status, att, thread.status) == (404, 404, 404)
            continue
        view = listed[m["id"]]
        assert view["redacted"] == WITHHELD[level], (level, view)
        assert view["from"][0]["email"] == KUNDE and view["date"] and view["attachment_count"] == 1
        assert view["folder"] == "INBOX" and view["thread_id"] == m["thread_id"]
        shows_subject = level in ("subject", "public")
        assert (view["subject"] == f"Vertrag {level}") is shows_subject, view
        assert (view["subject"] is None) is (not shows_subject)
        assert (view["snippet"] is None) is (not shows_subject)
        assert (threads[m["thread_id"]]["subject"] is None) is (not shows_subject)
        assert thread.status == 200 and thread.body["messages"][0]["redacted"] == WITHHELD[level]
        assert (thread.body["subject"] is None) is (not shows_subject)
        if level == "public":
            assert get.status == 200 and "Gesundheitsdaten public" in get.body["text"]
            assert att == 200
        else:  # the body and the attachment are withheld: opening them is a 404
            assert (get.status, get.body["code"], att) == (404, "not_found", 404)
        body_text = str(view) + str(threads[m["thread_id"]]) + str(thread.body)
        if not shows_subject:
            assert f"Vertrag {level}" not in body_text and "Gesundheitsdaten" not in body_text


def test_the_owner_sees_everything_and_a_colleague_without_the_contact_nothing(world: dict[str, Any]) -> None:
    alice, dave = world["alice"], world["dave"]
    assert dave.get("/v1/contacts/k1/messages").status == 404
    for level in LEVELS:
        m = world[level]
        mine = alice.get(f"/v1/messages/{m['id']}").body
        assert (
            mine["subject"] == f"Vertrag {level}" and mine["redacted"] == [] and mine["visibility"] == level
        )
        assert dave.get(f"/v1/messages/{m['id']}").status == 404


def test_the_owner_shares_or_hides_one_mail_and_colleagues_follow_at_once(world: dict[str, Any]) -> None:
    alice, bob = world["alice"], world["bob"]
    meta, public = world["metadata"]["id"], world["public"]["id"]
    r = alice.patch(f"/v1/messages/{meta}", {"visibility": "public"})
    assert r.status == 200 and r.body["visibility"] == "public", r.body
    r = alice.patch(f"/v1/messages/{public}", {"visibility": "private"})
    assert r.status == 200 and r.body["visibility"] == "private", r.body
    listed = seen_in_history(bob)
    assert listed[meta]["subject"] == "Vertrag metadata" and listed[meta]["redacted"] == []
    assert bob.get(f"/v1/messages/{meta}").status == 200
    assert public not in listed and bob.get(f"/v1/messages/{public}").status == 404
    # only the owner decides; a colleague's attempt is a 404 and changes nothing
    assert bob.patch(f"/v1/messages/{meta}", {"visibility": "private"}).status == 404
    assert meta in history(bob, "k1")
    # a later sync keeps the mail's own level (it is ours, not the mailbox's)
    sync(world["metadata"]["account"])
    assert seen_in_history(bob)[meta]["redacted"] == []
    assert alice.patch(f"/v1/messages/{meta}", {"visibility": "secret"}).status == 422
    assert alice.patch(f"/v1/threads/{world['subject']['thread_id']}", {"visibility": "public"}).status == 422


def test_a_new_level_applies_to_new_mails_only(world: dict[str, Any], dovecot: Any) -> None:
    alice, bob = world["alice"], world["bob"]
    m = world["subject"]
    r = alice.patch(f"/v1/accounts/{m['account']['id']}/settings", {"visibility": "metadata"})
    assert r.status == 200 and r.body["settings"]["visibility"] == "metadata"
    append(dovecot, m["user"], 9, "Neuer Antrag", from_=KUNDE, to=m["account"]["email"])
    sync(m["account"])
    listed = seen_in_history(bob)
    assert listed[m["id"]]["subject"] == "Vertrag subject"  # stored before: keeps its level
    new = [v for k, v in listed.items() if v["account_id"] == m["account"]["id"] and k != m["id"]]
    assert [v["subject"] for v in new] == [None] and new[0]["visibility"] == "metadata"
