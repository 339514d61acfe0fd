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
from typing import Any

from mailsync.config import Settings, get_settings
from mailsync.domain.clock import iso, utcnow
from mailsync.domain.ports import AuthFailed, ConnectionFailed, ProviderError
from mailsync.domain.sync import FolderState, SyncEngine
from mailsync.observability import logger, metrics
from mailsync.providers.factory import make_provider
from mailsync.store import keys, repo
from mailsync.store.mirror import DynamoMirrorStore
from mailsync.store.models import AccountItem
from mailsync.usecases.accounts import (
    ProviderFactory,
    account_context,
    backoff_seconds,
    load_secrets,
    next_due_after,
    purge_account,
)
from mailsync.usecases.jobs import enqueue_sync, enqueue_syncs


def _progress(acc: dict[str, Any], states: dict[str, FolderState]) -> None:
    synced = [s for s in states.values() if s.synced]
    acc["sync"]["folders_total"] = len(synced)
    acc["sync"]["folders_done"] = sum(1 for s in synced if s.initial_done)
    acc["sync"]["messages"] = sum(s.messages for s in synced)


def sync_account(
    tenant_id: str,
    account_id: str,
    *,
    provider_factory: ProviderFactory = make_provider,
    settings: Settings | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Run one sync of an account. Returns a small report (also logged)."""
    s = settings or get_settings()
    acc = repo.get_account(tenant_id, account_id)
    if acc is None:
        return {"status": "gone"}
    if acc["state"] == "deleting":
        purge_account(tenant_id, account_id, acc["email"])
        return {"status": "gone"}
    if acc["state"] in ("paused", "auth_error"):
        return {"status": "skipped", "state": acc["state"]}

    secrets = load_secrets(acc)
    settings_ = acc["settings"]
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
            fresh_settings = fresh.get("settings") or {}
            ctx.visibility = fresh_settings.get("visibility", ctx.visibility)
            ctx.auto_assign = bool(fresh_settings.get("auto_assign", ctx.auto_assign))

    def on_progress(changed: dict[str, FolderState]) -> None:
        all_states.update(changed)
        if clock() - last_save[0] >= 2.0:  # throttle progress writes
            _progress(acc, all_states)
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
    provider: Any = None
    try:
        with provider_factory(acc, secrets) as provider:
            if acc["provider"] == "microsoft":  # lifecycle events leave their Graph work to us
                from mailsync.usecases.microsoft import maintain_subscription

                maintain_subscription(acc, provider)
            listed = provider.list_folders()
            all_states.update(
                engine.reconcile_folders(listed, settings_["folder_mode"], settings_["folders"])
            )
            _progress(acc, all_states)
            if hasattr(provider, "known"):
                # Graph: a changed message we already hold is a flag update, not a re-download.
                provider.known = lambda folder, refs: store.get_locations(  # type: ignore[attr-defined]
                    folder, all_states[folder].gen if folder in all_states else 0, list(refs)
                ).keys()
            report = engine.run(provider, all_states, deadline)
    except AuthFailed as e:
        _save_tokens(acc, provider)
        acc.update(state="auth_error", error={"code": "auth_failed", "message": str(e)}, next_due=None)
        _save(acc, s)
        logger.warning("sync auth failed", extra={"tenant_id": tenant_id, "account_id": account_id})
        return {"status": "auth_error"}
    except (ConnectionFailed, ProviderError) as e:
        _save_tokens(acc, provider)
        acc["failures"] = acc.get("failures", 0) + 1
        acc.update(
            state="error",
            error={"code": getattr(e, "code", "provider_error"), "message": str(e)},
            next_due=next_due_after(backoff_seconds(acc["failures"], s.poll_seconds)),
        )
        _save(acc, s)
        logger.warning(
            "sync failed, backing off",
            extra={"tenant_id": tenant_id, "account_id": account_id, "code": acc["error"]["code"]},
        )
        return {"status": "error", "code": acc["error"]["code"]}

    _save_tokens(acc, provider)
    _progress(acc, all_states)
    initial_done = acc["sync"]["folders_done"] == acc["sync"]["folders_total"]
    acc.update(
        state="active" if initial_done and report.complete else "initial_sync",
        error=None,
        failures=0,
        # Google and Microsoft push changes; polling only backs push up, at a slow interval.
        next_due=next_due_after(_poll_seconds(acc, s)),
    )
    acc["sync"]["last_success_at"] = iso(utcnow())
    if not _save(acc, s):
        current = repo.get_account(tenant_id, account_id)
        if current is None or current["state"] == "deleting":
            purge_account(tenant_id, account_id, acc["email"])  # deleted while we synced
            return {"status": "gone"}
        return {"status": "skipped", "state": current["state"]}  # paused meanwhile
    if not report.complete:
        enqueue_sync(tenant_id, account_id, "continue")
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


def _poll_seconds(acc: dict[str, Any], s: Settings) -> int:
    return {"google": s.google_poll_seconds, "microsoft": s.microsoft_poll_seconds}.get(
        acc["provider"], s.poll_seconds
    )


def _save_tokens(acc: dict[str, Any], provider: Any) -> None:
    """Microsoft: msal may have refreshed (and rotated) tokens; store its cache again."""
    if provider is not None and acc["provider"] == "microsoft":
        from mailsync.usecases.microsoft import save_tokens

        save_tokens(acc, provider)


def _save(acc: dict[str, Any], s: Settings) -> bool:
    return repo.update_sync_fields(acc, s.due_shards, fields=SYNC_FIELDS)


def due_accounts(now: str | None = None, settings: Settings | None = None) -> list[tuple[str, str, str]]:
    """(tenant, account, due) of every account due by ``now``: a Query per shard."""
    s = settings or get_settings()
    now = now or iso(utcnow())
    return [due for shard in range(s.due_shards) for due in _due_in_shard(shard, now)]


def _due_in_shard(shard: int, now: str) -> Iterator[tuple[str, str, str]]:
    for item in AccountItem.due.query(keys.due_shard(shard), AccountItem.gsi2sk <= f"{now}#~"):
        due, tenant_id, account_id = item.gsi2sk.split("#", 2)
        yield tenant_id, account_id, due


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
        accepted = enqueue_syncs([(t, a, "schedule", f"{t}:{a}:{w}") for t, a, w in due])
        next_due = next_due_after(s.poll_seconds)
        for i in accepted:
            repo.push_due(due[i][0], due[i][1], due[i][2], next_due)
        sent += len(accepted)
    return sent
