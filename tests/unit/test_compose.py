"""mailsync.domain.compose: addresses, headers, MIME structure, signature, replies, limits."""

from __future__ import annotations

import email
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage

import pytest

from mailsync.domain import compose as compose_mod
from mailsync.domain.compose import (
    MAX_MESSAGE_BYTES,
    InvalidAddress,
    TooLarge,
    compose,
    envelope_recipients,
    parse_address,
    smtp_address,
)
from mailsync.domain.mime import get_attachment, parse_message
from mailsync.domain.models import Address

pytestmark = pytest.mark.unit

SENDER = Address("Alice Sender", "alice@example.test")
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


def build(**kw):  # type: ignore[no-untyped-def]
    args = {
        "sender": SENDER,
        "to": ["Bob <bob@example.test>"],
        "cc": [],
        "bcc": [],
        "subject": "Hello",
        "text": "Hi Bob",
        "html": None,
        "signature": "",
        "reply_to_headers": None,
        "attachments": [],
        "message_id_domain": "mail.example.test",
        "now": NOW,
    }
    args.update(kw)
    return compose(**args)


def reparse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def lf(s: str | None) -> str:
    return (s or "").replace("\r\n", "\n")


# --------------------------------------------------------------------------- parse_address


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a@b.example", Address(None, "a@b.example")),
        ("  Bob.Smith@Example.COM ", Address(None, "Bob.Smith@Example.COM")),
        ("Bob <bob@example.test>", Address("Bob", "bob@example.test")),
        ("<bob@example.test>", Address(None, "bob@example.test")),
        ('"Smith, Bob" <bob@example.test>', Address("Smith, Bob", "bob@example.test")),
        ('"Bob \\"The Builder\\"" <bob@example.test>', Address('Bob "The Builder"', "bob@example.test")),
        ("  Jürgen   Müller  <j@example.test>", Address("Jürgen Müller", "j@example.test")),
        ({"name": "Bob", "email": "bob@example.test"}, Address("Bob", "bob@example.test")),
        ({"email": "bob@example.test"}, Address(None, "bob@example.test")),
        ({"name": "  ", "email": "bob@example.test"}, Address(None, "bob@example.test")),
        ("first.last+tag@sub.example.co.uk", Address(None, "first.last+tag@sub.example.co.uk")),
        ("user@bücher.example", Address(None, "user@bücher.example")),
        (Address("X", "x@y.test"), Address("X", "x@y.test")),
    ],
)
def test_parse_address_valid(value, expected):  # type: ignore[no-untyped-def]
    assert parse_address(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "no-at-sign",
        "a@b@c.example",
        "@example.test",
        "bob@",
        "bob@localhost",
        "bob smith@example.test",
        "bob@exa mple.test",
        "bob@example.test\r\nBcc: evil@attacker.example",
        "bob@example.test\nX-Injected: 1",
        "Bob\r\n <bob@example.test>",
        "bob@example.test\x00",
        "a@b.example, c@d.example",
        "a@b.example c@d.example",
        "A <a@b.example>, B <b@c.example>",
        "Doe, John <j@example.test>",
        "group: a@b.example;",
        ".bob@example.test",
        "bob.@example.test",
        "bo..b@example.test",
        "bob@-example.test",
        "bob@example..test",
        "bob@example.123",
        "Bob <bob@example.test",
        "Bob <>",
        '"Bob <bob@example.test>',
        "x" * 65 + "@example.test",
        {"name": "Bob", "email": "Bob <bob@example.test>"},
        {"name": "Bob\r\nBcc: x@y.test", "email": "bob@example.test"},
        {"name": "Bob"},
        {"email": None},
        42,
        None,
    ],
)
def test_parse_address_invalid(value):  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidAddress) as exc:
        parse_address(value)
    assert isinstance(exc.value, ValueError)
    assert repr(value)[:20] in str(exc.value)


def test_smtp_address_and_envelope():
    assert smtp_address(Address(None, "u@bücher.example")) == "u@xn--bcher-kva.example"
    assert envelope_recipients(
        ["Bob <bob@example.test>"], [{"email": "BOB@example.test"}, "c@example.test"], ["d@example.test"]
    ) == ["bob@example.test", "c@example.test", "d@example.test"]


# --------------------------------------------------------------------------- headers


def test_headers_and_plain_text_only():
    msg, data, message_id = build(
        to=["Bob <bob@example.test>", {"name": "Carol", "email": "carol@example.test"}],
        cc=["dave@example.test"],
        bcc=["Secret <secret@example.test>"],
    )
    assert isinstance(msg, EmailMessage)
    assert message_id.endswith("@mail.example.test") and "<" not in message_id
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    assert data.isascii()
    parsed = reparse(data)
    assert parsed["Message-ID"] == f"<{message_id}>"
    assert parsed["Date"] == "Wed, 04 Mar 2026 05:06:07 +0000"
    assert parsed["From"] == "Alice Sender <alice@example.test>"
    assert parsed["To"] == "Bob <bob@example.test>, Carol <carol@example.test>"
    assert parsed["Cc"] == "dave@example.test"
    assert parsed["Subject"] == "Hello"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["In-Reply-To"] is None and parsed["References"] is None
    # Bcc never reaches the headers.
    assert parsed["Bcc"] is None
    assert b"secret" not in data.lower() and b"Secret" not in data
    assert parsed.get_content_type() == "text/plain"
    assert lf(parsed.get_content()) == "Hi Bob\n"

    p = parse_message(data)
    assert p.message_id == message_id
    assert [a.email for a in p.to] == ["bob@example.test", "carol@example.test"]
    assert p.bcc == []


