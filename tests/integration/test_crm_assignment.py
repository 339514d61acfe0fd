"""CRM assignment (issue 4) against the real mirror (Dovecot + moto): contacts, automatic
assignment at ingest and retroactively, the unassigned list, manual thread links
(snapshot, follow, unlink, relink), contact histories, and links following the mirror."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.accounts import connect, mirror, sync
from tests.support.api import ApiClient
from tests.support.crm import (
    append,
    at,
    contact_body,
    contact_ids,
    history,
    linked,
    links,
    put_contact,
    unassigned,
    with_bcc,
)
from tests.support.dovecot import make_mail

pytestmark = pytest.mark.integration

KUNDE = "kunde@kunde.test"
MAKLER = "makler@makler.test"
STRANGER = "fremd@nowhere.test"


@pytest.fixture
def api(tenant: dict[str, str]) -> ApiClient:
    return ApiClient("key-t1", "alice")


@pytest.fixture
def mailbox(tenant: dict[str, str], dovecot: Any, imap_user: tuple[str, str]) -> tuple[dict[str, Any], str]:
    """alice's account (auto_assign on by default), nothing synced yet."""
    return connect(dovecot, imap_user, owner="alice", backfill_days=2), imap_user[0]


def by_subject(acc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["subject"]: m for m in mirror(acc)}


def link_thread(api: ApiClient, thread_id: str, cid: str, follow: bool = False) -> Any:
    return api.post(f"/v1/threads/{thread_id}/links", {"contact_id": cid, "follow": follow})


# ------------------------------------------------------------------ contacts
def test_contact_create_replace_get_delete(api):
    r = api.call(
        "PUT",
        "/v1/contacts/c-1",
        contact_body([" Kunde@Kunde.TEST ", "zweit@kunde.test"], name="Erika Muster", visible_to=["*"]),
    )
    assert r.status == 201, r.body
    created = r.body
    assert created["id"] == "c-1" and created["kind"] == "customer" and created["name"] == "Erika Muster"
    assert created["emails"] == [KUNDE, "zweit@kunde.test"]
    assert created["visible_to"] == ["*"]
    assert created["created_at"] and created["updated_at"]
    assert api.get("/v1/contacts/c-1").body == created

    r = api.call(
        "PUT",
        "/v1/contacts/c-1",
        contact_body([KUNDE], kind="intermediary", name="Erika M.", visible_to=["alice", "bob"]),
    )
    assert r.status == 200, r.body
    assert r.body["kind"] == "intermediary" and r.body["name"] == "Erika M." and r.body["emails"] == [KUNDE]
    assert r.body["visible_to"] == ["alice", "bob"]
    assert r.body["created_at"] == created["created_at"] and r.body["updated_at"] >= created["updated_at"]
    got = api.get("/v1/contacts/c-1")
    assert got.status == 200 and got.body == r.body

    assert api.delete("/v1/contacts/c-1").status == 204
    r = api.get("/v1/contacts/c-1")
    assert r.status == 404 and r.body["code"] == "not_found"
    assert api.get("/v1/contacts/never-existed").status == 404


def test_contact_validation(api):
    for bad in ("no-at-sign", "@kunde.test"):
        r = api.call("PUT", "/v1/contacts/c-bad", contact_body([KUNDE, bad]))
        assert r.status == 422 and r.body["code"] == "invalid_address", (bad, r.body)
    assert api.call("PUT", "/v1/contacts/c-bad", {**contact_body([KUNDE]), "kind": "friend"}).status == 422
    assert api.get("/v1/contacts/c-bad").status == 404  # nothing stored by a refused PUT


def test_contacts_are_tenant_wide_but_reading_needs_visible_to(api):
    bob = api.as_user("bob")
    # Any user of the tenant may push contacts, also ones they may not read themselves.
    r = bob.call("PUT", "/v1/contacts/c-alice", contact_body([KUNDE], visible_to=["alice"]))
    assert r.status == 201, r.body
    assert api.get("/v1/contacts/c-alice").status == 200
    assert bob.get("/v1/contacts/c-alice").status == 404
    assert bob.get("/v1/contacts/c-alice/messages").status == 404
    assert bob.get("/v1/contacts/c-alice/threads").status == 404
    put_contact(api, "c-all", [MAKLER], visible_to=["*"])
    assert bob.get("/v1/contacts/c-all").status == 200
    assert api.as_user("anyone").get("/v1/contacts/c-all").status == 200


