"""ImapProvider against a real Dovecot (tests/support/dovecot.py)."""

# The Dovecot fixtures are imported below and used as test parameters.
# ruff: noqa: F811

from __future__ import annotations

import email
import socket
from datetime import UTC, datetime, timedelta

import pytest

from mailsync.domain.ports import (
    AuthFailed,
    ChangeBatch,
    ConnectionFailed,
    FolderGone,
    PermissionDenied,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    Remove,
    Reset,
    SetFlags,
    TimedOut,
    TlsFailed,
    Upsert,
)
from mailsync.providers.imap import ImapProvider, imap_login_check
from tests.support.dovecot import Dovecot, free_port, make_mail
from tests.support.fixtures import (  # noqa: F401
    dovecot,
    dovecot_nocondstore,
    imap_user,
    imap_user_nocondstore,
)

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC).replace(microsecond=0)
SINCE = NOW - timedelta(days=30)
OLD = NOW - timedelta(days=90)


def provider(server: Dovecot, user: tuple[str, str]) -> ImapProvider:
    return ImapProvider(server.host, server.port, "none", user[0], user[1], timeout=10)


def sync(prov: ImapProvider, folder: str, cursor=None, since=SINCE, batch_size=100) -> list[ChangeBatch]:
    return list(prov.changes(folder, cursor, since, batch_size=batch_size))


def flat(batches: list[ChangeBatch]) -> list:
    return [c for b in batches for c in b.changes]


def kinds(batches: list[ChangeBatch]) -> list[tuple[str, str]]:
    return [(type(c).__name__, getattr(c, "ref", "")) for c in flat(batches)]


def message_id(raw: bytes) -> str:
    return email.message_from_bytes(raw)["Message-ID"]


def full_sync(server: Dovecot, user, folder="INBOX", since=SINCE) -> dict:
    with provider(server, user) as prov:
        batches = sync(prov, folder, since=since)
    assert batches[-1].cursor["phase"] == "delta"
    return batches[-1].cursor


# -- login -------------------------------------------------------------------------------------


def test_login_ok(dovecot, imap_user):
    with provider(dovecot, imap_user) as prov:
        assert prov.commands[0] == "LOGIN"
        assert prov.qresync
    imap_login_check(
        {
            "host": dovecot.host,
            "port": dovecot.port,
            "security": "none",
            "username": imap_user[0],
            "password": imap_user[1],
        }
    )


def test_bad_password_is_auth_failed(dovecot, imap_user):
    with pytest.raises(AuthFailed) as err:
        provider(dovecot, (imap_user[0], "wrong")).connect()
    assert "AUTHENTICATIONFAILED" in str(err.value) or "Authentication failed" in str(err.value)
    with pytest.raises(AuthFailed):
        imap_login_check(
            {
                "host": dovecot.host,
                "port": dovecot.port,
                "security": "none",
                "username": "nobody",
                "password": "x",
            }
        )


def test_closed_port_is_connection_failed():
    with pytest.raises(ConnectionFailed):
        ImapProvider("127.0.0.1", free_port(), "none", "u", "p", timeout=5).connect()
    with pytest.raises(ConnectionFailed):
        imap_login_check(
            {"host": "127.0.0.1", "port": free_port(), "security": "ssl", "username": "u", "password": "p"}
        )


def test_tls_against_plain_port_is_connection_failed(dovecot, imap_user):
    with pytest.raises(ConnectionFailed):
        ImapProvider(dovecot.host, dovecot.port, "ssl", *imap_user, timeout=5).connect()


# -- folders -----------------------------------------------------------------------------------


def test_list_folders_roles_and_utf7_names(dovecot, imap_user):
    user = imap_user[0]
    dovecot.create_folder(user, "Kunden/Müller & Söhne")
    dovecot.append(user, "INBOX", make_mail("one"))
    dovecot.append(user, "Kunden/Müller & Söhne", make_mail("two"))
    with provider(dovecot, imap_user) as prov:
        folders = {f.name: f for f in prov.list_folders()}
    roles = {name: f.role for name, f in folders.items()}
    assert roles["INBOX"] == "inbox"
    assert roles["Sent"] == "sent"
    assert roles["Drafts"] == "drafts"
    assert roles["Trash"] == "trash"
    assert roles["Junk"] == "junk"
    assert roles["Archive"] == "archive"
    assert roles["Kunden/Müller & Söhne"] is None
    assert folders["Kunden/Müller & Söhne"].messages == 1
    assert folders["INBOX"].messages == 1
    assert "Kunden" not in folders or folders["Kunden"].selectable  # \Noselect parents are skipped


