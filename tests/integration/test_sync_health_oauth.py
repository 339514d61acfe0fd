"""Sync health of Google and Microsoft accounts against the fake Gmail and the fake Graph
(real HTTP, the real engine and moto): a folder refused by the provider, throttling with
Retry-After, a label gone, and the completeness check healing the mirror.

The Dovecot version of these tests is tests/integration/test_sync_health.py."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailsync.domain.clock import parse_iso
from mailsync.store import accounts as repo
from mailsync.store import keys
from mailsync.store.models import FolderItem, LocationItem
from mailsync.usecases.sync_account import sync_account
from tests.fakes.gmail import FakeGoogle
from tests.fakes.graph import FakeGraph
from tests.support.accounts import mirror, remove_from_store
from tests.support.api import ApiClient
from tests.support.crm import history, put_contact
from tests.support.dovecot import make_mail
from tests.support.google import connect_google
from tests.support.microsoft import REDIRECT, connect_microsoft

pytestmark = pytest.mark.integration

KUNDE = "kunde@kunde.test"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)  # the injected clock of the back-off tests


@pytest.fixture
def api(tenant: dict[str, str]) -> ApiClient:
    return ApiClient("key-t1", "alice")


def mail(subject: str, to: str) -> bytes:
    return make_mail(
        subject,
        from_=f"Kunde <{KUNDE}>",
        to=to,
        message_id=f"{subject.lower().replace(' ', '-')}-{uuid.uuid4().hex[:8]}@kunde.test",
        date=datetime.now(UTC),
    )


# ------------------------------------------------------------------ the two providers
@dataclass
class Side:
    """One OAuth provider as these tests drive it: its fake, the mailbox, how a mail arrives
    and how an update of the provider's change feed is lost (our cursor moved past it)."""

    name: str
    fake: Any
    email: str
    inbox: str  # the Inbox's folder name in the mirror
    connect: Callable[[ApiClient], str]
    deliver: Callable[[bytes], str]  # into the Inbox; returns the provider's id
    delete: Callable[[str], None]  # deleted by the user at the provider
    lose_updates: Callable[[str], None]  # the account's cursors skip what changed meanwhile


def _google(fake: FakeGoogle) -> Side:
    email = "petra@makler.example"

    def connect(api: ApiClient) -> str:
        status, q = connect_google(api, fake, email)
        assert status == 302 and "account_id" in q, q
        return q["account_id"]

    def lose_updates(aid: str) -> None:
        # historyId is account-wide: every folder's cursor moves past the lost records.
        for f in _folders(aid):
            if f.cursor and f.cursor.get("phase") == "delta":
                f.cursor = {**f.cursor, "historyId": str(fake.history_id(email))}
                f.save()

    return Side(
        "google",
        fake,
        email,
        "INBOX",
        connect,
        lambda raw: fake.deliver(email, raw),
        lambda mid: fake.delete(email, mid),
        lose_updates,
    )


def _microsoft(fake: FakeGraph) -> Side:
    email = "petra@contoso.test"

    def connect(api: ApiClient) -> str:
        status, q = connect_microsoft(api, fake, email)
        assert status == 302 and q["_location"].startswith(REDIRECT) and "account_id" in q, q
        return q["account_id"]

    def lose_updates(aid: str) -> None:
        # A delta round nobody applied: the Inbox's deltaLink moves on to the round's end.
        token = fake.issue_tokens(email)["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Prefer": 'IdType="ImmutableId"'}
        f = FolderItem.get(keys.account("t1", aid), keys.folder_sk("Inbox"), consistent_read=True)
        link = f.cursor["deltaLink"]
        with fake.session() as http:
            while True:
                page = http.get(link, headers=headers, timeout=10)
                assert page.status_code == 200, page.text
                body = page.json()
                if "@odata.deltaLink" in body:
                    break
                link = body["@odata.nextLink"]
        f.cursor = {**f.cursor, "deltaLink": body["@odata.deltaLink"]}
        f.save()

    return Side(
        "microsoft",
        fake,
        email,
        "Inbox",
        connect,
        lambda raw: fake.deliver(email, raw),
        lambda mid: fake.delete(email, mid),
        lose_updates,
    )


@pytest.fixture(params=["google", "microsoft"])
def side(request: pytest.FixtureRequest, tenant: dict[str, str]) -> Side:
    fake = request.getfixturevalue(request.param)
    return _google(fake) if request.param == "google" else _microsoft(fake)


# ------------------------------------------------------------------ helpers
def account(api: ApiClient, aid: str) -> dict[str, Any]:
    r = api.get(f"/v1/accounts/{aid}")
    assert r.status == 200, r.body
    return r.body


