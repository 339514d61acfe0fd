"""mailsync.providers.smtp.send against a real SMTP server delivering into Dovecot.

The server (tests/support/smtp.py) authenticates Dovecot users, delivers
``<user>@example.test`` into that user's INBOX, rejects unknown users at RCPT,
senders containing ``blocked`` at MAIL and ``X-Test-Reject: yes`` at DATA.
"""

# The fixtures come from tests/conftest.py and are used as test parameters.
# ruff: noqa: F811

from __future__ import annotations

import socket
import threading

import pytest

from mailsync.domain.compose import compose, envelope_recipients, parse_address
from mailsync.domain.mime import parse_message
from mailsync.domain.ports import AuthFailed, ConnectionFailed, ProviderError
from mailsync.providers.smtp import SmtpAuthFailed, SmtpConnectionFailed, SmtpRejected, send
from tests.support.dovecot import Dovecot, free_port
from tests.support.smtp import SmtpServer

pytestmark = pytest.mark.integration


def _compose(sender: str, to: list[str], subject: str = "Hello", **kw):  # type: ignore[no-untyped-def]
    return compose(
        sender=parse_address(sender),
        to=to,
        cc=kw.pop("cc", []),
        bcc=kw.pop("bcc", []),
        subject=subject,
        text=kw.pop("text", "Hi there"),
        html=kw.pop("html", None),
        signature=kw.pop("signature", ""),
        reply_to_headers=None,
        attachments=kw.pop("attachments", []),
        message_id_domain="mail.example.test",
    )


def _send(smtp_server: SmtpServer, user: str, password: str, recipients: list[str], data: bytes, **kw):  # type: ignore[no-untyped-def]
    return send(
        host=smtp_server.host,
        port=smtp_server.port,
        security=kw.pop("security", "none"),
        username=user,
        password=password,
        sender=kw.pop("sender", smtp_server.address(user)),
        recipients=recipients,
        data=data,
        timeout=kw.pop("timeout", 10.0),
    )


def _inbox(dovecot: Dovecot, user: str) -> list[bytes]:
    with dovecot.client(user) as c:
        c.select_folder("INBOX", readonly=True)
        uids = c.search("ALL")
        if not uids:
            return []
        return [v[b"BODY[]"] for _, v in sorted(c.fetch(uids, ["BODY.PEEK[]"]).items())]


def test_composed_mail_arrives_in_recipient_inbox(dovecot, imap_user, smtp_server):
    sender, sender_pw = imap_user
    rcpt, _ = dovecot.new_user("rcpt")
    hidden, _ = dovecot.new_user("hidden")
    _, data, message_id = _compose(
        f"Sender Ünïcode <{smtp_server.address(sender)}>",
        [f"Rcpt <{smtp_server.address(rcpt)}>"],
        subject="Grüße 👋",
        text="Hällo",
        html="<p>Hällo</p>",
        signature="Sender\nACME",
        bcc=[smtp_server.address(hidden)],
        attachments=[("a.pdf", "application/pdf", b"%PDF-1.4 test")],
    )
    recipients = envelope_recipients([smtp_server.address(rcpt)], [], [smtp_server.address(hidden)])
    result = _send(smtp_server, sender, sender_pw, recipients, data)
    assert result == {r: {"status": "accepted"} for r in recipients}

    assert len(dovecot.uids(rcpt, "INBOX")) == 1
    (raw,) = _inbox(dovecot, rcpt)
    p = parse_message(raw)
    assert p.message_id == message_id
    assert p.subject == "Grüße 👋"
    assert p.from_[0].name == "Sender Ünïcode"
    assert (p.text or "").replace("\r\n", "\n").startswith("Hällo\n\n-- \nSender\nACME")
    assert [a.filename for a in p.attachments] == ["a.pdf"]
    assert p.bcc == []
    # The Bcc recipient got the same message, without a Bcc header.
    (hidden_raw,) = _inbox(dovecot, hidden)
    assert parse_message(hidden_raw).message_id == message_id
    assert b"hidden" not in hidden_raw.split(b"\r\n\r\n", 1)[0].lower()
    assert smtp_server.received_by(rcpt) == [data]


def test_bad_password_is_auth_failed(imap_user, smtp_server):
    user, _ = imap_user
    _, data, _ = _compose(smtp_server.address(user), [smtp_server.address(user)])
    with pytest.raises(SmtpAuthFailed) as exc:
        _send(smtp_server, user, "wrong-password", [smtp_server.address(user)], data)
    assert isinstance(exc.value, AuthFailed)
    assert "wrong-password" not in str(exc.value)
    assert smtp_server.received_by(user) == []


def test_closed_port_is_connection_failed(imap_user):
    user, password = imap_user
    port = free_port()  # nothing listens there
    with pytest.raises(SmtpConnectionFailed) as exc:
        send(
            host="127.0.0.1",
            port=port,
            security="none",
            username=user,
            password=password,
            sender="a@example.test",
            recipients=["b@example.test"],
            data=b"Subject: x\r\n\r\nx\r\n",
            timeout=5.0,
        )
    assert isinstance(exc.value, ConnectionFailed)


def test_silent_server_times_out_as_connection_failed():
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        port = srv.getsockname()[1]
        with pytest.raises(SmtpConnectionFailed):
            send(
                host="127.0.0.1",
                port=port,
                security="none",
                username="u",
                password="p",
                sender="a@example.test",
                recipients=["b@example.test"],
                data=b"Subject: x\r\n\r\nx\r\n",
                timeout=0.5,
            )