def test_contact_batch_upsert(api):
    put_contact(api, "b-2", ["alt@kunde.test"], name="Alt")
    body = {
        "contacts": [
            {"id": "b-1", **contact_body(["Eins@Kunde.test"], name="Eins")},
            {"id": "b-2", **contact_body(["zwei@kunde.test"], kind="intermediary", name="Zwei")},
            {"id": "b-3", **contact_body(["drei@kunde.test"], visible_to=["bob"])},
        ]
    }
    r = api.post("/v1/contacts:batch", body)
    assert r.status == 200, r.body
    assert {i["id"]: i["status"] for i in r.body["items"]} == {
        "b-1": "created",
        "b-2": "replaced",
        "b-3": "created",
    }
    assert api.get("/v1/contacts/b-1").body["emails"] == ["eins@kunde.test"]
    two = api.get("/v1/contacts/b-2").body
    assert (two["kind"], two["name"], two["emails"]) == ("intermediary", "Zwei", ["zwei@kunde.test"])
    assert api.as_user("bob").get("/v1/contacts/b-3").status == 200

    many = [{"id": f"n-{i}", **contact_body([f"k{i}@kunde.test"])} for i in range(500)]
    r = api.post("/v1/contacts:batch", {"contacts": many})
    assert r.status == 200, r.body
    assert len(r.body["items"]) == 500 and {i["status"] for i in r.body["items"]} == {"created"}
    assert api.get("/v1/contacts/n-499").body["emails"] == ["k499@kunde.test"]

    too_many = [{"id": f"x-{i}", **contact_body([f"x{i}@kunde.test"])} for i in range(501)]
    assert api.post("/v1/contacts:batch", {"contacts": too_many}).status == 422
    assert api.get("/v1/contacts/x-0").status == 404

    r = api.post("/v1/contacts:batch", {"contacts": [{"id": "b-bad", **contact_body(["kaputt"])}]})
    assert r.status == 422


def test_contacts_are_isolated_between_tenants(api, mailbox, dovecot):
    acc, user = mailbox
    put_contact(api, "c-1", [KUNDE], name="T1")
    append(dovecot, user, 1, "Anfrage", from_=KUNDE, to=acc["email"])
    sync(acc)
    mid = by_subject(acc)["Anfrage"]["id"]
    assert contact_ids(api, mid) == {"c-1"}

    t2 = ApiClient("key-t2", "alice")
    assert t2.get("/v1/contacts/c-1").status == 404
    assert t2.get("/v1/contacts/c-1/messages").status == 404
    assert t2.get(f"/v1/messages/{mid}").status == 404
    t2.delete("/v1/contacts/c-1")  # whatever it answers, it must not touch tenant t1
    # The same id and address in another tenant is another contact and sees none of t1's mail.
    r = t2.call("PUT", "/v1/contacts/c-1", contact_body([KUNDE], name="T2"))
    assert r.status == 201, r.body
    assert history(t2, "c-1") == [] and history(t2, "c-1", "threads") == []
    assert api.get("/v1/contacts/c-1").body["name"] == "T1"
    assert history(api, "c-1") == [mid]
    assert linked(api, mid) == {("c-1", "auto")}


