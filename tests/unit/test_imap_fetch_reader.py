"""The bulk FETCH reader on server output that Dovecot does not send in the integration
tests: other item orders, quoted and NIL bodies, split and unsolicited responses,
interleaved untagged data, errors."""

from __future__ import annotations

import imaplib
import io
from datetime import UTC, datetime

import pytest

from mailsync.providers.imap.fetch import read_fetch

pytestmark = pytest.mark.unit

BODY = b"Subject: hi\r\n\r\n{5}\r\nnot a literal: a literal's bytes are never scanned\r\n)\r\n"


def run(wire: bytes, tag: bytes = b"A7") -> tuple[dict, list]:
    stream = io.BytesIO(wire)
    seen: list = []
    out = read_fetch(stream.readline, stream.read, tag, lambda kind, data: seen.append((kind, data)))
    assert stream.read() == b"", "everything up to the tagged response is consumed, nothing after"
    return out, seen


def test_literal_bodies_in_any_item_order_with_untagged_data_between() -> None:
    wire = (
        b'* 1 FETCH (UID 10 FLAGS (\\Seen $Forwarded) INTERNALDATE " 5-Mar-2024 14:30:00 +0100" BODY[] {%d}\r\n'
        % len(BODY)
        + BODY
        + b")\r\n"
        + b"* 3 EXISTS\r\n"
        + b'* 2 FETCH (BODY[] {3}\r\nabc INTERNALDATE "31-Dec-2023 23:59:59 -0800" FLAGS () UID 11)\r\n'
        + b"A7 OK Fetch completed.\r\n"
    )
    out, seen = run(wire)
    assert sorted(out) == [10, 11]
    assert out[10].raw == BODY and out[10].flags == (b"\\Seen", b"$Forwarded")
    assert out[10].internal_date == datetime(2024, 3, 5, 13, 30, tzinfo=UTC)
    assert out[11].raw == b"abc" and out[11].flags == ()
    assert out[11].internal_date == datetime(2024, 1, 1, 7, 59, 59, tzinfo=UTC)
    assert seen == [("EXISTS", b"3")]


def test_quoted_and_nil_bodies() -> None:
    wire = (
        b'* 1 FETCH (UID 1 BODY[] "say \\"hi\\" \\\\ bye")\r\n* 2 FETCH (UID 2 BODY[] NIL)\r\nA7 OK done\r\n'
    )
    out, _ = run(wire)
    assert out[1].raw == b'say "hi" \\ bye'
    assert out[2].raw is None


def test_split_responses_merge_and_unsolicited_ones_without_uid_are_dropped() -> None:
    wire = (
        b"* 1 FETCH (FLAGS (\\Seen))\r\n"  # unsolicited: no UID
        b"* 1 FETCH (UID 5 BODY[] {2}\r\nhi)\r\n"
        b"* 1 FETCH (UID 5 FLAGS (\\Flagged))\r\n"
        b"A7 OK done\r\n"
    )
    out, _ = run(wire)
    assert list(out) == [5]
    assert out[5].raw == b"hi" and out[5].flags == (b"\\Flagged",)


def test_lowercase_items_and_modseq_are_read() -> None:
    out, _ = run(b"* 1 FETCH (uid 9 modseq (12345) flags (\\Seen) body[] {1}\r\nx)\r\nA7 OK done\r\n")
    assert out[9].raw == b"x" and out[9].flags == (b"\\Seen",)


def test_other_tags_and_continuations_are_not_completion() -> None:
    out, _ = run(b"+ go ahead\r\nA70 OK not ours\r\n* 1 FETCH (UID 1 BODY[] {1}\r\nx)\r\nA7 OK done\r\n")
    assert list(out) == [1]


@pytest.mark.parametrize("status", [b"NO", b"BAD"])
def test_no_and_bad_raise_with_the_server_text(status: bytes) -> None:
    with pytest.raises(imaplib.IMAP4.error, match="Some messages could not be FETCHed"):
        run(b"* 1 FETCH (UID 1 BODY[] {1}\r\nx)\r\nA7 " + status + b" Some messages could not be FETCHed\r\n")


def test_bye_and_eof_abort() -> None:
    with pytest.raises(imaplib.IMAP4.abort, match="shutting down"):
        run(b"* BYE server shutting down\r\n")
    with pytest.raises(imaplib.IMAP4.abort):
        read_fetch(io.BytesIO(b"* 1 FETCH (UID 1 BODY[] {1}\r\nx)\r\n").readline, io.BytesIO().read, b"A7")


def test_unpadded_days_and_unparsable_internaldates() -> None:
    out, _ = run(
        b'* 1 FETCH (UID 1 INTERNALDATE "5-Mar-2024 14:30:00 +0000" BODY[] {1}\r\nx)\r\nA7 OK done\r\n'
    )
    assert out[1].internal_date == datetime(2024, 3, 5, 14, 30, tzinfo=UTC)
    out, _ = run(b'* 1 FETCH (UID 1 INTERNALDATE "garbage" BODY[] {1}\r\nx)\r\nA7 OK done\r\n')
    assert out[1].internal_date is None
