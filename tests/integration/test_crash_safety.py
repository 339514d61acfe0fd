"""Fault injection: a sync may crash at any AWS write and, for Gmail and Graph, at any
provider request (or lose the network there). The next run must converge on the exact
mirror: no duplicates, nothing lost, no dangling thread, no stray S3 object, and no stored
cursor ahead of the stored data (tests/support/crash.py, crash_worlds.py)."""

from __future__ import annotations

import os
import time

import pytest

from mailsync.config import get_settings
from mailsync.store import mirror as mirror_store
from mailsync.store.models import ThreadItem
from mailsync.usecases import accounts
from tests.support.accounts import connect, mirror, sync
from tests.support.crash import Crash, Faults, Point, check_integrity, points, run_crashing, sample
from tests.support.crash_worlds import PAGE, GmailWorld, GraphWorld, World
from tests.support.dovecot import make_mail

pytestmark = pytest.mark.integration


def snapshot(acc):
    """The mirror as users see it, independent of crash timing."""
    msgs = check_integrity(acc)
    rows = sorted((m["subject"], m["folder"], m["unread"]) for m in msgs)
    threads = {m["thread_id"] for m in msgs}
    by_thread = sorted(sorted(m["subject"] for m in msgs if m["thread_id"] == t) for t in threads)
    return rows, by_thread


def mutate(dovecot, user):
    """A realistic delta: new mails and replies, a move, a delete, a flag change."""
    uids = dovecot.uids(user, "INBOX")
    dovecot.append(
        user, "INBOX", make_mail("Re: A", message_id="a2@x", in_reply_to="a1@x", references="a1@x")
    )
    dovecot.append(user, "INBOX", make_mail("D", message_id="d1@x"))
    dovecot.move(user, "INBOX", [uids[0]], "Archive")
    dovecot.delete(user, "INBOX", [uids[1]])
    dovecot.set_seen(user, "INBOX", [uids[2]], True)
    dovecot.move(user, "INBOX", [uids[3]], "Junk")


def seed(dovecot, user):
    dovecot.append(user, "INBOX", make_mail("A", message_id="a1@x"))
    dovecot.append(user, "INBOX", make_mail("B", message_id="b1@x"))
    dovecot.append(user, "INBOX", make_mail("C", message_id="c1@x"))
    dovecot.append(user, "INBOX", make_mail("E", message_id="e1@x"))
    dovecot.append(user, "Archive", make_mail("Re: C", message_id="c2@x", in_reply_to="c1@x"))


def test_crash_at_every_write_converges(tenant, dovecot, monkeypatch):
    faults = Faults(monkeypatch)
    # A crash inside the lock leaves the lease to run out (a kill frees nothing); keep that
    # wait short here: no other writer contends.
    monkeypatch.setattr(mirror_store, "LOCK_LEASE_SECONDS", 0.05)

    # Reference: the same scenario without crashes.
    ref_user = dovecot.new_user("ref")
    ref = connect(dovecot, ref_user)
    seed(dovecot, ref_user[0])
    sync(ref)
    mutate(dovecot, ref_user[0])
    sync(ref)
    expected = snapshot(ref)
    assert expected[0] == [
        ("A", "Archive", True),
        ("C", "INBOX", False),
        ("D", "INBOX", True),
        ("Re: A", "INBOX", True),
        ("Re: C", "Archive", True),
    ]

    # How many writes does the delta sync make? Crash at each of them in turn.
    probe_user = dovecot.new_user("probe")
    probe = connect(dovecot, probe_user)
    seed(dovecot, probe_user[0])
    sync(probe)
    mutate(dovecot, probe_user[0])
    with faults.run():
        sync(probe)
    total = faults.counts["aws"]
    assert total >= 8

    for k in range(1, total + 1):
        user = dovecot.new_user(f"crash{k}")
        acc = connect(dovecot, user)
        seed(dovecot, user[0])
        sync(acc)
        mutate(dovecot, user[0])
        run_crashing(faults, Point("aws", k, "before"), lambda acc=acc: sync(acc))
        sync(acc)  # the next run
        assert snapshot(acc) == expected, f"diverged after a crash at write {k} of {total}"


def test_crash_during_initial_load_resumes_without_duplicates(tenant, dovecot, monkeypatch):
    faults = Faults(monkeypatch)
    # A crash kills the run before it releases the mirror lock; the next run waits out the lease.
    monkeypatch.setattr(mirror_store, "LOCK_LEASE_SECONDS", 0.05)
    user = dovecot.new_user("initial")
    acc = connect(dovecot, user)
    for i in range(30):
        dovecot.append(user[0], "INBOX", make_mail(f"m{i:02d}", message_id=f"m{i}@x"))
    monkeypatch.setenv("MAILSYNC_SYNC_BATCH_SIZE", "7")
    get_settings.cache_clear()
    with faults.run(Point("aws", 25, "before")), pytest.raises(Crash):  # in the 2nd or 3rd batch of 7
        sync(acc)
    folders = {f["name"]: f for f in accounts.list_folders("t1", "alice", acc["id"])}
    partial = len(mirror(acc))
    assert 7 <= folders["INBOX"]["messages"] <= partial < 30  # the batches before the crash were kept
    sync(acc)
    assert [m["subject"] for m in mirror(acc)] == [f"m{i:02d}" for i in range(30)]