# -- initial load ------------------------------------------------------------------------------


def test_initial_load_respects_since_exactly(dovecot, imap_user):
    user = imap_user[0]
    recent = dovecot.append(user, "INBOX", make_mail("recent"), flags=[b"\\Seen"], internal_date=NOW)
    unread = dovecot.append(user, "INBOX", make_mail("unread"), internal_date=NOW - timedelta(days=1))
    dovecot.append(user, "INBOX", make_mail("old"), internal_date=OLD)
    dovecot.append(user, "INBOX", make_mail("just before"), internal_date=SINCE - timedelta(minutes=1))
    at_since = dovecot.append(user, "INBOX", make_mail("at since"), internal_date=SINCE)
    after = dovecot.append(user, "INBOX", make_mail("just after"), internal_date=SINCE + timedelta(minutes=1))

    with provider(dovecot, imap_user) as prov:
        batches = sync(prov, "INBOX")
    assert len(batches) == 1
    batch = batches[0]
    assert batch.initial and batch.progress == (4, 4)
    assert batch.cursor["phase"] == "delta" and batch.cursor["mode"] == "qresync"
    ups = {int(c.ref): c for c in batch.changes}
    assert set(ups) == {recent, unread, at_since, after}
    assert all(isinstance(c, Upsert) and c.folder == "INBOX" for c in ups.values())
    assert ups[recent].unread is False and ups[unread].unread is True
    assert ups[recent].internal_date == NOW and ups[recent].internal_date.tzinfo is not None
    assert ups[recent].internal_date.utcoffset() == timedelta(0)
    assert email.message_from_bytes(ups[at_since].raw)["Subject"] == "at since"


def test_initial_load_of_empty_folder_yields_one_complete_batch(dovecot, imap_user):
    with provider(dovecot, imap_user) as prov:
        batches = sync(prov, "Drafts")
    assert len(batches) == 1
    assert batches[0].changes == [] and batches[0].cursor["phase"] == "delta"
    assert batches[0].progress == (0, 0)


def test_initial_load_does_not_mark_read(dovecot, imap_user):
    user = imap_user[0]
    uid = dovecot.append(user, "INBOX", make_mail("unread"))
    with provider(dovecot, imap_user) as prov:
        sync(prov, "INBOX")
    with dovecot.client(user) as c:
        c.select_folder("INBOX", readonly=True)
        assert b"\\Seen" not in c.get_flags([uid])[uid]


def test_batches_and_resume_from_intermediate_cursor(dovecot, imap_user):
    user = imap_user[0]
    uids = dovecot.append_many(user, "INBOX", [make_mail(f"m{i}") for i in range(7)])
    with provider(dovecot, imap_user) as prov:
        batches = sync(prov, "INBOX", batch_size=3)
    assert [len(b.changes) for b in batches] == [3, 3, 1]
    assert [b.progress for b in batches] == [(3, 7), (6, 7), (7, 7)]
    assert [b.cursor["phase"] for b in batches] == ["initial", "initial", "delta"]
    assert [b.done for b in batches] == [False, False, True]
    assert all(b.initial for b in batches)
    assert [int(c.ref) for c in flat(batches)] == uids

    # Crash after the first batch; mail arriving meanwhile is left to the delta.
    late = dovecot.append(user, "INBOX", make_mail("late"))
    with provider(dovecot, imap_user) as prov:
        resumed = sync(prov, "INBOX", cursor=batches[0].cursor, batch_size=3)
        assert [int(c.ref) for c in flat(resumed)] == uids[3:]
        assert resumed[0].progress == (6, 7)
        final = resumed[-1].cursor
        assert final["phase"] == "delta" and final["uidnext"] == batches[0].cursor["uidnext"]
        delta = sync(prov, "INBOX", cursor=final)
    assert kinds(delta) == [("Upsert", str(late))]


