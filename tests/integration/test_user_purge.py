"""Deleting a user (issue 12) against Dovecot, the fake Google, the fake Graph and moto:
colleagues' views drop the user's mail at once, new connections wait for the purge, the
background purge (queue jobs run by the real sync worker) leaves no item and no object of
the user behind, stops the Gmail watch and the Graph subscription, and leaves colleagues'
mail and the tenant's contacts as they were."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from mailsync.config import get_settings
from mailsync.usecases.sync_account import sync_account
from tests.support.accounts import connect, mirror, sync
from tests.support.api import ApiClient
from tests.support.crm import append, history, put_contact
from tests.support.dovecot import make_mail
from tests.support.google import REDIRECT
from tests.support.google import connect_google as _connect_google
from tests.support.microsoft import connect_microsoft as _connect_microsoft
from tests.support.purge import (
    LogRecords,
    account_objects,
    discard_jobs,
    naming,
    run_jobs,
    tenant_api,
)

pytestmark = pytest.mark.integration

KUNDE = "kunde@kunde.test"
CONTACT = "c-kunde"
G_EMAIL = "alice@makler.example"
M_EMAIL = "alice@contoso.test"
PDF = ("Police.pdf", "application/pdf", b"%PDF-1.4 police " * 64)
BIG = bytes(range(256)) * (6 * 1024 * 4)  # 6 MiB: served through a presigned S3 copy


@dataclass
class World:
    alice: ApiClient
    bob: ApiClient
    admin: ApiClient
    imap_user: str
    imap_password: str
    accounts: dict[str, str]  # provider -> alice's account id
    bob_account: str
    mids: set[str] = field(default_factory=set)  # alice's mails
    threads: set[str] = field(default_factory=set)  # alice's threads
    bob_mids: set[str] = field(default_factory=set)

    def needles(self) -> set[str]:
        """What names alice's data: her account ids, owner keys, mails, threads, addresses."""
        imap_email = f"{self.imap_user}@example.test"
        return {
            *self.accounts.values(),
            "T#t1#U#alice#",
            *self.mids,
            *self.threads,
            G_EMAIL,
            M_EMAIL,
            imap_email,
        }

    def bob_needles(self) -> set[str]:
        return {self.bob_account, "T#t1#U#bob#", *self.bob_mids}


def connect_google(api: ApiClient, fake: Any, email: str) -> str:
    status, q = _connect_google(api, fake, email)
    assert status == 302 and "account_id" in q, q
    return q["account_id"]


def connect_microsoft(api: ApiClient, fake: Any, email: str) -> str:
    status, q = _connect_microsoft(api, fake, email)
    assert status == 302 and "account_id" in q, q
    return q["account_id"]


def public(api: ApiClient, account_id: str) -> None:
    r = api.patch(f"/v1/accounts/{account_id}/settings", {"visibility": "public"})
    assert r.status == 200 and r.body["settings"]["visibility"] == "public", r.body


def own_mails(api: ApiClient, account_id: str) -> list[dict[str, Any]]:
    r = api.get("/v1/messages", account_id=account_id, limit=200)
    assert r.status == 200, r.body
    return r.body["items"]