# --------------------------------------------------------------------------------------------
# Gmail and Graph: a crash at every AWS write and provider request of a sync


WORLDS: dict[str, type[World]] = {"gmail": GmailWorld, "graph": GraphWorld}
SCENARIOS = ("initial", "delta")  # the first load (paged), and a paged delta of every change
# The default run's deterministic sample, spread evenly over providers and scenarios (a point
# costs 1.5-5 s here: a fresh mailbox, account and two or three syncs on moto), so that
# `make test` stays in its budget; MAILSYNC_CRASH_ALL=1 (`make fuzz`) runs every point.
DEFAULT_POINTS = 12


def prepare(world: World, scenario: str) -> None:
    """The mailbox up to the sync that will crash: seeded, and for ``delta`` loaded and changed."""
    world.seed()
    if scenario == "delta":
        assert world.sync()["status"] == "ok"
        world.mutate()


def crash_and_recover(world: World, scenario: str, faults: Faults, point: Point | None) -> list[str]:
    """Run the crashing sync, check the cursors it left, run the next sync; returns the
    divergences (empty: converged on the exact mirror)."""
    prepare(world, scenario)
    run_crashing(faults, point, world.sync)
    problems = [f"cursor ahead: {v}" for v in world.cursor_violations()]
    report = world.sync()  # the next run
    if report.get("status") != "ok":
        problems.append(f"the next run answered {report}")
    try:
        got = world.mirrored()
    except (AssertionError, ThreadItem.DoesNotExist) as e:
        return [*problems, f"inconsistent mirror: {type(e).__name__}: {e}"]
    want = world.expected()
    problems += [f"lost: {row}" for row in sorted(set(want) - set(got))]
    problems += [f"duplicated or stale: {row}" for row in sorted(set(got) - set(want))]
    if len(got) != len(set(got)):
        problems.append("duplicated rows")
    return problems


@pytest.fixture
def rest_faults(tenant, google, microsoft, monkeypatch):
    """Fresh accounts on both fakes with small pages, and the injection armed on both."""
    monkeypatch.setenv("MAILSYNC_SYNC_BATCH_SIZE", str(PAGE))
    get_settings.cache_clear()
    monkeypatch.setattr(mirror_store, "LOCK_LEASE_SECONDS", 0.05)  # see test_crash_at_every_write
    fakes = {"gmail": google, "graph": microsoft}
    faults = Faults(monkeypatch)
    for name, fake in fakes.items():
        faults.hosts |= WORLDS[name](fake, f"probe-{name}@makler.example").hosts
    return faults, fakes


def matrix(faults: Faults, fakes: dict) -> list[tuple[str, str, Point]]:
    """Every injection point: a crash-free probe of each provider and scenario counts the
    AWS writes and provider requests of the sync that will crash."""
    out = []
    only = os.environ.get("MAILSYNC_CRASH_PROVIDERS")  # e.g. "graph": one provider's points
    for name, world_cls in WORLDS.items():
        if only and name not in only.split(","):
            continue
        for scenario in SCENARIOS:
            world = world_cls(fakes[name], f"probe-{scenario}@{name}.example")
            prepare(world, scenario)
            with faults.run():
                assert world.sync()["status"] == "ok"
            assert world.mirrored() == world.expected(), "the crash-free run itself diverges"
            writes, calls = faults.counts["aws"], faults.counts["http"]
            print(f"{name} {scenario}: {writes} AWS writes, {calls} provider requests")
            out += [(name, scenario, p) for p in points(writes, calls)]
    return out


def test_crash_at_every_aws_write_and_provider_request_converges(rest_faults):
    faults, fakes = rest_faults
    every = matrix(faults, fakes)
    assert len(every) >= 100 or os.environ.get("MAILSYNC_CRASH_PROVIDERS")  # docs/reliability.md
    size = len(every) if os.environ.get("MAILSYNC_CRASH_ALL") == "1" else DEFAULT_POINTS
    size = int(os.environ.get("MAILSYNC_CRASH_POINTS", size))
    groups = sorted({(name, scenario) for name, scenario, _ in every})
    run = [
        case
        for g in groups
        for case in sample([c for c in every if c[:2] == g], -(-size // len(groups)), f"crash {g}")
    ]
    print(f"crash matrix: {len(every)} injection points, {len(run)} run")
    failures = {}
    for k, (name, scenario, point) in enumerate(run):
        world = WORLDS[name](fakes[name], f"c{k}-{scenario}@{name}.example")
        started = time.monotonic()
        problems = crash_and_recover(world, scenario, faults, point)
        print(f"{name} {scenario} {point}: {time.monotonic() - started:.2f}s {problems or 'ok'}")
        if problems:
            failures[f"{name} {scenario} {point}"] = problems
    print(f"crash matrix: {len(run) - len(failures)} of {len(run)} converged")
    assert failures == {}
