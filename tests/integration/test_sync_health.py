"""Sync health against Dovecot and moto: states, back-off, auth_error and its ways out,
new credentials, a failing folder, resync, the completeness check and the sync history."""

from __future__ import annotations

import os
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mailsync.config import get_settings
from mailsync.domain.clock import parse_iso
from mailsync.store import accounts as repo
from mailsync.store import keys
from mailsync.store.models import FolderItem, SyncRunItem
from mailsync.usecases.sync_account import sync_account
from tests.support.accounts import connect, mirror, remove_from_store
from tests.support.api import ApiClient
from tests.support.crm import history, put_contact
from tests.support.dovecot import make_mail
from tests.support.netfault import Forwarder

pytestmark = pytest.mark.integration

KUNDE = "kunde@kunde.test"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)  # the injected clock of back-off tests


@pytest.fixture
def api(tenant: dict[str, str]) -> ApiClient:
    return ApiClient("key-t1", "alice")


def mails(n: int, prefix: str = "Mail") -> list[bytes]:
    """Mails of the last hour: the accounts below take a day of backfill, so mails put in
    before the connect are mirrored too."""
    now = datetime.now(UTC)
    return [
        make_mail(
            f"{prefix} {i}",
            from_=f"Kunde <{KUNDE}>",
            to="Alice <alice@example.test>",
            message_id=f"{prefix.lower()}-{i}-{uuid.uuid4().hex[:6]}@example.test",
            date=now - timedelta(minutes=10 + i),
        )
        for i in range(n)
    ]


def account(api: ApiClient, aid: str) -> dict[str, Any]:
    r = api.get(f"/v1/accounts/{aid}")
    assert r.status == 200, r.body
    return r.body


def ids(acc: dict[str, Any]) -> dict[str, str]:
    return {m["subject"]: m["id"] for m in mirror(acc)}


def runs(api: ApiClient, aid: str) -> list[dict[str, Any]]:
    r = api.get(f"/v1/accounts/{aid}/syncs")
    assert r.status == 200, r.body
    return r.body["items"]


def due_in(acc_id: str, at: datetime) -> float:
    acc = repo.get_account("t1", acc_id)
    assert acc is not None and acc.next_due is not None
    return (parse_iso(acc.next_due) - at).total_seconds()


@pytest.fixture
def forwarded(dovecot: Any) -> Iterator[Forwarder]:
    fwd = Forwarder((dovecot.host, dovecot.port))
    try:
        yield fwd
    finally:
        fwd.close()


def connect_via(fwd: Forwarder, imap_user: tuple[str, str]) -> dict[str, Any]:
    from mailsync.usecases import accounts

    user, pw = imap_user
    server = {"host": fwd.host, "port": fwd.port, "security": "none", "username": user, "password": pw}
    return accounts.create_account(
        "t1",
        "alice",
        {"email": f"{user}@example.test", "imap": server, "smtp": dict(server), "backfill_days": 1},
    )


# ------------------------------------------------------------------ auth_error
def test_changed_password_is_auth_error_and_put_credentials_brings_it_back_with_everything(
    api: ApiClient, dovecot: Any, imap_user: tuple[str, str]
) -> None:
    user, old_pw = imap_user
    put_contact(api, "c-1", [KUNDE])
    dovecot.append_many(user, "INBOX", mails(3))
    acc = connect(dovecot, imap_user, backfill_days=1)
    assert sync_account("t1", acc["id"])["status"] == "ok"
    before = ids(acc)
    assert len(before) == 3 and sorted(history(api, "c-1")) == sorted(before.values())

    new_pw = "changed-" + uuid.uuid4().hex
    dovecot.add_user(user, new_pw)  # the user changed the password at the provider
    started = datetime.now(UTC)
    assert sync_account("t1", acc["id"])["status"] == "auth_error"
    view = account(api, acc["id"])
    assert view["state"] == "auth_error"
    h = view["health"]
    assert h["action"] == "reauthenticate" and h["consecutive_failures"] == 1
    assert h["last_error"]["code"] == "auth_failed" and view["error"] == h["last_error"]
    assert old_pw not in h["last_error"]["message"] and new_pw not in h["last_error"]["message"]
    # Polled again in 6 hours (the password may be fixed at the provider), not every poll.
    wait = (parse_iso(h["next_attempt_at"]) - started).total_seconds()
    assert 6 * 3600 - 5 <= wait <= 6 * 3600 + 60
    assert runs(api, acc["id"])[0]["outcome"] == "error"

    # A wrong password is refused by a real login first, and nothing changes.
    r = api.put(f"/v1/accounts/{acc['id']}/credentials", {"password": "still-wrong"})
    assert r.status == 422 and r.body["code"] == "auth_failed", r.body
    assert account(api, acc["id"])["state"] == "auth_error"
    assert sync_account("t1", acc["id"])["status"] == "auth_error"  # the old password is still stored

    r = api.put(f"/v1/accounts/{acc['id']}/credentials", {"password": new_pw})
    assert r.status == 200, r.body
    assert r.body["state"] == "active" and r.body["health"]["action"] is None
    assert r.body["health"]["last_error"] is None and r.body["health"]["consecutive_failures"] == 0
    assert new_pw not in str(r.body)

    dovecot.append(user, "INBOX", mails(1, "After")[0])
    result = sync_account("t1", acc["id"])
    assert result["status"] == "ok" and result["new"] == 1
    after = ids(acc)
    assert {k: after[k] for k in before} == before  # every mail kept, with its id
    assert sorted(history(api, "c-1")) == sorted(after.values())  # and its links


