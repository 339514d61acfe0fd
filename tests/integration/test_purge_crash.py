"""A user's purge survives a crash at any point (issue 12): it runs as a chain of queue
jobs, one page of the account at a time; a job that dies is delivered again, and the purge
converges on nothing left of the user, without touching a colleague's data. A sync that
loaded the account before the DELETE stores nothing after the purge began."""

from __future__ import annotations

import functools
import itertools
import json
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import botocore.client
import pytest

from mailsync import connectors
from mailsync.config import get_settings
from mailsync.store import keys, purge
from mailsync.usecases import lifecycle
from mailsync.usecases.sync_account import sync_account
from mailsync_local.runner import load_handler
from tests.support.accounts import connect, mirror, sync
from tests.support.api import ApiClient
from tests.support.crm import append, put_contact
from tests.support.purge import account_objects, discard_jobs, naming, run_jobs, run_one, tenant_api

pytestmark = pytest.mark.integration

KUNDE = "kunde@kunde.test"
CONTACT = "c-kunde"
PDF = ("Police.pdf", "application/pdf", b"%PDF-1.4 police " * 64)
THREADS = 7  # alice's mail: 7 threads of an inquiry and its answer
MIDDLE = 8  # a BatchWriteItem in the middle of the purge (test_purge_runs_page_by_page checks it)


class Crash(Exception):
    pass


class Fault:
    """Counts every AWS call (botocore level: boto3 and pynamodb alike) and raises
    :class:`Crash` once, at the ``n``-th call of ``operation`` that ``match``es its
    parameters: before it is sent, or with ``after`` once it succeeded (the work is done
    but the step dies before it can tell)."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        operation: str | None = None,
        n: int = 1,
        match: Callable[[dict[str, Any]], bool] | None = None,
        after: bool = False,
    ) -> None:
        self.counts: Counter[str] = Counter()
        self.fired = False
        seen = 0
        original = botocore.client.BaseClient._make_api_call

        def patched(client: Any, op: str, params: dict[str, Any]) -> Any:
            nonlocal seen
            self.counts[op] += 1
            hit = not self.fired and op == operation and (match is None or match(params))
            if hit:
                seen += 1
                hit = seen == n
            if hit and not after:
                self.fired = True
                raise Crash(f"crash before {op} #{n}")
            result = original(client, op, params)
            if hit:
                self.fired = True
                raise Crash(f"crash after {op} #{n}")
            return result

        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", patched)


def key_is(pk: Callable[[World], str], sk: str) -> Callable[[World], Callable[[dict[str, Any]], bool]]:
    def for_world(w: World) -> Callable[[dict[str, Any]], bool]:
        def match(params: dict[str, Any]) -> bool:
            k = params.get("Key") or {}
            return k.get("pk", {}).get("S") == pk(w) and k.get("sk", {}).get("S") == sk

        return match

    return for_world


@dataclass
class World:
    alice: ApiClient
    bob: ApiClient
    admin: ApiClient
    account: dict[str, Any]
    login: str
    mids: set[str]
    threads: set[str]
    bob_account: str
    bob_mids: set[str]

    @property
    def pk(self) -> str:
        return keys.account("t1", self.account["id"])

    def needles(self) -> set[str]:
        return {self.account["id"], "T#t1#U#alice#", self.account["email"], *self.mids, *self.threads}

    def bob_state(self) -> tuple[list[str], set[str], Any]:
        """Every item naming bob's account, owner keys or mails; his objects; the contact."""
        items = sorted(
            json.dumps(i, sort_keys=True) for i in naming({self.bob_account, "T#t1#U#bob#", *self.bob_mids})
        )
        return items, account_objects(self.bob_account), self.bob.get(f"/v1/contacts/{CONTACT}").body


def build(dovecot: Any) -> World:
    """alice: an IMAP account with 14 public mails (7 threads, some with an attachment) of a
    contact visible to everyone; bob: an IMAP account with 3 mails of the same contact."""
    alice, bob = ApiClient("key-t1", "alice"), ApiClient("key-t1", "bob")
    put_contact(alice, CONTACT, [KUNDE], visible_to=["*"])
    login, password = dovecot.new_user("alice")
    acc = connect(
        dovecot, (login, password), owner="alice", backfill_days=7, settings={"visibility": "public"}
    )
    for t in range(THREADS):
        first = f"anfrage-{t}@kunde.test"
        append(dovecot, login, 2 * t, f"Anfrage {t}", from_=KUNDE, to=acc["email"], message_id=first)
        append(
            dovecot,
            login,
            2 * t + 1,
            f"Re: Anfrage {t}",
            from_=acc["email"],
            to=KUNDE,
            in_reply_to=first,
            references=first,
            attachment=PDF if t % 2 else None,
        )
    assert sync(acc)["status"] == "ok"
    bob_login = dovecot.new_user("bob")
    bob_acc = connect(dovecot, bob_login, owner="bob", backfill_days=7, settings={"visibility": "public"})
    for i in range(3):
        append(dovecot, bob_login[0], 20 + i, f"Bob {i}", from_=KUNDE, to=bob_acc["email"], attachment=PDF)
    assert sync(bob_acc)["status"] == "ok"
    mails = mirror(acc)
    assert len(mails) == 2 * THREADS
    w = World(
        alice,
        bob,
        tenant_api(),
        acc,
        login,
        {m["id"] for m in mails},
        {m["thread_id"] for m in mails},
        bob_acc["id"],
        {m["id"] for m in mirror(bob_acc)},
    )
    assert len(w.threads) == THREADS and len(w.bob_mids) == 3
    assert history_subjects(bob) == {m["subject"] for m in mails} | {"Bob 0", "Bob 1", "Bob 2"}
    discard_jobs()
    return w