# -------------------------------------------------------- automatic assignment
def test_auto_assign_at_ingest_from_to_cc(api, mailbox, dovecot):
    acc, user = mailbox
    put_contact(api, "k-from", [KUNDE])
    put_contact(api, "k-to", [MAKLER], kind="intermediary")
    put_contact(api, "k-cc", ["Cc.Person@Kunde.test"])
    put_contact(api, "k-none", ["unbeteiligt@kunde.test"])
    append(
        dovecot,
        user,
        1,
        "Schaden",
        from_=f"Erika <{KUNDE}>",
        to=[acc["email"], f"Makler <{MAKLER}>"],
        cc="CC.PERSON@kunde.TEST",
    )
    append(dovecot, user, 2, "Werbung", from_=STRANGER, to=acc["email"])
    sync(acc)
    msgs = by_subject(acc)
    mid = msgs["Schaden"]["id"]

    got = links(api, mid)
    assert sorted((ln["contact_id"], ln["kind"], ln["source"]) for ln in got) == [
        ("k-cc", "customer", "auto"),
        ("k-from", "customer", "auto"),
        ("k-to", "intermediary", "auto"),
    ]
    assert links(api, msgs["Werbung"]["id"]) == []
    # Every summary carries the links: lists and thread views too.
    listed = {m["id"]: m for m in api.get("/v1/messages").body["items"]}
    assert {ln["contact_id"] for ln in listed[mid]["links"]} == {"k-from", "k-to", "k-cc"}
    assert listed[msgs["Werbung"]["id"]]["links"] == []
    th = api.get(f"/v1/threads/{msgs['Schaden']['thread_id']}").body
    assert {ln["contact_id"] for ln in th["messages"][0]["links"]} == {"k-from", "k-to", "k-cc"}
    for cid in ("k-from", "k-to", "k-cc"):
        assert history(api, cid) == [mid]
        assert history(api, cid, "threads") == [msgs["Schaden"]["thread_id"]]
    assert history(api, "k-none") == []


def test_bcc_of_sent_mail_is_matched(api, mailbox, dovecot):
    acc, user = mailbox
    put_contact(api, "k-bcc", [MAKLER])
    raw = with_bcc(make_mail("Angebot", from_=acc["email"], to=STRANGER, date=at(1)), MAKLER)
    dovecot.append(user, "Sent", raw, flags=[b"\\Seen"], internal_date=at(1))
    sync(acc)
    (m,) = mirror(acc)
    assert m["folder"] == "Sent"
    assert linked(api, m["id"]) == {("k-bcc", "auto")}


def test_own_address_matches_only_when_a_contact_has_it(api, mailbox, dovecot):
    acc, user = mailbox
    put_contact(api, "k-1", [KUNDE])
    append(dovecot, user, 1, "an mich", from_=STRANGER, to=acc["email"])
    append(dovecot, user, 2, "von mir", from_=acc["email"], to=STRANGER, folder="Sent")
    append(dovecot, user, 3, "Kunde", from_=KUNDE, to=acc["email"])
    sync(acc)
    msgs = by_subject(acc)
    assert links(api, msgs["an mich"]["id"]) == [] and links(api, msgs["von mir"]["id"]) == []
    assert contact_ids(api, msgs["Kunde"]["id"]) == {"k-1"}

    put_contact(api, "k-self", [acc["email"].upper()])
    for subject in ("an mich", "von mir"):
        assert linked(api, msgs[subject]["id"]) == {("k-self", "auto")}
    assert contact_ids(api, msgs["Kunde"]["id"]) == {"k-1", "k-self"}


def test_auto_assign_off_links_nothing_at_ingest(api, mailbox, dovecot):
    acc, user = mailbox
    r = api.patch(f"/v1/accounts/{acc['id']}/settings", {"auto_assign": False})
    assert r.status == 200 and r.body["settings"]["auto_assign"] is False
    put_contact(api, "k-1", [KUNDE])
    append(dovecot, user, 1, "Anfrage", from_=KUNDE, to=acc["email"])
    sync(acc)
    m = by_subject(acc)["Anfrage"]
    assert links(api, m["id"]) == []
    assert m["id"] in unassigned(api)
    assert history(api, "k-1") == []
    # Manual links still work.
    r = link_thread(api, m["thread_id"], "k-1")
    assert r.status == 201, r.body
    assert linked(api, m["id"]) == {("k-1", "manual")}