def test_bcc_only_message_has_undisclosed_recipients():
    _, data, _ = build(to=[], bcc=["secret@example.test"])
    parsed = reparse(data)
    assert "undisclosed-recipients" in str(parsed["To"])
    assert b"secret@example.test" not in data


def test_no_recipients_is_invalid():
    with pytest.raises(InvalidAddress):
        build(to=[], cc=[], bcc=[])


def test_invalid_recipient_in_list_raises():
    with pytest.raises(InvalidAddress, match="evil"):
        build(to=["ok@example.test", "bob@example.test\r\nBcc: evil@x.example"])


def test_subject_header_injection_is_neutralised():
    _, data, _ = build(subject="Hi\r\nBcc: evil@attacker.example\r\n\r\nbody")
    parsed = reparse(data)
    assert parsed["Bcc"] is None
    assert parsed["Subject"] == "Hi Bcc: evil@attacker.example body"


def test_now_defaults_to_current_time_and_naive_is_utc():
    _, data, _ = build(now=None)
    assert reparse(data)["Date"].datetime.tzinfo is not None
    _, data, _ = build(now=datetime(2026, 1, 2, 3, 4, 5))
    assert reparse(data)["Date"] == "Fri, 02 Jan 2026 03:04:05 +0000"


def test_message_ids_are_unique():
    ids = {build()[2] for _ in range(20)}
    assert len(ids) == 20


def test_bad_message_id_domain():
    with pytest.raises(ValueError):
        build(message_id_domain="bad domain>")


# --------------------------------------------------------------------------- structure


def test_text_and_html_alternative():
    _, data, _ = build(text="Plain body", html="<p>Html <b>body</b></p>")
    parsed = reparse(data)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert lf(parts[0].get_content()) == "Plain body\n"
    assert "<p>Html <b>body</b></p>" in parts[1].get_content()


def test_html_only_derives_text_part():
    _, data, _ = build(text=None, html="<html><body><h1>Title</h1><p>Some &amp; text</p></body></html>")
    parsed = reparse(data)
    assert parsed.get_content_type() == "multipart/alternative"
    plain, html = parsed.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert "Title" in plain.get_content() and "Some & text" in plain.get_content()
    assert "<" not in plain.get_content()
    assert "<h1>Title</h1>" in html.get_content()


def test_attachments_make_multipart_mixed():
    pdf = b"%PDF-1.4\n" + bytes(range(256)) * 10
    _, data, _ = build(
        text="See attached",
        html="<p>See attached</p>",
        attachments=[
            ("report.pdf", "application/pdf", pdf),
            ("notes.txt", "text/plain", b"line 1\nline 2\n"),
            ("weird", "not a type", b"\x00\x01"),
        ],
    )
    parsed = reparse(data)
    assert parsed.get_content_type() == "multipart/mixed"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "multipart/alternative",
        "application/pdf",
        "text/plain",
        "application/octet-stream",
    ]
    assert parts[1].get_filename() == "report.pdf"
    assert parts[1].get_content() == pdf
    assert parts[3].get_filename() == "weird"

    p = parse_message(data)
    assert lf(p.text).startswith("See attached")
    assert [(a.filename, a.content_type, a.size) for a in p.attachments] == [
        ("report.pdf", "application/pdf", len(pdf)),
        ("notes.txt", "text/plain", 14),
        ("weird", "application/octet-stream", 2),
    ]
    got = get_attachment(data, p.attachments[0].id)
    assert got is not None and got[2] == pdf


def test_attachment_text_only_body():
    _, data, _ = build(html=None, attachments=[("a.bin", "application/octet-stream", b"x")])
    parsed = reparse(data)
    assert parsed.get_content_type() == "multipart/mixed"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "application/octet-stream"]


def test_attachment_filename_is_sanitised_and_rfc822_kept():
    inner = b"Subject: inner\r\nFrom: a@b.example\r\n\r\nhello\r\n"
    _, data, _ = build(
        attachments=[
            ("../../etc/pass\r\nwd", "text/plain", b"x"),
            ("fwd.eml", "message/rfc822", inner),
        ]
    )
    parsed = reparse(data)
    parts = list(parsed.iter_parts())
    assert parts[1].get_filename() == ".._.._etc_pass wd"
    assert parts[2].get_content_type() == "message/rfc822"
    assert parts[2]["Content-Transfer-Encoding"] == "7bit"


# --------------------------------------------------------------------------- signature


