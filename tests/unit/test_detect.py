"""Provider detection: known domains, MX-based custom domains, guesses, validation."""

from __future__ import annotations

import struct

import pytest

from mailsync.domain import detect as detect_module
from mailsync.domain.detect import build_mx_query, detect, dns_mx_lookup, parse_mx_response

pytestmark = pytest.mark.unit


def _server(result: dict, kind: str) -> tuple[str, int, str]:
    return result[kind]["host"], result[kind]["port"], result[kind]["security"]


@pytest.mark.parametrize(
    ("email", "provider", "imap", "smtp", "saves_sent", "oauth"),
    [
        (
            "max@gmail.com",
            "google",
            ("imap.gmail.com", 993, "ssl"),
            ("smtp.gmail.com", 465, "ssl"),
            True,
            "google",
        ),
        (
            "max@googlemail.com",
            "google",
            ("imap.gmail.com", 993, "ssl"),
            ("smtp.gmail.com", 465, "ssl"),
            True,
            "google",
        ),
        *[
            (
                f"max@{domain}",
                "microsoft",
                ("outlook.office365.com", 993, "ssl"),
                ("smtp.office365.com", 587, "starttls"),
                True,
                "microsoft",
            )
            for domain in (
                "outlook.com",
                "outlook.de",
                "hotmail.com",
                "hotmail.de",
                "hotmail.co.uk",
                "live.com",
                "live.de",
                "live.fr",
                "msn.com",
            )
        ],
        *[
            (f"max@{d}", "gmx", ("imap.gmx.net", 993, "ssl"), ("mail.gmx.net", 587, "starttls"), False, None)
            for d in ("gmx.de", "gmx.net", "gmx.at", "gmx.ch")
        ],
        ("max@gmx.com", "gmx", ("imap.gmx.com", 993, "ssl"), ("mail.gmx.com", 587, "starttls"), False, None),
        ("max@web.de", "webde", ("imap.web.de", 993, "ssl"), ("smtp.web.de", 587, "starttls"), False, None),
        (
            "max@t-online.de",
            "t-online",
            ("secureimap.t-online.de", 993, "ssl"),
            ("securesmtp.t-online.de", 465, "ssl"),
            False,
            None,
        ),
        *[
            (
                f"max@{d}",
                "icloud",
                ("imap.mail.me.com", 993, "ssl"),
                ("smtp.mail.me.com", 587, "starttls"),
                True,
                None,
            )
            for d in ("icloud.com", "me.com", "mac.com")
        ],
        *[
            (
                f"max@{d}",
                "yahoo",
                ("imap.mail.yahoo.com", 993, "ssl"),
                ("smtp.mail.yahoo.com", 465, "ssl"),
                False,
                None,
            )
            for d in ("yahoo.com", "yahoo.de", "yahoo.co.uk", "ymail.com")
        ],
        *[
            (f"max@{d}", "ionos", ("imap.ionos.de", 993, "ssl"), ("smtp.ionos.de", 465, "ssl"), False, None)
            for d in ("ionos.de", "1und1.de")
        ],
        ("max@mail.de", "maildotde", ("imap.mail.de", 993, "ssl"), ("smtp.mail.de", 465, "ssl"), False, None),
        ("max@posteo.de", "posteo", ("posteo.de", 993, "ssl"), ("posteo.de", 465, "ssl"), False, None),
    ],
)
def test_known_providers(
    email: str,
    provider: str,
    imap: tuple[str, int, str],
    smtp: tuple[str, int, str],
    saves_sent: bool,
    oauth: str | None,
) -> None:
    result = detect(email)
    assert result["provider"] == provider
    assert _server(result, "imap") == imap
    assert _server(result, "smtp") == smtp
    assert result["imap"]["username"] == email
    assert result["smtp"]["username"] == email
    assert result["saves_sent"] is saves_sent
    assert result["oauth"] == oauth
    assert result["source"] == {"imap": "known_provider", "smtp": "known_provider"}
    assert result["name"]


