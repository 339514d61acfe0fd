"""Issue 14: a folder whose UIDVALIDITY changes on every connect is reloaded twice, then
stopped (domain/flaps.py), against real Dovecot. A flap is made the way a broken server
shows it: the folder is deleted and recreated with the same mails (new UIDVALIDITY)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailsync.store.mirror import DynamoMirrorStore
from mailsync.usecases.accounts import get_account
from mailsync.usecases.recovery import resync
from tests.support.accounts import RecordingProviders, connect, mirror, sync
from tests.support.dovecot import make_mail

pytestmark = pytest.mark.integration

T0 = datetime.now(UTC).replace(microsecond=0)
FOLDER = "Kunden"


def at(minutes: float):
    return lambda: T0 + timedelta(minutes=minutes)


def flap(dovecot, user: str, raws: list[bytes]) -> None:
    before = dovecot.status(user, FOLDER)[b"UIDVALIDITY"]
    dovecot.delete_folder(user, FOLDER)
    dovecot.create_folder(user, FOLDER)
    dovecot.append_many(user, FOLDER, raws)
    assert dovecot.status(user, FOLDER)[b"UIDVALIDITY"] != before


def folder(acc):
    return DynamoMirrorStore("t1", acc["id"]).get_folders()[FOLDER]


def fetches(rec: RecordingProviders) -> int:
    return sum("FETCH" in c for c in rec.providers[-1].commands)


def setup(dovecot, imap_user):
    user, _ = imap_user
    dovecot.create_folder(user, FOLDER)
    raws = [make_mail(f"kunde {i}", message_id=f"kunde-{i}@example.com") for i in range(3)]
    dovecot.append_many(user, FOLDER, raws)
    acc = connect(dovecot, imap_user, backfill_days=1)
    assert sync(acc, now=at(0))["state"] == "active"
    assert {m["subject"] for m in mirror(acc)} == {"kunde 0", "kunde 1", "kunde 2"}
    return user, raws, acc


def test_third_flap_within_an_hour_stops_reloading_and_keeps_the_mails(tenant, dovecot, imap_user):
    user, raws, acc = setup(dovecot, imap_user)
    first = [(m["id"], m["thread_id"]) for m in mirror(acc)]
    assert folder(acc).flaps == []  # nothing stored until a flap happens

    for n, minute in ((1, 10), (2, 20)):
        flap(dovecot, user, raws)
        rec = RecordingProviders()
        result = sync(acc, now=at(minute), provider_factory=rec)
        assert result["state"] == "active" and result["failed_folders"] == []
        assert fetches(rec) > 0  # reloaded
        assert [(m["id"], m["thread_id"]) for m in mirror(acc)] == first  # converged, no duplicate
        assert len(folder(acc).flaps) == n

    gen, cursor = folder(acc).gen, folder(acc).cursor
    flap(dovecot, user, raws)
    rec = RecordingProviders()
    result = sync(acc, now=at(30), provider_factory=rec)
    assert result["state"] == "error" and result["failed_folders"] == [FOLDER]
    assert fetches(rec) == 0 and result["updated"] == result["new"] == 0  # nothing re-downloaded
    st = folder(acc)
    assert (st.gen, st.cursor, len(st.flaps)) == (gen, cursor, 3)
    view = get_account("t1", "alice", acc["id"])
    assert view["state"] == "error"
    err = view["health"]["last_error"]
    assert err["code"] == "provider_error" and err["folder"] == FOLDER
    assert FOLDER in err["message"] and "UIDVALIDITY keeps changing" in err["message"]
    assert view["health"]["action"] == "check_server_settings"
    assert [(m["id"], m["thread_id"]) for m in mirror(acc)] == first  # nothing lost

    # Later runs (still retried, even past the hour) stay stopped: the other folders sync,
    # this one is neither reloaded nor written.
    dovecot.append(user, "INBOX", make_mail("still synced", message_id="inbox-1@example.com"))
    result = sync(acc, now=at(120))
    assert result["state"] == "error" and (result["new"], result["updated"]) == (1, 0)
    assert (folder(acc).gen, folder(acc).flaps) == (gen, st.flaps)
    subjects = {m["subject"] for m in mirror(acc)}
    assert subjects == {"kunde 0", "kunde 1", "kunde 2", "still synced"}

    # The user resyncs: the history is cleared and the folder loads again.
    resync("t1", "alice", acc["id"])
    assert folder(acc).flaps == []
    result = sync(acc, now=at(130))
    assert result["state"] == "active"
    assert {m["subject"] for m in mirror(acc)} == subjects
    assert [(m["id"], m["thread_id"]) for m in mirror(acc) if m["subject"].startswith("kunde")] == first


def test_flaps_spread_over_more_than_an_hour_never_stop(tenant, dovecot, imap_user):
    user, raws, acc = setup(dovecot, imap_user)
    first = [m["id"] for m in mirror(acc)]
    for minute in (40, 80, 120, 160):  # any three span 80 minutes
        flap(dovecot, user, raws)
        result = sync(acc, now=at(minute))
        assert result["state"] == "active" and result["failed_folders"] == []
        assert [m["id"] for m in mirror(acc)] == first
    assert len(folder(acc).flaps) == 3