def test_auth_error_is_left_by_itself_when_the_password_works_again(
    api: ApiClient, dovecot: Any, imap_user: tuple[str, str]
) -> None:
    user, pw = imap_user
    acc = connect(dovecot, imap_user, backfill_days=1)
    sync_account("t1", acc["id"])
    dovecot.add_user(user, "other-" + uuid.uuid4().hex)
    sync_account("t1", acc["id"])
    assert account(api, acc["id"])["state"] == "auth_error"
    # A network blip while in auth_error proves nothing about the password: still auth_error.
    dovecot.add_user(user, pw)  # restored at the server
    result = sync_account("t1", acc["id"])  # the 6-hourly retry
    assert result["status"] == "ok", result
    view = account(api, acc["id"])
    assert view["state"] == "active" and view["health"]["consecutive_failures"] == 0
    assert view["health"]["last_error"] is None


def test_auth_error_gives_up_after_14_days_until_the_user_acts(
    api: ApiClient, dovecot: Any, imap_user: tuple[str, str]
) -> None:
    user, pw = imap_user
    acc = connect(dovecot, imap_user, backfill_days=1)
    sync_account("t1", acc["id"], now=lambda: T0)
    dovecot.add_user(user, "other-" + uuid.uuid4().hex)
    for day in (0, 7, 13):
        sync_account("t1", acc["id"], now=lambda d=day: T0 + timedelta(days=d))
        assert repo.get_account("t1", acc["id"]).next_due is not None  # type: ignore[union-attr]
    sync_account("t1", acc["id"], now=lambda: T0 + timedelta(days=14, minutes=1))
    stopped = repo.get_account("t1", acc["id"])
    assert stopped is not None and stopped.state == "auth_error" and stopped.next_due is None
    assert ("t1", acc["id"]) in repo.in_state("auth_error", "t1")
    assert all(a != acc["id"] for shard in range(8) for _t, a, _d in repo.due_in_shard(shard, "9999"))
    r = api.put(f"/v1/accounts/{acc['id']}/credentials", {"imap": {"password": pw}})
    assert r.status == 422  # the server still has the other password
    dovecot.add_user(user, pw)
    r = api.put(f"/v1/accounts/{acc['id']}/credentials", {"imap": {"password": pw}})
    assert r.status == 200 and r.body["state"] == "active", r.body
    assert r.body["health"]["next_attempt_at"] is not None  # polled again


# ------------------------------------------------------------------ transient failures
def test_transient_failures_back_off_with_jitter_and_turn_error_after_three(
    api: ApiClient, forwarded: Forwarder, dovecot: Any, imap_user: tuple[str, str]
) -> None:
    acc = connect_via(forwarded, imap_user)
    poll = get_settings().poll_seconds
    assert sync_account("t1", acc["id"], now=lambda: T0)["status"] == "ok"
    forwarded.down()
    waits = []
    for n in range(1, 8):
        at = T0 + timedelta(hours=n)
        r = sync_account("t1", acc["id"], now=lambda at=at: at, rng=random.Random(n))
        assert r["status"] == "error" and r["code"] == "connection_failed", r
        state = repo.get_account("t1", acc["id"])
        assert state is not None
        assert state.state == ("active" if n < 3 else "error")
        assert state.failures == n
        waits.append(due_in(acc["id"], at))
    # Equal jitter: between half and all of poll * 2^(n-1), never more than an hour.
    for n, wait in enumerate(waits, start=1):
        step = min(3600, poll * 2 ** (n - 1))
        assert step / 2 <= wait <= step, (n, wait)
    assert max(waits) <= 3600
    view = account(api, acc["id"])
    assert view["health"]["last_error"]["code"] == "connection_failed"
    assert view["health"]["action"] == "check_server_settings"
    forwarded.up()
    assert sync_account("t1", acc["id"], now=lambda: T0 + timedelta(hours=9))["status"] == "ok"
    back = repo.get_account("t1", acc["id"])
    assert back is not None and back.state == "active" and back.failures == 0 and back.error is None
    assert due_in(acc["id"], T0 + timedelta(hours=9)) == poll