def test_initial_load_stopped_between_batches_leaves_the_connection_usable(dovecot, imap_user):
    """The next batch is requested before the current one is handed over (pipelining); a
    consumer that stops there (time budget) must not leave its responses on the wire."""
    user = imap_user[0]
    uids = dovecot.append_many(user, "INBOX", [make_mail(f"p{i}") for i in range(5)])
    dovecot.append(user, "Archive", make_mail("in archive"))
    with provider(dovecot, imap_user) as prov:
        stream = prov.changes("INBOX", None, SINCE, batch_size=2)
        first = next(stream)
        assert [int(c.ref) for c in first.changes] == uids[:2]
        stream.close()  # the FETCH of uids[2:4] is in flight here
        archive = sync(prov, "Archive")
        assert [email.message_from_bytes(c.raw)["Subject"] for c in flat(archive)] == ["in archive"]
        resumed = sync(prov, "INBOX", cursor=first.cursor, batch_size=2)
    assert [int(c.ref) for c in flat(resumed)] == uids[2:]


# -- delta (QRESYNC) ---------------------------------------------------------------------------


def test_delta_new_flags_expunge_and_moves(dovecot, imap_user):
    user = imap_user[0]
    a, b, c, d = dovecot.append_many(user, "INBOX", [make_mail(f"m{i}") for i in range(4)])
    cursor = full_sync(dovecot, imap_user)
    archive_cursor = full_sync(dovecot, imap_user, "Archive")
    old_in_archive = dovecot.append(user, "Archive", make_mail("old archived"), internal_date=OLD)
    moved_raw = make_mail("to be moved", message_id="moved-1@example.com")
    e = dovecot.append(user, "INBOX", moved_raw)
    new_mail = dovecot.append(user, "INBOX", make_mail("new"))

    dovecot.set_seen(user, "INBOX", [a], True)
    dovecot.delete(user, "INBOX", [b])
    dovecot.move(user, "INBOX", [c], "Archive")
    dovecot.move(user, "INBOX", [e], "Archive")
    dovecot.move(user, "Archive", [old_in_archive], "INBOX")

    with provider(dovecot, imap_user) as prov:
        batches = sync(prov, "INBOX", cursor=cursor)
        got = flat(batches)
        assert SetFlags("INBOX", str(a), unread=False) in got
        assert Remove("INBOX", str(b)) in got
        assert Remove("INBOX", str(c)) in got
        upserts = [x for x in got if isinstance(x, Upsert)]
        # e arrived and left again before the sync; the old mail moved in stays out.
        assert [int(x.ref) for x in upserts] == [new_mail]
        assert not any(getattr(x, "ref", None) == str(d) for x in got)
        assert batches[-1].cursor["uidnext"] > cursor["uidnext"]
        assert batches[-1].cursor["modseq"] > cursor["modseq"]

        archived = flat(sync(prov, "Archive", cursor=archive_cursor))
    archived_ids = {message_id(x.raw) for x in archived if isinstance(x, Upsert)}
    assert "<moved-1@example.com>" in archived_ids
    assert len(archived_ids) == 2  # c and e; the old mail was never in range
    assert not any(isinstance(x, Remove) for x in archived)  # the old mail was never synced


def test_move_shows_remove_in_source_and_upsert_with_same_message_id(dovecot, imap_user):
    user = imap_user[0]
    uid = dovecot.append(user, "INBOX", make_mail("deal", message_id="deal-42@example.com"))
    inbox = full_sync(dovecot, imap_user)
    archive = full_sync(dovecot, imap_user, "Archive")
    dovecot.move(user, "INBOX", [uid], "Archive")
    with provider(dovecot, imap_user) as prov:
        assert flat(sync(prov, "INBOX", cursor=inbox)) == [Remove("INBOX", str(uid))]
        target = flat(sync(prov, "Archive", cursor=archive))
    assert len(target) == 1 and isinstance(target[0], Upsert)
    assert message_id(target[0].raw) == "<deal-42@example.com>"