def build(dovecot: Any, google: Any, microsoft: Any) -> World:
    """alice: one account per provider, mails from and to a shared contact (attachments, a
    large one downloaded once, and a mail sent with an Idempotency-Key); bob: an IMAP
    account with mail of the same contact. Every account is public."""
    alice, bob = ApiClient("key-t1", "alice"), ApiClient("key-t1", "bob")
    put_contact(alice, CONTACT, [KUNDE], visible_to=["*"])

    imap_user, imap_password = dovecot.new_user("alice")
    imap = connect(dovecot, (imap_user, imap_password), owner="alice", backfill_days=7)
    public(alice, imap["id"])
    addr = imap["email"]
    append(dovecot, imap_user, 1, "Antrag", from_=KUNDE, to=addr, message_id="antrag@kunde.test")
    append(
        dovecot,
        imap_user,
        2,
        "Re: Antrag",
        from_=addr,
        to=KUNDE,
        message_id="antrag-2@x",
        in_reply_to="antrag@kunde.test",
        references="antrag@kunde.test",
        attachment=PDF,
    )
    append(dovecot, imap_user, 3, "Scan", from_=KUNDE, to=addr, attachment=("scan.tif", "image/tiff", BIG))
    append(dovecot, imap_user, 4, "Sent copy", folder="Sent", from_=addr, to=KUNDE)
    append(dovecot, imap_user, 5, "Intern", from_="kollege@makler.test", to=addr)
    assert sync(imap)["status"] == "ok"

    gid = connect_google(alice, google, G_EMAIL)
    public(alice, gid)
    google.deliver(G_EMAIL, make_mail("Gmail Frage", KUNDE, G_EMAIL, attachment=PDF))
    google.deliver(G_EMAIL, make_mail("Gmail Zweite", KUNDE, G_EMAIL))
    assert sync_account("t1", gid)["status"] == "ok"
    frage = next(m for m in own_mails(alice, gid) if m["subject"] == "Gmail Frage")
    r = alice.post(
        f"/v1/accounts/{gid}/send",
        {"to": [KUNDE], "subject": "Re: Gmail Frage", "text": "Antwort", "reply_to": frage["id"]},
        headers={"Idempotency-Key": "send-1"},
    )
    assert r.status == 202, r.body
    assert sync_account("t1", gid)["status"] == "ok"

    mid_ = connect_microsoft(alice, microsoft, M_EMAIL)
    public(alice, mid_)
    microsoft.deliver(M_EMAIL, make_mail("Graph Angebot", KUNDE, M_EMAIL, attachment=PDF))
    microsoft.deliver(M_EMAIL, make_mail("Graph Intern", "kollege@contoso.test", M_EMAIL))
    assert sync_account("t1", mid_)["status"] == "ok"

    bob_user = dovecot.new_user("bob")
    bob_acc = connect(dovecot, bob_user, owner="bob", backfill_days=7)
    public(bob, bob_acc["id"])
    append(dovecot, bob_user[0], 6, "Bob Termin", from_=KUNDE, to=bob_acc["email"], attachment=PDF)
    append(dovecot, bob_user[0], 7, "Bob intern", from_="chef@makler.test", to=bob_acc["email"])
    assert sync(bob_acc)["status"] == "ok"

    w = World(
        alice,
        bob,
        tenant_api(),
        imap_user,
        imap_password,
        {"imap": imap["id"], "google": gid, "microsoft": mid_},
        bob_acc["id"],
    )
    for aid in w.accounts.values():
        for m in own_mails(alice, aid):
            w.mids.add(m["id"])
            w.threads.add(m["thread_id"])
    w.bob_mids = {m["id"] for m in own_mails(bob, w.bob_account)}
    assert len(w.mids) == 10 and len(w.bob_mids) == 2, (w.mids, w.bob_mids)

    # The large attachment's presigned copy is made on its first download.
    scan = next(m for m in own_mails(alice, imap["id"]) if m["subject"] == "Scan")
    att = alice.get(f"/v1/messages/{scan['id']}").body["attachments"][0]
    status, _, _ = alice.raw("GET", f"/v1/messages/{scan['id']}/attachments/{att['id']}")
    assert status == 302
    assert any(".att/" in k for k in account_objects(imap["id"]))
    discard_jobs()  # the first syncs that connecting queued: done above
    return w


@pytest.fixture
def world(tenant: dict[str, str], dovecot: Any, google: Any, microsoft: Any) -> World:
    return build(dovecot, google, microsoft)


def history_subjects(api: ApiClient) -> set[str]:
    r = api.get(f"/v1/contacts/{CONTACT}/messages", limit=200)
    assert r.status == 200, r.body
    return {m["subject"] for m in r.body["items"]}


def thread_accounts(api: ApiClient) -> set[str]:
    r = api.get(f"/v1/contacts/{CONTACT}/threads", limit=200)
    assert r.status == 200, r.body
    return {t["account_id"] for t in r.body["items"]}


# alice's mails the contact takes part in (the "Intern" ones are nobody's business but hers).
ALICE_LINKED = {
    *("Antrag", "Re: Antrag", "Scan", "Sent copy"),
    *("Gmail Frage", "Gmail Zweite", "Re: Gmail Frage"),
    "Graph Angebot",
}