def history_subjects(api: ApiClient) -> set[str]:
    r = api.get(f"/v1/contacts/{CONTACT}/messages", limit=200)
    assert r.status == 200, r.body
    return {m["subject"] for m in r.body["items"]}


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 5 items instead of 200 (a tuning constant): alice's account spans many."""
    monkeypatch.setattr(purge, "PAGE", 5)


@pytest.fixture
def world(tenant: dict[str, str], dovecot: Any, small_pages: None) -> World:
    return build(dovecot)


@pytest.fixture
def stepping_worker(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The real sync worker, whose purge steps read a clock that is past their time budget
    at every look: each job purges one page and enqueues the next one."""
    handler = load_handler("sync_worker")
    ticks = itertools.count(step=10 * get_settings().sync_time_budget_seconds)
    module = sys.modules["mailsync_fn_sync_worker"]
    monkeypatch.setattr(
        module,
        "purge_user_step",
        functools.partial(lifecycle.purge_user_step, clock=lambda: float(next(ticks))),
    )
    return handler


def delete_alice(w: World) -> None:
    r = w.admin.delete("/v1/users/alice")
    assert r.status == 202 and r.body == {"user_id": "alice", "accounts": 1, "state": "purging"}, r.body


def assert_purged(w: World, bob_before: tuple[list[str], set[str], Any]) -> None:
    assert naming(w.needles()) == []
    assert account_objects(w.account["id"]) == set()
    r = w.admin.get("/v1/users/alice")
    assert r.status == 404 and r.body["code"] == "user_not_found", r.body
    assert w.bob_state() == bob_before
    assert bob_before[2]["visible_to"] == ["*"]
    assert history_subjects(w.bob) == {"Bob 0", "Bob 1", "Bob 2"}


def test_purge_runs_page_by_page_over_many_jobs(world, stepping_worker, monkeypatch):
    w = world
    bob_before = w.bob_state()
    delete_alice(w)
    calls = Fault(monkeypatch)  # counts only
    left = [len(naming(w.needles()))]
    jobs = 0
    while ran := run_one(stepping_worker):
        (job, ok) = ran
        assert ok and job == {"kind": "purge_user", "tenant_id": "t1", "user_id": "alice"}, ran
        jobs += 1
        left.append(len(naming(w.needles())))
        if left[-1]:
            # Half purged: still purging, and still nothing of alice in bob's view.
            assert w.admin.get("/v1/users/alice").body["state"] == "purging"
            assert history_subjects(w.bob) == {"Bob 0", "Bob 1", "Bob 2"}
    assert jobs >= 6, left  # one page per job
    assert left == sorted(left, reverse=True) and left[-1] == 0, left  # every job took its share
    assert calls.counts["BatchWriteItem"] > 2 * MIDDLE  # MIDDLE is in the middle of the purge
    assert_purged(w, bob_before)


def nth(operation: str, n: int = 1, *, after: bool = False, match: Any = None) -> dict[str, Any]:
    return {"operation": operation, "n": n, "after": after, "match": match}


CRASHES = {
    "taking the mirror lock for good": nth("UpdateItem"),
    "the first page's deletes": nth("BatchWriteItem"),
    "a page in the middle": nth("BatchWriteItem", MIDDLE),
    "the first S3 delete": nth("DeleteObjects"),
    "after the first S3 delete": nth("DeleteObjects", after=True),
    "after enqueuing the next step": nth("SendMessage", after=True),
    "the lock item's delete": nth("DeleteItem", match=key_is(lambda w: w.pk, "LOCK")),
    "the account item's delete": nth("DeleteItem", match=key_is(lambda w: w.pk, "A")),
    "after the purge record's delete": nth(
        "DeleteItem", after=True, match=key_is(lambda w: "T#t1", keys.tenant_member_sk("U", "alice"))
    ),
}


@pytest.mark.parametrize("point", list(CRASHES))
def test_a_crash_at_any_point_of_the_purge_converges(world, stepping_worker, monkeypatch, point):
    w = world
    bob_before = w.bob_state()
    delete_alice(w)
    spec = dict(CRASHES[point])
    match = spec.pop("match")
    fault = Fault(monkeypatch, **spec, match=match(w) if match else None)

    ran = run_jobs(stepping_worker, stop_after_failure=True)
    assert fault.fired and ran[-1][1] is False, (point, ran)
    # Dead mid-way: alice's mail stays out of bob's view while the purge is unfinished.
    assert history_subjects(w.bob) == {"Bob 0", "Bob 1", "Bob 2"}
    assert w.bob_state() == bob_before

    # SQS delivers the job again (the fault does not repeat): the purge finishes.
    ran = run_jobs(stepping_worker)
    assert all(ok for _, ok in ran) and {job["kind"] for job, _ in ran} == {"purge_user"}, ran
    assert_purged(w, bob_before)


# ------------------------------------------------------------ syncs and the purge
class Recorder:
    """Records every AWS write that would store something of an account: an S3 object
    under its prefix, or an item put or updated that names it (the purge's own lock
    hold excepted)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, account_id: str) -> None:
        self.stored: list[tuple[str, str]] = []
        original = botocore.client.BaseClient._make_api_call
        prefix = f"t/t1/a/{account_id}/"

        def patched(client: Any, op: str, params: dict[str, Any]) -> Any:
            text = json.dumps(params, default=str)
            if op == "PutObject" and params["Key"].startswith(prefix):
                self.stored.append((op, params["Key"]))
            elif op == "BatchWriteItem" and "PutRequest" in text and account_id in text:
                self.stored.append((op, text[:300]))
            elif op in ("PutItem", "TransactWriteItems") and account_id in text:
                self.stored.append((op, text[:300]))
            elif op == "UpdateItem" and account_id in text and '"purge"' not in text:
                self.stored.append((op, text[:300]))
            return original(client, op, params)

        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", patched)