# ------------------------------------------------------------------ partial failure
def _maildir(dovecot: Any, user: str, folder: str) -> Path:
    base = Path(dovecot.root) / "mail" / user / "Maildir"
    found = [p for p in base.iterdir() if p.is_dir() and p.name.lstrip(".") == folder]
    assert found, list(base.iterdir())
    return found[0]


def test_a_failing_folder_leaves_the_others_current(
    api: ApiClient, dovecot: Any, imap_user: tuple[str, str]
) -> None:
    user, _ = imap_user
    dovecot.create_folder(user, "Projekte")
    dovecot.append(user, "Projekte", mails(1, "Projekt")[0])
    acc = connect(dovecot, imap_user, backfill_days=1)
    assert sync_account("t1", acc["id"])["status"] == "ok"
    box = _maildir(dovecot, user, "Projekte")
    mode = box.stat().st_mode
    dovecot.append(user, "Projekte", mails(1, "Projekt neu")[0])  # so the folder must be opened
    os.chmod(box, 0)
    try:
        dovecot.append(user, "INBOX", mails(1, "Neu")[0])
        result = sync_account("t1", acc["id"])
        assert result["new"] == 1 and result["failed_folders"] == ["Projekte"], result
        view = account(api, acc["id"])
        assert view["state"] == "degraded"
        err = view["health"]["last_error"]
        # Dovecot answers an unreadable maildir with NO [SERVERBUG] (its log says "Permission
        # denied"): a provider error of that folder. permission_denied proper: the Graph test.
        assert err["folder"] == "Projekte" and err["code"] == "provider_error", err
        assert "SERVERBUG" in err["message"]
        assert {"Neu 0", "Projekt 0"} <= set(ids(acc))
        assert runs(api, acc["id"])[0]["outcome"] == "partial"
    finally:
        os.chmod(box, mode)
    result = sync_account("t1", acc["id"])
    assert result["status"] == "ok" and result["new"] == 1  # the folder caught up
    assert account(api, acc["id"])["state"] == "active"


# ------------------------------------------------------------------ resync
def test_resync_reloads_every_folder_keeping_ids_threads_and_links(
    api: ApiClient, dovecot: Any, imap_user: tuple[str, str]
) -> None:
    user, _ = imap_user
    put_contact(api, "c-1", [KUNDE])
    uids = dovecot.append_many(user, "INBOX", mails(4))
    acc = connect(dovecot, imap_user, backfill_days=1)
    sync_account("t1", acc["id"])
    before = {m["subject"]: (m["id"], m["thread_id"]) for m in mirror(acc)}
    # A mail lost behind the engine's back (its location removed in the store) ...
    remove_from_store(acc["id"], before["Mail 3"][0], item=False)
    r = api.post(f"/v1/accounts/{acc['id']}/resync")
    assert r.status == 202 and r.body["folders"] >= 1 and r.body["queued"] is True, r.body
    folders = list(FolderItem.query(keys.account("t1", acc["id"]), FolderItem.sk.startswith("F#")))
    assert all(f.cursor is None for f in folders if f.synced)
    dovecot.delete(user, "INBOX", [uids[0]])  # ... and one deleted at the server meanwhile
    while sync_account("t1", acc["id"])["status"] == "partial":
        pass
    after = {m["subject"]: (m["id"], m["thread_id"]) for m in mirror(acc)}
    gone = "Mail 0"
    assert gone not in after
    assert after == {k: v for k, v in before.items() if k != gone}
    assert sorted(history(api, "c-1")) == sorted(i for i, _ in after.values())
    assert account(api, acc["id"])["state"] == "active"


# ------------------------------------------------------------------ completeness check
def _folder_cursor(acc_id: str, name: str = "INBOX") -> FolderItem:
    return FolderItem.get(keys.account("t1", acc_id), keys.folder_sk(name), consistent_read=True)