def test_partial_recipients(dovecot, imap_user, smtp_server):
    user, password = imap_user
    good, _ = dovecot.new_user("good")
    good_addr, bad_addr = smtp_server.address(good), "nobody-here@example.test"
    _, data, message_id = _compose(smtp_server.address(user), [good_addr, bad_addr])
    result = _send(smtp_server, user, password, [good_addr, bad_addr], data)
    assert result[good_addr] == {"status": "accepted"}
    assert result[bad_addr]["status"] == "rejected"
    assert result[bad_addr]["code"] == 550
    assert "no such user" in result[bad_addr]["reply"]
    (raw,) = _inbox(dovecot, good)
    assert parse_message(raw).message_id == message_id


def test_all_recipients_rejected(imap_user, smtp_server):
    user, password = imap_user
    bad = ["nobody-1@example.test", "nobody-2@other.example"]
    _, data, _ = _compose(smtp_server.address(user), bad)
    with pytest.raises(SmtpRejected) as exc:
        _send(smtp_server, user, password, bad, data)
    assert isinstance(exc.value, ProviderError)
    assert exc.value.code == 550
    assert "5.1.1 no such user" in exc.value.reply
    assert set(exc.value.recipients) == set(bad)
    assert all(r["status"] == "rejected" and r["code"] == 550 for r in exc.value.recipients.values())


def test_blocked_sender(dovecot, imap_user, smtp_server):
    user, password = imap_user
    rcpt, _ = dovecot.new_user("rcpt")
    _, data, _ = _compose("blocked@example.test", [smtp_server.address(rcpt)])
    with pytest.raises(SmtpRejected) as exc:
        _send(smtp_server, user, password, [smtp_server.address(rcpt)], data, sender="blocked@example.test")
    assert exc.value.code == 550
    assert "sender blocked" in exc.value.reply
    assert dovecot.uids(rcpt, "INBOX") == []


def test_content_rejected(dovecot, imap_user, smtp_server):
    user, password = imap_user
    rcpt, _ = dovecot.new_user("rcpt")
    msg, _, _ = _compose(smtp_server.address(user), [smtp_server.address(rcpt)])
    msg["X-Test-Reject"] = "yes"
    with pytest.raises(SmtpRejected) as exc:
        _send(smtp_server, user, password, [smtp_server.address(rcpt)], msg.as_bytes())
    assert exc.value.code == 554
    assert "content rejected" in exc.value.reply
    assert exc.value.recipients[smtp_server.address(rcpt)]["code"] == 554
    assert dovecot.uids(rcpt, "INBOX") == []


def test_starttls_required_but_not_offered(imap_user, smtp_server):
    user, password = imap_user
    _, data, _ = _compose(smtp_server.address(user), [smtp_server.address(user)])
    before = len(smtp_server.auth_attempts)
    with pytest.raises(ProviderError) as exc:
        _send(smtp_server, user, password, [smtp_server.address(user)], data, security="starttls")
    assert "STARTTLS" in str(exc.value)
    assert not isinstance(exc.value, SmtpRejected)
    # Nothing (in particular no password) was sent in plain text.
    assert len(smtp_server.auth_attempts) == before
    assert smtp_server.received_by(user) == []


def test_ssl_against_plain_server_is_connection_failed(imap_user, smtp_server):
    user, password = imap_user
    with pytest.raises(SmtpConnectionFailed):
        _send(smtp_server, user, password, ["x@example.test"], b"x\r\n", security="ssl", timeout=5.0)


def test_unauthenticated_send_without_auth_offered(dovecot, imap_user):
    """security=none logs in only when AUTH is offered; a relay without AUTH still delivers."""
    rcpt, _ = imap_user
    server = SmtpServer(dovecot, auth_required=False).start()
    try:
        _, data, _ = _compose("someone@example.test", [server.address(rcpt)])
        # With AUTH offered the credentials are used (and checked).
        with pytest.raises(SmtpAuthFailed):
            _send(server, "nobody", "bad", [server.address(rcpt)], data, sender="someone@example.test")
    finally:
        server.stop()

    # A bare relay that does not advertise AUTH.
    received: list[bytes] = []
    port = _start_bare_relay(received)
    result = send(
        host="127.0.0.1",
        port=port,
        security="none",
        username="ignored",
        password="ignored",
        sender="someone@example.test",
        recipients=["x@example.test"],
        data=data,
        timeout=5.0,
    )
    assert result == {"x@example.test": {"status": "accepted"}}
    assert received and b"Message-ID" in received[0]


def _start_bare_relay(received: list[bytes]) -> int:
    """A minimal one-shot SMTP server without AUTH (raw sockets)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]

    def run() -> None:
        conn, _ = srv.accept()
        with conn, srv:
            f = conn.makefile("rb")
            conn.sendall(b"220 relay ready\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line[:4].upper()
                if cmd == b"EHLO":
                    conn.sendall(b"250-relay\r\n250 8BITMIME\r\n")
                elif cmd == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    body = b""
                    while (chunk := f.readline()) != b".\r\n":
                        body += chunk
                    received.append(body)
                    conn.sendall(b"250 queued\r\n")
                elif cmd == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")

    threading.Thread(target=run, daemon=True).start()
    return port