def ids(aid: str) -> dict[str, str]:
    return {m["subject"]: m["id"] for m in mirror({"id": aid})}


def folders_of(aid: str) -> dict[str, str]:
    return {m["subject"]: m["folder"] for m in mirror({"id": aid})}


def runs(api: ApiClient, aid: str) -> list[dict[str, Any]]:
    r = api.get(f"/v1/accounts/{aid}/syncs")
    assert r.status == 200, r.body
    return r.body["items"]


def _folders(aid: str) -> list[FolderItem]:
    return list(FolderItem.query(keys.account("t1", aid), FolderItem.sk.startswith("F#")))


def locations(aid: str, mid: str) -> set[str]:
    return {
        loc.folder
        for loc in LocationItem.query(keys.account("t1", aid), LocationItem.sk.startswith("L#"))
        if loc.mid == mid
    }


def check_line(view: dict[str, Any], folder: str) -> dict[str, Any]:
    (line,) = [c for c in view["health"]["check"]["folders"] if c["name"] == folder]
    return line


# ------------------------------------------------------------------ a folder refused (Graph)
def test_graph_folder_refused_with_403_degrades_with_grant_permissions_and_the_rest_syncs(
    api: ApiClient, microsoft: FakeGraph
) -> None:
    g = _microsoft(microsoft)
    aid = g.connect(api)  # mails from the connect on are mirrored (no backfill asked for)
    microsoft.create_folder(g.email, "Projekte")
    microsoft.deliver(g.email, mail("Projekt 0", g.email), folder="Projekte")
    g.deliver(mail("Mail 0", g.email))
    assert sync_account("t1", aid)["status"] == "ok"
    assert folders_of(aid) == {"Mail 0": "Inbox", "Projekt 0": "Projekte"}
    before = ids(aid)

    # The admin withdrew our access to one folder; a mail arrives in each meanwhile.
    microsoft.fail_folder(g.email, "Projekte", 403)  # ErrorAccessDenied
    g.deliver(mail("Neu 0", g.email))
    microsoft.deliver(g.email, mail("Projekt neu", g.email), folder="Projekte")
    result = sync_account("t1", aid)
    assert result["status"] == "ok", result  # the sync completed: no continuation needed
    assert result["failed_folders"] == ["Projekte"] and result["new"] == 1, result
    view = account(api, aid)
    assert view["state"] == "degraded"
    err = view["health"]["last_error"]
    assert err["code"] == "permission_denied" and err["folder"] == "Projekte", err
    assert "ErrorAccessDenied" in err["message"], err
    assert view["health"]["action"] == "grant_permissions"
    assert view["error"] == err
    now = ids(aid)
    assert "Neu 0" in now  # the Inbox stays current
    assert {k: now[k] for k in before} == before  # the refused folder's mails are kept
    assert "Projekt neu" not in now
    (last, *_) = runs(api, aid)
    assert last["outcome"] == "partial" and last["error"]["code"] == "permission_denied"

    # Access granted again: the folder catches up and nothing is left for the user to do.
    microsoft.clear_faults()
    result = sync_account("t1", aid)
    assert result["status"] == "ok" and result["failed_folders"] == [] and result["new"] == 1, result
    view = account(api, aid)
    assert view["state"] == "active", view
    assert view["health"]["last_error"] is None and view["error"] is None
    assert view["health"]["action"] is None and view["health"]["consecutive_failures"] == 0
    assert folders_of(aid)["Projekt neu"] == "Projekte"
    assert runs(api, aid)[0]["outcome"] == "ok"


