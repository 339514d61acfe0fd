"""The mirror rules, against a real Dovecot and moto: only from the start, moves keep
identity, deletes and moves to unsynced folders remove, folder settings, resets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import boto3
import pytest

from mailsync.config import get_settings
from mailsync.usecases import accounts
from tests.support.accounts import connect, mirror, sync, thread
from tests.support.dovecot import make_mail

pytestmark = pytest.mark.integration

OLD = datetime.now(UTC) - timedelta(days=10)


def s3_keys(prefix: str = "") -> set[str]:
    s3 = boto3.client("s3")
    out = s3.list_objects_v2(Bucket=get_settings().bucket, Prefix=prefix)
    return {o["Key"] for o in out.get("Contents", [])}


def test_only_mails_from_the_sync_start_are_loaded(tenant, dovecot, imap_user):
    user, _ = imap_user
    dovecot.append(user, "INBOX", make_mail("old"), internal_date=OLD)
    acc = connect(dovecot, imap_user)
    dovecot.append(user, "INBOX", make_mail("new"))
    assert sync(acc)["status"] == "ok"
    assert [m["subject"] for m in mirror(acc)] == ["new"]
    view = accounts.get_account("t1", "alice", acc["id"])
    assert view["state"] == "active"
    assert view["sync"]["folders_done"] == view["sync"]["folders_total"] >= 2
    assert view["sync"]["messages"] == 1 and view["sync"]["last_success_at"]


def test_backfill_window_loads_older_mails(tenant, dovecot, imap_user):
    user, _ = imap_user
    dovecot.append(user, "INBOX", make_mail("ten days ago"), internal_date=OLD)
    dovecot.append(user, "INBOX", make_mail("forty days ago"), internal_date=OLD - timedelta(days=30))
    acc = connect(dovecot, imap_user, backfill_days=14)
    sync(acc)
    assert [m["subject"] for m in mirror(acc)] == ["ten days ago"]


# Folders sync in name order: "Archive" before INBOX (the target is seen first),
# "Zeta" after it (the source's expunge is seen first). Both must keep identity.
@pytest.mark.parametrize("target", ["Archive", "Zeta"])
def test_move_between_synced_folders_keeps_identity(tenant, dovecot, imap_user, target):
    user, _ = imap_user
    dovecot.create_folder(user, "Zeta")
    acc = connect(dovecot, imap_user)
    dovecot.append(user, "INBOX", make_mail("Vertrag", message_id="contract@example.com"))
    dovecot.append(
        user,
        "INBOX",
        make_mail(
            "Re: Vertrag",
            message_id="reply@example.com",
            in_reply_to="contract@example.com",
            references="contract@example.com",
        ),
    )
    sync(acc)
    before = {m["subject"]: m for m in mirror(acc)}
    assert before["Vertrag"]["thread_id"] == before["Re: Vertrag"]["thread_id"]
    uid = dovecot.uids(user, "INBOX")[0]
    dovecot.move(user, "INBOX", [uid], target)
    sync(acc)
    after = {m["subject"]: m for m in mirror(acc)}
    assert len(after) == 2
    assert after["Vertrag"]["id"] == before["Vertrag"]["id"]
    assert after["Vertrag"]["folder"] == target
    assert after["Vertrag"]["thread_id"] == before["Vertrag"]["thread_id"]
    th = thread("t1", after["Vertrag"]["thread_id"])
    assert th is not None and th.message_count == 2


def test_delete_and_move_to_unsynced_folder_remove_the_mail_and_its_objects(tenant, dovecot, imap_user):
    user, _ = imap_user
    acc = connect(dovecot, imap_user)
    for s in ("keep", "delete me", "junk me"):
        dovecot.append(user, "INBOX", make_mail(s))
    sync(acc)
    by = {m["subject"]: m for m in mirror(acc)}
    assert by["delete me"]["raw_key"] in s3_keys()
    uids = dovecot.uids(user, "INBOX")
    dovecot.delete(user, "INBOX", [uids[1]])
    dovecot.move(user, "INBOX", [uids[2]], "Junk")
    sync(acc)
    assert [m["subject"] for m in mirror(acc)] == ["keep"]
    assert by["delete me"]["raw_key"] not in s3_keys()
    assert by["junk me"]["raw_key"] not in s3_keys()
    assert thread("t1", by["delete me"]["thread_id"]) is None


def test_flag_changes_are_mirrored(tenant, dovecot, imap_user):
    user, _ = imap_user
    acc = connect(dovecot, imap_user)
    dovecot.append(user, "INBOX", make_mail("flag"))
    sync(acc)
    assert mirror(acc)[0]["unread"] is True
    dovecot.set_seen(user, "INBOX", dovecot.uids(user, "INBOX"), True)
    sync(acc)
    assert mirror(acc)[0]["unread"] is False
    assert thread("t1", mirror(acc)[0]["thread_id"]).unread_count == 0


def test_folder_settings_turn_folders_off_and_on(tenant, dovecot, imap_user):
    user, _ = imap_user
    acc = connect(dovecot, imap_user)
    dovecot.append(user, "INBOX", make_mail("in inbox"))
    dovecot.append(user, "Archive", make_mail("in archive"))
    sync(acc)
    assert {m["subject"] for m in mirror(acc)} == {"in inbox", "in archive"}

    accounts.update_settings("t1", "alice", acc["id"], {"folder_mode": "selected", "folders": ["INBOX"]})
    sync(acc)
    assert {m["subject"] for m in mirror(acc)} == {"in inbox"}

    accounts.update_settings("t1", "alice", acc["id"], {"folder_mode": "all"})
    sync(acc)
    # Turned on again: synced from the sync start, so the archive mail is back.
    assert {m["subject"] for m in mirror(acc)} == {"in inbox", "in archive"}

    with pytest.raises(Exception) as e:
        accounts.update_settings("t1", "alice", acc["id"], {"folder_mode": "selected", "folders": ["Nope"]})
    assert getattr(e.value, "code", None) == "unknown_folder"


def test_uidvalidity_change_resyncs_without_duplicates(tenant, dovecot, imap_user):
    user, _ = imap_user
    dovecot.create_folder(user, "Kunden")
    acc = connect(dovecot, imap_user)
    raw = make_mail("in Kunden", message_id="kunden-1@example.com")
    dovecot.append(user, "Kunden", raw)
    sync(acc)
    before = mirror(acc)
    # Delete and recreate the folder: same name, new UIDVALIDITY, same mail.
    dovecot.delete_folder(user, "Kunden")
    dovecot.create_folder(user, "Kunden")
    dovecot.append(user, "Kunden", raw)
    sync(acc)
    after = mirror(acc)
    assert [(m["id"], m["thread_id"], m["folder"]) for m in after] == [
        (m["id"], m["thread_id"], m["folder"]) for m in before
    ]


def test_folder_renamed_at_the_provider_does_not_break_the_account(tenant, dovecot, imap_user):
    user, _ = imap_user
    dovecot.create_folder(user, "Projekte")
    acc = connect(dovecot, imap_user)
    dovecot.append(user, "Projekte", make_mail("projekt", message_id="p1@example.com"))
    sync(acc)
    before = mirror(acc)
    dovecot.rename_folder(user, "Projekte", "Projekte-2026")
    result = sync(acc)
    assert result["status"] == "ok"
    after = mirror(acc)
    assert [(m["id"], m["folder"]) for m in after] == [(before[0]["id"], "Projekte-2026")]
    names = {f["name"] for f in accounts.list_folders("t1", "alice", acc["id"])}
    assert "Projekte" not in names and "Projekte-2026" in names


def test_replies_thread_by_references_and_subject(tenant, dovecot, imap_user):
    user, _ = imap_user
    acc = connect(dovecot, imap_user)
    # The reply arrives before its parent (another folder, or out of order).
    dovecot.append(
        user, "INBOX", make_mail("Re: Schaden", message_id="r@x", in_reply_to="p@x", references="p@x")
    )
    dovecot.append(user, "Sent", make_mail("Schaden", message_id="p@x"))
    dovecot.append(user, "INBOX", make_mail("Unrelated", message_id="u@x"))
    sync(acc)
    by = {m["subject"]: m for m in mirror(acc)}
    assert by["Re: Schaden"]["thread_id"] == by["Schaden"]["thread_id"] != by["Unrelated"]["thread_id"]
    for m in by.values():
        assert thread("t1", m["thread_id"]) is not None  # never dangles


def test_auth_failure_sets_auth_error_and_slows_polling_to_six_hours(tenant, dovecot, imap_user):
    from datetime import UTC, datetime, timedelta

    from mailsync.domain.clock import iso
    from mailsync.usecases.sync_account import due_accounts

    user, _ = imap_user
    acc = connect(dovecot, imap_user)
    sync(acc)
    dovecot.add_user(user, "changed-password")
    assert sync(acc)["status"] == "auth_error"
    view = accounts.get_account("t1", "alice", acc["id"])
    assert view["state"] == "auth_error" and view["error"]["code"] == "auth_failed"
    soon = iso(datetime.now(UTC) + timedelta(hours=5, minutes=50))
    later = iso(datetime.now(UTC) + timedelta(hours=6, minutes=1))
    assert acc["id"] not in {a for _, a, _ in due_accounts(now=soon)}  # not every poll
    assert acc["id"] in {a for _, a, _ in due_accounts(now=later)}  # but every 6 hours


def test_delete_account_purges_everything(tenant, dovecot, imap_user):
    user, _ = imap_user
    acc = connect(dovecot, imap_user)
    dovecot.append(user, "INBOX", make_mail("bye", attachment=("a.pdf", "application/pdf", b"%PDF")))
    sync(acc)
    assert s3_keys(f"t/t1/a/{acc['id']}/")
    accounts.delete_account("t1", "alice", acc["id"])
    assert mirror(acc) == []
    assert s3_keys(f"t/t1/a/{acc['id']}/") == set()
    ddb = boto3.client("dynamodb")
    table = get_settings().table
    left = ddb.query(
        TableName=table,
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {"S": f"T#t1#A#{acc['id']}"}},
    )["Items"]
    assert left == []  # folders, cursors, locations, refs, credentials
    # And the mailbox can be connected again.
    connect(dovecot, imap_user)


def test_folder_deleted_at_the_provider_removes_its_mails(tenant, dovecot, imap_user):
    user, _ = imap_user
    dovecot.create_folder(user, "Alt")
    acc = connect(dovecot, imap_user)
    dovecot.append(user, "Alt", make_mail("in Alt"))
    dovecot.append(user, "INBOX", make_mail("in INBOX"))
    sync(acc)
    alt = [m for m in mirror(acc) if m["subject"] == "in Alt"][0]
    dovecot.delete_folder(user, "Alt")
    assert sync(acc)["status"] == "ok"
    assert [m["subject"] for m in mirror(acc)] == ["in INBOX"]
    assert alt["raw_key"] not in s3_keys()


def test_big_bodies_are_served_whole_from_one_ranged_read(tenant, dovecot, imap_user):
    from email.message import EmailMessage

    from mailsync.store import aws
    from mailsync.usecases import reading

    user, _ = imap_user
    acc = connect(dovecot, imap_user)
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "k@x.de", "alice@example.com", "big"
    msg["Message-ID"] = "<big@x.de>"
    msg.set_content("Zeile mit Inhalt\n" * 8000)  # ~136 KB of text
    msg.add_alternative(
        "<p>" + "Zeile mit <b>Inhalt</b><br>" * 4000 + "<script>x()</script></p>", subtype="html"
    )
    msg.add_attachment(
        b"\x00" * 3_000_000, maintype="application", subtype="octet-stream", filename="big.bin"
    )
    dovecot.append(user, "INBOX", msg.as_bytes())
    sync(acc)
    (m,) = mirror(acc)

    ranges: list[str | None] = []
    s3 = aws.client("s3")
    record = lambda params, **_: ranges.append(params.get("Range"))  # noqa: E731
    s3.meta.events.register("before-parameter-build.s3.GetObject", record)
    try:
        detail = reading.get_message("t1", "alice", m["id"])
    finally:
        s3.meta.events.unregister("before-parameter-build.s3.GetObject", record)
    assert detail["text"].count("Zeile mit Inhalt") == 8000
    assert detail["html"].count("Zeile mit <b>Inhalt</b>") == 4000 and "script" not in detail["html"]
    assert [a["filename"] for a in detail["attachments"]] == ["big.bin"]
    # One GET of the body parts only: the 3 MB attachment (4 MB in base64) is not read.
    assert len(ranges) == 1 and ranges[0] is not None
    first, last = (int(x) for x in ranges[0].removeprefix("bytes=").split("-"))
    assert 136_000 < last - first < 400_000
    # Nothing but the raw MIME is stored in S3 for it.
    assert s3_keys(f"t/t1/a/{acc['id']}/") == {m["raw_key"]}


def test_servers_without_condstore_are_mirrored_too(tenant, dovecot_nocondstore, imap_user_nocondstore):
    dc, (user, _) = dovecot_nocondstore, imap_user_nocondstore
    acc = connect(dc, imap_user_nocondstore)
    dc.append(user, "INBOX", make_mail("one"))
    dc.append(user, "INBOX", make_mail("two"))
    sync(acc)
    assert [m["subject"] for m in mirror(acc)] == ["one", "two"]
    uids = dc.uids(user, "INBOX")
    dc.set_seen(user, "INBOX", [uids[0]], True)
    dc.delete(user, "INBOX", [uids[1]])
    dc.append(user, "INBOX", make_mail("three"))
    sync(acc)
    assert [(m["subject"], m["unread"]) for m in mirror(acc)] == [("one", False), ("three", True)]


def test_time_budget_stops_between_batches_and_continues(tenant, dovecot, imap_user, monkeypatch):
    import json

    from mailsync.usecases.sync_account import sync_account

    user, _ = imap_user
    acc = connect(dovecot, imap_user)
    dovecot.append_many(user, "INBOX", [make_mail(f"m{i:02d}") for i in range(25)])
    monkeypatch.setenv("MAILSYNC_SYNC_BATCH_SIZE", "10")
    get_settings.cache_clear()
    sqs = boto3.client("sqs")
    queue = get_settings().queue_url
    for m in sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])  # the connect job
    # The budget runs out as soon as the first batch of 10 is stored.
    result = sync_account("t1", acc["id"], clock=lambda: 0 if len(mirror(acc)) < 10 else 10**6)
    assert result["status"] == "partial"
    partial = len(mirror(acc))
    assert 0 < partial < 25
    view = accounts.get_account("t1", "alice", acc["id"])
    assert view["state"] == "initial_sync" and view["sync"]["folders_done"] < view["sync"]["folders_total"]
    jobs = [
        json.loads(m["Body"])
        for m in sqs.receive_message(QueueUrl=get_settings().queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
    ]
    assert {"tenant_id": "t1", "account_id": acc["id"], "reason": "continue"} in jobs
    while sync_account("t1", acc["id"])["status"] != "ok":
        pass
    assert len(mirror(acc)) == 25
    assert accounts.get_account("t1", "alice", acc["id"])["state"] == "active"


def test_unreachable_server_backs_off_and_keeps_the_mirror(tenant, dovecot, imap_user):
    from mailsync.usecases.sync_account import due_accounts

    user, _ = imap_user
    acc = connect(dovecot, imap_user)
    dovecot.append(user, "INBOX", make_mail("kept"))
    sync(acc)
    from dataclasses import replace

    from mailsync.store import accounts as repo

    doc = repo.get_account("t1", acc["id"])
    doc = doc.with_(
        servers={**doc.servers, "imap": replace(doc.servers["imap"], port=1)}
    )  # nothing listens there
    repo.save_account(doc, get_settings().due_shards)
    assert sync(acc)["status"] == "error"
    view = accounts.get_account("t1", "alice", acc["id"])
    # One failure may be a blip: the account stays active and says so in its health.
    assert view["state"] == "active" and view["error"]["code"] == "connection_failed"
    assert view["health"]["consecutive_failures"] == 1
    assert [sync(acc)["status"] for _ in range(2)] == ["error", "error"]
    view = accounts.get_account("t1", "alice", acc["id"])
    assert view["state"] == "error" and view["health"]["consecutive_failures"] == 3
    assert [m["subject"] for m in mirror(acc)] == ["kept"]  # nothing synced is lost
    due = {a: d for _, a, d in due_accounts(now="2999-01-01T00:00:00Z")}
    assert due[acc["id"]] > datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # backed off, still polled
