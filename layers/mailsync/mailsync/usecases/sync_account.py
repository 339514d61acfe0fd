"""Background use cases: sync one account (worker) and find the due ones (scheduler).

Invariants:

* Syncs of one account are serialised by the SQS FIFO message group (the account).
* A sync works within a time budget; when it runs out, progress is already
  stored (cursors move per batch) and a continuation job is enqueued.
* ``AuthFailed`` puts the account in ``auth_error`` and takes it off the due
  index: no more polling until the user reconnects or resumes.
* Other provider errors set ``error`` and back off exponentially; the account stays due.
* The scheduler reads the sparse due index with a Query per shard, never a Scan.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from mailsync import connectors
from mailsync.config import Settings, get_settings
from mailsync.domain.account import NOT_DUE_STATES, STATES, Account
from mailsync.domain.check import check_folders
from mailsync.domain.clock import iso, parse_iso, utcnow
from mailsync.domain.exclude_pass import remove_excluded
from mailsync.domain.health import CheckResult, HealthError, after_failure, after_success, check_due, error_of
from mailsync.domain.ports import ProviderError
from mailsync.domain.sync import FolderState, SyncEngine
from mailsync.errors import AccountGone
from mailsync.observability import logger, metric_by, metrics
from mailsync.store import accounts as repo
from mailsync.store import health as health_store
from mailsync.store.accounts import load_secrets
from mailsync.store.mirror import DynamoMirrorStore
from mailsync.store.queue import sync_jobs
from mailsync.usecases import observe
from mailsync.usecases.accounts import ProviderFactory, account_context, next_due_after
from mailsync.usecases.lifecycle import purge_account_step
from mailsync.usecases.observe import Run


def _progress(acc: Account, states: dict[str, FolderState]) -> Account:
    synced = [s for s in states.values() if s.synced]
    return acc.with_(
        sync=replace(
            acc.sync,
            folders_total=len(synced),
            folders_done=sum(1 for s in synced if s.initial_done),
            messages=sum(s.messages for s in synced),
        )
    )


TRIGGERS = ("schedule", "push", "manual", "continuation", "check")
_TRIGGER_OF = {"schedule": "schedule", "continue": "continuation", "check": "check", "push": "push"}
PUSH_REASONS = ("push", "missed", "created", "updated", "deleted", "reauthorizationRequired")


def trigger_of(reason: str | None) -> str:
    """The ``trigger`` of a job's ``reason`` (what enqueued it) for the sync history."""
    if reason in PUSH_REASONS:
        return "push"
    return _TRIGGER_OF.get(reason or "", "manual" if reason else "schedule")


def _apply_exclusions(acc: Account, s: Settings) -> Account:
    """Remove the mirrored mails the account's exclusion rules match (``domain.exclude_pass``),
    then record the rules' digest, so the pass runs once per rule change. Needs no provider:
    a paused account is cleaned too."""
    rules = acc.settings.exclude
    engine = SyncEngine(
        DynamoMirrorStore(acc.tenant_id, acc.account_id),
        account_context(acc, s),
        batch_size=s.sync_batch_size,
    )
    removed = remove_excluded(engine, rules)
    done = acc.with_(exclude_applied=rules.digest())
    repo.update_sync_fields(done, s.due_shards, fields=("exclude_applied",), states=_LIVE_STATES)
    logger.info(
        "exclusions applied",
        extra={"tenant_id": acc.tenant_id, "account_id": acc.account_id, "removed": removed},
    )
    return done


_LIVE_STATES = tuple(x for x in STATES if x != "deleting")