def test_delta_resumes_from_intermediate_cursor(dovecot, imap_user):
    user = imap_user[0]
    first = dovecot.append(user, "INBOX", make_mail("first"))
    cursor = full_sync(dovecot, imap_user)
    dovecot.set_seen(user, "INBOX", [first], True)
    new = dovecot.append_many(user, "INBOX", [make_mail(f"n{i}") for i in range(3)])
    with provider(dovecot, imap_user) as prov:
        batches = sync(prov, "INBOX", cursor=cursor, batch_size=1)
        assert kinds(batches) == [("SetFlags", str(first))] + [("Upsert", str(u)) for u in new]
        assert all(len([c for c in b.changes if isinstance(c, Upsert)]) <= 1 for b in batches)
        assert [b.done for b in batches] == [False, False, False, True]
        # Crash after the second yielded batch: the rest comes exactly once.
        resumed = sync(prov, "INBOX", cursor=batches[1].cursor, batch_size=1)
        assert kinds(resumed) == [("Upsert", str(u)) for u in new[1:]]
        assert resumed[-1].cursor == batches[-1].cursor


def test_unchanged_folder_yields_nothing(dovecot, imap_user):
    dovecot.append(imap_user[0], "INBOX", make_mail("x"))
    cursor = full_sync(dovecot, imap_user)
    with provider(dovecot, imap_user) as prov:
        assert sync(prov, "INBOX", cursor=cursor) == []
        # Also right after the same session had the folder selected.
        sync(prov, "INBOX")
        assert sync(prov, "INBOX", cursor=cursor) == []


def test_uidvalidity_change_resets_and_reloads(dovecot, imap_user):
    user = imap_user[0]
    dovecot.create_folder(user, "Projekt")
    dovecot.append_many(user, "Projekt", [make_mail("p1"), make_mail("p2")])
    cursor = full_sync(dovecot, imap_user, "Projekt")
    dovecot.delete_folder(user, "Projekt")
    dovecot.create_folder(user, "Projekt")
    uid = dovecot.append(user, "Projekt", make_mail("p3"))
    dovecot.append(user, "Projekt", make_mail("ancient"), internal_date=OLD)
    assert dovecot.status(user, "Projekt")[b"UIDVALIDITY"] != cursor["uidvalidity"]
    with provider(dovecot, imap_user) as prov:
        batches = sync(prov, "Projekt", cursor=cursor)
    changes = flat(batches)
    assert changes[0] == Reset("Projekt")
    assert [(type(x).__name__, x.ref) for x in changes[1:]] == [("Upsert", str(uid))]
    assert batches[0].initial
    assert batches[-1].cursor["uidvalidity"] != cursor["uidvalidity"]
    assert batches[-1].cursor["phase"] == "delta"


def test_folder_gone(dovecot, imap_user):
    user = imap_user[0]
    dovecot.create_folder(user, "Temp")
    dovecot.append(user, "Temp", make_mail("t"))
    cursor = full_sync(dovecot, imap_user, "Temp")
    dovecot.rename_folder(user, "Temp", "Temp2")
    with provider(dovecot, imap_user) as prov:
        with pytest.raises(FolderGone):
            sync(prov, "Temp", cursor=cursor)
        with pytest.raises(FolderGone):
            sync(prov, "Temp")
        with pytest.raises(FolderGone):
            sync(prov, "Temp", cursor={**cursor, "phase": "initial", "initial_done_uid": 0})
        # The session is still usable afterwards.
        assert len(flat(sync(prov, "Temp2"))) == 1


@pytest.fixture(scope="module")
def big_folders(dovecot):
    """One user with a 50-mail and a 500-mail folder, fully synced."""
    user, password = dovecot.new_user("big")
    dovecot.create_folder(user, "F50")
    dovecot.create_folder(user, "F500")
    dovecot.append_many(user, "F50", [make_mail(f"m{i}") for i in range(50)])
    dovecot.append_many(user, "F500", [make_mail(f"m{i}") for i in range(500)])
    cursors = {}
    with ImapProvider(dovecot.host, dovecot.port, "none", user, password) as prov:
        for folder in ("F50", "F500"):
            batches = list(prov.changes(folder, None, SINCE, batch_size=500))
            assert sum(len(b.changes) for b in batches) == int(folder[1:])
            cursors[folder] = batches[-1].cursor
    dovecot.wait_for_logouts(user, 5)  # 2 CREATE, 2 APPEND and 1 sync session
    return user, password, cursors