def test_retroactive_link_when_a_contact_is_created(api, mailbox, dovecot):
    acc, user = mailbox
    append(dovecot, user, 1, "eins", from_=KUNDE, to=acc["email"])
    append(dovecot, user, 2, "zwei", from_=acc["email"], to=f"Kunde <{KUNDE.upper()}>", folder="Sent")
    append(dovecot, user, 3, "Makler", from_=MAKLER, to=acc["email"])
    append(dovecot, user, 4, "fremd", from_=STRANGER, to=acc["email"])
    sync(acc)
    msgs = by_subject(acc)
    assert all(links(api, m["id"]) == [] for m in msgs.values())

    r = api.call("PUT", "/v1/contacts/k-1", contact_body([KUNDE]))
    assert r.status == 201
    assert history(api, "k-1") == [msgs["zwei"]["id"], msgs["eins"]["id"]]
    assert linked(api, msgs["eins"]["id"]) == {("k-1", "auto")}
    # The batch import links already mirrored mails too.
    r = api.post("/v1/contacts:batch", {"contacts": [{"id": "k-2", **contact_body([MAKLER])}]})
    assert r.status == 200, r.body
    assert history(api, "k-2") == [msgs["Makler"]["id"]]
    assert unassigned(api) == [msgs["fremd"]["id"]]


def test_retroactive_link_when_a_contact_gains_an_address(api, mailbox, dovecot):
    acc, user = mailbox
    put_contact(api, "k-1", [KUNDE])
    append(dovecot, user, 1, "alt", from_=KUNDE, to=acc["email"])
    append(dovecot, user, 2, "neu", from_="privat@web.test", to=acc["email"])
    sync(acc)
    msgs = by_subject(acc)
    assert history(api, "k-1") == [msgs["alt"]["id"]]
    assert links(api, msgs["neu"]["id"]) == []

    r = api.call("PUT", "/v1/contacts/k-1", contact_body([KUNDE, "Privat@Web.test"]))
    assert r.status == 200, r.body
    assert linked(api, msgs["neu"]["id"]) == {("k-1", "auto")}
    assert history(api, "k-1") == [msgs["neu"]["id"], msgs["alt"]["id"]]


def test_removing_an_address_drops_only_the_auto_links_that_depended_on_it(api, mailbox, dovecot):
    acc, user = mailbox
    a, b = KUNDE, "privat@web.test"
    put_contact(api, "k-1", [a, b])
    append(dovecot, user, 1, "nur a", from_=a, to=acc["email"])
    append(dovecot, user, 2, "nur b", from_=b, to=acc["email"])
    append(dovecot, user, 3, "a und b", from_=a, to=acc["email"], cc=b)
    append(dovecot, user, 4, "b manuell", from_=b, to=acc["email"])
    sync(acc)
    msgs = {s: m["id"] for s, m in by_subject(acc).items()}
    assert all(contact_ids(api, mid) == {"k-1"} for mid in msgs.values())
    r = link_thread(api, by_subject(acc)["b manuell"]["thread_id"], "k-1")
    assert r.status == 201, r.body

    r = api.call("PUT", "/v1/contacts/k-1", contact_body([a]))
    assert r.status == 200, r.body
    assert linked(api, msgs["nur a"]) == {("k-1", "auto")}
    assert linked(api, msgs["a und b"]) == {("k-1", "auto")}
    assert links(api, msgs["nur b"]) == []
    assert linked(api, msgs["b manuell"]) == {("k-1", "manual")}
    assert history(api, "k-1") == [msgs["b manuell"], msgs["a und b"], msgs["nur a"]]
    assert unassigned(api) == [msgs["nur b"]]


