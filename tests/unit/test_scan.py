"""The ingest scan agrees with the full parser on every field, and its located body
parts render to exactly the bodies the full parser reads."""

from __future__ import annotations

import random
from email.message import EmailMessage
from email.mime.message import MIMEMessage
from email.mime.text import MIMEText

import pytest

from bench.mailgen import generate
from mailsync.domain.mime import parse_message, render_located
from mailsync.domain.models import ParsedMessage
from mailsync.domain.scan import scan_message

pytestmark = pytest.mark.unit

FIELDS = (
    "message_id",
    "in_reply_to",
    "references",
    "subject",
    "from_",
    "to",
    "cc",
    "bcc",
    "reply_to",
    "date",
)


def rendered(raw: bytes, scanned: ParsedMessage) -> tuple[str | None, str | None]:
    """What a reader gets: the located parts rendered, or the whole raw parsed."""
    if scanned.body_parts is None:
        full = parse_message(raw)
        return full.text, full.html
    return render_located((p.kind, raw[p.start : p.end], p.cte, p.charset) for p in scanned.body_parts)


def assert_same(raw: bytes) -> ParsedMessage:
    scanned, full = scan_message(raw), parse_message(raw)
    for name in FIELDS:
        assert getattr(scanned, name) == getattr(full, name), name
    assert scanned.snippet == full.snippet
    assert scanned.attachments == full.attachments
    assert scanned.size == full.size == len(raw)
    assert scanned.text is None and scanned.html is None  # bodies are rendered when read
    assert rendered(raw, scanned) == (full.text, full.html)
    return scanned


def _base() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = '"Müller, Jürgen" <juergen@example.de>'
    msg["To"] = "bob@example.org, Carol <carol@example.net>"
    msg["Cc"] = "=?utf-8?q?Zo=C3=AB?= <zoe@example.com>"
    msg["Subject"] = "Grüße zum Angebot"
    msg["Date"] = "Tue, 05 Mar 2024 14:30:00 +0100"
    msg["Message-ID"] = "<CAF=abc123@mail.example.com>"
    msg["In-Reply-To"] = "<parent@example.com>"
    msg["References"] = "<root@example.com> <parent@example.com>"
    return msg


def _alternative() -> EmailMessage:
    msg = _base()
    msg.set_content("Hallo Bob,\n\nanbei die Zahlen — bitte prüfen.\n\nJürgen\n")
    msg.add_alternative("<p>Hallo <b>Bob</b></p><script>alert(1)</script><p>anbei</p>", subtype="html")
    return msg


def _mixed() -> EmailMessage:
    msg = _alternative()
    msg.add_attachment(
        b"%PDF-1.4\n" + b"0" * 5000, maintype="application", subtype="pdf", filename="Angebot (1).pdf"
    )
    msg.add_attachment(bytes(range(256)) * 8, maintype="image", subtype="png", filename="chart.png")
    msg.add_attachment("a,b\n1,2\n", subtype="csv", filename="data.csv")
    return msg


def _related() -> EmailMessage:
    msg = _base()
    msg.set_content("see the picture")
    msg.add_alternative('<p>see <img src="cid:pic1"></p>', subtype="html")
    html = msg.get_payload()[1]
    html.add_related(b"\x89PNG" + b"1" * 300, maintype="image", subtype="png", cid="<pic1>")
    return msg


def _html_only() -> EmailMessage:
    msg = _base()
    msg.set_content(
        "<html><head><style>p{color:red}</style></head><body><p>Nur HTML "
        + "Wort " * 400
        + "</p></body></html>",
        subtype="html",
    )
    return msg


def _qp_latin1() -> bytes:
    return (
        b"From: a@example.com\r\nSubject: qp\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nGr=FC=DFe aus K=F6ln, =\r\nweiter.\r\n"
    )


def _nested() -> bytes:
    inner = MIMEText("inner body")
    inner["Subject"] = "Weitergeleitet"
    outer = EmailMessage()
    outer["Subject"] = "Fwd"
    outer.set_content("see below")
    outer.add_attachment(MIMEMessage(inner))
    return outer.as_bytes()