def test_unchanged_folder_costs_o1(dovecot, big_folders):
    user, password, cursors = big_folders
    cost = {}
    for folder in ("F50", "F500"):
        before = dovecot.logged_out_sessions(user)
        bytes_before = dovecot.session_bytes(user)
        with ImapProvider(dovecot.host, dovecot.port, "none", user, password) as prov:
            start = len(prov.commands)
            assert list(prov.changes(folder, cursors[folder], SINCE)) == []
            sync_commands = prov.commands[start:]
            all_commands = list(prov.commands)
        dovecot.wait_for_logouts(user, before + 1)
        cost[folder] = (sync_commands, all_commands, dovecot.session_bytes(user) - bytes_before)
    assert cost["F50"][0] == cost["F500"][0] == ["STATUS"]
    assert cost["F50"][1] == cost["F500"][1]
    assert len(cost["F500"][1]) <= 4  # LOGIN, ENABLE, STATUS, LOGOUT
    assert cost["F50"][2] < 2048 and cost["F500"][2] < 2048
    assert abs(cost["F50"][2] - cost["F500"][2]) < 16  # only digits of the numbers differ


def test_changed_big_folder_fetches_only_changes(dovecot, big_folders):
    user, password, cursors = big_folders
    dovecot.set_seen(user, "F500", [17], True)
    with ImapProvider(dovecot.host, dovecot.port, "none", user, password) as prov:
        start, bytes_in = len(prov.commands), prov.bytes_in
        batches = list(prov.changes("F500", cursors["F500"], SINCE))
        assert flat(batches) == [SetFlags("F500", "17", unread=False)]
        assert prov.commands[start:] == ["STATUS", "EXAMINE", "UID FETCH"]
        assert prov.bytes_in - bytes_in < 2048


# -- without CONDSTORE -------------------------------------------------------------------------


def test_fallback_without_condstore(dovecot_nocondstore, imap_user_nocondstore):
    server, user = dovecot_nocondstore, imap_user_nocondstore[0]
    a, b, c = server.append_many(user, "INBOX", [make_mail(f"m{i}") for i in range(3)])
    server.append(user, "INBOX", make_mail("old"), internal_date=OLD)
    with provider(server, imap_user_nocondstore) as prov:
        assert not prov.qresync and b"CONDSTORE" not in prov.capabilities
        batches = sync(prov, "INBOX", batch_size=2)
        assert [int(x.ref) for x in flat(batches)] == [a, b, c]
        cursor = batches[-1].cursor
        assert cursor["mode"] == "plain" and "modseq" not in cursor
        assert cursor["known"] == f"{a}:{c}"

        # Unchanged: nothing, at a cost that does not depend on new mail or deletions.
        start = len(prov.commands)
        assert sync(prov, "INBOX", cursor=cursor) == []
        assert prov.commands[start:] == ["EXAMINE", "UID FETCH"]

    server.set_seen(user, "INBOX", [a], True)
    server.delete(user, "INBOX", [b])
    new = server.append(user, "INBOX", make_mail("new"))
    server.append(user, "Archive", make_mail("old elsewhere"), internal_date=OLD)
    old_uid = server.uids(user, "Archive")[-1]
    server.move(user, "Archive", [old_uid], "INBOX")
    with provider(server, imap_user_nocondstore) as prov:
        batches = sync(prov, "INBOX", cursor=cursor)
        got = flat(batches)
        assert Remove("INBOX", str(b)) in got
        assert SetFlags("INBOX", str(a), unread=False) in got
        assert [int(x.ref) for x in got if isinstance(x, Upsert)] == [new]
        assert len(got) == 3
        cursor2 = batches[-1].cursor
        assert (
            set(cursor2["known"].split(",")) == {str(a), f"{c}:{new}"} or cursor2["known"] == f"{a},{c},{new}"
        )
        assert sync(prov, "INBOX", cursor=cursor2) == []

    # A deletion alone (no new mail) is found through the EXISTS count.
    server.delete(user, "INBOX", [c])
    with provider(server, imap_user_nocondstore) as prov:
        assert flat(sync(prov, "INBOX", cursor=cursor2)) == [Remove("INBOX", str(c))]


# -- write-through -----------------------------------------------------------------------------