def test_result_shape_and_normalisation() -> None:
    result = detect("  Max.Mustermann@GMX.DE.  ")
    assert result == {
        "email": "Max.Mustermann@GMX.DE.",
        "domain": "gmx.de",
        "provider": "gmx",
        "name": "GMX",
        "imap": {
            "host": "imap.gmx.net",
            "port": 993,
            "security": "ssl",
            "username": "Max.Mustermann@GMX.DE.",
        },
        "smtp": {
            "host": "mail.gmx.net",
            "port": 587,
            "security": "starttls",
            "username": "Max.Mustermann@GMX.DE.",
        },
        "source": {"imap": "known_provider", "smtp": "known_provider"},
        "saves_sent": False,
        "oauth": None,
    }


def test_known_provider_does_not_need_mx() -> None:
    def exploding(_domain: str) -> list[str]:
        raise AssertionError("must not be called")

    assert detect("a@gmail.com", mx_lookup=exploding)["provider"] == "google"


@pytest.mark.parametrize(
    ("mx", "provider", "oauth", "imap_host"),
    [
        (["aspmx.l.google.com.", "alt1.aspmx.l.google.com."], "google", "google", "imap.gmail.com"),
        (["smtp.google.com"], "google", "google", "imap.gmail.com"),
        (["ASPMX2.GOOGLEMAIL.COM"], "google", "google", "imap.gmail.com"),
        (["acme-de.mail.protection.outlook.com"], "microsoft", "microsoft", "outlook.office365.com"),
        (["mx00.ionos.de", "mx01.ionos.de"], "ionos", None, "imap.ionos.de"),
        (["mx00.1and1.co.uk"], "ionos", None, "imap.ionos.de"),
        (["mx01.kundenserver.de"], "ionos", None, "imap.ionos.de"),
        (["smtpin.rzone.de"], "strato", None, "imap.strato.de"),
        (["mx01.mail.icloud.com"], "icloud", None, "imap.mail.me.com"),
        (["mail.acme.de", "backup.google.com"], "google", "google", "imap.gmail.com"),
    ],
)
def test_custom_domain_by_mx(mx: list[str], provider: str, oauth: str | None, imap_host: str) -> None:
    seen: list[str] = []

    def lookup(domain: str) -> list[str]:
        seen.append(domain)
        return mx

    result = detect("info@Acme.DE", mx_lookup=lookup)
    assert seen == ["acme.de"]
    assert result["provider"] == provider
    assert result["oauth"] == oauth
    assert result["imap"]["host"] == imap_host
    assert result["imap"]["username"] == "info@Acme.DE"
    assert result["source"] == {"imap": "mx", "smtp": "mx"}


def test_lookalike_mx_is_not_trusted() -> None:
    result = detect(
        "a@acme.de", mx_lookup=lambda d: ["google.com.evil.example", "notgoogle.com", "ionosx.de"]
    )
    assert result["provider"] is None
    assert result["source"]["imap"] == "guess"


@pytest.mark.parametrize("lookup", [None, lambda d: [], lambda d: ["mx.acme.de"]])
def test_guess_fallback(lookup) -> None:
    result = detect("jane@acme.de", mx_lookup=lookup)
    assert result["provider"] is None
    assert result["name"] == "acme.de"
    assert result["imap"] == {
        "host": "imap.acme.de",
        "port": 993,
        "security": "ssl",
        "username": "jane@acme.de",
    }
    assert result["smtp"] == {
        "host": "smtp.acme.de",
        "port": 587,
        "security": "starttls",
        "username": "jane@acme.de",
    }
    assert result["source"] == {"imap": "guess", "smtp": "guess"}
    assert result["saves_sent"] is False
    assert result["oauth"] is None


def test_failing_mx_lookup_falls_back_to_guess() -> None:
    def broken(_domain: str) -> list[str]:
        raise OSError("resolver down")

    assert detect("jane@acme.de", mx_lookup=broken)["source"]["imap"] == "guess"


def test_lookalike_domains_are_not_providers() -> None:
    assert detect("a@live.example.com")["provider"] is None
    assert detect("a@mygmail.com")["provider"] is None
    assert detect("a@gmail.com.evil.example")["provider"] is None