def test_signature_in_text_and_html():
    sig = "Alice Sender\nACME <Sales> & Co"
    _, data, _ = build(text="Hello Bob\n", html="<html><body><p>Hello Bob</p></body></html>", signature=sig)
    plain, html = reparse(data).iter_parts()
    assert lf(plain.get_content()) == "Hello Bob\n\n-- \nAlice Sender\nACME <Sales> & Co\n"
    h = lf(html.get_content())
    block = '<div class="signature">-- <br>\nAlice Sender<br>\nACME &lt;Sales&gt; &amp; Co</div>'
    assert block in h
    assert h.index(block) < h.index("</body>")
    assert h.rstrip().endswith("</body></html>")


def test_signature_appended_when_no_body_tag():
    _, data, _ = build(html="<p>Hi</p>", signature="Sig")
    _, html = reparse(data).iter_parts()
    assert lf(html.get_content()).startswith('<p>Hi</p>\n<div class="signature">-- <br>\nSig</div>')


def test_signature_with_html_only_appears_once_in_text():
    _, data, _ = build(text=None, html="<p>Body</p>", signature="Sig line")
    plain, _ = reparse(data).iter_parts()
    assert lf(plain.get_content()) == "Body\n\n-- \nSig line\n"


def test_empty_signature_adds_nothing():
    _, data, _ = build(text="Just this", html="<p>Just this</p>", signature="")
    plain, html = reparse(data).iter_parts()
    assert lf(plain.get_content()) == "Just this\n"
    assert "signature" not in html.get_content()


# --------------------------------------------------------------------------- replies


def test_reply_headers():
    _, data, _ = build(
        reply_to_headers=("<parent@example.test>", ["root@example.test", "<mid@example.test>"])
    )
    parsed = reparse(data)
    assert parsed["In-Reply-To"] == "<parent@example.test>"
    assert parsed["References"] == "<root@example.test> <mid@example.test> <parent@example.test>"
    p = parse_message(data)
    assert p.in_reply_to == "parent@example.test"
    assert p.references == ["root@example.test", "mid@example.test", "parent@example.test"]


def test_reply_references_deduplicated_and_capped():
    refs = [f"r{i}@example.test" for i in range(30)] + ["r5@example.test", "parent@example.test", "bad id"]
    _, data, _ = build(reply_to_headers=("parent@example.test", refs))
    p = parse_message(data)
    assert len(p.references) == 20
    assert len(set(p.references)) == 20
    assert p.references[-1] == "parent@example.test"
    assert p.references[0] == "r0@example.test"  # the thread root survives the cap
    assert p.references[1:-1] == [f"r{i}@example.test" for i in range(12, 30)]


def test_reply_without_references():
    _, data, _ = build(reply_to_headers=("parent@example.test", []))
    parsed = reparse(data)
    assert parsed["References"] == "<parent@example.test>"


def test_reply_with_invalid_parent_id():
    with pytest.raises(ValueError):
        build(reply_to_headers=("not an id", []))


# --------------------------------------------------------------------------- i18n, limits


def test_non_ascii_round_trip():
    subject = "Grüße aus Köln – 東京 📧 " + "lange Zeile " * 10
    text = "Héllo wörld, ça va? Привет 👋\n" + "ä" * 1200 + "\n"
    html = "<p>Héllo <b>wörld</b> Привет</p>"
    _, data, _ = build(
        sender=Address("Jürgen Müller", "j@example.test"),
        to=["Zoë Ångström <zoe@example.test>", {"name": "山田 太郎", "email": "yamada@example.test"}],
        subject=subject,
        text=text,
        html=html,
        signature="Jürgen – ☕",
        attachments=[("Übersicht €.txt", "text/plain", "ü".encode())],
    )
    assert data.isascii()
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    p = parse_message(data)
    assert p.subject == subject.strip()
    assert p.from_ == [Address("Jürgen Müller", "j@example.test")]
    assert p.to == [Address("Zoë Ångström", "zoe@example.test"), Address("山田 太郎", "yamada@example.test")]
    assert lf(p.text) == text + "\n-- \nJürgen – ☕\n"
    assert p.html is not None and "Héllo" in p.html and "Привет" in p.html and "Jürgen – ☕" in p.html
    assert p.attachments[0].filename == "Übersicht €.txt"


def test_too_large():
    assert MAX_MESSAGE_BYTES == 25 * 1024 * 1024
    big = b"\x00" * (20 * 1024 * 1024)  # base64 makes it ~27 MB
    with pytest.raises(TooLarge):
        build(attachments=[("big.bin", "application/octet-stream", big)])
    with pytest.raises(TooLarge):
        build(attachments=[("huge.bin", "application/octet-stream", b"\x00" * (MAX_MESSAGE_BYTES + 1))])
    assert issubclass(TooLarge, ValueError)


def test_too_large_limit_is_checked_on_the_final_bytes(monkeypatch):  # type: ignore[no-untyped-def]
    _, data, _ = build()
    monkeypatch.setattr(compose_mod, "MAX_MESSAGE_BYTES", len(data) // 2)
    with pytest.raises(TooLarge):
        build()
