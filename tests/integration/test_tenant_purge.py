"""A tenant leaves (issue 12): ``DELETE /v1/tenant`` refuses its keys at once, and the
background purge leaves no item or object with the tenant's id in any table or bucket,
while another tenant's data is untouched (Dovecot, aiosmtpd, the fake Google, moto)."""

from __future__ import annotations

import json

import pytest

from mailsync.store import tenants
from tests.support.accounts import mirror, sync
from tests.support.api import ApiClient
from tests.support.crm import append, history, put_contact
from tests.support.purge import naming, objects, run_jobs

pytestmark = pytest.mark.integration

GONE = "t_leaving_7f3a9c"  # distinctive: it must appear nowhere afterwards
KEY = "msk_leaving-tenant-key"
KUNDE = "kunde@kunde.test"


def everything_with(text: str) -> list[str]:
    """Every item (of every table) and S3 key that mentions ``text`` anywhere (a test may Scan)."""
    return [json.dumps(i) for _, i in naming([text])] + sorted(k for k in objects("") if text in k)


@pytest.fixture
def leaving(tenant, dovecot, imap_user, smtp_server, google):
    """A tenant with an account full of mail (linked to a contact, with an attachment and a
    sent mail with an Idempotency-Key), a pending OAuth state, and a second key."""
    tenants.create_tenant(GONE, "Makler Weg", KEY, "2026-01-01T00:00:00Z")
    tenants.allow_redirects(GONE, ["http://127.0.0.1:*"])
    api = ApiClient(KEY, "alice")
    user, pw = imap_user
    imap = {"host": dovecot.host, "port": dovecot.port, "security": "none", "username": user, "password": pw}
    smtp = {
        "host": smtp_server.host,
        "port": smtp_server.port,
        "security": "none",
        "username": user,
        "password": pw,
    }
    r = api.post(
        "/v1/accounts",
        {
            "email": smtp_server.address(user),
            "imap": imap,
            "smtp": smtp,
            "backfill_days": 7,
            "settings": {"visibility": "public"},
        },
    )
    assert r.status == 201, r.body
    acc = r.body
    put_contact(api, "crm-1", [KUNDE])
    append(dovecot, user, 1, "Angebot", from_=f"Kunde <{KUNDE}>")
    big = b"%PDF" + bytes(range(256)) * 24_000  # > LARGE_ATTACHMENT_BYTES: downloads copy it to S3
    append(
        dovecot,
        user,
        2,
        "Police",
        from_=f"Kunde <{KUNDE}>",
        attachment=("police.pdf", "application/pdf", big),
    )
    sync(acc, GONE)
    police = next(m for m in mirror(acc, GONE) if m["subject"] == "Police")
    att = api.get(f"/v1/messages/{police['id']}").body["attachments"][0]
    r = api.call("GET", f"/v1/messages/{police['id']}/attachments/{att['id']}")
    assert r.status == 302, r.status
    r = api.call(
        "POST",
        f"/v1/accounts/{acc['id']}/send",
        {"to": [smtp_server.address(user)], "cc": [], "subject": "Notiz", "text": "x"},
        headers={"Idempotency-Key": "k-1"},
    )
    assert r.status == 202, r.body
    sync(acc, GONE)
    assert len(history(api, "crm-1")) >= 2
    assert api.get("/v1/oauth/google/authorize", redirect_uri="http://127.0.0.1:8999/done").status == 200
    second = api.post("/v1/api-keys", {"name": "zweiter"})
    assert second.status == 201, second.body
    return api, acc, second.body["key"]


@pytest.fixture
def staying(tenant, dovecot):
    """Tenant t2's own account, mail and contact (must survive)."""
    from tests.support.accounts import connect

    user, pw = dovecot.new_user("bleibt")
    acc = connect(dovecot, (user, pw), tenant_id="t2", owner="bob", backfill_days=7)
    api = ApiClient("key-t2", "bob")
    put_contact(api, "crm-1", [KUNDE])
    append(dovecot, user, 3, "Bleibt", from_=f"Kunde <{KUNDE}>")
    sync(acc, "t2")
    return api, acc


def test_a_tenant_purge_leaves_nothing_with_its_id_and_spares_other_tenants(leaving, staying):
    api, acc, second_key = leaving
    bob, bobs = staying
    assert everything_with(GONE) and everything_with(acc["id"])  # the fixture stored plenty

    tenant_api = api.as_user(None)
    for headers in ({}, {"X-Confirm-Delete": "t2"}, {"X-Confirm-Delete": GONE + "x"}):
        r = tenant_api.call("DELETE", "/v1/tenant", headers=headers)
        assert r.status == 400 and r.body["code"] == "confirmation_required", (headers, r.body)
    assert api.get("/v1/accounts").status == 200  # nothing happened yet

    r = tenant_api.call("DELETE", "/v1/tenant", headers={"X-Confirm-Delete": GONE})
    assert r.status == 202 and r.body == {"tenant_id": GONE, "state": "purging"}, r.body
    # Every key is refused from this moment, before the purge ran.
    for key in (KEY, second_key):
        r = ApiClient(key, "alice").get("/v1/accounts")
        assert r.status == 401 and r.body["code"] == "unauthorized"

    ran = run_jobs()
    assert all(ok for _, ok in ran), ran
    assert {"kind": "purge_tenant", "tenant_id": GONE} in [job for job, _ in ran]
    assert everything_with(GONE) == []
    assert everything_with(acc["id"]) == []

    # The other tenant: its key, account, mail and contact history are as before.
    assert [m["subject"] for m in mirror(bobs, "t2")] == ["Bleibt"]
    assert len(history(bob, "crm-1")) == 1
    assert bob.get("/v1/contacts/crm-1").body["emails"] == [KUNDE]
    assert tenants.tenant_for_key("key-t2") == "t2"


def test_the_ops_cli_lists_tenants_with_account_counts_and_deletes_one(leaving, staying, capsys):
    from mailsync_local.cli import main

    assert main(["admin", "list-tenants"]) == 0
    listed = {t["tenant_id"]: t for t in json.loads(capsys.readouterr().out)}
    assert listed[GONE]["accounts"] == 1 and listed[GONE]["name"] == "Makler Weg"
    assert listed["t2"]["accounts"] == 1 and listed["t1"]["accounts"] == 0

    assert main(["admin", "delete-tenant", GONE]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["state"] == "deleted"
    assert '"status": "purged"' in out.err  # progress, one line per step
    assert ApiClient(KEY, "alice").get("/v1/accounts").status == 401
    assert everything_with(GONE) == []

    capsys.readouterr()  # the API handler above flushed its metrics (EMF lines) to stdout
    assert main(["admin", "list-tenants"]) == 0
    printed = capsys.readouterr().out
    assert GONE not in {t["tenant_id"] for t in json.loads(printed)}, printed
    assert main(["admin", "delete-tenant", "t_nobody"]) == 1  # an unknown tenant is an error
