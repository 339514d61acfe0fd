"""GmailProvider against the fake Gmail API (tests/fakes/gmail.py): initial load, paging and
batch fetch, history deltas, expired historyId, rate limits, quota, auth, client ops, and the
real SyncEngine + DynamoDB/S3 mirror (moto)."""

from __future__ import annotations

import email.utils
import random
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import pytest
import requests

from mailsync.domain.ports import (
    AuthFailed,
    FolderGone,
    ProviderError,
    Remove,
    Reset,
    SetFlags,
)
from mailsync.domain.sync import AccountContext, SyncEngine
from mailsync.providers.gmail import CredentialsTokenSource, GmailProvider
from mailsync.providers.http import QuotaBudget
from tests.fakes.gmail import FakeGoogle
from tests.support.dovecot import make_mail
from tests.support.providers import changes, drain, engine_mirror, mirror_by_subject, subjects, upserts

pytestmark = pytest.mark.integration

USER = "alice@acme.test"
NOW = datetime.now(UTC)
SINCE = NOW - timedelta(days=1)
OLD = NOW - timedelta(days=10)


@pytest.fixture
def google() -> Iterator[FakeGoogle]:
    with FakeGoogle() as g:
        yield g


@pytest.fixture
def tokens(google: FakeGoogle) -> dict[str, Any]:
    return google.issue_tokens(USER)


def make_provider(google: FakeGoogle, tokens: dict[str, Any], **kw: Any) -> GmailProvider:
    kw.setdefault("budget", QuotaBudget())
    kw.setdefault("sleep", lambda s: None)
    kw.setdefault("rng", random.Random(0))
    kw.setdefault("api_base", google.api_base)
    return GmailProvider(lambda: tokens["access_token"], user=USER, **kw)


@pytest.fixture
def provider(google: FakeGoogle, tokens: dict[str, Any]) -> Iterator[GmailProvider]:
    with make_provider(google, tokens) as p:
        yield p


run = partial(drain, since=SINCE)  # run(provider, folder, cursor[, batch_size]) -> (batches, cursor)


# ------------------------------------------------------------------------------ folders


def test_labels_are_folders(google, provider):
    google.create_label(USER, "Work")
    google.create_label(USER, "Clients/ACME")
    folders = {f.name: f.role for f in provider.list_folders()}
    assert folders == {"INBOX": "inbox", "SENT": "sent", "Work": None, "Clients/ACME": None}
    assert provider.label_id("Work") == google.label_id(USER, "Work")
    with pytest.raises(FolderGone):
        list(provider.changes("Nope", None, SINCE))
    with pytest.raises(FolderGone):
        list(provider.changes("TRASH", None, SINCE))


# ------------------------------------------------------------------------------ initial load


def test_initial_load_since_paging_and_batches(google, tokens):
    ids = [google.deliver(USER, make_mail(f"new {i}")) for i in range(5)]
    google.deliver(USER, make_mail("old"), internal_date=OLD)
    google.deliver(USER, make_mail("archived"), label_ids=("UNREAD",))
    read = google.deliver(USER, make_mail("read"), label_ids=("INBOX",))
    trashed = google.deliver(USER, make_mail("trashed"))
    google.trash(USER, trashed)
    hid_before = google.history_id(USER)
    google.reset_counters()

    with make_provider(google, tokens, page_size=2, fetch_batch=2) as p:
        batches, cursor = run(p, "INBOX", None, batch_size=3)
    assert subjects(batches) == {f"new {i}" for i in range(5)} | {"read"}
    ups = upserts(batches)
    assert set(ups) == {*ids, read}
    assert ups[read].unread is False and ups[ids[0]].unread is True
    assert all(u.internal_date >= SINCE and u.internal_date.tzinfo is not None for u in ups.values())
    assert all(b.initial for b in batches)
    assert [b.done for b in batches] == [False] * (len(batches) - 1) + [True]
    assert cursor == {"v": 1, "phase": "delta", "historyId": str(hid_before)}
    assert google.requests["messages.list"] == 3  # 6 ids (the old one is outside q, trash excluded) / 2
    assert google.requests["profile"] == 1
    assert max(google.batch_sizes) <= 2 and sum(google.batch_sizes) == 6
    assert all("format=raw" in path for m, path in google.log if "/messages/18f" in path)
    lists = [path for _, path in google.log if path.startswith("/gmail/v1/users/me/messages?")]
    assert all("labelIds=INBOX" in path and "q=after%3A" in path for path in lists)
    assert batches[-1].progress == (6, 6)


