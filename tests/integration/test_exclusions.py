"""Mail that is never synced (issue 16), over Dovecot and moto: an account's exclusion rules
keep matching mail out of the mirror at ingest (no item, object, address entry, link or
location), remove it when a rule is added later (the provider's copy stays), bring it back
on a resync once the rule is gone, and refuse bad entries with 422."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

import boto3
import pytest

from mailsync.config import get_settings
from mailsync.store import blobs, keys
from mailsync.store.models import AddressMessageItem, LocationItem
from tests.support.accounts import connect, mirror, sync
from tests.support.api import ApiClient
from tests.support.crm import history, put_contact, unassigned
from tests.support.events import EventLog

pytestmark = pytest.mark.integration

KUNDE = "kunde@versicherer.example"
ARZT = "dr.mueller@praxis.example"


def mail(subject: str, sender: str = KUNDE, to: str = "alice@example.test") -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg.set_content(f"{subject}\n")
    return msg.as_bytes()


@pytest.fixture
def api(tenant: Any) -> ApiClient:
    return ApiClient("key-t1", "alice")


def subjects(acc: dict[str, Any]) -> list[str]:
    return sorted(m["subject"] for m in mirror(acc))


def objects(acc: dict[str, Any]) -> int:
    prefix = blobs.account_prefix("t1", acc["id"])
    s3 = boto3.client("s3")
    return int(s3.list_objects_v2(Bucket=get_settings().bucket, Prefix=prefix).get("KeyCount", 0))


def locations(acc: dict[str, Any]) -> int:
    pk = keys.account("t1", acc["id"])
    return sum(1 for _ in LocationItem.query(pk, LocationItem.sk.startswith("L#")))


def address_entries(email: str) -> int:
    return sum(1 for _ in AddressMessageItem.query(keys.address_messages("t1", email)))


def settings(api: ApiClient, acc: dict[str, Any], **body: Any) -> Any:
    return api.patch(f"/v1/accounts/{acc['id']}/settings", body)


def inbox_count(api: ApiClient, acc: dict[str, Any]) -> int:
    folders = api.get(f"/v1/accounts/{acc['id']}/folders").body["items"]
    return next(f["messages"] for f in folders if f["name"] == "INBOX")


def test_an_excluded_sender_or_recipient_is_never_mirrored(
    api: ApiClient, dovecot: Any, imap_user: tuple[str, str]
) -> None:
    user = imap_user[0]
    put_contact(api, "arzt", [ARZT])
    acc = connect(dovecot, imap_user)
    r = settings(
        api, acc, exclude={"addresses": [" Dr.Mueller@Praxis.EXAMPLE "], "domains": ["Kanzlei.example."]}
    )
    assert r.status == 200, r.body
    assert r.body["settings"]["exclude"] == {"addresses": [ARZT], "domains": ["kanzlei.example"]}
    dovecot.append(user, "INBOX", mail("Befund", sender=ARZT))
    dovecot.append(user, "INBOX", mail("Vollmacht", to="anwalt@mail.kanzlei.example"))  # a subdomain
    dovecot.append(user, "INBOX", mail("Angebot"))
    dovecot.append(user, "INBOX", mail("Werbung", sender="info@badkanzlei.example"))  # not a subdomain
    report = sync(acc)
    assert report["status"] in ("ok", "active"), report
    assert subjects(acc) == ["Angebot", "Werbung"]
    # no trace: no object, location, address entry or link of the excluded mails
    assert objects(acc) == 2 and locations(acc) == 2
    assert address_entries(ARZT) == 0 and address_entries("anwalt@mail.kanzlei.example") == 0
    assert history(api, "arzt") == []
    assert len(unassigned(api)) == 2
    assert inbox_count(api, acc) == 2
    # The completeness check fetches them again and finds no difference to heal.
    sync(acc, reason="check")
    check = api.get(f"/v1/accounts/{acc['id']}").body["health"]["check"]
    inbox = next(f for f in check["folders"] if f["name"] == "INBOX")
    assert (inbox["missing"], inbox["healed"], inbox["provider_count"]) == (0, 0, 2), inbox
    assert subjects(acc) == ["Angebot", "Werbung"]
    # a new mail from the excluded sender later: still nothing
    dovecot.append(user, "INBOX", mail("Termin", sender=ARZT))
    sync(acc)
    assert subjects(acc) == ["Angebot", "Werbung"] and address_entries(ARZT) == 0


def test_adding_a_rule_removes_mirrored_mail_and_removing_it_brings_it_back_on_resync(
    api: ApiClient, dovecot: Any, imap_user: tuple[str, str]
) -> None:
    user = imap_user[0]
    put_contact(api, "k1", [KUNDE])
    acc = connect(dovecot, imap_user)
    dovecot.append(user, "INBOX", mail("Angebot"))
    dovecot.append(user, "INBOX", mail("Rechnung", sender="buchhaltung@firma.example"))
    sync(acc)
    before = {m["subject"]: m["id"] for m in mirror(acc)}
    assert history(api, "k1") == [before["Angebot"]]
    log = EventLog("t1")
    log.drain()

    assert settings(api, acc, exclude={"domains": ["versicherer.example"]}).status == 200
    sync(acc, reason="exclude")  # the job the settings change queued
    assert subjects(acc) == ["Rechnung"]
    assert history(api, "k1") == [] and address_entries(KUNDE) == 0
    assert objects(acc) == 1 and locations(acc) == 1 and inbox_count(api, acc) == 1
    assert api.get(f"/v1/messages/{before['Angebot']}").status == 404
    (gone,) = log.of(log.drain(), "message.deleted")
    assert gone["data"]["id"] == before["Angebot"] and gone["data"]["reason"] == "excluded"
    with dovecot.client(user) as c:  # the provider's copy is untouched
        c.select_folder("INBOX")
        assert len(c.search("ALL")) == 2
    # the pass runs once per rule change: the next poll removes nothing more and writes nothing
    sync(acc)
    assert subjects(acc) == ["Rechnung"]

    # Removing the rule: back on the next resync, with the same id and its link.
    r = settings(api, acc, exclude={"domains": []})
    assert r.status == 200 and r.body["settings"]["exclude"] == {"addresses": [], "domains": []}
    assert api.post(f"/v1/accounts/{acc['id']}/resync").status == 202
    while sync(acc)["status"] == "partial":
        pass
    after = {m["subject"]: m["id"] for m in mirror(acc)}
    assert after == before
    assert history(api, "k1") == [before["Angebot"]]


def test_a_paused_account_is_cleaned_too(api: ApiClient, dovecot: Any, imap_user: tuple[str, str]) -> None:
    acc = connect(dovecot, imap_user)
    dovecot.append(imap_user[0], "INBOX", mail("Befund", sender=ARZT))
    sync(acc)
    assert api.post(f"/v1/accounts/{acc['id']}/pause").status == 200
    assert settings(api, acc, exclude={"addresses": [ARZT]}).status == 200
    assert sync(acc, reason="exclude")["status"] == "skipped"
    assert subjects(acc) == []
    assert api.get(f"/v1/accounts/{acc['id']}").body["state"] == "paused"


@pytest.mark.parametrize(
    ("exclude", "code"),
    [
        ({"addresses": ["kein-at-zeichen"]}, "invalid_address"),
        ({"addresses": ["a..b@example.com"]}, "invalid_address"),
        ({"addresses": ["a@localhost"]}, "invalid_address"),
        ({"domains": ["exa mple.com"]}, "invalid_domain"),
        ({"domains": ["localhost"]}, "invalid_domain"),
        ({"domains": ["-bad.example"]}, "invalid_domain"),
        (
            {
                "addresses": [f"u{i}@example.com" for i in range(300)],
                "domains": [f"d{i}.example" for i in range(201)],
            },
            "too_many_entries",
        ),
    ],
)
def test_bad_rules_are_refused_and_change_nothing(
    api: ApiClient, dovecot: Any, imap_user: tuple[str, str], exclude: dict[str, Any], code: str
) -> None:
    acc = connect(dovecot, imap_user)
    r = settings(api, acc, exclude=exclude)
    assert r.status == 422 and r.body["code"] == code, r.body
    assert api.get(f"/v1/accounts/{acc['id']}").body["settings"]["exclude"] == {
        "addresses": [],
        "domains": [],
    }


def test_five_hundred_entries_are_allowed_and_more_in_one_list_are_refused(
    api: ApiClient, dovecot: Any, imap_user: tuple[str, str]
) -> None:
    acc = connect(dovecot, imap_user)
    many = [f"d{i}.example" for i in range(500)]
    r = settings(api, acc, exclude={"domains": many})
    assert r.status == 200 and len(r.body["settings"]["exclude"]["domains"]) == 500
    assert settings(api, acc, exclude={"domains": [*many, "one-more.example"]}).status == 422
