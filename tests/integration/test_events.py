"""Outbound events from real changes (issue 15): Dovecot, fake Gmail, moto's DynamoDB stream.

Every event here comes from a real write: a sync against Dovecot or the Gmail fake, an API
call, a purge. The stream is read by the local runner's pump into the real events function,
and the events are read back from the tenant's feed (``GET /v1/events``' use case).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mailsync.usecases import accounts
from mailsync.usecases.lifecycle import purge_user_step
from mailsync.usecases.sync_account import sync_account
from mailsync_local.streams import EventsContext
from tests.support.accounts import connect, mirror, sync
from tests.support.api import ApiClient
from tests.support.crm import append, put_contact
from tests.support.dovecot import make_mail
from tests.support.events import EventLog
from tests.support.google import connect_google

pytestmark = pytest.mark.integration

SUMMARY = {
    "id", "account_id", "owner", "thread_id", "folder", "subject", "from", "to", "cc", "date",
    "snippet", "unread", "links", "visibility",
}  # fmt: skip


@pytest.fixture
def log(tenant: dict[str, str]) -> EventLog:
    return EventLog("t1")


@pytest.fixture
def api(tenant: dict[str, str]) -> ApiClient:
    return ApiClient("key-t1", "alice")


def by_subject(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["data"]["subject"]: e for e in events if "subject" in e["data"]}


def test_mailbox_changes_become_events(log, api, dovecot, imap_user):
    user, _ = imap_user
    dovecot.create_folder(user, "Archiv")
    for i, subject in enumerate(["Antrag", "Police", "Schaden", "Termin"]):
        append(dovecot, user, i, subject)
    acc = connect(dovecot, imap_user, backfill_days=3650)
    sync(acc)
    first = log.drain()
    assert log.types(first).count("account.connected") == 1
    (connected,) = log.of(first, "account.connected")
    assert connected["data"] == {
        "account_id": acc["id"],
        "owner": "alice",
        "email": acc["email"],
        "provider": "imap",
    }
    created = by_subject(log.of(first, "message.created"))
    assert sorted(created) == ["Antrag", "Police", "Schaden", "Termin"]
    antrag = created["Antrag"]["data"]
    assert set(antrag) == SUMMARY  # the summary, never a body or credentials
    assert antrag["folder"] == "INBOX" and antrag["unread"] is True and antrag["owner"] == "alice"
    assert antrag["visibility"] == "private" and antrag["links"] == []
    assert imap_user[1] not in json.dumps(first)  # no credential anywhere
    assert log.of(first, "account.initial_sync_completed")[0]["data"]["account_id"] == acc["id"]
    (state,) = log.of(first, "account.state_changed")
    assert (state["data"]["from"], state["data"]["to"]) == ("initial_sync", "active")
    ids = {m["subject"]: m["id"] for m in mirror(acc)}
    assert {s: e["data"]["id"] for s, e in created.items()} == ids

    # Read at the server: one message.updated naming unread.
    uids = dovecot.uids(user, "INBOX")
    dovecot.set_seen(user, "INBOX", uids[:1], True)
    sync(acc)
    (seen,) = log.drain()
    assert seen["type"] == "message.updated" and seen["data"]["changes"] == ["unread"]
    assert seen["data"]["id"] == ids["Antrag"] and seen["data"]["unread"] is False

    # A move between synced folders: one update naming folder, never a delete and a create.
    dovecot.move(user, "INBOX", uids[1:2], "Archiv")
    sync(acc)
    (moved,) = log.drain()
    assert moved["type"] == "message.updated" and moved["data"]["changes"] == ["folder"]
    assert moved["data"]["id"] == ids["Police"] and moved["data"]["folder"] == "Archiv"

    # Deleted at the server.
    dovecot.delete(user, "INBOX", uids[2:3])
    sync(acc)
    (gone,) = log.drain()
    assert gone["type"] == "message.deleted"
    assert gone["data"] == {
        "id": ids["Schaden"],
        "account_id": acc["id"],
        "thread_id": created["Schaden"]["data"]["thread_id"],
        "reason": "deleted_at_provider",
    }

    # Deleted by the user (moved to Trash, which is not synced).
    assert api.delete(f"/v1/messages/{ids['Termin']}").status == 204
    (by_user,) = log.drain()
    assert by_user["type"] == "message.deleted" and by_user["data"]["reason"] == "deleted_by_user"

    # A folder taken out of the sync: its mails leave with folder_unsynced.
    accounts.update_settings("t1", "alice", acc["id"], {"folder_mode": "selected", "folders": ["INBOX"]})
    sync(acc)
    unsynced = log.of(log.drain(), "message.deleted")
    assert [(e["data"]["id"], e["data"]["reason"]) for e in unsynced] == [(ids["Police"], "folder_unsynced")]


def test_thread_links_by_hand(log, api, dovecot, imap_user):
    user, _ = imap_user
    append(dovecot, user, 1, "Anfrage", message_id="q1@x")
    append(dovecot, user, 2, "Re: Anfrage", message_id="q2@x", in_reply_to="q1@x")
    acc = connect(dovecot, imap_user, backfill_days=3650)
    sync(acc)
    put_contact(api, "kunde-1", ["niemand@kunde.test"])
    log.drain()
    msgs = mirror(acc)
    thread_id = msgs[0]["thread_id"]
    r = api.post(f"/v1/threads/{thread_id}/links", {"contact_id": "kunde-1"})
    assert r.status == 201, r.body
    got = log.drain()
    (linked,) = log.of(got, "thread.linked")
    assert linked["data"]["thread_id"] == thread_id and linked["data"]["contact_id"] == "kunde-1"
    assert sorted(linked["data"]["message_ids"]) == sorted(m["id"] for m in msgs)
    assert linked["data"]["source"] == "manual"
    updates = log.of(got, "message.updated")
    assert len(updates) == 2 and all(u["data"]["changes"] == ["links"] for u in updates)
    assert updates[0]["data"]["links"] == [{"contact_id": "kunde-1", "kind": "customer", "source": "manual"}]

    assert api.delete(f"/v1/threads/{thread_id}/links/kunde-1").status == 204
    got = log.drain()
    (unlinked,) = log.of(got, "thread.unlinked")
    assert unlinked["data"]["contact_id"] == "kunde-1"
    assert sorted(unlinked["data"]["message_ids"]) == sorted(m["id"] for m in msgs)


def test_deleting_an_account_is_one_event(log, api, dovecot, imap_user):
    user, _ = imap_user
    for i in range(5):
        append(dovecot, user, i, f"Mail {i}")
    acc = connect(dovecot, imap_user, backfill_days=3650)
    sync(acc)
    log.drain()
    assert api.delete(f"/v1/accounts/{acc['id']}").status == 204
    got = log.drain()
    assert log.types(got) == ["account.deleted"], log.types(got)
    assert got[0]["data"]["account_id"] == acc["id"] and got[0]["data"]["email"] == acc["email"]


def test_user_purge_and_state_changes(log, api, dovecot, imap_user):
    user, pw = imap_user
    append(dovecot, user, 1, "Eins")
    acc = connect(dovecot, imap_user, backfill_days=3650)
    sync(acc)
    log.drain()

    dovecot.add_user(user, pw + "-changed")  # the password changed at the provider
    sync(acc)
    (changed,) = log.of(log.drain(), "account.state_changed")
    assert changed["data"]["from"] == "active" and changed["data"]["to"] == "auth_error"
    assert changed["data"]["error"]["code"] == "auth_failed" and changed["data"]["action"] == "reauthenticate"
    assert pw not in json.dumps(changed)

    r = ApiClient("key-t1", None).delete("/v1/users/alice")
    assert r.status == 202, r.body
    while purge_user_step("t1", "alice")["status"] != "purged":
        pass
    got = log.drain()
    assert sorted(log.types(got)) == ["account.deleted", "user.purged"], log.types(got)
    (purged,) = log.of(got, "user.purged")
    assert purged["data"] == {"user_id": "alice", "accounts": [acc["id"]]}


def test_send_outcomes(log, dovecot, imap_user, smtp_server):
    user, pw = imap_user
    server = {
        "host": dovecot.host,
        "port": dovecot.port,
        "security": "none",
        "username": user,
        "password": pw,
    }
    smtp = {**server, "host": smtp_server.host, "port": smtp_server.port}
    acc = accounts.create_account(
        "t1", "alice", {"email": smtp_server.address(user), "imap": server, "smtp": smtp}
    )
    sync(acc)
    log.drain()
    api = ApiClient("key-t1", "alice")
    rcpt = smtp_server.address(dovecot.new_user("rcpt")[0])
    ok = api.post(
        f"/v1/accounts/{acc['id']}/send", {"to": [{"email": rcpt}], "subject": "Hallo", "text": "x"}
    )
    assert ok.status == 202, ok.body
    (sent,) = log.of(log.drain(), "send.succeeded")
    assert sent["data"]["message_id"] == ok.body["message_id"] and sent["data"]["account_id"] == acc["id"]
    assert sent["data"]["recipients"] == [{"email": rcpt, "status": "accepted", "code": None, "reply": None}]
    assert sent["data"]["error"] is None

    bad = api.post(f"/v1/accounts/{acc['id']}/send", {"to": [{"email": "niemand@example.test"}], "text": "x"})
    assert bad.status == 502, bad.body
    (failed,) = log.of(log.drain(), "send.failed")
    assert failed["data"]["error"]["code"] == bad.body["code"]
    assert failed["data"]["account_id"] == acc["id"]


def test_redelivered_stream_batch_yields_the_same_ids(log, dovecot, imap_user):
    user, _ = imap_user
    for i in range(3):
        append(dovecot, user, i, f"Mail {i}")
    acc = connect(dovecot, imap_user, backfill_days=3650)
    sync(acc)
    first = log.drain()
    batches = list(log.batches)
    for records in batches:  # the event source mapping delivers every batch again
        log.handler({"Records": records}, EventsContext())
    again = log.drain()
    assert [e["id"] for e in again] == [e["id"] for e in first]
    assert again == first  # same ids, same content: receivers deduplicate by id


def test_gmail_changes_become_events(log, tenant, google):
    api = ApiClient("key-t1", "alice")
    email = "petra@makler.example"
    _, q = connect_google(api, google, email)
    aid = q["account_id"]
    m1 = google.deliver(email, make_mail("Antrag", "kunde@example.org", email, message_id="g1@x"))
    sync_account("t1", aid)
    got = log.drain()
    assert log.types(got)[0] == "account.connected" and got[0]["data"]["provider"] == "google"
    (created,) = log.of(got, "message.created")
    assert created["data"]["subject"] == "Antrag" and created["data"]["folder"] == "INBOX"

    label = google.create_label(email, "Kunden")
    sync_account("t1", aid)
    google.move(email, m1, "INBOX", label)
    sync_account("t1", aid)
    (moved,) = log.drain()
    assert moved["type"] == "message.updated" and moved["data"]["changes"] == ["folder"]
    google.remove_labels(email, m1, label)  # archived: no synced label left
    sync_account("t1", aid)
    (archived,) = log.drain()
    assert archived["type"] == "message.deleted"
    assert archived["data"]["reason"] == "moved_to_unsynced_folder"
    assert archived["data"]["id"] == created["data"]["id"]


def test_graph_changes_become_events(log, tenant, microsoft):
    from tests.support.microsoft import connect_microsoft

    api = ApiClient("key-t1", "alice")
    email = "petra@contoso.test"
    _, q = connect_microsoft(api, microsoft, email)
    aid = q["account_id"]
    microsoft.create_folder(email, "Kunden")
    m1 = microsoft.deliver(email, make_mail("Antrag", "kunde@example.org", email, message_id="ms1@x"))
    m2 = microsoft.deliver(email, make_mail("Police", "kunde@example.org", email, message_id="ms2@x"))
    sync_account("t1", aid)
    created = by_subject(log.of(log.drain(), "message.created"))
    assert sorted(created) == ["Antrag", "Police"]

    microsoft.move(email, m1, "Kunden")  # between synced folders
    sync_account("t1", aid)
    (moved,) = log.drain()
    assert moved["type"] == "message.updated" and moved["data"]["changes"] == ["folder"]

    microsoft.move(email, m1, "Deleted Items")  # Outlook's delete: a move to a folder we do not sync
    microsoft.delete(email, m2)  # gone for good
    sync_account("t1", aid)
    reasons = {e["data"]["id"]: e["data"]["reason"] for e in log.of(log.drain(), "message.deleted")}
    assert reasons == {
        created["Antrag"]["data"]["id"]: "moved_to_unsynced_folder",
        created["Police"]["data"]["id"]: "deleted_at_provider",
    }


def test_events_keep_flowing_after_a_refused_transaction(log, dovecot, imap_user):
    """A change the table refuses (deleting the tenant's last key: a cancelled transaction,
    409 ``last_key``) must not stall the stream: the next change still becomes an event.
    moto restores the whole table from a copy on a cancelled transaction; the runner's pump
    went silent after the first one until it followed the live table."""
    log.drain()
    tenant_api = ApiClient("key-t1", None)
    (key,) = tenant_api.get("/v1/api-keys").body["items"]
    r = tenant_api.delete(f"/v1/api-keys/{key['id']}")
    assert r.status == 409 and r.body["code"] == "last_key"
    acc = connect(dovecot, imap_user)
    assert [e["data"]["account_id"] for e in log.of(log.drain(), "account.connected")] == [acc["id"]]