def test_user_with_every_provider_is_purged_and_colleagues_keep_theirs(world, dovecot, google, microsoft):
    w = world
    bob, admin = w.bob, w.admin
    # Before: bob sees alice's public linked mail through the contact, and his own.
    assert history_subjects(bob) == ALICE_LINKED | {"Bob Termin"}
    assert thread_accounts(bob) == {*w.accounts.values(), w.bob_account}
    antrag = next(m for m in own_mails(w.alice, w.accounts["imap"]) if m["subject"] == "Antrag")
    assert bob.get(f"/v1/messages/{antrag['id']}").status == 200
    assert bob.get(f"/v1/threads/{antrag['thread_id']}").status == 200
    assert admin.get("/v1/users/alice").body == {"user_id": "alice", "state": "active", "accounts": 3}
    bob_before = sorted(json.dumps(i, sort_keys=True) for i in naming(w.bob_needles()))
    contact_before = w.alice.get(f"/v1/contacts/{CONTACT}").body
    bob_objects = account_objects(w.bob_account)
    assert len(bob_objects) == 2
    tables = {t for t, _ in naming(w.needles())}
    assert tables == {get_settings().table, get_settings().idempotency_table}  # the send's record too
    assert all(account_objects(a) for a in w.accounts.values())
    graph_sub = [s.id for s in microsoft.subscriptions.values() if s.user == M_EMAIL]
    assert google.mailbox(G_EMAIL).watch and len(graph_sub) == 1

    r = admin.delete("/v1/users/alice")
    assert r.status == 202, r.body
    assert r.body == {"user_id": "alice", "accounts": 3, "state": "purging"}

    # At once, before any job ran: alice's mail is gone from every colleague's view.
    assert history_subjects(bob) == {"Bob Termin"}
    assert thread_accounts(bob) == {w.bob_account}
    assert bob.get(f"/v1/messages/{antrag['id']}").status == 404
    assert bob.get(f"/v1/threads/{antrag['thread_id']}").status == 404
    for mid in w.bob_mids:
        assert bob.get(f"/v1/messages/{mid}").status == 200
    assert admin.get("/v1/users/alice").body == {"user_id": "alice", "state": "purging", "accounts": 3}
    # ... her accounts leave her lists, and nothing new is connected for her meanwhile.
    assert w.alice.get("/v1/accounts").body["items"] == []
    r = w.alice.post("/v1/accounts", imap_body(dovecot, w))
    assert r.status == 409 and r.body["code"] == "user_purging", r.body
    for provider in ("google", "microsoft"):
        r = w.alice.get(f"/v1/oauth/{provider}/authorize", redirect_uri=REDIRECT)
        assert r.status == 409 and r.body["code"] == "user_purging", (provider, r.body)

    ran = run_jobs()
    assert [job["kind"] for job, _ in ran] == ["purge_user"] and all(ok for _, ok in ran), ran

    # After: no item and no object of alice is left, anywhere.
    assert naming(w.needles()) == []
    for aid in w.accounts.values():
        assert account_objects(aid) == set(), aid
    # The push channels were stopped at the providers.
    assert ("POST", "/gmail/v1/users/me/stop") in google.log
    assert not google.mailbox(G_EMAIL).watch
    assert [c.target for c in microsoft.calls if c.method == "DELETE"] == [
        f"/v1.0/subscriptions/{graph_sub[0]}"
    ]
    assert graph_sub[0] not in microsoft.subscriptions
    # bob's mail, links and objects, and the contact, are exactly as they were.
    assert sorted(json.dumps(i, sort_keys=True) for i in naming(w.bob_needles())) == bob_before
    assert account_objects(w.bob_account) == bob_objects
    assert w.bob.get(f"/v1/contacts/{CONTACT}").body == contact_before
    assert contact_before["visible_to"] == ["*"]
    assert history(bob, CONTACT) and history_subjects(bob) == {"Bob Termin"}
    r = admin.get("/v1/users/alice")
    assert r.status == 404 and r.body["code"] == "user_not_found", r.body

    # Reconnecting works and starts from scratch: a new account, nothing until it syncs.
    r = w.alice.post("/v1/accounts", imap_body(dovecot, w))
    assert r.status == 201, r.body
    again = r.body
    assert again["id"] not in w.accounts.values()
    assert own_mails(w.alice, again["id"]) == [] and w.alice.get("/v1/messages").body["items"] == []
    assert admin.get("/v1/users/alice").body == {"user_id": "alice", "state": "active", "accounts": 1}
    assert sync(again)["status"] == "ok"
    subjects = sorted(m["subject"] for m in mirror(again))
    assert subjects == ["Antrag", "Intern", "Re: Antrag", "Scan", "Sent copy"]
    assert not {m["id"] for m in mirror(again)} & w.mids


def imap_body(dovecot: Any, w: World) -> dict[str, Any]:
    server = {
        "host": dovecot.host,
        "port": dovecot.port,
        "security": "none",
        "username": w.imap_user,
        "password": w.imap_password,
    }
    return {
        "email": f"{w.imap_user}@example.test",
        "imap": server,
        "smtp": dict(server),
        "backfill_days": 7,
    }