# --------------------------------------------------------------- unassigned
def test_unassigned_lists_own_unlinked_mails_newest_first(api, mailbox, dovecot):
    acc, user = mailbox
    put_contact(api, "k-1", [KUNDE])
    append(dovecot, user, 1, "u1", from_=STRANGER, to=acc["email"])
    append(dovecot, user, 2, "zugeordnet", from_=KUNDE, to=acc["email"])
    append(dovecot, user, 3, "u2", from_=STRANGER, to=acc["email"])
    append(dovecot, user, 4, "u3", from_=acc["email"], to=STRANGER, folder="Sent")
    sync(acc)
    msgs = by_subject(acc)
    expected = [msgs["u3"]["id"], msgs["u2"]["id"], msgs["u1"]["id"]]
    assert unassigned(api) == expected

    # Paged like the other lists.
    first = api.get("/v1/messages", unassigned="true", limit=2)
    assert first.status == 200 and [m["id"] for m in first.body["items"]] == expected[:2]
    assert all(m["links"] == [] for m in first.body["items"])
    assert first.body["next_cursor"]
    rest = api.get("/v1/messages", unassigned="true", limit=2, cursor=first.body["next_cursor"])
    assert [m["id"] for m in rest.body["items"]] == expected[2:]

    # Only the caller's own mails.
    assert unassigned(api.as_user("bob")) == []
    assert unassigned(ApiClient("key-t2", "alice")) == []

    # Linking takes a mail off the list.
    assert link_thread(api, msgs["u2"]["thread_id"], "k-1").status == 201
    assert unassigned(api) == [msgs["u3"]["id"], msgs["u1"]["id"]]


# ---------------------------------------------------------------- manual links
@pytest.fixture
def conversation(api, mailbox, dovecot):
    """A thread of two mails between alice and strangers (no contact matches), and a contact."""
    acc, user = mailbox
    put_contact(api, "k-1", [KUNDE])
    append(dovecot, user, 1, "Vertrag", from_=STRANGER, to=acc["email"], message_id="v1@x")
    append(
        dovecot,
        user,
        2,
        "Re: Vertrag",
        from_=acc["email"],
        to=STRANGER,
        message_id="v2@x",
        in_reply_to="v1@x",
        references="v1@x",
        folder="Sent",
    )
    sync(acc)
    msgs = by_subject(acc)
    assert msgs["Vertrag"]["thread_id"] == msgs["Re: Vertrag"]["thread_id"]
    return acc, user, msgs["Vertrag"]["thread_id"], msgs


def reply(dovecot, user, i, subject, from_, to, parent="v1@x"):
    append(
        dovecot,
        user,
        i,
        subject,
        from_=from_,
        to=to,
        message_id=f"{subject.replace(' ', '-')}@x",
        in_reply_to=parent,
        references=["v1@x", parent] if parent != "v1@x" else "v1@x",
    )


def test_snapshot_link_unlink_and_relink(api, conversation, dovecot):
    acc, user, th, msgs = conversation
    first = [msgs["Vertrag"]["id"], msgs["Re: Vertrag"]["id"]]

    r = link_thread(api, th, "k-1", follow=False)
    assert r.status == 201, r.body
    assert r.body["thread_id"] == th and r.body["contact_id"] == "k-1" and r.body["follow"] is False
    assert sorted(r.body["linked"]) == sorted(first)
    for mid in first:
        assert linked(api, mid) == {("k-1", "manual")}
    assert history(api, "k-1", "threads") == [th]

    # A later message of the thread is not linked (snapshot) ...
    reply(dovecot, user, 3, "Nachtrag", from_="kollege@nowhere.test", to=acc["email"])
    # ... unless auto assignment matches it.
    reply(dovecot, user, 4, "Kunde antwortet", from_=KUNDE, to=acc["email"])
    sync(acc)
    now = by_subject(acc)
    later, auto = now["Nachtrag"]["id"], now["Kunde antwortet"]["id"]
    assert now["Nachtrag"]["thread_id"] == now["Kunde antwortet"]["thread_id"] == th
    assert links(api, later) == []
    assert linked(api, auto) == {("k-1", "auto")}
    assert history(api, "k-1") == [auto, *reversed(first)]

    # Unlink removes the thread's manual links only.
    assert api.delete(f"/v1/threads/{th}/links/k-1").status == 204
    for mid in first:
        assert links(api, mid) == []
    assert linked(api, auto) == {("k-1", "auto")}
    assert history(api, "k-1") == [auto]

    # Linking again takes the thread's current state.
    r = link_thread(api, th, "k-1")
    assert r.status == 201, r.body
    assert sorted(r.body["linked"]) == sorted([*first, later, auto])
    for mid in (*first, later):
        assert linked(api, mid) == {("k-1", "manual")}
    assert "k-1" in contact_ids(api, auto)
    assert history(api, "k-1") == [auto, later, *reversed(first)]