STRUCTURED = {
    "alternative": _alternative().as_bytes(),
    "mixed": _mixed().as_bytes(),
    "related": _related().as_bytes(),
    "html-only": _html_only().as_bytes(),
    "qp-latin1": _qp_latin1(),
    "base64-text": (
        b"Subject: b64\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"R3LDvMOfZSBhdXMgS8O2bG4=\r\n"
    ),
    "lf-only": _mixed().as_bytes().replace(b"\r\n", b"\n"),
    "preamble-epilogue-blanks": (
        b'Subject: p\r\nContent-Type: multipart/mixed; boundary="XX"\r\n\r\nThis is MIME.\r\n\r\n'
        b"--XX  \r\nContent-Type: text/plain\r\n\r\nfirst\r\n--XXnot-a-delimiter\r\nstill first\r\n"
        b"--XX\r\n\r\nno headers: text/plain\r\n--XX--\t\r\nepilogue\r\n"
    ),
    "encoded-word-filename": (
        b'Subject: f\r\nContent-Type: multipart/mixed; boundary="F"\r\n\r\n--F\r\nContent-Type: text/plain\r\n\r\nx\r\n'
        b'--F\r\nContent-Type: image/png; name="=?utf-8?q?Gr=C3=BC=C3=9Fe.png?="\r\nContent-Transfer-Encoding: base64\r\n'
        b"Content-Disposition: inline\r\n\r\niVBORw0KGgo=\r\n--F--\r\n"
    ),
    "empty-part": b'Subject: e\r\nContent-Type: multipart/mixed; boundary="E"\r\n\r\n--E\r\n--E--\r\n',
    "uppercase-and-folded": (
        b"SUBJECT: Folded\r\n subject line\r\nFROM: A <a@example.com>\r\nCONTENT-TYPE: MULTIPART/ALTERNATIVE;\r\n"
        b'\tBOUNDARY="Q"\r\n\r\n--Q\r\nContent-Type: Text/Plain; Charset="UTF-8"\r\nContent-Transfer-Encoding: 8BIT\r\n\r\n'
        + "ünïcödé".encode()
        + b"\r\n--Q\r\nContent-Type: text/html\r\n\r\n<p>x</p>\r\n--Q--\r\n"
    ),
    "text-attachment-not-body": (
        b'Subject: t\r\nContent-Type: multipart/mixed; boundary="T"\r\n\r\n--T\r\n'
        b'Content-Type: text/plain\r\nContent-Disposition: attachment; filename="notes.txt"\r\n\r\nnotes\r\n'
        b"--T\r\nContent-Type: text/plain\r\n\r\nthe body\r\n--T--\r\n"
    ),
    # Outside the fast path: parsed whole, same result.
    "nested-rfc822": _nested(),
    "rfc2231-filename": (
        b'Subject: r\r\nContent-Type: multipart/mixed; boundary="R"\r\n\r\n--R\r\nContent-Type: text/plain\r\n\r\nx\r\n'
        b"--R\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=utf-8''Gr%C3%BC%C3%9Fe.pdf\r\n\r\n%PDF\r\n--R--\r\n"
    ),
    "truncated": b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nunterminated',
    "no-boundary": b"Content-Type: multipart/mixed\r\n\r\nplain words here\r\n",
    "bare-cr-before-delimiter": b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n\r\nx\r--B\r\n\r\ny\r\n--B--\r\n',
    "mbox-from-line": b"From someone Tue Mar  5 14:30:00 2024\r\nSubject: mbox\r\n\r\nbody\r\n",
    "no-headers": b"\r\njust a body\r\n",
    "empty": b"",
    "garbage": b"\x00\x01\x02\xff\xfe",
}
FALLBACK = {
    "empty-part",
    "garbage",
    "nested-rfc822",
    "rfc2231-filename",
    "truncated",
    "no-boundary",
    "bare-cr-before-delimiter",
    "mbox-from-line",
}


@pytest.mark.parametrize("name", sorted(STRUCTURED))
def test_scan_equals_full_parse(name: str) -> None:
    scanned = assert_same(STRUCTURED[name])
    # The fast path is really taken for well-formed mail, and left for the rest.
    assert (scanned.body_parts is None) == (name in FALLBACK)


def test_scan_locates_both_bodies_of_an_alternative() -> None:
    raw = STRUCTURED["mixed"]
    scanned = scan_message(raw)
    assert [p.kind for p in scanned.body_parts or []] == ["text", "html"]
    assert [a.filename for a in scanned.attachments] == ["Angebot (1).pdf", "chart.png", "data.csv"]
    assert scan_message(STRUCTURED["encoded-word-filename"]).attachments[0].filename == "Grüße.png"
    assert scanned.snippet == "Hallo Bob, anbei die Zahlen — bitte prüfen. Jürgen"


def test_scan_equals_full_parse_on_generated_mail() -> None:
    mails = generate(400, seed=11)
    fast = sum(assert_same(m.raw).body_parts is not None for m in mails)
    assert fast == len(mails)


def test_scan_equals_full_parse_on_cut_and_damaged_mail() -> None:
    rng = random.Random(3)
    bases = [m.raw for m in generate(40, seed=12)] + list(STRUCTURED.values())
    for raw in bases:
        for _ in range(6):
            cut = raw[: rng.randrange(len(raw) + 1)]
            assert_same(cut)
            if raw:
                i = rng.randrange(len(raw))
                assert_same(raw[:i] + bytes([rng.randrange(256)]) + raw[i + 1 :])