def sync_account(
    tenant_id: str,
    account_id: str,
    *,
    reason: str | None = None,
    provider_factory: ProviderFactory = connectors.open_provider,
    settings: Settings | None = None,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = utcnow,
    rng: random.Random | None = None,
) -> dict[str, Any]:
    """Run one sync of an account (and its completeness check when asked for or a day old).
    Returns a small report (also logged); the account's state, health and history follow
    ``domain.health``."""
    s = settings or get_settings()
    found = repo.get_account(tenant_id, account_id)
    if found is None:
        return {"status": "gone"}
    acc: Account = found
    if acc.state == "deleting":  # a purge to finish (resumed after a crash or a time-out)
        if purge_account_step(acc, clock() + s.sync_time_budget_seconds, clock):
            return {"status": "gone"}
        sync_jobs.enqueue(tenant_id, account_id, "purge")
        return {"status": "purging"}
    if acc.settings.exclude.digest() != acc.exclude_applied:
        try:
            acc = _apply_exclusions(acc, s)
        except AccountGone:
            return {"status": "gone"}
    if acc.state in NOT_DUE_STATES:
        return {"status": "skipped", "state": acc.state}

    run = Run(acc, trigger_of(reason), now())
    secrets = load_secrets(acc)
    settings_ = acc.settings
    ctx = account_context(acc, s)
    store = DynamoMirrorStore(tenant_id, account_id)
    deadline = clock() + s.sync_time_budget_seconds
    all_states: dict[str, FolderState] = {}
    last_save = [clock()]

    def before_batch() -> None:
        # A settings change made while we sync applies to the mails stored from now on
        # (one GetItem per batch of up to batch_size mails).
        fresh = repo.get_account(tenant_id, account_id)
        if fresh is not None:
            ctx.visibility = fresh.settings.visibility
            ctx.auto_assign = fresh.settings.auto_assign
            ctx.exclude = fresh.settings.exclude

    def on_progress(changed: dict[str, FolderState]) -> None:
        nonlocal acc
        all_states.update(changed)
        if clock() - last_save[0] >= 2.0:  # throttle progress writes
            acc = _progress(acc, all_states)
            repo.update_sync_fields(acc, s.due_shards, fields=("sync",))
            last_save[0] = clock()

    engine = SyncEngine(
        store,
        ctx,
        batch_size=s.sync_batch_size,
        clock=clock,
        on_progress=on_progress,
        before_batch=before_batch,
        now=now,
    )
    connector = connectors.for_account(acc)

    def known(folder: str, refs: Any) -> Any:
        # The refs of ``folder`` the mirror already holds (Graph: a flag update, not a re-download).
        return store.get_locations(
            folder, all_states[folder].gen if folder in all_states else 0, list(refs)
        ).keys()

    provider: Any = None
    check: CheckResult | None = None
    try:
        with provider_factory(acc, secrets) as provider:
            connector.before_sync(acc, provider, known)  # e.g. Graph subscription upkeep
            listed = provider.list_folders()
            all_states.update(
                engine.reconcile_folders(listed, settings_.folder_mode, list(settings_.folders))
            )
            acc = _progress(acc, all_states)
            report = engine.run(provider, all_states, deadline)
            if (
                report.complete
                and clock() < deadline
                and (run.trigger == "check" or check_due(acc, run.started))
            ):
                check = check_folders(
                    engine, provider, all_states, now(), on_healed=run.healed, failed=report.folder_errors
                )
    except AccountGone:
        # Deleted while we synced: the purge holds the mirror; nothing more is stored.
        return {"status": "gone"}
    except ProviderError as e:
        _save_tokens(acc, provider)
        err = error_of(e, now(), secrets=_secret_values(secrets))
        failed = after_failure(
            acc,
            err,
            now=now(),
            poll_seconds=_poll_seconds(acc, s),
            rng=rng or _RNG,
            retry_after=e.retry_after,
            stop=_stops(e),
        )
        if not _save(failed, s, expected=acc.state):
            return _lost_race(tenant_id, account_id)
        run.finish(now(), "error", error=err)
        observe.failure(acc, failed, err)
        return {"status": failed.state if failed.state == "auth_error" else "error", "code": err.code}

    _save_tokens(acc, provider)
    acc = _progress(acc, all_states)
    folder_errors = [
        error_of(e, now(), secrets=_secret_values(secrets), folder=name)
        for name, e in report.folder_errors.items()
    ]
    missing = _missing_selected(settings_.folder_mode, list(settings_.folders), all_states, now())
    loaded = acc.sync.initial_done and report.complete
    synced = acc.with_(sync=replace(acc.sync, last_success_at=iso(now())))
    stops = [err for err, e in zip(folder_errors, report.folder_errors.values(), strict=True) if _stops(e)]
    if stops:
        # The other folders synced, but this one cannot heal by retrying (domain.flaps).
        done = after_failure(
            synced, stops[0], now=now(), poll_seconds=_poll_seconds(acc, s), rng=rng or _RNG, stop=True
        )
    else:
        done = after_success(
            synced,
            now=now(),
            # Google and Microsoft push changes; polling only backs push up, at a slow interval.
            poll_seconds=_poll_seconds(acc, s),
            loaded=loaded,
            folder_errors=folder_errors + missing,
            check=check,
        )
    if check is not None:
        health_store.save_check(tenant_id, account_id, check)
    if not _save(done, s, expected=acc.state):
        return _lost_race(tenant_id, account_id)
    if not report.complete:
        sync_jobs.enqueue(tenant_id, account_id, "continue")
    metrics.add_metric(name="MessagesNew", unit="Count", value=report.new)
    failed_folders = folder_errors + missing
    run.finish(
        now(),
        "partial" if failed_folders else "ok",
        report=report,
        error=failed_folders[0] if failed_folders else None,
    )

    observe.success(acc, done, check)
    result = {
        "status": "ok" if report.complete else "partial",
        "state": done.state,
        "new": report.new,
        "updated": report.updated,
        "removed": report.removed,
        "purged": report.purged,
        "gone_folders": report.gone_folders,
        "failed_folders": sorted(report.folder_errors),
        **({"healed": check.healed} if check else {}),
    }
    logger.info("sync done", extra={"tenant_id": tenant_id, "account_id": account_id, **result})
    return result