def test_initial_load_resumes_from_an_intermediate_cursor(google, tokens):
    for i in range(7):
        google.deliver(USER, make_mail(f"m{i}"))
    with make_provider(google, tokens, page_size=3) as p:
        gen = p.changes("INBOX", None, SINCE, 2)
        first = [next(gen), next(gen)]  # stop mid-page (as a time budget would)
        gen.close()
        assert first[-1].cursor["phase"] == "initial" and not first[-1].done
        rest, cursor = run(p, "INBOX", first[-1].cursor, batch_size=2)
    got = [c.ref for c in changes(first + rest)]
    assert len(got) == 7 and len(set(got)) == 7
    assert cursor and cursor["phase"] == "delta"


def test_batch_fetch_is_at_most_50_per_request(google, provider):
    for i in range(120):
        google.deliver(USER, make_mail(f"bulk {i}"))
    google.reset_counters()
    batches, _ = run(provider, "INBOX", None, batch_size=100)
    assert len(upserts(batches)) == 120
    assert google.batch_sizes == [50, 50, 20]
    assert google.requests["messages.get"] == 120 and google.requests["batch"] == 3


def test_fake_refuses_batches_over_100(google, tokens):
    boundary = "b"
    part = f"--{boundary}\r\nContent-Type: application/http\r\n\r\nGET /gmail/v1/users/me/profile\r\n\r\n"
    body = part * 101 + f"--{boundary}--\r\n"
    r = requests.post(
        google.api_base + "/batch/gmail/v1",
        data=body,
        headers={
            "Authorization": f"Bearer {tokens['access_token']}",
            "Content-Type": f"multipart/mixed; boundary={boundary}",
        },
        timeout=10,
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == 400


# ------------------------------------------------------------------------------ deltas


def test_delta_new_move_archive_trash_delete_and_read(google, tokens):
    work = google.create_label(USER, "Work")
    a, b, c, d, e = (google.deliver(USER, make_mail(s)) for s in "abcde")
    with make_provider(google, tokens) as p:
        _, inbox_cur = run(p, "INBOX", None)
        _, work_cur = run(p, "Work", None)

    new = google.deliver(USER, make_mail("new"))
    google.move(USER, a, "INBOX", work)  # label change between synced labels
    google.remove_labels(USER, b, "INBOX")  # archive
    google.trash(USER, c)
    google.delete(USER, d)  # permanent
    google.remove_labels(USER, e, "UNREAD")  # read
    google.add_labels(USER, new, "STARRED")  # irrelevant label change
    google.reset_counters()

    with make_provider(google, tokens) as p:
        inbox, inbox_cur2 = run(p, "INBOX", inbox_cur)
        work_b, work_cur2 = run(p, "Work", work_cur)
    assert google.requests["history.list"] == 1  # one walk shared by both folders
    assert set(upserts(inbox)) == {new}
    assert {x.ref for x in changes(inbox) if isinstance(x, Remove)} == {a, b, c, d}
    assert [(x.ref, x.unread) for x in changes(inbox) if isinstance(x, SetFlags)] == [(e, False)]
    assert set(upserts(work_b)) == {a} and upserts(work_b)[a].folder == "Work"
    assert not any(isinstance(x, Remove) and x.ref == a for x in changes(work_b))
    assert inbox_cur2 == work_cur2 == {"v": 1, "phase": "delta", "historyId": str(google.history_id(USER))}
    assert google.requests["messages.get"] == 2  # only the added ones are fetched

    # Untrash brings it back; mark unread again.
    google.untrash(USER, c)
    google.add_labels(USER, e, "UNREAD")
    with make_provider(google, tokens) as p:
        inbox3, _ = run(p, "INBOX", inbox_cur2)
    assert set(upserts(inbox3)) == {c}
    assert [(x.ref, x.unread) for x in changes(inbox3) if isinstance(x, SetFlags)] == [(e, True)]


def test_unchanged_mailbox_costs_one_history_call(google, tokens):
    google.deliver(USER, make_mail("x"))
    with make_provider(google, tokens) as p:
        _, cur = run(p, "INBOX", None)
        _, sent_cur = run(p, "SENT", None)
    google.reset_counters()
    with make_provider(google, tokens) as p:
        p.list_folders()  # as the engine does first
        assert run(p, "INBOX", cur)[0] == []
        assert run(p, "SENT", sent_cur)[0] == []
    assert google.requests == {"labels.list": 1, "history.list": 1}
    assert google.quota[USER] == 1 + 2


def test_changes_elsewhere_advance_the_cursor_with_an_empty_batch(google, tokens):
    work = google.create_label(USER, "Work")
    with make_provider(google, tokens) as p:
        _, cur = run(p, "Work", None)
    google.deliver(USER, make_mail("inbox only"))
    with make_provider(google, tokens) as p:
        batches, cur2 = run(p, "Work", cur)
    assert [b.changes for b in batches] == [[]] and batches[0].done
    assert cur2 and int(cur2["historyId"]) > int(cur["historyId"])
    assert work


def test_old_mail_moved_into_a_label_stays_out(google, tokens):
    work = google.create_label(USER, "Work")
    old = google.deliver(USER, make_mail("old"), internal_date=OLD)
    with make_provider(google, tokens) as p:
        _, cur = run(p, "Work", None)
        google.add_labels(USER, old, work)
    with make_provider(google, tokens) as p:
        batches, _ = run(p, "Work", cur)
    assert upserts(batches) == {}


def test_history_paging_and_batches_end_on_record_boundaries(google, tokens):
    with make_provider(google, tokens) as p:
        _, cur = run(p, "INBOX", None)
    ids = [google.deliver(USER, make_mail(f"n{i}")) for i in range(7)]
    google.reset_counters()
    with make_provider(google, tokens, page_size=2) as p:
        batches, final = run(p, "INBOX", cur, batch_size=3)
    assert google.requests["history.list"] == 4  # 7 records, 2 per page
    assert [len(b.changes) for b in batches] == [3, 3, 1]
    assert [b.done for b in batches] == [False, False, True]
    assert [c.ref for c in changes(batches)] == ids
    # Resuming from the first batch's cursor replays nothing already stored.
    with make_provider(google, tokens) as p:
        rest, final2 = run(p, "INBOX", batches[0].cursor, batch_size=3)
    assert [c.ref for c in changes(rest)] == ids[3:]
    assert final == final2


def test_expired_history_id_resets_and_reloads(google, tokens):
    a = google.deliver(USER, make_mail("a"))
    with make_provider(google, tokens) as p:
        _, cur = run(p, "INBOX", None)
    b = google.deliver(USER, make_mail("b"))
    google.expire_history(USER)
    with make_provider(google, tokens) as p:
        batches, new_cur = run(p, "INBOX", cur)
    assert isinstance(batches[0].changes[0], Reset)
    assert sum(isinstance(c, Reset) for c in changes(batches)) == 1
    assert set(upserts(batches)) == {a, b}
    assert all(x.initial for x in batches) and batches[-1].done
    assert new_cur == {"v": 1, "phase": "delta", "historyId": str(google.history_id(USER))}


def test_history_retention_window(tokens):
    with FakeGoogle(history_retention=2) as g:
        toks = g.issue_tokens(USER)
        with make_provider(g, toks) as p:
            _, cur = run(p, "INBOX", None)
        for i in range(3):
            g.deliver(USER, make_mail(f"r{i}"))
        with make_provider(g, toks) as p:
            batches, _ = run(p, "INBOX", cur)
        assert isinstance(batches[0].changes[0], Reset)


# ------------------------------------------------------------------------------ rate limits


def test_429_backs_off_honouring_retry_after(google, tokens):
    google.deliver(USER, make_mail("x"))
    slept: list[float] = []
    google.fail_next(2, 429, path="/messages", retry_after=7)
    with make_provider(google, tokens, sleep=slept.append) as p:
        batches, cur = run(p, "INBOX", None)
    assert len(upserts(batches)) == 1 and cur and cur["phase"] == "delta"
    assert len(slept) == 2 and all(s >= 7 for s in slept)


def test_403_user_rate_limit_inside_a_batch_is_retried(google, tokens):
    for i in range(3):
        google.deliver(USER, make_mail(f"x{i}"))
    slept: list[float] = []
    google.fail_next(1, 403, path="/messages/18f", retry_after=5)  # one batch part
    with make_provider(google, tokens, sleep=slept.append) as p:
        batches, _ = run(p, "INBOX", None)
    assert len(upserts(batches)) == 3
    assert slept and slept[0] >= 5
    assert google.batch_sizes == [3, 1]


def test_backoff_is_exponential_with_jitter_without_retry_after(google, tokens):
    google.fail_next(4, 429, path="/profile", retry_after=None)
    slept: list[float] = []
    with make_provider(google, tokens, sleep=slept.append, backoff_base=1.0) as p:
        run(p, "INBOX", None)
    assert len(slept) == 4
    for attempt, s in enumerate(slept):
        step = 2**attempt
        assert step / 2 <= s <= step


def test_persisting_rate_limit_raises_before_any_batch(google, tokens):
    google.deliver(USER, make_mail("x"))
    with make_provider(google, tokens) as p:
        _, cur = run(p, "INBOX", None)
    google.deliver(USER, make_mail("y"))
    google.fail_next(100, 429, path="/history", retry_after=1)
    slept: list[float] = []
    with make_provider(google, tokens, sleep=slept.append, max_retries=3) as p:
        gen = p.changes("INBOX", cur, SINCE)
        with pytest.raises(ProviderError) as exc:
            next(gen)
    assert not isinstance(exc.value, AuthFailed)
    assert len(slept) == 3  # then gives up; the caller keeps ``cur``


def test_quota_units_are_spent_in_the_budget(google, tokens):
    for i in range(3):
        google.deliver(USER, make_mail(f"q{i}"))
    budget = QuotaBudget()
    with make_provider(google, tokens, budget=budget) as p:
        p.list_folders()
        run(p, "INBOX", None)
    # labels.list 1 + profile 1 + messages.list 5 + 3 x messages.get 5
    assert google.quota[USER] == budget.total == 22


def test_quota_budget_sleeps_when_the_minute_is_used_up(google, tokens):
    for i in range(4):
        google.deliver(USER, make_mail(f"q{i}"))
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    budget = QuotaBudget(units_per_minute=15, clock=lambda: now[0], sleep=sleep)
    with make_provider(google, tokens, budget=budget, fetch_batch=1) as p:
        batches, _ = run(p, "INBOX", None)
    assert len(upserts(batches)) == 4
    assert slept and budget.waited == pytest.approx(sum(slept))
    assert budget.total == google.quota[USER] == 1 + 1 + 5 + 4 * 5  # labels, profile, list, gets


# ------------------------------------------------------------------------------ auth


def test_invalid_access_token_is_auth_failed(google):
    with GmailProvider(lambda: "ya29.bogus", user=USER, api_base=google.api_base, budget=QuotaBudget()) as p:
        with pytest.raises(AuthFailed):
            p.list_folders()


def test_refresh_token_source_refreshes_and_invalid_grant_is_auth_failed(google, tokens):
    source = CredentialsTokenSource.from_refresh_token(
        tokens["refresh_token"], google.client_id, google.client_secret, token_uri=google.token_uri
    )
    google.deliver(USER, make_mail("x"))
    with GmailProvider(source, user=USER, api_base=google.api_base, budget=QuotaBudget()) as p:
        assert p.profile()["emailAddress"] == USER
        google.expire_access_tokens()  # 401 -> invalidate -> refresh -> retry
        assert {f.name for f in p.list_folders()} >= {"INBOX"}
        assert google.requests["token"] == 2
        google.revoke(tokens["refresh_token"])
        with pytest.raises(AuthFailed, match="invalid_grant"):
            p.list_folders()


def test_token_endpoint_pkce_and_errors(google):
    import base64
    import hashlib

    verifier = "v" * 50
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    code = google.authorize("bob@gmail.com", code_challenge=challenge, redirect_uri="http://127.0.0.1/cb")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": google.client_id,
        "client_secret": google.client_secret,
        "redirect_uri": "http://127.0.0.1/cb",
    }
    bad = requests.post(google.token_uri, data={**form, "code_verifier": "w" * 50}, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"
    code = google.authorize("bob@gmail.com", code_challenge=challenge, redirect_uri="http://127.0.0.1/cb")
    ok = requests.post(google.token_uri, data={**form, "code": code, "code_verifier": verifier}, timeout=10)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert body["refresh_token"] and body["token_type"] == "Bearer"
    again = requests.post(
        google.token_uri, data={**form, "code": code, "code_verifier": verifier}, timeout=10
    )
    assert again.json()["error"] == "invalid_grant"  # single use

    from google.auth.transport.requests import Request
    from google.oauth2 import id_token

    claims = id_token.verify_token(
        body["id_token"], Request(), audience=google.client_id, certs_url=google.certs_uri
    )
    assert claims["email"] == "bob@gmail.com" and "hd" not in claims  # consumer account
    ws = google.issue_tokens("carol@acme.test")
    claims = id_token.verify_token(
        ws["id_token"], Request(), audience=google.client_id, certs_url=google.certs_uri
    )
    assert claims["hd"] == "acme.test" and claims["email_verified"] is True and claims["iss"]

    push = google.push_token("https://api.example.test/v1/webhooks/google")
    claims = id_token.verify_token(
        push, Request(), audience="https://api.example.test/v1/webhooks/google", certs_url=google.certs_uri
    )
    assert claims["email"] == google.push_service_account
    forged = google.push_token("https://api.example.test/v1/webhooks/google", forged=True)
    with pytest.raises(ValueError):
        id_token.verify_token(
            forged,
            Request(),
            audience="https://api.example.test/v1/webhooks/google",
            certs_url=google.certs_uri,
        )

    google.revoke(body["refresh_token"])
    refreshed = requests.post(
        google.token_uri,
        data={
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "client_id": google.client_id,
            "client_secret": google.client_secret,
        },
        timeout=10,
    )
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"


def test_authorize_endpoint_redirects_with_a_code(google):
    google.next_login("dave@acme.test")
    r = requests.get(
        google.auth_uri,
        params={
            "client_id": google.client_id,
            "redirect_uri": "http://127.0.0.1:9/cb",
            "response_type": "code",
            "scope": "openid email",
            "state": "s1",
        },
        allow_redirects=False,
        timeout=10,
    )
    assert r.status_code == 302 and "code=" in r.headers["Location"] and "state=s1" in r.headers["Location"]
    r = requests.get(
        google.auth_uri,
        params={"client_id": google.client_id, "redirect_uri": "http://127.0.0.1:9/cb", "state": "s2"},
        allow_redirects=False,
        timeout=10,
    )
    assert "error=access_denied" in r.headers["Location"]


# ------------------------------------------------------------------------------ client ops


def test_client_operations(google, provider):
    work = google.create_label(USER, "Work")
    a = google.deliver(USER, make_mail("a"))
    b = google.deliver(USER, make_mail("b"))
    provider.set_seen("INBOX", [a, b], True)
    assert "UNREAD" not in google.labels_of(USER, a) and "UNREAD" not in google.labels_of(USER, b)
    provider.set_seen("INBOX", [a], False)
    assert "UNREAD" in google.labels_of(USER, a)
    assert provider.move("INBOX", [a], "Work") == {a: a}
    assert work in google.labels_of(USER, a) and "INBOX" not in google.labels_of(USER, a)
    with pytest.raises(FolderGone):
        provider.move("Work", [a], "Nope")
    provider.delete("INBOX", [b])
    assert "TRASH" in google.labels_of(USER, b)
    assert provider.append("SENT", b"raw") is None

    orig = make_mail("Angebot", from_="Bob <bob@example.com>", to=USER, message_id="offer@example.com")
    first = google.deliver(USER, orig)
    reply = make_mail(
        "Re: Angebot",
        from_=USER,
        to="bob@example.com",
        in_reply_to="offer@example.com",
        references="offer@example.com",
    )
    thread = google.mailbox(USER).messages[first].thread_id
    sent = provider.send(reply, thread_id=thread)
    assert sent["labelIds"] == ["SENT"] and sent["threadId"] == thread
    assert google.requests["messages.send"] == 1

    w = provider.watch("projects/p/topics/gmail")
    assert int(w["expiration"]) > 0 and int(w["historyId"]) == google.history_id(USER)
    assert google.mailbox(USER).watch is not None
    provider.stop()
    assert google.mailbox(USER).watch is None


def test_sent_copy_comes_back_through_history(google, tokens):
    with make_provider(google, tokens) as p:
        _, cur = run(p, "SENT", None)
        sent = p.send(make_mail("hello", from_=USER, to="x@example.com", message_id="sent-1@acme.test"))
    with make_provider(google, tokens) as p:
        batches, _ = run(p, "SENT", cur)
    assert set(upserts(batches)) == {sent["id"]}
    assert b"sent-1@acme.test" in upserts(batches)[sent["id"]].raw


# ------------------------------------------------------------------------------ the real engine


@pytest.fixture
def mirror_env(aws):
    return engine_mirror("a_gmail", USER, SINCE)


def engine_sync(google: FakeGoogle, tokens: dict[str, Any], store: Any, ctx: AccountContext) -> Any:
    engine = SyncEngine(store, ctx, batch_size=2)
    with make_provider(google, tokens) as p:
        states = engine.reconcile_folders(p.list_folders(), "all", [])
        return engine.run(p, states, deadline=float("inf"))


def mirrored() -> dict[str, dict[str, Any]]:
    return mirror_by_subject("a_gmail")


def test_engine_label_move_keeps_id_archive_and_trash_remove(google, tokens, mirror_env):
    store, ctx = mirror_env
    google.create_label(USER, "Work")
    work = google.label_id(USER, "Work")
    ids = {
        s: google.deliver(USER, make_mail(s, message_id=f"{s}@example.com"))
        for s in ("contract", "archive me", "trash me", "delete me")
    }
    google.deliver(USER, make_mail("too old"), internal_date=OLD)
    report = engine_sync(google, tokens, store, ctx)
    before = mirrored()
    assert set(before) == {"contract", "archive me", "trash me", "delete me"} and report.new == 4
    assert before["contract"]["folder"] == "INBOX" and before["contract"]["unread"] is True

    google.move(USER, ids["contract"], "INBOX", work)
    google.remove_labels(USER, ids["contract"], "UNREAD")
    google.remove_labels(USER, ids["archive me"], "INBOX")
    google.trash(USER, ids["trash me"])
    google.delete(USER, ids["delete me"])
    engine_sync(google, tokens, store, ctx)
    after = mirrored()
    assert set(after) == {"contract"}
    assert after["contract"]["id"] == before["contract"]["id"]
    assert after["contract"]["thread_id"] == before["contract"]["thread_id"]
    assert after["contract"]["folder"] == "Work" and after["contract"]["unread"] is False

    # An expired historyId reloads the window without duplicates and keeps the id.
    google.deliver(USER, make_mail("later", message_id="later@example.com"))
    google.expire_history(USER)
    engine_sync(google, tokens, store, ctx)
    reloaded = mirrored()
    assert set(reloaded) == {"contract", "later"}
    assert reloaded["contract"]["id"] == before["contract"]["id"]
    states = store.get_folders()
    assert states["INBOX"].old_gens == [] and states["INBOX"].gen == 1
    assert states["INBOX"].cursor["phase"] == "delta"


# ------------------------------------------------------------------------------ completeness check


def test_inventory_lists_exactly_the_mirrorable_ids(google, tokens):
    ids = [google.deliver(USER, make_mail(f"in {i}")) for i in range(3)]
    google.deliver(USER, make_mail("old"), internal_date=OLD)
    google.deliver(USER, make_mail("archived"), label_ids=("UNREAD",))
    trashed = google.deliver(USER, make_mail("trashed"))
    google.trash(USER, trashed)
    google.deliver(USER, make_mail("spam"), label_ids=("INBOX", "SPAM"))
    google.deliver(USER, make_mail("draft"), label_ids=("INBOX", "DRAFT"))
    with make_provider(google, tokens) as p:
        batches, cursor = run(p, "INBOX", None)
        assert set(upserts(batches)) == set(ids)
        inv = p.inventory("INBOX", cursor, SINCE)
        assert inv.refs == set(ids) == set(upserts(batches))  # the refs of the initial load
        assert inv.requests == 1  # one messages.list page (labels are cached from the sync)
        # Nothing is covered without a cursor, or while the initial load runs.
        assert p.inventory("INBOX", None, SINCE).refs == frozenset()
        assert p.inventory("INBOX", {**cursor, "phase": "initial", "page": None}, SINCE).refs == frozenset()
        # The documented race: Gmail's cursor is account-wide, so a mail that arrived after the
        # folder's last sync is listed (its fetch mirrors it; the next delta upserts it again).
        late = google.deliver(USER, make_mail("late"))
        assert p.inventory("INBOX", cursor, SINCE).refs == {*ids, late}
        with pytest.raises(FolderGone):
            p.inventory("Nope", cursor, SINCE)


def test_inventory_of_1000_mails_costs_two_list_calls_and_no_body(google, tokens):
    for i in range(1000):
        google.deliver(USER, make_mail(f"m{i}"))
    with make_provider(google, tokens) as p:
        p.list_folders()
        cursor = {"v": 1, "phase": "delta", "historyId": str(google.history_id(USER))}
        google.reset_counters()
        inv = p.inventory("INBOX", cursor, SINCE)
    assert len(inv.refs) == 1000
    assert inv.requests == 2 == google.requests["messages.list"]  # 500 per page
    assert set(google.requests) == {"messages.list"}  # no messages.get, no batch: ids only
    assert google.quota[USER] == 10
    lists = [path for _, path in google.log]
    assert all("labelIds=INBOX" in x and "maxResults=500" in x and "format" not in x for x in lists)
    assert "includeSpamTrash" not in "".join(lists)  # false by default: TRASH and SPAM stay out


def test_fetch_builds_the_upserts_of_the_initial_load(google, tokens):
    ids = [google.deliver(USER, make_mail(f"h{i}")) for i in range(3)]
    read = google.deliver(USER, make_mail("read"), label_ids=("INBOX",))
    old = google.deliver(USER, make_mail("old"), internal_date=OLD)
    with make_provider(google, tokens) as p:
        batches, _ = run(p, "INBOX", None)
        loaded = upserts(batches)
        google.delete(USER, ids[2])
        google.trash(USER, ids[1])
        got = p.fetch("INBOX", [ids[0], ids[1], ids[2], read, old, "18fdeadbeef00000"], SINCE)
    # Gone, trashed, old and unknown ids are left out; the others equal the initial load's.
    assert got == [loaded[ids[0]], loaded[read]]
    assert got[0].unread and not got[1].unread and got[0].thread_hint


# ------------------------------------------------------------------------------ error kinds


def test_rate_limit_after_the_retries_is_rate_limited_with_retry_after(google, tokens):
    from mailsync.domain.ports import RateLimited

    google.deliver(USER, make_mail("x"))
    cursor = {"v": 1, "phase": "delta", "historyId": str(google.history_id(USER))}
    for status, retry_after, expected in ((429, 7, 7.0), (403, None, None)):
        google.clear_faults()
        google.fail_next(100, status, path="/messages", retry_after=retry_after)
        with make_provider(google, tokens, max_retries=2) as p:
            p.list_folders()
            with pytest.raises(RateLimited) as err:
                p.inventory("INBOX", cursor, SINCE)
        e = err.value
        assert e.kind == "rate_limited" and e.retry_after == expected
        assert e.status == status and e.code in ("rateLimitExceeded", "userRateLimitExceeded")
    # An HTTP-date Retry-After (RFC 9110 section 10.2.3) is read too.
    google.clear_faults()
    when = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    google.fail_next(100, 429, path="/messages", retry_after=when)
    with make_provider(google, tokens, max_retries=1) as p:
        p.list_folders()
        with pytest.raises(RateLimited) as err:
            p.inventory("INBOX", cursor, SINCE)
    assert err.value.retry_after is not None and 100 < err.value.retry_after <= 120


def test_rate_limited_batch_parts_after_the_retries_are_rate_limited(google, tokens):
    from mailsync.domain.ports import RateLimited

    mid = google.deliver(USER, make_mail("x"))
    google.fail_next(100, 429, path=f"/messages/{mid}", retry_after=3)
    with make_provider(google, tokens, max_retries=2) as p:
        with pytest.raises(RateLimited) as err:
            p.fetch("INBOX", [mid], SINCE)
    assert err.value.retry_after == 3.0 and err.value.kind == "rate_limited"


@pytest.mark.parametrize(
    ("status", "reason", "kind"),
    [
        (403, "insufficientPermissions", "permission_denied"),
        (403, "forbidden", "permission_denied"),
        (403, "quotaExceeded", "quota_exceeded"),
        (403, "dailyLimitExceeded", "rate_limited"),  # session-wide, heals at the daily reset
        (500, "backendError", "provider_error"),
        (404, "notFound", "mailbox_gone"),  # the listing by label
    ],
)
def test_folder_errors_have_their_kind(google, tokens, status, reason, kind):
    google.create_label(USER, "Work")
    mid = google.deliver(USER, make_mail("w"), label_ids=("INBOX",))
    google.add_labels(USER, mid, google.label_id(USER, "Work"))
    cursor = {"v": 1, "phase": "delta", "historyId": str(google.history_id(USER))}
    google.fail_folder(USER, "Work", status, reason=reason)
    slept: list[float] = []
    with make_provider(google, tokens, max_retries=2, sleep=slept.append) as p:
        for call in (
            lambda: p.inventory("Work", cursor, SINCE),
            lambda: list(p.changes("Work", None, SINCE)),
        ):
            with pytest.raises(ProviderError) as err:
                call()
            assert err.value.kind == kind
            if kind != "mailbox_gone":
                assert err.value.status == status and err.value.code == reason
        assert len(slept) == (4 if status == 500 else 0)  # only 5xx is retried here
        # Other folders are unaffected.
        assert p.inventory("INBOX", cursor, SINCE).refs == {mid}
    google.fail_folder(USER, "Work", None)
    with make_provider(google, tokens) as p:
        assert p.inventory("Work", cursor, SINCE).refs == {mid}


def test_refused_refresh_token_is_auth_failed(google, tokens):
    source = CredentialsTokenSource.from_refresh_token(
        tokens["refresh_token"], google.client_id, google.client_secret, token_uri=google.token_uri
    )
    google.fail_refresh(USER)
    with GmailProvider(source, user=USER, api_base=google.api_base, budget=QuotaBudget()) as p:
        with pytest.raises(AuthFailed) as err:
            p.list_folders()
    assert err.value.kind == "auth_failed"
    assert tokens["refresh_token"] not in str(err.value)
    google.fail_refresh(USER, None)
    with GmailProvider(source, user=USER, api_base=google.api_base, budget=QuotaBudget()) as p:
        assert p.profile()["emailAddress"] == USER


def test_transport_failures_have_their_kind(google, tokens):
    from mailsync.domain.ports import ConnectionFailed, TimedOut, TlsFailed

    slept: list[float] = []
    # TLS spoken to a plain-HTTP server: requests' SSLError, not retried.
    tls_base = google.api_base.replace("http://", "https://")
    with make_provider(google, tokens, api_base=tls_base, sleep=slept.append) as p:
        with pytest.raises(TlsFailed) as tls:
            p.profile()
    assert tls.value.kind == "tls_error" and slept == []
    # A server that accepts and never answers.
    with socket.create_server(("127.0.0.1", 0)) as srv:
        base = f"http://127.0.0.1:{srv.getsockname()[1]}"
        with make_provider(google, tokens, api_base=base, timeout=0.3, max_retries=1) as p:
            with pytest.raises(TimedOut) as slow:
                p.profile()
    assert slow.value.kind == "timeout"
    # Nothing listening.
    with socket.create_server(("127.0.0.1", 0)) as srv:
        closed = f"http://127.0.0.1:{srv.getsockname()[1]}"
    with make_provider(google, tokens, api_base=closed, max_retries=1) as p:
        with pytest.raises(ConnectionFailed) as down:
            p.profile()
    assert down.value.kind == "connection_failed"
    assert tokens["access_token"] not in f"{tls.value} {slow.value} {down.value}"