def test_check_heals_mails_missing_from_the_mirror_or_added_without_a_cursor_change(
    api: ApiClient, dovecot: Any, imap_user: tuple[str, str]
) -> None:
    user, _ = imap_user
    put_contact(api, "c-1", [KUNDE])
    dovecot.append_many(user, "INBOX", mails(3))
    acc = connect(dovecot, imap_user, backfill_days=1)
    sync_account("t1", acc["id"])
    before = ids(acc)
    # (1) removed behind the engine's back, directly in the store: item and location gone.
    victim = before["Mail 1"]
    remove_from_store(acc["id"], victim)
    # (2) added at the server without a cursor change (a lost CONDSTORE update).
    dovecot.append(user, "INBOX", mails(1, "Lost")[0])
    st = dovecot.status(user, "INBOX")
    f = _folder_cursor(acc["id"])
    f.cursor = {**f.cursor, "uidnext": int(st[b"UIDNEXT"]), "modseq": int(st[b"HIGHESTMODSEQ"])}
    f.save()
    # (3) expunged at the server without a cursor change: the mirror has one too many.
    gone_uid = dovecot.uids(user, "INBOX")[0]
    dovecot.delete(user, "INBOX", [gone_uid])
    st = dovecot.status(user, "INBOX")
    f = _folder_cursor(acc["id"])
    f.cursor = {**f.cursor, "modseq": int(st[b"HIGHESTMODSEQ"])}
    f.save()
    assert sync_account("t1", acc["id"])["new"] == 0  # a plain sync sees nothing of it

    r = api.post(f"/v1/accounts/{acc['id']}/check")
    assert r.status == 202, r.body
    result = sync_account("t1", acc["id"], reason="check")
    assert result["healed"] == 3, result
    view = account(api, acc["id"])
    assert view["state"] == "degraded"  # it had to heal: degraded until a check finds nothing
    (inbox,) = [c for c in view["health"]["check"]["folders"] if c["name"] == "INBOX"]
    assert inbox["missing"] == 2 and inbox["extra"] == 1 and inbox["healed"] == 3
    assert inbox["provider_count"] == 3 and inbox["mirror_count"] == 2
    now = ids(acc)
    assert now["Mail 1"] == victim  # the same id: Message-ID derived
    assert "Lost 0" in now and "Mail 0" not in now
    assert sorted(history(api, "c-1")) == sorted(now.values())  # links follow
    (last,) = runs(api, acc["id"])[:1]
    assert last["trigger"] == "check" and last["new"] >= 1
    # The next check finds nothing: active again.
    result = sync_account("t1", acc["id"], reason="check")
    assert result["healed"] == 0
    assert account(api, acc["id"])["state"] == "active"


def test_the_check_runs_daily_by_itself(api: ApiClient, dovecot: Any, imap_user: tuple[str, str]) -> None:
    user, _ = imap_user
    dovecot.append_many(user, "INBOX", mails(2))
    acc = connect(dovecot, imap_user, backfill_days=1)
    sync_account("t1", acc["id"], now=lambda: T0)
    assert "healed" not in sync_account("t1", acc["id"], now=lambda: T0 + timedelta(hours=23))
    assert sync_account("t1", acc["id"], now=lambda: T0 + timedelta(hours=25))["healed"] == 0
    assert account(api, acc["id"])["health"]["check"]["at"] == "2030-01-02T13:00:00Z"
    assert "healed" not in sync_account("t1", acc["id"], now=lambda: T0 + timedelta(hours=26))


# ------------------------------------------------------------------ sync history
def test_history_records_what_changed_failed_or_was_asked_for_and_expires(
    api: ApiClient, forwarded: Forwarder, dovecot: Any, imap_user: tuple[str, str]
) -> None:
    user, _ = imap_user
    dovecot.append_many(user, "INBOX", mails(2))
    acc = connect_via(forwarded, imap_user)
    sync_account("t1", acc["id"], reason="initial")
    sync_account("t1", acc["id"], reason="schedule")  # a no-op poll: no entry
    forwarded.down()
    sync_account("t1", acc["id"], reason="schedule")
    forwarded.up()
    sync_account("t1", acc["id"], reason="manual")  # asked for: recorded even with no change
    got = runs(api, acc["id"])
    assert [(r["trigger"], r["outcome"]) for r in got] == [
        ("manual", "ok"),
        ("schedule", "error"),
        ("manual", "ok"),
    ]
    assert got[2]["new"] == 2 and got[1]["error"]["code"] == "connection_failed"
    assert all(r["started_at"] <= r["finished_at"] for r in got)
    items = list(SyncRunItem.query(keys.account("t1", acc["id"]), SyncRunItem.sk.startswith("RUN#")))
    assert len(items) == 3
    for item in items:
        expires = item.ttl - parse_iso(item.run["started_at"]).timestamp()
        assert expires == 30 * 86400
    assert time.time() < min(i.ttl for i in items)