# ------------------------------------------------------------------ throttling
def test_throttling_with_retry_after_backs_off_without_sleeping_and_turns_error_after_three(
    api: ApiClient, side: Side
) -> None:
    aid = side.connect(api)
    side.deliver(mail("Mail 0", side.email))
    assert sync_account("t1", aid, now=lambda: T0)["status"] == "ok"
    side.deliver(mail("Mail 1", side.email))
    # Throttled on every call, beyond the provider's retries. The poll interval of OAuth
    # accounts (900 s) is shorter than the Retry-After, so only an honoured one waits this long.
    side.fake.fail_next(10_000, 429, retry_after=1800)
    at = T0 + timedelta(hours=1)
    started = time.monotonic()
    result = sync_account("t1", aid, now=lambda: at)
    took = time.monotonic() - started
    assert result == {"status": "error", "code": "rate_limited"}, result
    assert took < 20, took  # the worker did not sleep through the Retry-After
    stored = repo.get_account("t1", aid)
    assert stored is not None and stored.state == "active" and stored.failures == 1
    assert stored.next_due is not None
    assert 1800 <= (parse_iso(stored.next_due) - at).total_seconds() <= 1801
    view = account(api, aid)
    assert view["state"] == "active"
    h = view["health"]
    assert h["next_attempt_at"] == stored.next_due and h["consecutive_failures"] == 1
    assert h["last_error"]["code"] == "rate_limited" and h["last_error"]["folder"] is None
    assert h["action"] is None  # nothing for the user to do: it heals by itself
    (last, *_) = runs(api, aid)
    assert last["outcome"] == "error" and last["error"]["code"] == "rate_limited"

    # A Retry-After beyond an hour is capped: the account is never parked longer while due.
    side.fake.clear_faults()
    side.fake.fail_next(10_000, 429, retry_after=7200)
    at = T0 + timedelta(hours=2)
    assert sync_account("t1", aid, now=lambda: at)["code"] == "rate_limited"
    stored = repo.get_account("t1", aid)
    assert stored is not None and stored.state == "active" and stored.failures == 2
    assert (parse_iso(stored.next_due or "") - at).total_seconds() == 3600
    # The third failure in a row: error (still retried, no user action for throttling).
    at = T0 + timedelta(hours=3)
    assert sync_account("t1", aid, now=lambda: at)["code"] == "rate_limited"
    view = account(api, aid)
    assert view["state"] == "error" and view["health"]["consecutive_failures"] == 3
    assert view["health"]["action"] is None and view["health"]["next_attempt_at"] is not None

    side.fake.clear_faults()
    result = sync_account("t1", aid, now=lambda: T0 + timedelta(hours=4))
    assert result["status"] == "ok" and result["new"] == 1, result
    view = account(api, aid)
    assert view["state"] == "active" and view["health"]["last_error"] is None
    assert view["health"]["consecutive_failures"] == 0
    assert set(ids(aid)) == {"Mail 0", "Mail 1"}


# ------------------------------------------------------------------ completeness check
def test_check_heals_a_mail_removed_from_the_store_with_the_same_id(api: ApiClient, side: Side) -> None:
    put_contact(api, "c-1", [KUNDE])
    aid = side.connect(api)
    for i in range(3):
        side.deliver(mail(f"Mail {i}", side.email))
    assert sync_account("t1", aid)["status"] == "ok"
    before = ids(aid)
    assert len(before) == 3 and sorted(history(api, "c-1")) == sorted(before.values())
    victim = before["Mail 1"]
    remove_from_store(aid, victim)
    assert "Mail 1" not in ids(aid)
    assert sync_account("t1", aid)["new"] == 0  # a plain sync sees nothing of it

    r = api.post(f"/v1/accounts/{aid}/check")
    assert r.status == 202, r.body
    result = sync_account("t1", aid, reason="check")
    assert result["status"] == "ok" and result["healed"] == 1, result
    assert ids(aid) == before  # back, with the same id: Message-ID derived
    assert sorted(history(api, "c-1")) == sorted(before.values())  # and linked again
    view = account(api, aid)
    assert view["state"] == "degraded"  # it had to heal: degraded until a check finds nothing
    line = check_line(view, side.inbox)
    assert line["missing"] == 1 and line["extra"] == 0 and line["healed"] == 1, line
    assert line["provider_count"] == 3 and line["mirror_count"] == 2, line
    assert all(c["healed"] == 0 for c in view["health"]["check"]["folders"] if c["name"] != side.inbox)
    assert runs(api, aid)[0]["trigger"] == "check"

    result = sync_account("t1", aid, reason="check")
    assert result["healed"] == 0, result
    view = account(api, aid)
    assert view["state"] == "active" and view["health"]["action"] is None
    assert check_line(view, side.inbox)["healed"] == 0
    assert ids(aid) == before


