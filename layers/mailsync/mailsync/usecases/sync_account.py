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
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from mailsync import connectors
from mailsync.config import Settings, get_settings
from mailsync.domain.account import NOT_DUE_STATES, Account
from mailsync.domain.clock import iso, utcnow
from mailsync.domain.ports import AuthFailed, ConnectionFailed, ProviderError
from mailsync.domain.sync import FolderState, SyncEngine
from mailsync.errors import AccountGone
from mailsync.observability import logger, metrics
from mailsync.store import accounts as repo
from mailsync.store.accounts import load_secrets
from mailsync.store.mirror import DynamoMirrorStore
from mailsync.store.queue import sync_jobs
from mailsync.usecases.accounts import (
    ProviderFactory,
    account_context,
    backoff_seconds,
    next_due_after,
)
from mailsync.usecases.lifecycle import purge_account_step


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


def sync_account(
    tenant_id: str,
    account_id: str,
    *,
    provider_factory: ProviderFactory = connectors.open_provider,
    settings: Settings | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Run one sync of an account. Returns a small report (also logged)."""
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
    if acc.state in NOT_DUE_STATES:
        return {"status": "skipped", "state": acc.state}

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
    )
    connector = connectors.for_account(acc)

    def known(folder: str, refs: Any) -> Any:
        # The refs of ``folder`` the mirror already holds (Graph: a flag update, not a re-download).
        return store.get_locations(
            folder, all_states[folder].gen if folder in all_states else 0, list(refs)
        ).keys()

    provider: Any = None
    try:
        with provider_factory(acc, secrets) as provider:
            connector.before_sync(acc, provider, known)  # e.g. Graph subscription upkeep
            listed = provider.list_folders()
            all_states.update(
                engine.reconcile_folders(listed, settings_.folder_mode, list(settings_.folders))
            )
            acc = _progress(acc, all_states)
            report = engine.run(provider, all_states, deadline)
    except AccountGone:
        # Deleted while we synced: the purge holds the mirror; nothing more is stored.
        return {"status": "gone"}
    except AuthFailed as e:
        _save_tokens(acc, provider)
        acc = acc.with_(state="auth_error", error={"code": "auth_failed", "message": str(e)}, next_due=None)
        _save(acc, s)
        logger.warning("sync auth failed", extra={"tenant_id": tenant_id, "account_id": account_id})
        return {"status": "auth_error"}
    except (ConnectionFailed, ProviderError) as e:
        _save_tokens(acc, provider)
        code = getattr(e, "code", "provider_error")
        failures = acc.failures + 1
        acc = acc.with_(
            state="error",
            error={"code": code, "message": str(e)},
            failures=failures,
            next_due=next_due_after(backoff_seconds(failures, s.poll_seconds)),
        )
        _save(acc, s)
        logger.warning(
            "sync failed, backing off",
            extra={"tenant_id": tenant_id, "account_id": account_id, "code": code},
        )
        return {"status": "error", "code": code}

    _save_tokens(acc, provider)
    acc = _progress(acc, all_states)
    acc = acc.with_(
        state="active" if acc.sync.initial_done and report.complete else "initial_sync",
        error=None,
        failures=0,
        # Google and Microsoft push changes; polling only backs push up, at a slow interval.
        next_due=next_due_after(_poll_seconds(acc, s)),
        sync=replace(acc.sync, last_success_at=iso(utcnow())),
    )
    if not _save(acc, s):
        current = repo.get_account(tenant_id, account_id)
        if current is None or current.state == "deleting":
            return {"status": "gone"}  # deleted while we synced: the purge owns it
        return {"status": "skipped", "state": current.state}  # paused meanwhile
    if not report.complete:
        sync_jobs.enqueue(tenant_id, account_id, "continue")
    metrics.add_metric(name="MessagesNew", unit="Count", value=report.new)
    result = {
        "status": "ok" if report.complete else "partial",
        "new": report.new,
        "updated": report.updated,
        "removed": report.removed,
        "purged": report.purged,
        "gone_folders": report.gone_folders,
    }
    logger.info("sync done", extra={"tenant_id": tenant_id, "account_id": account_id, **result})
    return result


SYNC_FIELDS = ("state", "error", "failures", "sync")


def _poll_seconds(acc: Account, s: Settings) -> int:
    return connectors.for_account(acc).poll_seconds(s)


def _save_tokens(acc: Account, provider: Any) -> None:
    """A provider may have refreshed (and rotated) tokens during the session: store them."""
    connectors.for_account(acc).after_session(acc, provider)


def _save(acc: Account, s: Settings) -> bool:
    return repo.update_sync_fields(acc, s.due_shards, fields=SYNC_FIELDS)


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
    read of the account, so one tick handles tens of thousands of accounts.
    """
    s = settings or get_settings()
    now = iso(utcnow())
    with ThreadPoolExecutor(max_workers=min(s.due_shards, SCHEDULER_THREADS)) as pool:
        return sum(pool.map(lambda shard: _schedule_shard(shard, now, s), range(s.due_shards)))


def _schedule_shard(shard: int, now: str, s: Settings) -> int:
    sent = 0
    accounts = _due_in_shard(shard, now)
    while due := list(itertools.islice(accounts, 100)):
        # The dedup id makes a retried tick enqueue the same job once; the due time moves
        # only for jobs the queue accepted, so a refused one is sent again next tick.
        accepted = sync_jobs.enqueue_many([(t, a, "schedule", f"{t}:{a}:{w}") for t, a, w in due])
        next_due = next_due_after(s.poll_seconds)
        for i in accepted:
            repo.push_due(due[i][0], due[i][1], due[i][2], next_due)
        sent += len(accepted)
    return sent