@pytest.mark.parametrize(
    "email",
    [
        "",
        "   ",
        "plainaddress",
        "@example.com",
        "user@",
        "user@@example.com",
        "a@b@example.com",
        "user@localhost",
        "user@example",
        "user name@example.com",
        "user@exa mple.com",
        "user@-example.com",
        "user@example-.com",
        "user@example..com",
        "user@.example.com",
        "a..b@example.com",
        "<user@example.com>",
        "user@127.0.0.1",
        "user@[127.0.0.1]",
        "x" * 65 + "@example.com",
        "user@" + "a" * 64 + ".com",
        "user@" + ("a" * 60 + ".") * 5 + "com",
    ],
)
def test_invalid_email_raises_value_error(email: str) -> None:
    with pytest.raises(ValueError):
        detect(email)


def test_non_string_raises_value_error() -> None:
    with pytest.raises(ValueError):
        detect(None)  # type: ignore[arg-type]


def test_idn_domain_is_accepted() -> None:
    result = detect("info@müller.de")
    assert result["domain"] == "müller.de"
    assert result["imap"]["host"] == "imap.müller.de"


# --------------------------------------------------------------------------- stdlib DNS


def _name(host: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in host.split(".")) + b"\x00"


def _response(query: bytes, answers: list[tuple[int, str]], rcode: int = 0, qid: int | None = None) -> bytes:
    header_id = struct.unpack(">H", query[:2])[0] if qid is None else qid
    header = struct.pack(">HHHHHH", header_id, 0x8180 | rcode, 1, len(answers), 0, 0)
    body = query[12:]
    for preference, host in answers:
        rdata = struct.pack(">H", preference) + _name(host)
        # owner name as a compression pointer to the question (offset 12)
        body += b"\xc0\x0c" + struct.pack(">HHIH", 15, 1, 300, len(rdata)) + rdata
    return header + body


def test_mx_packet_roundtrip() -> None:
    query = build_mx_query("acme.de", 0x1234)
    assert query[:2] == b"\x12\x34"
    assert query.endswith(_name("acme.de") + b"\x00\x0f\x00\x01")
    answer = _response(query, [(20, "alt.aspmx.l.google.com"), (10, "aspmx.l.google.com")])
    assert parse_mx_response(answer, 0x1234) == ["aspmx.l.google.com", "alt.aspmx.l.google.com"]


def test_mx_packet_with_compressed_target() -> None:
    query = build_mx_query("acme.de", 7)
    header = struct.pack(">HHHHHH", 7, 0x8180, 1, 1, 0, 0)
    # MX target "mx.acme.de" = label "mx" + pointer to "acme.de" in the question
    rdata = struct.pack(">H", 5) + b"\x02mx\xc0\x0c"
    packet = header + query[12:] + b"\xc0\x0c" + struct.pack(">HHIH", 15, 1, 60, len(rdata)) + rdata
    assert parse_mx_response(packet, 7) == ["mx.acme.de"]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda q: _response(q, [(10, "mx.example.com")], qid=999),  # wrong id
        lambda q: _response(q, [(10, "mx.example.com")], rcode=3),  # NXDOMAIN
        lambda q: _response(q, [(10, "mx.example.com")])[:-5],  # truncated
        lambda q: b"",
        lambda q: b"\x00" * 11,
        lambda q: q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + b"\xc0\x0c",  # pointer loop
    ],
)
def test_mx_packet_garbage(mutate) -> None:
    query = build_mx_query("example.com", 42)
    assert parse_mx_response(mutate(query), 42) == []


def test_dns_mx_lookup_without_resolver_returns_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(detect_module, "_nameservers", lambda: [])
    assert dns_mx_lookup("example.com") == []


def test_dns_mx_lookup_socket_error_returns_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    class Boom:
        def __init__(self, *a, **k) -> None:
            raise OSError("no network")

    monkeypatch.setattr(detect_module, "_nameservers", lambda: ["192.0.2.53"])
    monkeypatch.setattr(detect_module.socket, "socket", Boom)
    assert dns_mx_lookup("example.com") == []