def test_follow_link_takes_in_later_messages_until_unlinked(api, conversation, dovecot):
    acc, user, th, msgs = conversation
    r = link_thread(api, th, "k-1", follow=True)
    assert r.status == 201 and r.body["follow"] is True, r.body

    reply(dovecot, user, 3, "Nachtrag", from_="kollege@nowhere.test", to=acc["email"])
    sync(acc)
    later = by_subject(acc)["Nachtrag"]["id"]
    assert linked(api, later) == {("k-1", "manual")}
    assert history(api, "k-1")[0] == later

    assert api.delete(f"/v1/threads/{th}/links/k-1").status == 204
    assert all(links(api, m["id"]) == [] for m in mirror(acc))
    reply(dovecot, user, 4, "noch einer", from_="kollege@nowhere.test", to=acc["email"])
    sync(acc)
    assert links(api, by_subject(acc)["noch einer"]["id"]) == []
    assert history(api, "k-1") == []


def test_link_errors(api, conversation):
    acc, _, th, msgs = conversation
    assert link_thread(api, th, "no-such-contact").status == 404
    assert link_thread(api, "th_does_not_exist", "k-1").status == 404
    # Not the caller's thread, or another tenant's: 404, never 403.
    assert link_thread(api.as_user("bob"), th, "k-1").status == 404
    t2 = ApiClient("key-t2", "alice")
    t2.call("PUT", "/v1/contacts/k-1", contact_body([KUNDE]))
    assert link_thread(t2, th, "k-1").status == 404
    assert all(links(api, m["id"]) == [] for m in msgs.values())

    assert link_thread(api, th, "k-1").status == 201
    assert api.as_user("bob").delete(f"/v1/threads/{th}/links/k-1").status == 404
    assert t2.delete(f"/v1/threads/{th}/links/k-1").status == 404
    assert all(linked(api, m["id"]) == {("k-1", "manual")} for m in msgs.values())


# ---------------------------------------------------------------- histories
def test_contact_history_newest_first_and_paged(api, mailbox, dovecot):
    acc, user = mailbox
    put_contact(api, "k-1", [KUNDE])
    append(dovecot, user, 1, "A", from_=KUNDE, to=acc["email"], message_id="a1@x")
    append(dovecot, user, 2, "B", from_=KUNDE, to=acc["email"], message_id="b1@x")
    append(
        dovecot,
        user,
        3,
        "Re: A",
        from_=acc["email"],
        to=KUNDE,
        message_id="a2@x",
        in_reply_to="a1@x",
        references="a1@x",
        folder="Sent",
    )
    append(dovecot, user, 4, "fremd", from_=STRANGER, to=acc["email"])
    sync(acc)
    msgs = by_subject(acc)
    newest_first = [msgs["Re: A"]["id"], msgs["B"]["id"], msgs["A"]["id"]]

    r = api.get("/v1/contacts/k-1/messages", limit=2)
    assert r.status == 200, r.body
    assert [m["id"] for m in r.body["items"]] == newest_first[:2] and r.body["next_cursor"]
    assert all(
        {"contact_id": "k-1", "kind": "customer", "source": "auto"} in m["links"] for m in r.body["items"]
    )
    page2 = api.get("/v1/contacts/k-1/messages", limit=2, cursor=r.body["next_cursor"])
    assert [m["id"] for m in page2.body["items"]] == newest_first[2:]
    assert history(api, "k-1") == newest_first

    assert history(api, "k-1", "threads") == [msgs["A"]["thread_id"], msgs["B"]["thread_id"]]
    r = api.get("/v1/contacts/k-1/threads", limit=1)
    assert [t["id"] for t in r.body["items"]] == [msgs["A"]["thread_id"]] and r.body["next_cursor"]
    assert api.get("/v1/contacts/nobody/messages").status == 404
    assert api.get("/v1/contacts/nobody/threads").status == 404


