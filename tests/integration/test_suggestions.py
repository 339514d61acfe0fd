"""Suggestions for the unassigned over Dovecot and moto: ``GET /v1/messages/{id}/suggestions``
ranks a hand-made tenant's contacts (one per reason, a free-mail contact that must not get
``same_domain``, a contact in the owner's own domain, one the caller may not see), the
unassigned list carries each mail's top suggestion, and nobody but the owner may ask."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.accounts import connect, mirror, sync
from tests.support.api import ApiClient
from tests.support.crm import append, put_contact, unassigned

pytestmark = pytest.mark.integration


@pytest.fixture
def world(tenant: dict[str, str], dovecot: Any, imap_user: tuple[str, str]) -> dict[str, Any]:
    """alice's account (``<user>@example.test``: example.test is her company's domain) and:

    * T1 "Angebot" from a contact (auto-linked to k-thread), T2 its reply from a stranger;
    * C1 from k-co's address with a Cc to an assistant (auto-linked to k-co), C2 from the assistant;
    * D from another address at k-domain's company, G from a gmail.com address (k-free has one
      too), N from "Erika Muster" at gmail.com (k-name), K from a colleague at example.test;
    * X, a reply in T1's thread from "Erika Muster" at firma.test with the assistant in Cc:
      every reason at once.
    """
    api = ApiClient("key-t1", "alice")
    put_contact(api, "k-thread", ["t@thread.test"], name="Thread Kunde")
    put_contact(api, "k-co", ["co@co.test"], name="Co Kunde")
    put_contact(api, "k-domain", ["chef@firma.test"], name="Firma Chef")
    for i in (1, 2, 3, 4):
        put_contact(api, f"k-f{i}", [f"f{i}@firma.test"], name=f"Firma {i}")
    put_contact(api, "k-aaa-hidden", ["geheim@firma.test"], name="Geheim", visible_to=["bob"])
    put_contact(api, "k-free", ["someone@gmail.com"], name="Frei Kontakt")
    put_contact(api, "k-name", ["erika@muster-privat.test"], kind="intermediary", name="Muster, Erika")
    put_contact(api, "k-own", ["kollegin@example.test"], name="Eigene Firma")
    acc = connect(dovecot, imap_user, owner="alice", backfill_days=2)
    user, me = imap_user[0], acc["email"]
    append(dovecot, user, 0, "Angebot", from_="t@thread.test", to=me, message_id="t1@thread.test")
    append(dovecot, user, 1, "Re: Angebot", from_="neu@other.test", to=me, in_reply_to="t1@thread.test",
           references="t1@thread.test")  # fmt: skip
    append(dovecot, user, 2, "Projekt", from_="co@co.test", to=me, cc="assist@helper.test")
    append(dovecot, user, 3, "Rueckfrage", from_="assist@helper.test", to=me)
    append(dovecot, user, 4, "Bewerbung", from_="praktikant@firma.test", to=me)
    append(dovecot, user, 5, "Privat", from_="other@gmail.com", to=me)
    append(dovecot, user, 6, "Hallo", from_="Erika Muster <e.muster@gmail.com>", to=me)
    append(dovecot, user, 7, "Mittag", from_="bob@example.test", to=me)
    append(dovecot, user, 8, "Re: Angebot (2)", from_="Erika Muster <erika.m@firma.test>", to=me,
           cc="assist@helper.test", in_reply_to="t1@thread.test", references="t1@thread.test")  # fmt: skip
    sync(acc)
    return {"api": api, "acc": acc, "ids": {m["subject"]: m["id"] for m in mirror(acc)}}


def suggestions(api: ApiClient, mid: str) -> list[dict[str, Any]]:
    r = api.get(f"/v1/messages/{mid}/suggestions")
    assert r.status == 200, (r.status, r.body)
    return r.body["items"]


def test_each_reason_ranks_its_contact(world: dict[str, Any]) -> None:
    api, ids = world["api"], world["ids"]
    assert set(unassigned(api)) == {ids[s] for s in ids if s not in ("Angebot", "Projekt")}
    assert suggestions(api, ids["Re: Angebot"]) == [
        {"contact_id": "k-thread", "kind": "customer", "name": "Thread Kunde", "score": 40,
         "reasons": ["thread_linked"]},
    ]  # fmt: skip
    assert suggestions(api, ids["Rueckfrage"]) == [
        {
            "contact_id": "k-co",
            "kind": "customer",
            "name": "Co Kunde",
            "score": 20,
            "reasons": ["co_participant"],
        }
    ]
    assert [(s["contact_id"], s["reasons"]) for s in suggestions(api, ids["Bewerbung"])] == [
        ("k-domain", ["same_domain"]),
        ("k-f1", ["same_domain"]),
        ("k-f2", ["same_domain"]),
        ("k-f3", ["same_domain"]),
        ("k-f4", ["same_domain"]),
    ]  # the contact alice may not see (k-aaa-hidden, first by id) is left out
    named = suggestions(api, ids["Hallo"])
    assert named == [
        {"contact_id": "k-name", "kind": "intermediary", "name": "Muster, Erika", "score": 30,
         "reasons": ["name_match"]}
    ]  # fmt: skip
    # gmail.com is free mail: k-free shares it, and is no suggestion for it
    assert suggestions(api, ids["Privat"]) == []
    # a colleague at alice's own company suggests nobody of it
    assert suggestions(api, ids["Mittag"]) == []


def test_reasons_add_up_and_at_most_five_come_best_first(world: dict[str, Any]) -> None:
    got = suggestions(world["api"], world["ids"]["Re: Angebot (2)"])
    assert [(s["contact_id"], s["score"], s["reasons"]) for s in got] == [
        ("k-thread", 40, ["thread_linked"]),
        ("k-name", 30, ["name_match"]),
        ("k-co", 20, ["co_participant"]),
        ("k-domain", 10, ["same_domain"]),
        ("k-f1", 10, ["same_domain"]),
    ]
    assert all("k-free" != s["contact_id"] and "k-aaa-hidden" != s["contact_id"] for s in got)
    # a linked mail's own contacts are not suggested again
    assert all(s["contact_id"] != "k-thread" for s in suggestions(world["api"], world["ids"]["Angebot"]))


def test_the_unassigned_list_carries_the_top_suggestion(world: dict[str, Any]) -> None:
    api, ids = world["api"], world["ids"]
    r = api.get("/v1/messages", unassigned="true", with_suggestions="true", limit=200)
    assert r.status == 200, r.body
    top = {m["id"]: m["suggestion"] for m in r.body["items"]}
    assert set(top) == set(unassigned(api))
    for mid in top:
        first = (suggestions(api, mid) or [None])[0]
        assert top[mid] == first, mid  # the same ranking as the suggestions route
    assert top[ids["Re: Angebot (2)"]]["contact_id"] == "k-thread"
    assert top[ids["Bewerbung"]]["contact_id"] == "k-domain"
    assert top[ids["Privat"]] is None and top[ids["Mittag"]] is None
    # without with_suggestions the items have no such field
    plain = api.get("/v1/messages", unassigned="true").body["items"]
    assert plain and all("suggestion" not in m for m in plain)
    # with_suggestions needs unassigned=true
    r = api.get("/v1/messages", with_suggestions="true")
    assert (r.status, r.body["code"]) == (422, "suggestions_need_unassigned"), r.body
    # a page with suggestions holds at most 50 mails: the cursor goes on
    assert (
        len(api.get("/v1/messages", unassigned="true", with_suggestions="true", limit=2).body["items"]) == 2
    )


def test_only_the_owner_may_ask(world: dict[str, Any]) -> None:
    mid = world["ids"]["Re: Angebot (2)"]
    for other in (world["api"].as_user("bob"), ApiClient("key-t2", "alice")):
        r = other.get(f"/v1/messages/{mid}/suggestions")
        assert (r.status, r.body["code"]) == (404, "not_found"), r.body
    assert world["api"].get("/v1/messages/never-was/suggestions").status == 404


def test_contact_changes_move_their_index_entries(world: dict[str, Any]) -> None:
    api, ids = world["api"], world["ids"]
    # k-domain moves to another company and k-name gets another name: both stop matching
    put_contact(api, "k-domain", ["chef@anders.test"], name="Firma Chef")
    put_contact(api, "k-name", ["erika@muster-privat.test"], kind="intermediary", name="Erika Musterfrau")
    assert "k-domain" not in {s["contact_id"] for s in suggestions(api, ids["Bewerbung"])}
    assert suggestions(api, ids["Hallo"]) == []
    # a kind change is carried by the entries; a deleted contact is gone from them
    put_contact(api, "k-f1", ["f1@firma.test"], kind="intermediary", name="Firma 1")
    kinds = {s["contact_id"]: s["kind"] for s in suggestions(api, ids["Bewerbung"])}
    assert kinds["k-f1"] == "intermediary"
    assert api.delete("/v1/contacts/k-f2").status == 204
    assert "k-f2" not in {s["contact_id"] for s in suggestions(api, ids["Bewerbung"])}


def test_contacts_stored_before_the_index_get_it_from_the_ops_cli(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    """Contacts written before the domain and name entries existed (simulated by deleting
    every entry): no same_domain / name_match until `mailsync admin reindex-contacts`."""
    import json

    from mailsync.store.models_index import DomainContactsItem, NameContactsItem
    from mailsync_local.cli import main

    api, ids = world["api"], world["ids"]
    before = suggestions(api, ids["Bewerbung"])
    assert before and "same_domain" in before[0]["reasons"]
    for model, prefix in ((DomainContactsItem, "T#t1#DOM#"), (NameContactsItem, "T#t1#NAME#")):
        for item in model.scan(model.pk.startswith(prefix)):  # test set-up only: the service never scans
            item.delete()
    assert suggestions(api, ids["Bewerbung"]) == []
    capsys.readouterr()
    assert main(["admin", "reindex-contacts", "t1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"tenant_id": "t1", "contacts": 11}
    assert suggestions(api, ids["Bewerbung"]) == before
    assert main(["admin", "reindex-contacts", "t1"]) == 0  # idempotent
    assert suggestions(api, ids["Bewerbung"]) == before