def test_write_through_helpers(dovecot, imap_user):
    user = imap_user[0]
    with provider(dovecot, imap_user) as prov:
        uid = prov.append("INBOX", make_mail("draft-ish", message_id="wt@example.com"), flags=[], date=NOW)
        assert uid is not None
        prov.set_seen("INBOX", [uid], True)
        with dovecot.client(user) as c:
            c.select_folder("INBOX", readonly=True)
            assert b"\\Seen" in c.get_flags([uid])[uid]
        mapping = prov.move("INBOX", [uid], "Archive")
        assert set(mapping) == {uid}
        with pytest.raises(FolderGone):
            prov.append("Nope", make_mail("x"))
    assert dovecot.uids(user, "INBOX") == []
    assert dovecot.uids(user, "Archive") == [mapping[uid]]


# -- completeness check: inventory and fetch ---------------------------------------------------


def test_inventory_lists_exactly_the_refs_the_cursor_covers(dovecot, imap_user):
    user = imap_user[0]
    a, b = dovecot.append_many(user, "INBOX", [make_mail("a"), make_mail("b")])
    dovecot.append(user, "INBOX", make_mail("old"), internal_date=OLD)
    # The day before since: found by the day-granular SEARCH SINCE, dropped by its INTERNALDATE.
    dovecot.append(user, "INBOX", make_mail("just too old"), internal_date=SINCE - timedelta(hours=2))
    edge = dovecot.append(user, "INBOX", make_mail("just in"), internal_date=SINCE + timedelta(hours=2))
    cursor = full_sync(dovecot, imap_user)
    late = dovecot.append(user, "INBOX", make_mail("arrived after the sync"))
    with provider(dovecot, imap_user) as prov:
        inv = prov.inventory("INBOX", cursor, SINCE)
        assert inv.refs == {str(a), str(b), str(edge)}  # not old, not too old, not late
        assert str(late) not in inv.refs
        # Exactly the refs the initial load stores.
        assert inv.refs == {c.ref for c in flat(sync(prov, "INBOX")) if isinstance(c, Upsert)} - {str(late)}
        assert 3 <= inv.requests <= 4  # EXAMINE, 2 x SEARCH (+ the boundary's INTERNALDATE)
        # No cursor: nothing is covered yet. Another UIDVALIDITY: empty (the next sync resets).
        assert prov.inventory("INBOX", None, SINCE).refs == frozenset()
        assert (
            prov.inventory("INBOX", {**cursor, "uidvalidity": cursor["uidvalidity"] + 1}, SINCE).refs
            == frozenset()
        )
        # While the initial load runs, only the UIDs it stored so far.
        loading = {**cursor, "phase": "initial", "initial_done_uid": b}
        assert prov.inventory("INBOX", loading, SINCE).refs == {str(a), str(b)}


def test_inventory_of_1000_mails_costs_a_few_commands_and_no_body(dovecot):
    user, password = dovecot.new_user("inv")
    dovecot.create_folder(user, "Big")
    dovecot.append_many(user, "Big", [make_mail(f"m{i}", body="x" * 300 + "\n") for i in range(1000)])
    dovecot.append(
        user, "Big", make_mail("boundary", body="y" * 300 + "\n"), internal_date=SINCE + timedelta(hours=1)
    )
    with ImapProvider(dovecot.host, dovecot.port, "none", user, password) as prov:
        cursor = list(prov.changes("Big", None, SINCE, batch_size=1000))[-1].cursor
    with ImapProvider(dovecot.host, dovecot.port, "none", user, password) as prov:
        start, bytes_in = len(prov.commands), prov.bytes_in
        inv = prov.inventory("Big", cursor, SINCE)
        sent = prov.commands[start:]
        received = prov.bytes_in - bytes_in
    assert len(inv.refs) == 1001
    assert inv.requests == len(sent) == 4  # EXAMINE, SEARCH SINCE, boundary SEARCH, INTERNALDATE
    assert sent == ["EXAMINE", "UID SEARCH", "UID SEARCH", "UID FETCH"]
    # UIDs only: two SEARCH answers of ~5 bytes per mail and one INTERNALDATE, never a body
    # (the bodies alone are over 300 KB).
    assert received < 16_000


