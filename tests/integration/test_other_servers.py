"""The mirror and the mail client against real IMAP servers other than Dovecot (issue 14):
GNU Mailutils imap4d (IMAP4rev1 without MOVE, UIDPLUS or CONDSTORE), Cyrus IMAP and Courier-IMAP (namespace
``INBOX.`` with ``.`` separators), unpacked beside Dovecot by infra/ensure-imap-servers.sh.
``SERVERS`` is the matrix; the helpers take folder names through ``server.path``.

Per server, one account goes through: connect; only mail since the start plus the backfill
window; a second folder; flags both ways; delete and move at the server (no duplicate); move,
mark and delete through the API; send through SMTP; and at the end the mirror equals the
mailbox by Message-ID. A server whose unpacked binary is absent is skipped with that reason; an
installed server that fails to start fails the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from mailsync.usecases import accounts
from tests.support.accounts import connect, mirror, sync
from tests.support.api import ApiClient
from tests.support.dovecot import make_mail
from tests.support.imap_servers import CourierImap, CyrusImapd, ImapTestServer, MailutilsImap4d
from tests.support.smtp import SmtpServer

pytestmark = pytest.mark.integration

SERVERS: dict[str, type[ImapTestServer]] = {
    "courier": CourierImap,
    "cyrus": CyrusImapd,
    "mailutils": MailutilsImap4d,
}
NOW = datetime.now(UTC)


@pytest.fixture(scope="session", params=sorted(SERVERS))
def imap_server(request: pytest.FixtureRequest) -> Iterator[ImapTestServer]:
    cls = SERVERS[request.param]
    if not cls.installed():
        pytest.skip(f"{cls.name}: {cls.binary()} is absent (make test runs infra/ensure-imap-servers.sh)")
    try:
        server = cls().start()
    except Exception as e:  # noqa: BLE001 - installed but broken is a failure, not a skip
        pytest.fail(f"could not start {cls.name}: {e}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def server_smtp(imap_server: ImapTestServer) -> Iterator[SmtpServer]:
    smtp = SmtpServer(imap_server).start()  # type: ignore[arg-type]  # the same mailbox helpers
    try:
        yield smtp
    finally:
        smtp.stop()


def _account(server: ImapTestServer, **extra: object) -> tuple[dict, str]:
    login, pw = server.new_user()
    return connect(server, (login, pw), email=server.email(login), **extra), login


def _server_ids(server: ImapTestServer, user: str, folders: list[str]) -> dict[str, str]:
    """``{Message-ID: folder}`` of every mail in ``folders`` at the server."""
    return {mid: f for f in folders for mid in server.message_ids(user, server.path(f))}


def _mirror_ids(acc: dict, server: ImapTestServer) -> dict[str, str]:
    out = {m["message_id"].strip("<>"): m["folder"] for m in mirror(acc)}
    assert len(out) == len(mirror(acc)), "a Message-ID is mirrored twice"
    return {mid: ("INBOX" if f == "INBOX" else f.removeprefix(server.prefix)) for mid, f in out.items()}


def test_mirror_follows_the_server(tenant, imap_server):
    server = imap_server
    login, pw = server.new_user()
    inbox, archive = "INBOX", server.path("Archive")
    # Old mail is dated old in its Date: header too (imap4d may date mail by it, not by APPEND's).
    for subject, age in (("too old", 30), ("backfill", 3)):
        when = NOW - timedelta(days=age)
        server.append(
            login, inbox, make_mail(subject, message_id=f"{subject[:3]}@x", date=when), internal_date=when
        )
    acc = connect(server, (login, pw), email=server.email(login), backfill_days=7)
    assert accounts.get_account("t1", "alice", acc["id"])["state"] == "initial_sync"  # connected
    a = server.append(login, inbox, make_mail("a", message_id="a@x"))
    b = server.append(login, inbox, make_mail("b", message_id="b@x"))
    server.append(login, archive, make_mail("in archive", message_id="arch@x"))
    assert sync(acc)["status"] == "ok"
    assert accounts.get_account("t1", "alice", acc["id"])["state"] == "active"
    assert _mirror_ids(acc, server) == {
        "bac@x": "INBOX",
        "a@x": "INBOX",
        "b@x": "INBOX",
        "arch@x": "Archive",
    }

    # Flags, server -> mirror, both ways.
    server.set_seen(login, inbox, [a], True)
    sync(acc)
    assert {m["subject"]: m["unread"] for m in mirror(acc)}["a"] is False
    server.set_seen(login, inbox, [a], False)
    sync(acc)
    assert {m["subject"]: m["unread"] for m in mirror(acc)}["a"] is True

    # Delete and move at the server: gone, and moved without a duplicate (same id).
    ids = {m["subject"]: m["id"] for m in mirror(acc)}
    server.delete(login, inbox, [b])
    server.move(login, inbox, [a], archive)
    sync(acc)
    after = {m["subject"]: m for m in mirror(acc)}
    assert "b" not in after and after["a"]["id"] == ids["a"]
    assert _mirror_ids(acc, server) == {"bac@x": "INBOX", "a@x": "Archive", "arch@x": "Archive"}
    at_server = _server_ids(server, login, ["INBOX", "Archive"])
    assert at_server.pop("too@x") == "INBOX"  # older than the backfill window: never mirrored
    assert _mirror_ids(acc, server) == at_server


def test_mail_client_writes_through(tenant, imap_server):
    server = imap_server
    acc, login = _account(server)
    inbox, archive, trash = "INBOX", server.path("Archive"), server.path("Trash")
    for n in range(3):
        server.append(login, inbox, make_mail(f"m{n}", message_id=f"m{n}@x"))
    # Another client flagged a mail \Deleted and has not expunged yet: it must survive our
    # delete and move (no UIDPLUS: a plain EXPUNGE would take it along).
    pending = server.append(login, inbox, make_mail("flagged by another client", message_id="pending@x"))
    server.set_flag(login, inbox, [pending], b"\\Deleted", True)
    sync(acc)
    ids = {m["subject"]: m["id"] for m in mirror(acc)}
    api = ApiClient("key-t1", "alice")

    r = api.patch(f"/v1/messages/{ids['m0']}", {"unread": False})
    assert r.status == 200 and r.body["unread"] is False
    assert b"\\Seen" in server.flags(login, inbox)[server.uids(login, inbox)[0]]
    r = api.patch(f"/v1/messages/{ids['m1']}", {"folder": archive})
    assert r.status == 200, r.body
    assert r.body["folder"] == archive
    assert api.delete(f"/v1/messages/{ids['m2']}").status == 204

    assert server.message_ids(login, archive) == ["m1@x"]
    assert server.message_ids(login, trash) == ["m2@x"]
    assert server.message_ids(login, inbox) == ["m0@x", "pending@x"]
    assert any(b"\\Deleted" in f for f in server.flags(login, inbox).values()), (
        "the other client's flag is lost"
    )

    sync(acc)
    after = {m["subject"]: m for m in mirror(acc)}
    assert after["m1"]["id"] == ids["m1"] and after["m1"]["folder"] == archive
    assert after["m0"]["unread"] is False and "m2" not in after
    server_ids = _server_ids(server, login, ["INBOX", "Archive"])
    server_ids.pop("pending@x", None)
    mirrored = _mirror_ids(acc, server)
    mirrored.pop("pending@x", None)
    assert mirrored == server_ids


def test_send_files_in_sent_and_delivers(tenant, imap_server, server_smtp):
    server, smtp = imap_server, server_smtp
    login, pw = server.new_user()
    rcpt_login, _ = server.new_user("rcpt")
    smtp_conf = {"host": smtp.host, "port": smtp.port, "security": "none", "username": login, "password": pw}
    acc = connect(server, (login, pw), email=smtp.address(server.local(login)), smtp=smtp_conf)
    sync(acc)
    rcpt = smtp.address(server.local(rcpt_login))
    r = ApiClient("key-t1", "alice").post(
        f"/v1/accounts/{acc['id']}/send", {"to": [rcpt], "subject": "Angebot", "text": "Hallo"}
    )
    assert r.status == 202, r.body
    assert r.body["recipients"][0]["status"] == "accepted" and r.body["mirrored"] is True
    assert server.message_ids(rcpt_login, "INBOX") == [r.body["message_id"]]
    assert server.message_ids(login, server.path("Sent")) == [r.body["message_id"]]
    sync(acc)  # the Sent copy is recognised: no duplicate
    assert [(m["subject"], m["id"]) for m in mirror(acc)] == [("Angebot", r.body["id"])]