SYNC_FIELDS = ("state", "error", "failures", "sync", "health")


def _stops(e: ProviderError) -> bool:
    """The error stops the account (``error`` at once), e.g. UIDVALIDITY flapping."""
    return bool(getattr(e, "stops_account", False))


_RNG = random.Random()


def _lost_race(tenant_id: str, account_id: str) -> dict[str, Any]:
    """Our state write was refused: the account changed under us (the user paused it, gave new
    credentials, deleted it). Theirs wins."""
    current = repo.get_account(tenant_id, account_id)
    if current is None or current.state == "deleting":
        return {"status": "gone"}  # deleted while we synced: the purge owns it
    return {"status": "skipped", "state": current.state}


def _missing_selected(
    mode: str, selected: list[str], states: dict[str, FolderState], at: datetime
) -> list[HealthError]:
    """Folders the user chose that the provider no longer lists (deleted or renamed there)."""
    if mode != "selected":
        return []
    return [
        HealthError("mailbox_gone", f"the folder {name!r} no longer exists at the provider", iso(at), name)
        for name in selected
        if name not in states
    ]


def _secret_values(secrets: dict[str, Any]) -> list[str]:
    return [str(v) for v in secrets.values() if isinstance(v, str | bytes)]


def _poll_seconds(acc: Account, s: Settings) -> int:
    return connectors.for_account(acc).poll_seconds(s)


def _save_tokens(acc: Account, provider: Any) -> None:
    """A provider may have refreshed (and rotated) tokens during the session: store them."""
    connectors.for_account(acc).after_session(acc, provider)


def _save(acc: Account, s: Settings, *, expected: str) -> bool:
    return repo.update_sync_fields(acc, s.due_shards, fields=SYNC_FIELDS, expected_state=expected)


def due_accounts(now: str | None = None, settings: Settings | None = None) -> list[tuple[str, str, str]]:
    """(tenant, account, due) of every account due by ``now``: a Query per shard."""
    s = settings or get_settings()
    now = now or iso(utcnow())
    return [due for shard in range(s.due_shards) for due in _due_in_shard(shard, now)]


def _due_in_shard(shard: int, now: str) -> Iterator[tuple[str, str, str]]:
    yield from repo.due_in_shard(shard, now)


SCHEDULER_THREADS = 16


def schedule(settings: Settings | None = None) -> int:
    """Enqueue one job per due account and push its due time forward; returns the jobs sent.

    The due shards are read in parallel (threads: the work is waiting on DynamoDB and SQS).
    Per due account this costs 1/10 SendMessageBatch and one conditional UpdateItem, never a
    read of the account, so one tick handles tens of thousands of accounts. The age of the
    oldest due account found is emitted as ``OldestDueAgeSeconds``.
    """
    s = settings or get_settings()
    now = utcnow()
    with ThreadPoolExecutor(max_workers=min(s.due_shards, SCHEDULER_THREADS)) as pool:
        results = list(pool.map(lambda shard: _schedule_shard(shard, iso(now), s), range(s.due_shards)))
    oldest = min((due for _, due in results if due), default=None)
    age = max(0.0, (now - parse_iso(oldest)).total_seconds()) if oldest else 0.0
    metrics.add_metric(name="OldestDueAgeSeconds", unit=MetricUnit.Seconds, value=age)
    return sum(sent for sent, _ in results)


def _schedule_shard(shard: int, now: str, s: Settings) -> tuple[int, str | None]:
    sent, oldest = 0, None
    accounts = _due_in_shard(shard, now)
    while due := list(itertools.islice(accounts, 100)):
        oldest = oldest or due[0][2]  # the index sorts by due time: the first is the oldest
        # The dedup id makes a retried tick enqueue the same job once; the due time moves
        # only for jobs the queue accepted, so a refused one is sent again next tick.
        accepted = sync_jobs.enqueue_many([(t, a, "schedule", f"{t}:{a}:{w}") for t, a, w in due])
        next_due = next_due_after(s.poll_seconds)
        for i in accepted:
            repo.push_due(due[i][0], due[i][1], due[i][2], next_due)
        sent += len(accepted)
    return sent, oldest


def census() -> dict[str, int]:
    """How many accounts are in each state (a counting Query per state of the keys-only state
    index), emitted as ``Accounts`` by ``state`` and ``AccountsTotal``; the share of
    ``error`` accounts alarms (template.yaml)."""
    counts = {state: repo.count_in_state(state) for state in STATES}
    for state, n in counts.items():
        metric_by("Accounts", n, state=state)
    metrics.add_metric(name="AccountsTotal", unit=MetricUnit.Count, value=sum(counts.values()))
    return counts
