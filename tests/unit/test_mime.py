"""parse_message / get_attachment / message_key on realistic and broken messages."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.mime.application import MIMEApplication
from email.mime.image import MIMEImage
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText

import pytest

from mailsync.domain.mime import (
    get_attachment,
    html_to_text,
    message_key,
    normalize_message_id,
    parse_message,
)
from mailsync.domain.models import Address

pytestmark = pytest.mark.unit

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.4\n" + b"0123456789" * 300 + b"\n%%EOF\n"


def _alternative() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice Example <alice@example.com>"
    msg["To"] = "bob@example.org, Carol <carol@example.net>"
    msg["Cc"] = "dave@example.com"
    msg["Subject"] = "Quarterly report"
    msg["Date"] = "Tue, 05 Mar 2024 14:30:00 +0100"
    msg["Message-ID"] = "<CAF=abc123@mail.example.com>"
    msg.set_content("Hello Bob,\n\nplease find the numbers below.\n\nAlice\n")
    msg.add_alternative(
        "<html><body><p>Hello Bob,</p><p onclick='x()'>please find the numbers below.</p>"
        "<script>alert(1)</script></body></html>",
        subtype="html",
    )
    return msg


def _mixed_with_attachments() -> EmailMessage:
    msg = _alternative()
    msg.add_attachment(PDF, maintype="application", subtype="pdf", filename="report Q1.pdf")
    msg.add_attachment(PNG, maintype="image", subtype="png", filename="chart.png")
    return msg


# --------------------------------------------------------------------------- headers


def test_multipart_alternative_headers_and_bodies() -> None:
    raw = _alternative().as_bytes()
    parsed = parse_message(raw)
    assert parsed.message_id == "CAF=abc123@mail.example.com"
    assert parsed.subject == "Quarterly report"
    assert parsed.from_ == [Address("Alice Example", "alice@example.com")]
    assert parsed.to == [Address(None, "bob@example.org"), Address("Carol", "carol@example.net")]
    assert parsed.cc == [Address(None, "dave@example.com")]
    assert parsed.bcc == [] and parsed.reply_to == []
    assert parsed.date == datetime(2024, 3, 5, 13, 30, tzinfo=UTC)
    assert parsed.text is not None and parsed.text.startswith("Hello Bob,\n\nplease find")
    assert parsed.html == "<p>Hello Bob,</p><p>please find the numbers below.</p>"
    assert parsed.snippet == "Hello Bob, please find the numbers below. Alice"
    assert parsed.attachments == []
    assert parsed.size == len(raw)
    assert not parsed.has_attachments


def test_encoded_words_in_names_and_subject() -> None:
    raw = (
        b"From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.de>\r\n"
        b'To: =?iso-8859-1?b?SvZyZw==?= <joerg@example.de>, "=?UTF-8?Q?Sch=C3=B6n=2C_Eva?=" <eva@example.de>\r\n'
        b"Subject: =?utf-8?b?R3LDvMOfZQ==?= =?utf-8?q?_aus_K=C3=B6ln?= und mehr\r\n"
        b"Message-ID: <x@y>\r\n"
        b"\r\n"
        b"Hallo\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.from_ == [Address("Jürgen Müller", "juergen@example.de")]
    assert parsed.to == [Address("Jörg", "joerg@example.de"), Address("Schön, Eva", "eva@example.de")]
    assert parsed.subject == "Grüße aus Köln und mehr"


def test_broken_encoded_words_are_kept_literally() -> None:
    raw = (
        b"From: =?x-unknown-charset?q?Ren=E9?= <rene@example.fr>\r\n"
        b"Subject: =?utf-8?b?!!!notbase64?= ok\r\n"
        b"\r\nbody\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.from_ == [Address("René", "rene@example.fr")]
    assert parsed.subject.endswith("ok")


def test_raw_8bit_headers_utf8_and_latin1() -> None:
    raw = "Subject: Grüße\r\nFrom: Zoë <zoe@example.com>\r\n\r\nx\r\n".encode()
    parsed = parse_message(raw)
    assert parsed.subject == "Grüße"
    assert parsed.from_ == [Address("Zoë", "zoe@example.com")]
    raw_latin = "Subject: Grüße\r\n\r\nx\r\n".encode("latin-1")
    assert parse_message(raw_latin).subject == "Grüße"


def test_missing_headers() -> None:
    parsed = parse_message(b"\r\njust a body without any header\r\n")
    assert parsed.message_id is None
    assert parsed.in_reply_to is None
    assert parsed.references == []
    assert parsed.subject == ""
    assert parsed.from_ == [] and parsed.to == []
    assert parsed.date is None
    assert parsed.text == "just a body without any header\r\n" or parsed.text.strip() == (
        "just a body without any header"
    )
    assert parsed.snippet == "just a body without any header"


def test_duplicate_headers_first_wins_addresses_merge() -> None:
    raw = (
        b"Subject: first\r\nSubject: second\r\n"
        b"Message-ID: <one@example.com>\r\nMessage-ID: <two@example.com>\r\n"
        b"To: a@example.com\r\nTo: b@example.com\r\n"
        b"Date: Wed, 01 May 2024 10:00:00 +0000\r\nDate: garbage\r\n"
        b"\r\nbody\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.subject == "first"
    assert parsed.message_id == "one@example.com"
    assert [a.email for a in parsed.to] == ["a@example.com", "b@example.com"]
    assert parsed.date == datetime(2024, 5, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Tue, 05 Mar 2024 14:30:00 +0100", datetime(2024, 3, 5, 13, 30, tzinfo=UTC)),
        ("5 Mar 2024 14:30:00 -0000", datetime(2024, 3, 5, 14, 30, tzinfo=UTC)),
        ("Tue, 5 Mar 2024 14:30 GMT", datetime(2024, 3, 5, 14, 30, tzinfo=UTC)),
        ("yesterday at noon", None),
        ("Tue, 45 Foo 2024 99:99:99 +0100", None),
        ("Mon, 01 Jan 99999 00:00:00 +0000", None),
        ("", None),
    ],
)
def test_dates(value: str, expected: datetime | None) -> None:
    raw = f"Date: {value}\r\nSubject: d\r\n\r\nx\r\n".encode()
    assert parse_message(raw).date == expected


def test_message_ids_references_and_in_reply_to() -> None:
    raw = (
        b"Message-ID:   <CA+abc@mail.gmail.com>  \r\n"
        b"In-Reply-To: <parent@example.com> (Bob's message of Monday)\r\n"
        b"References: <root@example.com>\r\n <mid@example.com><parent@example.com>\r\n\t<root@example.com>\r\n"
        b"\r\nx\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.message_id == "CA+abc@mail.gmail.com"
    assert parsed.in_reply_to == "parent@example.com"
    assert parsed.references == ["root@example.com", "mid@example.com", "parent@example.com"]


def test_references_without_brackets_split_on_whitespace() -> None:
    parsed = parse_message(b"References: a@x  b@x\r\n\tc@x\r\n\r\nx")
    assert parsed.references == ["a@x", "b@x", "c@x"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<abc@example.com>", "abc@example.com"),
        ("  <abc@example.com>  ", "abc@example.com"),
        ("abc@example.com", "abc@example.com"),
        ("<abc@example.com> <def@example.com>", "abc@example.com"),
        ("<>", None),
        ("", None),
        (None, None),
        ("   ", None),
    ],
)
def test_normalize_message_id(value: str | None, expected: str | None) -> None:
    assert normalize_message_id(value) == expected


def test_addresses_without_at_and_groups_are_skipped() -> None:
    raw = (
        b"To: undisclosed-recipients:;\r\n"
        b'Cc: Team: anna@example.com, ben@example.com;, not-an-address, "Weird" <>\r\n'
        b"Reply-To: Sales <sales@example.com>\r\n"
        b"\r\nx\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.to == []
    assert [a.email for a in parsed.cc] == ["anna@example.com", "ben@example.com"]
    assert parsed.reply_to == [Address("Sales", "sales@example.com")]


def test_address_case_kept_as_written() -> None:
    parsed = parse_message(b"From: Bob <Bob.Smith@Example.COM>\r\n\r\nx")
    assert parsed.from_[0].email == "Bob.Smith@Example.COM"
    assert parsed.from_[0].key == "bob.smith@example.com"


# --------------------------------------------------------------------------- bodies & charsets


def test_iso_8859_1_quoted_printable_body() -> None:
    part = MIMEText("Grüße aus München, café 5 €", "plain", "iso-8859-15")
    part["Subject"] = "Umlaute"
    parsed = parse_message(part.as_bytes())
    assert parsed.text == "Grüße aus München, café 5 €"


def test_latin1_body_declared_iso_8859_1() -> None:
    raw = (
        b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Grüße, l’été".encode("cp1252")
    )
    assert parse_message(raw).text == "Grüße, l’été"


def test_unknown_charset_falls_back() -> None:
    raw = (
        b'Content-Type: text/plain; charset="x-totally-bogus"\r\n'
        b"Content-Transfer-Encoding: 8bit\r\n\r\n" + "Grüße".encode()
    )
    assert parse_message(raw).text == "Grüße"
    raw_latin = b"Content-Type: text/plain; charset=utf-8-bogus\r\n\r\n" + "Grüße".encode("latin-1")
    assert parse_message(raw_latin).text == "Grüße"


def test_non_text_codec_charset_is_ignored() -> None:
    raw = b"Content-Type: text/plain; charset=base64\r\n\r\nhello world\r\n"
    assert parse_message(raw).text.strip() == "hello world"


def test_mislabelled_utf8_as_ascii_and_invalid_utf8() -> None:
    raw = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n" + "naïve".encode()
    assert parse_message(raw).text == "naïve"
    raw_bad = b"Content-Type: text/plain; charset=utf-8\r\n\r\nok \xff\xfe end"
    text = parse_message(raw_bad).text
    assert text.startswith("ok ") and text.endswith(" end") and "\ufffd" in text


def test_html_only_message_derives_text() -> None:
    msg = EmailMessage()
    msg["Subject"] = "Newsletter"
    msg.set_content(
        "<html><head><title>T</title><style>p{color:red}</style></head><body>"
        "<h1>Big&nbsp;news</h1><p>Caf&eacute; &amp; more<br>second   line</p>"
        "<script>var x = 1;</script><img src='https://track.example/p.gif'></body></html>",
        subtype="html",
    )
    parsed = parse_message(msg.as_bytes())
    assert parsed.text == "Big news\n\nCafé & more\nsecond line"
    assert parsed.snippet == "Big news Café & more second line"
    assert parsed.html is not None
    assert "<script" not in parsed.html and "track.example/p.gif" in parsed.html
    assert "<img" not in parsed.html


def test_html_to_text() -> None:
    assert html_to_text("<p>a&lt;b</p><p>c</p><table><tr><td>1</td><td>2</td></tr></table>") == (
        "a<b\n\nc\n\n1 2"
    )


def test_snippet_is_limited_and_collapsed() -> None:
    msg = EmailMessage()
    msg.set_content(("word \n\t " * 100).strip())
    parsed = parse_message(msg.as_bytes())
    assert len(parsed.snippet) <= 200
    assert "  " not in parsed.snippet and "\n" not in parsed.snippet
    assert parsed.snippet.startswith("word word")


def test_base64_body() -> None:
    part = MIMEText("Ünïcödé body " * 20, "plain", "utf-8")  # base64 by default for utf-8
    assert part["Content-Transfer-Encoding"] == "base64"
    parsed = parse_message(part.as_bytes())
    assert parsed.text == "Ünïcödé body " * 20


# --------------------------------------------------------------------------- attachments


def test_mixed_with_attachments_ids_sizes_and_download() -> None:
    raw = _mixed_with_attachments().as_bytes()
    parsed = parse_message(raw)
    # 1 = multipart/alternative (1.1 text, 1.2 html), 2 = pdf, 3 = png
    assert [(a.id, a.filename, a.content_type, a.size) for a in parsed.attachments] == [
        ("2", "report Q1.pdf", "application/pdf", len(PDF)),
        ("3", "chart.png", "image/png", len(PNG)),
    ]
    assert parsed.text is not None and parsed.text.startswith("Hello Bob")
    assert parsed.html is not None and parsed.html.startswith("<p>Hello Bob")
    assert parsed.has_attachments
    assert get_attachment(raw, "2") == ("report Q1.pdf", "application/pdf", PDF)
    assert get_attachment(raw, "3") == ("chart.png", "image/png", PNG)
    assert get_attachment(raw, "1.1")[1] == "text/plain"  # body parts resolve too
    for bad in ("4", "0", "1.9", "", "a", "2.", "-1", "1..1"):
        assert get_attachment(raw, bad) is None


def test_related_inline_image_with_cid_and_no_filename() -> None:
    root = MIMEMultipart("related")
    root["Subject"] = "Inline"
    root.attach(MIMEText('<p>Chart:</p><img src="cid:chart@local" alt="chart">', "html"))
    image = MIMEImage(PNG, "png")
    image["Content-ID"] = "<chart@local>"
    image["Content-Disposition"] = "inline"
    root.attach(image)
    raw = root.as_bytes()
    parsed = parse_message(raw)
    assert parsed.html == '<p>Chart:</p><img data-cid="chart@local" alt="chart">'
    assert parsed.text == "Chart:"
    assert [(a.id, a.filename, a.content_type, a.size) for a in parsed.attachments] == [
        ("2", None, "image/png", len(PNG))
    ]


def test_inline_part_with_filename_is_attachment_unless_body() -> None:
    outer = MIMEMultipart("mixed")
    outer.attach(MIMEText("the body", "plain"))
    log = MIMEText("log line 1\nlog line 2\n", "plain")
    log.add_header("Content-Disposition", "inline", filename="server.log")
    outer.attach(log)
    calendar = MIMEText("BEGIN:VCALENDAR\nEND:VCALENDAR\n", "calendar")
    outer.attach(calendar)
    raw = outer.as_bytes()
    parsed = parse_message(raw)
    assert parsed.text == "the body"
    assert [(a.id, a.filename, a.content_type) for a in parsed.attachments] == [
        ("2", "server.log", "text/plain"),
        ("3", None, "text/calendar"),
    ]


def test_text_attachment_is_not_the_body() -> None:
    outer = MIMEMultipart("mixed")
    attached = MIMEText("<p>attached page</p>", "html")
    attached.add_header("Content-Disposition", "attachment", filename="page.html")
    outer.attach(attached)
    outer.attach(MIMEText("real body", "plain"))
    parsed = parse_message(outer.as_bytes())
    assert parsed.text == "real body"
    assert parsed.html is None
    assert [(a.id, a.filename, a.content_type) for a in parsed.attachments] == [
        ("1", "page.html", "text/html")
    ]


def test_nested_message_rfc822() -> None:
    inner = MIMEMultipart("mixed")
    inner["From"] = "Original <orig@example.com>"
    inner["Subject"] = "Original subject"
    inner["Message-ID"] = "<inner@example.com>"
    inner.attach(MIMEText("inner body", "plain"))
    inner.attach(MIMEApplication(PDF, "pdf", Name="inner.pdf"))
    inner.get_payload()[1].add_header("Content-Disposition", "attachment", filename="inner.pdf")

    outer = MIMEMultipart("mixed")
    outer["From"] = "Forwarder <fwd@example.com>"
    outer["Subject"] = "Fwd: Original subject"
    outer["Message-ID"] = "<outer@example.com>"
    outer.attach(MIMEText("see attached", "plain"))
    outer.attach(MIMEMessage(inner))
    raw = outer.as_bytes()

    parsed = parse_message(raw)
    assert parsed.message_id == "outer@example.com"
    assert parsed.text == "see attached"
    assert len(parsed.attachments) == 1
    attached = parsed.attachments[0]
    assert (attached.id, attached.filename, attached.content_type) == (
        "2",
        "Original subject.eml",
        "message/rfc822",
    )

    _name, ctype, data = get_attachment(raw, "2")
    assert ctype == "message/rfc822"
    assert attached.size == len(data)
    reparsed = parse_message(data)
    assert reparsed.message_id == "inner@example.com"
    assert reparsed.text == "inner body"
    # IMAP numbering inside the encapsulated message: 2.1 (text), 2.2 (pdf)
    assert get_attachment(raw, "2.2") == ("inner.pdf", "application/pdf", PDF)
    assert get_attachment(raw, "2.1")[2] == b"inner body"


def test_single_part_attachment_message_is_section_1() -> None:
    msg = EmailMessage()
    msg["Subject"] = "scan"
    msg.set_content(PDF, maintype="application", subtype="pdf", disposition="attachment", filename="scan.pdf")
    raw = msg.as_bytes()
    parsed = parse_message(raw)
    assert parsed.text is None and parsed.html is None and parsed.snippet == ""
    assert [(a.id, a.filename) for a in parsed.attachments] == [("1", "scan.pdf")]
    assert get_attachment(raw, "1") == ("scan.pdf", "application/pdf", PDF)


def test_rfc2231_and_encoded_word_filenames() -> None:
    outer = MIMEMultipart("mixed")
    outer.attach(MIMEText("body", "plain"))
    a = MIMEApplication(b"one", "octet-stream")
    a.add_header("Content-Disposition", "attachment", filename=("utf-8", "", "Übersicht 2024.xlsx"))
    outer.attach(a)
    raw = outer.as_bytes()
    raw += b""  # keep bytes
    b_part = (
        b'--XYZ\r\nContent-Type: application/octet-stream; name="=?utf-8?q?K=C3=B6ln.txt?="\r\n'
        b'Content-Disposition: attachment; filename="=?utf-8?q?K=C3=B6ln.txt?="\r\n'
        b"Content-Transfer-Encoding: base64\r\n\r\naGk=\r\n--XYZ--\r\n"
    )
    raw_b = b'Content-Type: multipart/mixed; boundary="XYZ"\r\n\r\n' + b_part
    assert parse_message(raw).attachments[0].filename == "Übersicht 2024.xlsx"
    parsed_b = parse_message(raw_b)
    assert [(a.id, a.filename, a.size) for a in parsed_b.attachments] == [("1", "Köln.txt", 2)]
    assert get_attachment(raw_b, "1") == ("Köln.txt", "application/octet-stream", b"hi")


def test_filename_path_traversal_is_neutralised() -> None:
    raw = (
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n'
        b"Content-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="../../etc/passwd"\r\n\r\nx\r\n--B--\r\n'
    )
    assert parse_message(raw).attachments[0].filename == ".._.._etc_passwd"


# --------------------------------------------------------------------------- garbage


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x01\x02\xff\xfe",
        b"not a header line at all\r\n\r\n",
        b"Content-Type: multipart/mixed\r\n\r\nno boundary given\r\n",
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nunterminated',
        b"Content-Type: text/plain; charset=\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!***",
        b"Content-Type: ;;;\r\nContent-Disposition: attachment; filename*=bogus''%ZZ\r\n\r\nx",
        b'From: <<<@>>>, "unterminated\r\nTo: ,,,,@,\r\nDate: Thu, 31 Feb 2024 25:61:00 +9999\r\n\r\nx',
        b"Subject: =?utf-8?q?\r\nMessage-ID: <\r\nReferences: <<<>>>\r\n\r\n",
        b"\r\n" * 1000,
        b"Subject: " + b"A" * 100_000 + b"\r\n\r\nx",
    ],
)
def test_garbage_never_raises(raw: bytes) -> None:
    parsed = parse_message(raw)
    assert parsed.size == len(raw)
    assert isinstance(parsed.subject, str)
    assert isinstance(parsed.snippet, str) and len(parsed.snippet) <= 200
    assert get_attachment(raw, "1") is None or isinstance(get_attachment(raw, "1"), tuple)
    message_key(parsed, raw)


def test_multipart_without_boundary_is_read_as_text() -> None:
    parsed = parse_message(b"Content-Type: multipart/mixed\r\n\r\nplain words here\r\n")
    assert parsed.text is not None and "plain words here" in parsed.text


def test_truncated_multipart_keeps_what_was_read() -> None:
    raw = (
        b'From: a@example.com\r\nSubject: cut\r\nContent-Type: multipart/alternative; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nfirst part\r\n"
        b"--B\r\nContent-Type: text/html\r\n\r\n<p>second <b>part"
    )
    parsed = parse_message(raw)
    assert parsed.subject == "cut"
    assert parsed.text == "first part"
    assert parsed.html == "<p>second <b>part</b></p>"


def test_non_bytes_input_is_tolerated() -> None:
    assert parse_message(None).size == 0  # type: ignore[arg-type]
    assert parse_message(bytearray(b"Subject: hi\r\n\r\nx")).subject == "hi"


# --------------------------------------------------------------------------- message_key


def test_message_key_uses_lowercased_message_id() -> None:
    raw = _alternative().as_bytes()
    assert message_key(parse_message(raw), raw) == "caf=abc123@mail.example.com"


def _no_id(
    extra_headers: bytes = b"", body: bytes = b"Hello there\r\nline two\r\n", eol: bytes = b"\r\n"
) -> bytes:
    headers = [
        b"From: Alerts <Alerts@Example.com>",
        b"To: ops@example.com",
        b"Subject: Disk full",
        b"Date: Wed, 01 May 2024 10:00:00 +0000",
    ]
    return eol.join(headers) + eol + extra_headers + eol + body.replace(b"\r\n", eol)


def test_message_key_without_id_is_stable_across_copies() -> None:
    base = _no_id()
    copy_in_other_folder = _no_id(
        b"Received: from mx by imap; Wed, 01 May 2024 10:00:05 +0000\r\nX-UID: 42\r\n"
    )
    lf_copy = _no_id(eol=b"\n")
    key = message_key(parse_message(base), base)
    assert key.startswith("sha256:") and len(key) == len("sha256:") + 64
    assert message_key(parse_message(copy_in_other_folder), copy_in_other_folder) == key
    assert message_key(parse_message(lf_copy), lf_copy) == key


def test_message_key_without_id_differs_for_different_mails() -> None:
    base = _no_id()
    other_body = _no_id(body=b"Completely different content\r\n")
    other_date = base.replace(b"10:00:00", b"11:00:00")
    keys = {message_key(parse_message(r), r) for r in (base, other_body, other_date)}
    assert len(keys) == 3


def test_message_key_digest_matches_documented_tuple() -> None:
    raw = _no_id()
    body_len = len(b"Hello there\nline two\n")
    canonical = f'["Wed, 01 May 2024 10:00:00 +0000",["alerts@example.com"],"Disk full",{body_len}]'
    expected = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert message_key(parse_message(raw), raw) == expected


def test_policy_default_roundtrip_of_built_message() -> None:
    # sanity check that the fixtures are what real clients send
    msg = _mixed_with_attachments()
    assert msg.get_content_type() == "multipart/mixed"
    assert msg.as_bytes(policy=policy.SMTP).count(b"\r\n") > 10


def test_delivery_status_report_part_has_content() -> None:
    raw = (
        b"From: MAILER-DAEMON@example.com\r\nSubject: Undelivered Mail\r\n"
        b'Content-Type: multipart/report; report-type=delivery-status; boundary="R"\r\n\r\n'
        b"--R\r\nContent-Type: text/plain\r\n\r\nYour mail could not be delivered.\r\n"
        b"--R\r\nContent-Type: message/delivery-status\r\n\r\n"
        b"Reporting-MTA: dns; mx.example.com\r\n\r\nFinal-Recipient: rfc822; nobody@example.org\r\nStatus: 5.1.1\r\n"
        b"--R--\r\n"
    )
    parsed = parse_message(raw)
    assert parsed.text == "Your mail could not be delivered."
    [report] = parsed.attachments
    assert (report.id, report.content_type) == ("2", "message/delivery-status")
    _name, _ctype, data = get_attachment(raw, "2")
    assert b"Status: 5.1.1" in data and report.size == len(data)


def test_an_unreadable_address_header_keeps_the_others() -> None:
    """Address headers that occur several times are read together; Python 3.13's strict
    getaddresses answers nothing for a whole list with one bad entry. The readable
    occurrences must survive (assignment to contacts needs them)."""
    raw = (
        b"From: Alice <alice@example.com>\r\n"
        b"To: bob@example.org, Dave <dave@example.org>\r\n"
        b'To: "unbalanced <carol@example.net\r\n'
        b"To: \r\n"
        b"Subject: x\r\n\r\nbody\r\n"
    )
    parsed = parse_message(raw)
    assert [a.email for a in parsed.from_] == ["alice@example.com"]
    assert [a.email for a in parsed.to][:2] == ["bob@example.org", "dave@example.org"]
