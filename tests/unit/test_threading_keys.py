"""base_subject, thread_candidates, root_id and subject_key."""

from __future__ import annotations

import hashlib
import json

import pytest

from mailsync.domain.models import Address, ParsedMessage
from mailsync.domain.threading import base_subject, root_id, subject_key, thread_candidates

pytestmark = pytest.mark.unit


def _msg(
    subject: str = "Hello",
    message_id: str | None = "own@example.com",
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    from_: list[str] | None = None,
    to: list[str] | None = None,
    cc: list[str] | None = None,
    bcc: list[str] | None = None,
) -> ParsedMessage:
    def addrs(values: list[str] | None) -> list[Address]:
        return [Address(None, v) for v in values or []]

    return ParsedMessage(
        message_id=message_id,
        in_reply_to=in_reply_to,
        references=list(references or []),
        subject=subject,
        from_=addrs(from_),
        to=addrs(to),
        cc=addrs(cc),
        bcc=addrs(bcc),
        reply_to=[],
        date=None,
        text=None,
        html=None,
        snippet="",
    )


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Hello", "hello"),
        ("Re: Hello", "hello"),
        ("RE: Re: re: Hello", "hello"),
        ("Fwd: Hello", "hello"),
        ("FW: Hello", "hello"),
        ("Fw: RE: Hello", "hello"),
        ("AW: Angebot", "angebot"),
        ("WG: AW: Angebot", "angebot"),
        ("Antw: Offerte", "offerte"),
        ("SV: Møte", "møte"),
        ("VS: SV: Møte", "møte"),
        ("Re[2]: Hello", "hello"),
        ("Re(3): Hello", "hello"),
        ("Re : Hello", "hello"),
        ("Re:Hello", "hello"),
        ("[team] Re: Hello", "hello"),
        ("Re: [team] Hello", "hello"),
        ("[team] [ext] RE: [team] AW: Hello", "hello"),
        ("Re: [team] Re: Hello", "hello"),
        ("Hello (fwd)", "hello"),
        ("Hello (fwd) (FWD)", "hello"),
        ("[Fwd: Hello]", "hello"),
        ("Re: [Fwd: Re: Hello]", "hello"),
        ("  Quarterly\t  Report \n", "quarterly report"),
        ("[team]", "[team]"),
        ("Re: [team]", "[team]"),
        ("Re:", ""),
        ("", ""),
        ("Regarding the offer", "regarding the offer"),
        ("Reply needed", "reply needed"),
        ("Fwdx: Hello", "fwdx: hello"),
        ("Re: Fwd: AW: WG: Hello", "hello"),
        ("RE：Hello", "hello"),
    ],
)
def test_base_subject(subject: str, expected: str) -> None:
    assert base_subject(subject) == expected


def test_base_subject_none() -> None:
    assert base_subject(None) == ""


def test_thread_candidates_order_and_dedup() -> None:
    msg = _msg(
        message_id="Own@Example.com",
        in_reply_to="Parent@example.com",
        references=["root@example.com", "mid@example.com", "parent@example.com", "own@example.com"],
    )
    assert thread_candidates(msg) == ["parent@example.com", "mid@example.com", "root@example.com"]


def test_thread_candidates_without_in_reply_to() -> None:
    msg = _msg(references=["a@x", "b@x"])
    assert thread_candidates(msg) == ["b@x", "a@x"]


def test_thread_candidates_empty() -> None:
    assert thread_candidates(_msg()) == []
    assert thread_candidates(_msg(message_id=None)) == []


def test_root_id() -> None:
    assert root_id(_msg(references=["Root@x", "mid@x"], in_reply_to="mid@x")) == "root@x"
    assert root_id(_msg(in_reply_to="Parent@x")) == "parent@x"
    assert root_id(_msg(message_id="Own@x")) == "own@x"
    assert root_id(_msg(message_id=None)) is None


def test_subject_key_same_for_sent_and_received_copies() -> None:
    me = "Me@Company.com"
    sent = _msg(subject="Angebot 2024", from_=["me@company.com"], to=["Kunde@Client.de"])
    reply = _msg(subject="AW: Angebot 2024", from_=["kunde@client.de"], to=["ME@company.com"])
    forward_back = _msg(
        subject="Re: [ext] AW: Angebot 2024", from_=["kunde@client.de"], to=["me@company.com"]
    )
    key = subject_key(sent, me)
    assert key is not None and len(key) == 64
    assert subject_key(reply, me) == key
    assert subject_key(forward_back, me) == key


def test_subject_key_depends_on_participants_and_subject() -> None:
    me = "me@company.com"
    base = _msg(subject="Offer", from_=["a@x.com"], to=[me])
    other_person = _msg(subject="Offer", from_=["b@x.com"], to=[me])
    with_cc = _msg(subject="Offer", from_=["a@x.com"], to=[me], cc=["c@x.com"])
    other_subject = _msg(subject="Invoice", from_=["a@x.com"], to=[me])
    keys = {subject_key(m, me) for m in (base, other_person, with_cc, other_subject)}
    assert len(keys) == 4


def test_subject_key_ignores_bcc_and_duplicates() -> None:
    me = "me@company.com"
    a = _msg(subject="Offer", from_=[me], to=["a@x.com"], bcc=["boss@company.com"])
    b = _msg(subject="Offer", from_=["A@X.com"], to=[me, "a@x.com"])
    assert subject_key(a, me) == subject_key(b, me)


def test_subject_key_documented_digest() -> None:
    msg = _msg(subject="Re: Offer", from_=["b@x.com"], to=["me@company.com", "a@x.com"])
    canonical = json.dumps(["offer", ["a@x.com", "b@x.com"]], separators=(",", ":"))
    assert subject_key(msg, "me@company.com") == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize("subject", ["", "Re:", "   ", "AW: WG:"])
def test_subject_key_none_for_empty_base_subject(subject: str) -> None:
    assert subject_key(_msg(subject=subject, from_=["a@x.com"]), "me@x.com") is None
