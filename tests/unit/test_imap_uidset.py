"""UID-set helpers and folder-role assignment of the IMAP provider (no I/O)."""

from __future__ import annotations

import random

import pytest

from mailsync.providers.imap.roles import folder_infos
from mailsync.providers.imap.uidset import (
    MAX_UID_SET_LEN,
    _parse_vanished,
    compress_uids,
    format_uid_set,
    parse_uid_set,
)
from mailsync.providers.imap.writes import _parse_copyuid

pytestmark = pytest.mark.unit


def test_compress_ranges_sorted_and_deduplicated():
    assert compress_uids([9, 1, 2, 3, 4, 5, 7, 10, 11, 12, 3]) == ["1:5,7,9:12"]
    assert compress_uids([]) == []
    assert compress_uids([42]) == ["42"]
    assert compress_uids([1, 3, 5]) == ["1,3,5"]


def test_parse_uid_set():
    assert parse_uid_set("1:3,7") == [1, 2, 3, 7]
    assert parse_uid_set("") == []
    assert parse_uid_set(b"5:3,4,10") == [3, 4, 5, 10]
    for bad in ("1:*", "a", "0", "1:", ",:2", "3:0"):
        with pytest.raises(ValueError):
            parse_uid_set(bad)


def test_chunks_stay_below_the_limit_and_round_trip():
    rng = random.Random(7)
    uids = sorted(rng.sample(range(1, 5_000_000), 20_000))  # sparse: few ranges
    chunks = compress_uids(uids)
    assert len(chunks) > 1
    assert all(0 < len(c) <= MAX_UID_SET_LEN for c in chunks)
    back = [u for c in chunks for u in parse_uid_set(c)]
    assert back == uids
    # Every chunk is a complete set: no element is split across chunks.
    assert all(not c.startswith((",", ":")) and not c.endswith((",", ":")) for c in chunks)


def test_small_max_len():
    assert compress_uids([1, 2, 3, 10, 20, 30], max_len=5) == ["1:3", "10,20", "30"]
    with pytest.raises(ValueError):
        compress_uids([1000, 1001], max_len=3)


def test_format_uid_set_is_one_string():
    uids = list(range(1, 1001)) + list(range(2000, 5000, 2))
    text = format_uid_set(uids)
    assert "," in text and text.startswith("1:1000,2000,2002")
    assert parse_uid_set(text) == uids
    assert format_uid_set([]) == ""


def test_parse_vanished_lines():
    assert _parse_vanished(b"(EARLIER) 1:3,7") == [1, 2, 3, 7]
    assert _parse_vanished(b"41") == [41]
    assert _parse_vanished("(EARLIER) 5") == [5]


def test_parse_copyuid_pairs_by_position():
    assert _parse_copyuid([b"[COPYUID 123 4,2:3 10:12] Moved UIDs."]) == {4: 10, 2: 11, 3: 12}
    assert _parse_copyuid([b"Move completed."]) == {}


def test_folder_roles_special_use_and_name_fallback():
    listing = [
        ((b"\\HasNoChildren",), b"/", "INBOX"),
        ((b"\\HasNoChildren", b"\\Sent"), b"/", "Sent"),
        ((b"\\HasNoChildren",), b"/", "Sent Items"),  # role already taken by \Sent
        ((b"\\HasNoChildren",), b"/", "Papierkorb"),
        ((b"\\HasNoChildren",), b"/", "Entwürfe"),
        ((b"\\HasChildren",), b"/", "Archiv"),
        ((b"\\HasNoChildren",), b"/", "Archiv/Spam"),
        ((b"\\HasNoChildren",), b"/", "Spam"),
        ((b"\\Noselect", b"\\HasChildren"), b"/", "Shared"),
        ((b"\\HasNoChildren",), b"/", "Kunden/ACME"),
    ]
    infos = {f.name: f for f in folder_infos(listing, {"INBOX": 3})}
    assert "Shared" not in infos
    assert infos["INBOX"].role == "inbox" and infos["INBOX"].messages == 3
    assert infos["Sent"].role == "sent"
    assert infos["Sent Items"].role is None
    assert infos["Papierkorb"].role == "trash"
    assert infos["Entwürfe"].role == "drafts"
    assert infos["Archiv"].role == "archive"
    assert infos["Spam"].role == "junk"  # the shallow one wins
    assert infos["Archiv/Spam"].role is None
    assert infos["Kunden/ACME"].role is None and infos["Kunden/ACME"].messages is None
