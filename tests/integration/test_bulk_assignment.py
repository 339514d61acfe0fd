"""Bulk and automatic mail stays out of contact histories (issue 16), over Dovecot and moto:
flagged at ingest (``domain/bulk.py``), not auto-assigned while the tenant's ``assign_bulk``
is false (the default), still linkable by hand, and assigned once the tenant asks for it."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import pytest

from tests.support.accounts import connect, mirror, sync
from tests.support.api import ApiClient
from tests.support.crm import history, put_contact, unassigned

pytestmark = pytest.mark.integration

KUNDE = "kunde@versicherer.example"


def mail(subject: str, sender: str = KUNDE, **headers: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "alice@example.test"
    msg["Subject"] = subject
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(f"{subject}\n")
    return msg.as_bytes()


@pytest.fixture
def account(tenant: Any, dovecot: Any, imap_user: tuple[str, str]) -> dict[str, Any]:
    put_contact(ApiClient("key-t1", "alice"), "k1", [KUNDE, "noreply@versicherer.example"])
    return connect(dovecot, imap_user)


def by_subject(acc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["subject"]: m for m in mirror(acc)}


def test_bulk_mail_is_flagged_and_kept_out_of_histories_but_can_be_linked_by_hand(
    account: dict[str, Any], dovecot: Any, imap_user: tuple[str, str]
) -> None:
    api, tenant_api = ApiClient("key-t1", "alice"), ApiClient("key-t1", None)
    assert tenant_api.get("/v1/tenant/settings").body == {"assign_bulk": False, "allowed_origins": []}
    user = imap_user[0]
    dovecot.append(user, "INBOX", mail("Ihr Angebot"))
    dovecot.append(user, "INBOX", mail("Newsletter Mai", List_Unsubscribe="<https://versicherer.example/u>"))
    dovecot.append(user, "INBOX", mail("Abwesend", Auto_Submitted="auto-replied", X_Autoreply="yes"))
    dovecot.append(user, "INBOX", mail("Ihre Rechnung", sender="noreply@versicherer.example"))
    sync(account)
    msgs = by_subject(account)
    flags = {s: api.get(f"/v1/messages/{m['id']}").body["bulk"] for s, m in msgs.items()}
    assert flags == {"Ihr Angebot": False, "Newsletter Mai": True, "Abwesend": True, "Ihre Rechnung": True}
    assert history(api, "k1") == [msgs["Ihr Angebot"]["id"]]
    bulk_ids = {msgs[s]["id"] for s in ("Newsletter Mai", "Abwesend", "Ihre Rechnung")}
    assert bulk_ids <= set(unassigned(api))
    # a manual link still works
    r = api.post(f"/v1/threads/{msgs['Newsletter Mai']['thread_id']}/links", {"contact_id": "k1"})
    assert r.status == 201, r.body
    assert msgs["Newsletter Mai"]["id"] in history(api, "k1")
    # a contact added later links the ordinary mail, not the bulk ones
    put_contact(api, "k2", [KUNDE])
    assert history(api, "k2") == [msgs["Ihr Angebot"]["id"]]


def test_a_tenant_that_assigns_bulk_mail_gets_it_linked(
    account: dict[str, Any], dovecot: Any, imap_user: tuple[str, str]
) -> None:
    tenant_api = ApiClient("key-t1", None)
    r = tenant_api.patch("/v1/tenant/settings", {"assign_bulk": True})
    assert r.status == 200 and r.body == {"assign_bulk": True, "allowed_origins": []}
    assert tenant_api.patch("/v1/tenant/settings", {"assign_bulk": "yes"}).status == 422
    dovecot.append(imap_user[0], "INBOX", mail("Newsletter Juni", List_Id="<news.versicherer.example>"))
    sync(account)
    (m,) = mirror(account)
    assert history(ApiClient("key-t1", "alice"), "k1") == [m["id"]]
    # another tenant's setting is its own
    assert ApiClient("key-t2", None).get("/v1/tenant/settings").body == {
        "assign_bulk": False,
        "allowed_origins": [],
    }
