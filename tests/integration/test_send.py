"""Sending through a real SMTP server (aiosmtpd delivering into Dovecot): delivery,
the Sent copy exactly once, reply threading, signature, idempotent retry, errors."""

from __future__ import annotations

import base64
import email
from email import policy

import pytest

from mailsync.usecases import accounts
from tests.support.accounts import mirror, sync
from tests.support.api import ApiClient
from tests.support.dovecot import make_mail

pytestmark = pytest.mark.integration


@pytest.fixture
def sender(tenant, dovecot, imap_user, smtp_server):
    user, pw = imap_user
    imap = {"host": dovecot.host, "port": dovecot.port, "security": "none", "username": user, "password": pw}
    smtp = {
        "host": smtp_server.host,
        "port": smtp_server.port,
        "security": "none",
        "username": user,
        "password": pw,
    }
    acc = accounts.create_account(
        "t1", "alice", {"email": smtp_server.address(user), "imap": imap, "smtp": smtp}
    )
    accounts.update_settings("t1", "alice", acc["id"], {"signature": "Max Makler\nMakler GmbH"})
    sync(acc)
    return acc, user


@pytest.fixture
def recipient(dovecot, smtp_server):
    user, _ = dovecot.new_user("rcpt")
    return user, smtp_server.address(user)


def delivered(dovecot, user, folder="INBOX"):
    with dovecot.client(user) as c:
        c.select_folder(folder, readonly=True)
        uids = c.search()
        data = c.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
        return [
            (email.message_from_bytes(d[b"BODY[]"], policy=policy.default), d[b"FLAGS"])
            for d in data.values()
        ]


def test_send_delivers_files_in_sent_and_shows_at_once(sender, recipient, dovecot, smtp_server):
    acc, user = sender
    rcpt_user, rcpt = recipient
    api = ApiClient("key-t1", "alice")
    r = api.post(
        f"/v1/accounts/{acc['id']}/send",
        {
            "to": [{"name": "Kundin", "email": rcpt}],
            "subject": "Ihr Angebot",
            "text": "Hallo,\nanbei.",
            "html": "<p>Hallo,</p><p>anbei.</p>",
        },
    )
    assert r.status == 202, r.body
    assert r.body["recipients"] == [{"email": rcpt, "status": "accepted", "code": None, "reply": None}]
    assert r.body["folder"] == "Sent" and r.body["mirrored"] is True and r.body["unread"] is False

    ((inbox_msg, _),) = delivered(dovecot, rcpt_user)
    assert (
        inbox_msg["Subject"] == "Ihr Angebot" and inbox_msg["Message-ID"].strip("<>") == r.body["message_id"]
    )
    text = inbox_msg.get_body(("plain",)).get_content()
    html = inbox_msg.get_body(("html",)).get_content()
    assert "-- \nMax Makler\nMakler GmbH" in text.replace("\r\n", "\n")
    assert "Max Makler" in html and "Makler GmbH" in html

    ((sent_msg, sent_flags),) = delivered(dovecot, user, "Sent")
    assert b"\\Seen" in sent_flags and sent_msg["Message-ID"] == inbox_msg["Message-ID"]
    assert api.get(f"/v1/messages/{r.body['id']}").status == 200

    sync(acc)  # the sync sees the Sent copy: recognised, no duplicate
    sent = [m for m in mirror(acc) if m["folder"] == "Sent"]
    assert [m["id"] for m in sent] == [r.body["id"]]


def test_reply_joins_the_thread(sender, recipient, dovecot):
    acc, user = sender
    _, rcpt = recipient
    dovecot.append(
        user,
        "INBOX",
        make_mail("Frage zum Vertrag", from_=rcpt, to=acc["email"], message_id="frage@example.test"),
    )
    sync(acc)
    (incoming,) = [m for m in mirror(acc) if m["subject"] == "Frage zum Vertrag"]
    r = ApiClient("key-t1", "alice").post(
        f"/v1/accounts/{acc['id']}/send",
        {"to": [rcpt], "subject": "Re: Frage zum Vertrag", "text": "Antwort", "reply_to": incoming["id"]},
    )
    assert r.status == 202, r.body
    assert r.body["thread_id"] == incoming["thread_id"]
    ((msg, _),) = delivered(dovecot, recipient[0])
    assert msg["In-Reply-To"] == "<frage@example.test>" and "<frage@example.test>" in msg["References"]
    thread = ApiClient("key-t1", "alice").get(f"/v1/threads/{incoming['thread_id']}").body
    assert [m["subject"] for m in thread["messages"]] == ["Frage zum Vertrag", "Re: Frage zum Vertrag"]


def test_idempotent_retry_sends_once(sender, recipient, dovecot, smtp_server):
    acc, _ = sender
    rcpt_user, rcpt = recipient
    api = ApiClient("key-t1", "alice")
    body = {"to": [rcpt], "subject": "Nur einmal", "text": "x"}
    first = api.call("POST", f"/v1/accounts/{acc['id']}/send", body, headers={"Idempotency-Key": "k-1"})
    again = api.call("POST", f"/v1/accounts/{acc['id']}/send", body, headers={"Idempotency-Key": "k-1"})
    assert first.status == again.status == 202 and first.body == again.body
    assert len(delivered(dovecot, rcpt_user)) == 1
    other = api.call(
        "POST",
        f"/v1/accounts/{acc['id']}/send",
        {**body, "text": "anders"},
        headers={"Idempotency-Key": "k-1"},
    )
    assert other.status == 422 and other.body["code"] == "idempotency_key_reused"
    third = api.call("POST", f"/v1/accounts/{acc['id']}/send", body, headers={"Idempotency-Key": "k-2"})
    assert third.status == 202 and len(delivered(dovecot, rcpt_user)) == 2