def test_fetch_builds_the_upserts_of_the_initial_load(dovecot, imap_user):
    user = imap_user[0]
    dovecot.create_folder(user, "Heal")
    uids = dovecot.append_many(user, "Heal", [make_mail(f"h{i}") for i in range(4)])
    dovecot.set_seen(user, "Heal", [uids[1]], True)
    old = dovecot.append(user, "Heal", make_mail("old"), internal_date=OLD)
    with provider(dovecot, imap_user) as prov:
        loaded = {c.ref: c for c in flat(sync(prov, "Heal")) if isinstance(c, Upsert)}
        assert set(loaded) == {str(u) for u in uids}
        dovecot.delete(user, "Heal", [uids[3]])
        start = len(prov.commands)
        got = prov.fetch("Heal", [str(uids[0]), str(uids[1]), str(uids[3]), str(old)], SINCE)
        assert "UID FETCH" in prov.commands[start:]
    # The expunged and the old one are left out; the others equal the initial load's Upserts.
    assert got == [loaded[str(uids[0])], loaded[str(uids[1])]]
    assert got[1].unread is False and got[0].unread is True
    with dovecot.client(user) as c:  # fetching never marks mail read (BODY.PEEK[])
        c.select_folder("Heal", readonly=True)
        assert b"\\Seen" not in c.get_flags([uids[0]])[uids[0]]


def test_inventory_and_fetch_of_a_gone_folder(dovecot, imap_user):
    user = imap_user[0]
    dovecot.create_folder(user, "Gone")
    uid = dovecot.append(user, "Gone", make_mail("g"))
    cursor = full_sync(dovecot, imap_user, "Gone")
    dovecot.delete_folder(user, "Gone")
    with provider(dovecot, imap_user) as prov:
        with pytest.raises(FolderGone) as err:
            prov.inventory("Gone", cursor, SINCE)
        assert err.value.kind == "mailbox_gone"
        with pytest.raises(FolderGone):
            prov.fetch("Gone", [str(uid)], SINCE)
        assert prov.inventory("INBOX", None, SINCE).refs == frozenset()  # still usable


# -- error kinds -------------------------------------------------------------------------------


def test_auth_failed_kind(dovecot, imap_user):
    with pytest.raises(AuthFailed) as err:
        provider(dovecot, (imap_user[0], "wrong")).connect()
    assert err.value.kind == "auth_failed"


def test_tls_to_a_plaintext_port_is_tls_error(dovecot, imap_user):
    with pytest.raises(TlsFailed) as err:
        ImapProvider(dovecot.host, dovecot.port, "ssl", *imap_user, timeout=5).connect()
    assert err.value.kind == "tls_error" and isinstance(err.value, ConnectionFailed)


def test_starttls_asked_of_a_server_without_it_is_tls_error(dovecot, imap_user):
    # The test Dovecot runs with ssl = no, so it offers no STARTTLS: never go on in plaintext.
    with pytest.raises(TlsFailed, match="STARTTLS"):
        ImapProvider(dovecot.host, dovecot.port, "starttls", *imap_user, timeout=5).connect()


def test_self_signed_certificate_is_tls_error(tmp_path):
    """A TLS server whose certificate no CA vouches for (here: made just now)."""
    import ssl
    import subprocess
    import threading

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert), "-days", "1"],
        check=True, capture_output=True,
    )  # fmt: skip
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    with socket.create_server(("127.0.0.1", 0)) as srv:
        port = srv.getsockname()[1]

        def serve() -> None:
            conn, _ = srv.accept()
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"* OK ready\r\n")
            except (ssl.SSLError, OSError):
                pass  # the client refuses the certificate

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        with pytest.raises(TlsFailed) as err:
            ImapProvider("127.0.0.1", port, "ssl", "u", "p", timeout=5).connect()
        t.join(5)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value) or "certificate" in str(err.value).lower()


def test_a_server_that_never_answers_is_timeout():
    with socket.create_server(("127.0.0.1", 0)) as srv:  # accepts (backlog), never greets
        port = srv.getsockname()[1]
        for security in ("none", "ssl"):
            with pytest.raises(TimedOut) as err:
                ImapProvider("127.0.0.1", port, security, "u", "p", timeout=0.5).connect()
            assert err.value.kind == "timeout" and isinstance(err.value, ConnectionFailed)