def test_check_removes_a_mail_gone_at_the_provider_and_adds_one_whose_update_was_lost(
    api: ApiClient, side: Side
) -> None:
    aid = side.connect(api)
    refs = {f"Mail {i}": side.deliver(mail(f"Mail {i}", side.email)) for i in range(3)}
    assert sync_account("t1", aid)["status"] == "ok"
    before = ids(aid)
    assert set(before) == set(refs)
    # Deleted by the user and a new mail arrived, and both updates of the provider's change
    # feed were lost (our cursor moved past them).
    side.delete(refs["Mail 0"])
    side.deliver(mail("Lost 0", side.email))
    side.lose_updates(aid)
    assert sync_account("t1", aid)["new"] == 0  # a plain sync sees nothing of it
    assert set(ids(aid)) == set(refs)

    r = api.post(f"/v1/accounts/{aid}/check")
    assert r.status == 202, r.body
    result = sync_account("t1", aid, reason="check")
    assert result["healed"] == 2, result
    now = ids(aid)
    assert set(now) == {"Mail 1", "Mail 2", "Lost 0"}
    assert {k: now[k] for k in ("Mail 1", "Mail 2")} == {k: before[k] for k in ("Mail 1", "Mail 2")}
    view = account(api, aid)
    assert view["state"] == "degraded"
    line = check_line(view, side.inbox)
    assert line["missing"] == 1 and line["extra"] == 1 and line["healed"] == 2, line
    assert line["provider_count"] == 3 and line["mirror_count"] == 3, line

    assert sync_account("t1", aid, reason="check")["healed"] == 0
    assert account(api, aid)["state"] == "active"
    assert ids(aid) == now


# ------------------------------------------------------------------ a label gone (Gmail)
def test_gmail_label_answering_404_is_mailbox_gone_for_that_folder_and_the_others_stay_current(
    api: ApiClient, google: FakeGoogle
) -> None:
    g = _google(google)
    aid = g.connect(api)
    g.deliver(mail("Mail 0", g.email))
    assert sync_account("t1", aid)["status"] == "ok"
    # A label made at Gmail, which vanishes between its listing and the listing of its mails.
    label = google.create_label(g.email, "Kunden")
    kept = g.deliver(mail("Kunde 0", g.email))
    google.add_labels(g.email, kept, label)
    google.fail_folder(g.email, "Kunden", 404)  # notFound
    g.deliver(mail("Neu 0", g.email))
    result = sync_account("t1", aid)
    assert result["status"] == "ok", result
    assert result["failed_folders"] == ["Kunden"] and result["gone_folders"] == ["Kunden"], result
    view = account(api, aid)
    assert view["state"] == "degraded"
    err = view["health"]["last_error"]
    assert err["code"] == "mailbox_gone" and err["folder"] == "Kunden", err
    assert view["health"]["action"] == "check_server_settings"
    assert folders_of(aid) == {"Mail 0": "INBOX", "Neu 0": "INBOX", "Kunde 0": "INBOX"}
    assert runs(api, aid)[0]["outcome"] == "partial"

    google.clear_faults()
    result = sync_account("t1", aid)
    assert result["status"] == "ok" and result["failed_folders"] == [], result
    view = account(api, aid)
    assert view["state"] == "active" and view["health"]["last_error"] is None
    assert view["health"]["action"] is None
    assert locations(aid, ids(aid)["Kunde 0"]) == {"INBOX", "Kunden"}  # the label caught up


# ------------------------------------------------------------------ a folder failing in the check
@pytest.mark.parametrize(
    ("provider", "folder", "status", "code"),
    [("microsoft", "Projekte", 403, "permission_denied"), ("google", "Kunden", 404, "mailbox_gone")],
)
def test_a_folder_failing_in_the_completeness_check_is_that_folders_error(
    api: ApiClient, request: pytest.FixtureRequest, provider: str, folder: str, status: int, code: str
) -> None:
    fake = request.getfixturevalue(provider)
    s = _google(fake) if provider == "google" else _microsoft(fake)
    aid = s.connect(api)
    if provider == "google":
        label = fake.create_label(s.email, folder)
        fake.add_labels(s.email, s.deliver(mail("Ordner 0", s.email)), label)
    else:
        fake.create_folder(s.email, folder)
        fake.deliver(s.email, mail("Ordner 0", s.email), folder=folder)
    assert sync_account("t1", aid, now=lambda: T0)["status"] == "ok"
    fake.fail_folder(s.email, folder, status)
    s.deliver(mail("Neu 0", s.email))
    # The user asks for a check three times in a row (the daily check is the same run).
    for n in range(1, 4):
        at = T0 + timedelta(hours=n)
        result = sync_account("t1", aid, reason="check", now=lambda at=at: at)
        assert result["status"] == "ok", result  # the sync did its work
        view = account(api, aid)
        assert view["state"] == "degraded" and view["health"]["consecutive_failures"] == 0, view
        err = view["health"]["last_error"]
        assert err["code"] == code and err["folder"] == folder, err
        assert view["health"]["check"] is not None
        assert check_line(view, s.inbox)["healed"] == 0  # the other folders were checked
        assert runs(api, aid)[0]["outcome"] == "partial"
        assert "Neu 0" in ids(aid)