def test_partial_recipient_failure_is_reported_per_recipient(sender, recipient, dovecot, smtp_server):
    acc, _ = sender
    rcpt_user, rcpt = recipient
    r = ApiClient("key-t1", "alice").post(
        f"/v1/accounts/{acc['id']}/send",
        {"to": [rcpt, "niemand@example.test"], "subject": "Teil", "text": "x"},
    )
    assert r.status == 202, r.body
    by = {x["email"]: x for x in r.body["recipients"]}
    assert by[rcpt]["status"] == "accepted"
    assert by["niemand@example.test"]["status"] == "rejected" and by["niemand@example.test"]["code"] == 550
    assert len(delivered(dovecot, rcpt_user)) == 1


def test_bcc_is_delivered_but_not_shown(sender, recipient, dovecot):
    acc, _ = sender
    rcpt_user, rcpt = recipient
    hidden_user, _ = dovecot.new_user("hidden")
    hidden = f"{hidden_user}@example.test"
    r = ApiClient("key-t1", "alice").post(
        f"/v1/accounts/{acc['id']}/send", {"to": [rcpt], "bcc": [hidden], "subject": "Bcc", "text": "x"}
    )
    assert r.status == 202
    ((msg, _),) = delivered(dovecot, hidden_user)
    assert msg["Bcc"] is None and msg["Subject"] == "Bcc"
    ((to_msg, _),) = delivered(dovecot, rcpt_user)
    assert to_msg["Bcc"] is None


def test_sent_attachments_are_downloadable(sender, recipient):
    acc, _ = sender
    _, rcpt = recipient
    pdf = b"%PDF-1.4 angebot" * 100
    api = ApiClient("key-t1", "alice")
    r = api.post(
        f"/v1/accounts/{acc['id']}/send",
        {
            "to": [rcpt],
            "subject": "Anhang",
            "text": "anbei",
            "attachments": [
                {
                    "filename": "Angebot.pdf",
                    "content_type": "application/pdf",
                    "content_base64": base64.b64encode(pdf).decode(),
                }
            ],
        },
    )
    assert r.status == 202 and r.body["has_attachments"] is True
    (att,) = api.get(f"/v1/messages/{r.body['id']}").body["attachments"]
    status, headers, data = api.raw("GET", f"/v1/messages/{r.body['id']}/attachments/{att['id']}")
    assert status == 200 and data == pdf and headers["Content-Type"] == "application/pdf"


def test_send_errors(sender, recipient, dovecot, smtp_server):
    acc, user = sender
    rcpt_user, rcpt = recipient
    api = ApiClient("key-t1", "alice")
    url = f"/v1/accounts/{acc['id']}/send"

    r = api.post(url, {"to": ["not an address"], "text": "x"})
    assert r.status == 422 and r.body["code"] == "invalid_address"
    r = api.post(url, {"to": ["a@example.test\r\nBcc: evil@example.test"], "text": "x"})
    assert r.status == 422 and r.body["code"] == "invalid_address"
    r = api.post(url, {"to": [], "text": "x"})
    assert r.status == 422 and r.body["code"] == "invalid_address"

    big = base64.b64encode(b"\0" * (25 * 1024 * 1024 + 1)).decode()
    r = api.post(
        url, {"to": [rcpt], "text": "x", "attachments": [{"filename": "big.bin", "content_base64": big}]}
    )
    assert r.status == 413 and r.body["code"] == "too_large"

    r = api.post(url, {"to": ["niemand@example.test"], "subject": "weg", "text": "x"})
    assert r.status == 502 and r.body["code"] == "smtp_rejected" and "550" in r.body["message"]
    assert delivered(dovecot, user, "Sent") == []  # nothing stored as sent
    assert [m for m in mirror(acc) if m["subject"] == "weg"] == []

    assert ApiClient("key-t1", "bob").post(url, {"to": [rcpt], "text": "x"}).status == 404
    assert ApiClient("key-t2", "alice").post(url, {"to": [rcpt], "text": "x"}).status == 404
    assert delivered(dovecot, rcpt_user) == []


class Killed(BaseException):
    """The invocation dies mid-send (a Lambda timeout): no exception handler of ours runs."""


def test_a_send_killed_by_a_timeout_can_be_retried_once_its_invocation_is_over(
    sender, recipient, dovecot, monkeypatch
):
    import smtplib
    import time

    acc, _ = sender
    rcpt_user, rcpt = recipient
    api = ApiClient("key-t1", "alice", timeout_ms=1500)
    body = {"to": [rcpt], "subject": "Nach dem Timeout", "text": "x"}
    send = f"/v1/accounts/{acc['id']}/send"
    real_data = smtplib.SMTP.data
    kills = iter([True])

    def data_then_die(self, msg):
        if next(kills, False):
            raise Killed
        return real_data(self, msg)

    monkeypatch.setattr(smtplib.SMTP, "data", data_then_die)
    with pytest.raises(Killed):
        api.call("POST", send, body, headers={"Idempotency-Key": "k-timeout"})
    started = time.monotonic()
    # While the dead invocation could still be running, a retry must not send a second copy.
    busy = api.call("POST", send, body, headers={"Idempotency-Key": "k-timeout"})
    assert busy.status == 409 and busy.body["code"] == "request_in_progress"
    # Once its deadline has passed, the same key sends (not 409 for the record's 24 h).
    time.sleep(max(0.0, 1.6 - (time.monotonic() - started)))
    retry = api.call("POST", send, body, headers={"Idempotency-Key": "k-timeout"})
    assert retry.status == 202, retry.body
    assert [m["Subject"] for m, _ in delivered(dovecot, rcpt_user)] == ["Nach dem Timeout"]