# ------------------------------------------------------ links follow the mirror
def test_links_follow_the_mirror(api, mailbox, dovecot):
    acc, user = mailbox
    put_contact(api, "k-1", [KUNDE])
    uids = {
        s: append(dovecot, user, i, s, from_=KUNDE, to=acc["email"])
        for i, s in enumerate(["geloescht", "Spam", "archiviert", "bleibt"], start=1)
    }
    sync(acc)
    before = by_subject(acc)
    assert len(history(api, "k-1")) == 4

    dovecot.delete(user, "INBOX", [uids["geloescht"]])
    dovecot.move(user, "INBOX", [uids["Spam"]], "Junk")
    dovecot.move(user, "INBOX", [uids["archiviert"]], "Archive")
    sync(acc)
    after = by_subject(acc)
    assert set(after) == {"archiviert", "bleibt"} and after["archiviert"]["folder"] == "Archive"
    assert history(api, "k-1") == [after["bleibt"]["id"], after["archiviert"]["id"]]
    assert linked(api, after["archiviert"]["id"]) == {("k-1", "auto")}
    assert history(api, "k-1", "threads") == [after["bleibt"]["thread_id"], after["archiviert"]["thread_id"]]
    for gone in ("geloescht", "Spam"):
        assert api.get(f"/v1/messages/{before[gone]['id']}").status == 404

    # The same through the built-in mail client: a move to an unsynced folder unlinks.
    r = api.patch(f"/v1/messages/{after['bleibt']['id']}", {"folder": "Junk"})
    assert r.status == 200 and r.body["mirrored"] is False
    assert history(api, "k-1") == [after["archiviert"]["id"]]


def test_deleting_the_account_removes_its_links(api, mailbox, dovecot):
    acc, user = mailbox
    put_contact(api, "k-1", [KUNDE])
    append(dovecot, user, 1, "Anfrage", from_=KUNDE, to=acc["email"])
    sync(acc)
    assert len(history(api, "k-1")) == 1
    assert api.delete(f"/v1/accounts/{acc['id']}").status == 204
    assert history(api, "k-1") == [] and history(api, "k-1", "threads") == []
    assert api.get("/v1/contacts/k-1").status == 200


def test_deleting_a_contact_removes_its_links_not_the_mails(api, mailbox, dovecot):
    acc, user = mailbox
    put_contact(api, "k-1", [KUNDE])
    put_contact(api, "k-2", [MAKLER])
    append(dovecot, user, 1, "beide", from_=KUNDE, to=acc["email"], cc=MAKLER)
    append(dovecot, user, 2, "nur k1", from_=KUNDE, to=acc["email"])
    append(dovecot, user, 3, "manuell", from_=STRANGER, to=acc["email"])
    sync(acc)
    msgs = by_subject(acc)
    assert link_thread(api, msgs["manuell"]["thread_id"], "k-1").status == 201

    assert api.delete("/v1/contacts/k-1").status == 204
    assert api.get("/v1/contacts/k-1").status == 404
    assert api.get("/v1/contacts/k-1/messages").status == 404
    assert len(mirror(acc)) == 3
    assert linked(api, msgs["beide"]["id"]) == {("k-2", "auto")}
    assert links(api, msgs["nur k1"]["id"]) == [] and links(api, msgs["manuell"]["id"]) == []
    assert unassigned(api) == [msgs["manuell"]["id"], msgs["nur k1"]["id"]]
    assert history(api, "k-2") == [msgs["beide"]["id"]]

    # Pushed again, the contact is new: auto links come back, the manual one does not.
    r = api.call("PUT", "/v1/contacts/k-1", contact_body([KUNDE]))
    assert r.status == 201
    assert history(api, "k-1") == [msgs["nur k1"]["id"], msgs["beide"]["id"]]
    assert links(api, msgs["manuell"]["id"]) == []