@pytest.fixture(scope="module")
def dovecot_acl():
    """A Dovecot with the ACL plugin (RFC 4314), to take the read right from one folder."""
    server = Dovecot(acl=True).start()
    try:
        yield server
    finally:
        server.stop()


def test_folder_without_read_right_is_permission_denied(dovecot_acl):
    server = dovecot_acl
    user, password = server.new_user("acl")
    server.create_folder(user, "Secret")
    uid = server.append(user, "Secret", make_mail("s"))
    prov_user = (user, password)
    cursor = full_sync(server, prov_user, "Secret")
    server.set_acl(user, "Secret", "l")  # listed, not readable: NO [NOPERM] Permission denied
    with provider(server, prov_user) as prov:
        for call in (
            lambda: sync(prov, "Secret", cursor=cursor),
            lambda: sync(prov, "Secret"),
            lambda: prov.inventory("Secret", cursor, SINCE),
            lambda: prov.fetch("Secret", [str(uid)], SINCE),
        ):
            with pytest.raises(PermissionDenied) as err:
                call()
            assert err.value.kind == "permission_denied" and "NOPERM" in str(err.value)
            assert "Secret" in str(err.value)
        assert sync(prov, "INBOX")[-1].done  # the other folders stay usable in the session
    server.set_acl(user, "Secret", None)
    with provider(server, prov_user) as prov:
        assert prov.inventory("Secret", cursor, SINCE).refs == {str(uid)}


def test_unreadable_maildir_is_what_dovecot_says_it_is(dovecot, imap_user):
    """Dovecot 2.3 answers a folder whose maildir it may not read with ``NO [SERVERBUG]
    Internal error occurred`` (the permission error is only in its log): nothing in the answer
    says "permission", so it stays ``provider_error``. (Dovecot runs the mailbox as the
    ``dovecot`` user while the tests run as root, so chmod 000 takes its access away.)"""
    import os

    user = imap_user[0]
    dovecot.create_folder(user, "Locked")
    dovecot.append(user, "Locked", make_mail("l"))
    maildir = dovecot.root / "mail" / user / "Maildir" / ".Locked"
    os.chmod(maildir, 0)
    try:
        with provider(dovecot, imap_user) as prov:
            with pytest.raises(ProviderError) as err:
                sync(prov, "Locked")
            assert "[SERVERBUG]" in str(err.value)
            assert err.value.kind == "provider_error" and not isinstance(err.value, PermissionDenied)
    finally:
        os.chmod(maildir, 0o700)


@pytest.mark.parametrize(
    ("message", "folder", "login", "cls", "kind"),
    [
        # Tagged answers as Dovecot 2.3 words them (RFC 5530 codes).
        ("[NOPERM] Permission denied", "F", False, PermissionDenied, "permission_denied"),
        (
            "[OVERQUOTA] Quota exceeded (mailbox for user is full)",
            "F",
            False,
            QuotaExceeded,
            "quota_exceeded",
        ),
        ("[LIMIT] Too many messages", None, False, RateLimited, "rate_limited"),
        ("[NONEXISTENT] Mailbox doesn't exist: F", "F", False, FolderGone, "mailbox_gone"),
        ("[UNAVAILABLE] Temporary authentication failure", None, True, ConnectionFailed, "connection_failed"),
        ("[AUTHENTICATIONFAILED] Authentication failed.", None, True, AuthFailed, "auth_failed"),
        ("[AUTHORIZATIONFAILED] Authorization failed", None, True, AuthFailed, "auth_failed"),
        ("[PRIVACYREQUIRED] Plaintext authentication disallowed", None, True, TlsFailed, "tls_error"),
        ("Login failed", None, True, AuthFailed, "auth_failed"),
        # No code: a folder command's text decides (servers other than Dovecot).
        ("Permission denied", "F", False, PermissionDenied, "permission_denied"),
        ("Mailbox does not exist", "F", False, FolderGone, "mailbox_gone"),
        ("[SERVERBUG] Internal error occurred", "F", False, ProviderError, "provider_error"),
    ],
)
def test_refused_answers_are_typed_by_response_code(message, folder, login, cls, kind):
    from mailsync.providers.imap.errors import refused

    err = refused(message, folder=folder, login=login)
    assert type(err) is cls and err.kind == kind