# ----------------------------------------------------------- unreachable providers
def test_unreachable_providers_do_not_stop_the_purge(tenant, google, microsoft, quick_retries):
    alice, admin = ApiClient("key-t1", "alice"), tenant_api()
    gid = connect_google(alice, google, G_EMAIL)
    google.deliver(G_EMAIL, make_mail("Gmail Frage", KUNDE, G_EMAIL, attachment=PDF))
    assert sync_account("t1", gid)["status"] == "ok"
    mid = connect_microsoft(alice, microsoft, M_EMAIL)
    microsoft.deliver(M_EMAIL, make_mail("Graph Angebot", KUNDE, M_EMAIL))
    assert sync_account("t1", mid)["status"] == "ok"
    (sub,) = [s.id for s in microsoft.subscriptions.values() if s.user == M_EMAIL]
    mails = {m["id"] for aid in (gid, mid) for m in own_mails(alice, aid)}
    assert len(mails) == 2 and account_objects(gid) and account_objects(mid)
    discard_jobs()

    assert admin.delete("/v1/users/alice").body == {"user_id": "alice", "accounts": 2, "state": "purging"}
    google.stop()  # Google is down: neither its token endpoint nor the Gmail API answers
    microsoft.fail_next(1000, 503, path=f"/subscriptions/{sub}", method="DELETE", retry_after=None)
    with LogRecords() as logs:
        ran = run_jobs()
    assert [job["kind"] for job, _ in ran] == ["purge_user"] and all(ok for _, ok in ran), ran

    assert naming({gid, mid, "T#t1#U#alice#", *mails, G_EMAIL, M_EMAIL}) == []
    assert account_objects(gid) == set() and account_objects(mid) == set()
    r = admin.get("/v1/users/alice")
    assert r.status == 404 and r.body["code"] == "user_not_found"
    # Graph was asked (and retried) before the purge gave up on it; both failures are logged.
    deletes = [c.target for c in microsoft.calls if c.method == "DELETE"]
    assert deletes and set(deletes) == {f"/v1.0/subscriptions/{sub}"} and len(deletes) > 1
    assert quick_retries, "the providers backed off before giving up"
    for aid in (gid, mid):
        (warning,) = logs.warnings(account_id=aid)
        assert "could not stop the push channel" in warning.getMessage()


# ------------------------------------------------------------------- edge cases
def test_unknown_user_and_user_without_accounts(tenant):
    admin = tenant_api()
    r = admin.get("/v1/users/nobody")
    assert r.status == 404 and r.body["code"] == "user_not_found", r.body
    discard_jobs()
    r = admin.delete("/v1/users/nobody")
    assert r.status == 202 and r.body == {"user_id": "nobody", "accounts": 0, "state": "purging"}, r.body
    assert admin.get("/v1/users/nobody").body == {"user_id": "nobody", "state": "purging", "accounts": 0}
    ran = run_jobs()
    assert [(job["kind"], job["user_id"], ok) for job, ok in ran] == [("purge_user", "nobody", True)]
    r = admin.get("/v1/users/nobody")
    assert r.status == 404 and r.body["code"] == "user_not_found", r.body
    assert naming({"U#nobody"}) == []


def test_another_tenants_delete_does_not_touch_this_tenants_user(tenant, dovecot, google):
    alice = ApiClient("key-t1", "alice")
    user, password = dovecot.new_user("alice")
    acc = connect(dovecot, (user, password), owner="alice", backfill_days=7)
    append(dovecot, user, 1, "Bleibt", from_=KUNDE, to=acc["email"])
    assert sync(acc)["status"] == "ok"
    (kept,) = own_mails(alice, acc["id"])
    before = sorted(json.dumps(i, sort_keys=True) for i in naming({acc["id"], "T#t1#U#alice#"}))
    objects_before = account_objects(acc["id"])
    discard_jobs()

    other = tenant_api("key-t2")
    r = other.delete("/v1/users/alice")
    assert r.status == 202 and r.body == {"user_id": "alice", "accounts": 0, "state": "purging"}, r.body
    # t1's alice is not purging: her mail shows, and she may connect.
    assert tenant_api().get("/v1/users/alice").body == {"user_id": "alice", "state": "active", "accounts": 1}
    assert alice.get(f"/v1/messages/{kept['id']}").status == 200
    assert alice.get("/v1/oauth/google/authorize", redirect_uri=REDIRECT).status == 200
    ran = run_jobs()
    assert [(job["kind"], job["tenant_id"]) for job, _ in ran] == [("purge_user", "t2")]

    assert sorted(json.dumps(i, sort_keys=True) for i in naming({acc["id"], "T#t1#U#alice#"})) == before
    assert account_objects(acc["id"]) == objects_before
    assert [m["id"] for m in own_mails(alice, acc["id"])] == [kept["id"]]
    r = other.get("/v1/users/alice")
    assert r.status == 404 and r.body["code"] == "user_not_found"
    assert tenant_api().get("/v1/users/alice").body["state"] == "active"