def test_an_older_sync_job_run_after_the_delete_stores_nothing(world, dovecot, monkeypatch):
    w = world
    bob_before = w.bob_state()
    for i in range(3):
        append(dovecot, w.login, 40 + i, f"Neu {i}", from_=KUNDE, to=w.account["email"], attachment=PDF)
    assert w.alice.post(f"/v1/accounts/{w.account['id']}/sync").status == 202  # queued before ...
    delete_alice(w)  # ... the DELETE, whose purge job is queued after it
    recorder = Recorder(monkeypatch, w.account["id"])
    ran = run_jobs()
    assert [(job.get("kind", "sync"), ok) for job, ok in ran] == [("sync", True), ("purge_user", True)], ran
    assert recorder.stored == []
    assert_purged(w, bob_before)


@pytest.mark.parametrize("when", ["listing folders", "between two batches"])
def test_a_sync_in_flight_when_the_purge_runs_stores_nothing(tenant, dovecot, monkeypatch, when):
    """The sync loaded alice's account before the DELETE; the whole purge runs while it
    talks to the mail server. Whatever it does next, nothing of the account is stored."""
    login, password = dovecot.new_user("alice")
    acc = connect(dovecot, (login, password), owner="alice", backfill_days=7)
    for i in range(7):
        append(dovecot, login, i, f"Mail {i}", from_=KUNDE, to=acc["email"])
    admin = tenant_api()
    discard_jobs()
    purged: list[Any] = []

    def purge_now() -> None:
        r = admin.delete("/v1/users/alice")
        assert r.status == 202 and r.body["accounts"] == 1, r.body
        purged.extend(run_jobs())

    def factory(account: Any, secrets: dict[str, Any]) -> Any:
        provider = connectors.open_provider(account, secrets)
        list_folders, changes = provider.list_folders, provider.changes

        def listing() -> Any:
            folders = list_folders()
            if when == "listing folders":
                purge_now()
            return folders

        def batches(*a: Any, **kw: Any) -> Any:
            for i, batch in enumerate(changes(*a, **kw)):
                if when == "between two batches" and i == 1 and not purged:
                    assert mirror(acc), "the first batch was stored before the purge"
                    purge_now()
                yield batch

        provider.list_folders, provider.changes = listing, batches
        return provider

    settings = get_settings().model_copy(update={"sync_batch_size": 3})
    result = sync_account("t1", acc["id"], provider_factory=factory, settings=settings)
    assert purged and all(ok for _, ok in purged), purged
    assert result["status"] == "gone", result
    assert naming({acc["id"], "T#t1#U#alice#", acc["email"]}) == []
    assert account_objects(acc["id"]) == set()
    r = admin.get("/v1/users/alice")
    assert r.status == 404 and r.body["code"] == "user_not_found", r.body