# ------------------------------------------------------------------ state writes and operations
def test_state_writes_are_conditional_so_two_workers_never_flip_an_account(
    api: ApiClient, dovecot: Any, imap_user: tuple[str, str]
) -> None:
    acc = connect(dovecot, imap_user, backfill_days=1)
    sync_account("t1", acc["id"])
    shards = get_settings().due_shards
    stored = repo.get_account("t1", acc["id"])
    assert stored is not None and stored.state == "active"
    # Worker A read "active" and saves "error"; worker B, who read "degraded" (stale), loses.
    assert not repo.update_sync_fields(
        stored.with_(state="error"), shards, fields=("state",), expected_state="degraded"
    )
    assert repo.get_account("t1", acc["id"]).state == "active"  # type: ignore[union-attr]
    assert repo.update_sync_fields(
        stored.with_(state="error"), shards, fields=("state",), expected_state="active"
    )
    assert repo.get_account("t1", acc["id"]).state == "error"  # type: ignore[union-attr]
    # The second writer, still believing "active", cannot flip it back.
    assert not repo.update_sync_fields(stored, shards, fields=("state",), expected_state="active")
    assert ("t1", acc["id"]) in repo.in_state("error", "t1")
    assert ("t1", acc["id"]) not in repo.in_state("active", "t1")
    # A pause by the user is never overwritten by a sync's save.
    r = api.post(f"/v1/accounts/{acc['id']}/pause")
    assert r.status == 200 and r.body["state"] == "paused", r.body
    again = repo.get_account("t1", acc["id"])
    assert again is not None
    assert not repo.update_sync_fields(
        again.with_(state="active"), shards, fields=("state",), expected_state="paused"
    )
    assert repo.get_account("t1", acc["id"]).state == "paused"  # type: ignore[union-attr]


def test_census_counts_accounts_per_state_from_the_state_index(
    api: ApiClient, dovecot: Any, imap_user: tuple[str, str]
) -> None:
    from mailsync.usecases.sync_account import census

    before = census()
    acc = connect(dovecot, imap_user, backfill_days=1)
    assert census()["initial_sync"] == before["initial_sync"] + 1
    sync_account("t1", acc["id"])
    after = census()
    assert after["active"] == before["active"] + 1 and after["initial_sync"] == before["initial_sync"]
    dovecot.add_user(imap_user[0], "changed-" + uuid.uuid4().hex)
    sync_account("t1", acc["id"])
    now = census()
    assert now["auth_error"] == before["auth_error"] + 1 and now["active"] == before["active"]
    assert sum(now.values()) == sum(before.values()) + 1


def test_admin_cli_lists_accounts_in_a_state_and_checks_or_resyncs_without_an_api_key(
    api: ApiClient, dovecot: Any, imap_user: tuple[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from mailsync_local.cli import main

    user, _ = imap_user
    dovecot.append_many(user, "INBOX", mails(2))
    acc = connect(dovecot, imap_user, backfill_days=1)
    sync_account("t1", acc["id"])
    before = ids(acc)
    victim = before["Mail 0"]
    remove_from_store(acc["id"], victim)
    capsys.readouterr()
    assert main(["admin", "check", "t1", acc["id"]]) == 0
    out = capsys.readouterr()
    done = json.loads(out.out.strip().splitlines()[-1])
    assert done["state"] == "degraded", done  # it healed a difference
    (inbox,) = [c for c in done["health"]["check"]["folders"] if c["name"] == "INBOX"]
    assert inbox["missing"] == 1 and inbox["healed"] == 1
    assert '"run": 1' in out.err  # progress on stderr
    assert ids(acc) == before

    assert main(["admin", "accounts", "--state", "degraded", "--tenant", "t1"]) == 0
    listed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [a["id"] for a in listed if a["id"] == acc["id"]] == [acc["id"]]
    assert all(a["state"] == "degraded" and a["tenant_id"] == "t1" for a in listed)

    assert main(["admin", "resync", "t1", acc["id"]]) == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done["state"] in ("active", "degraded") and ids(acc) == before
    assert main(["admin", "check", "t1", "acc_nobody"]) == 1  # an unknown account is an error
