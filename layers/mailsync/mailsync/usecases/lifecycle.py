"""Deleting accounts, users and tenants: answer at once, purge in the background.

Invariants:

* **At once.** ``DELETE /v1/users/{id}`` marks every account of the user ``deleting``
  before it answers: the accounts leave every list and the due index, and colleagues'
  views drop their mails (:func:`mailsync.usecases.visibility.visible_to_user` checks the
  accounts). ``DELETE /v1/tenant`` revokes every key of the tenant before it answers.
* **In the background, resumable.** The purge runs as queue jobs with a time budget;
  a step that runs out of time enqueues the next one, and a step that dies is delivered
  again by SQS (then dead-lettered after ``maxReceiveCount``; a repeated DELETE
  enqueues it anew). Every step only deletes what is still there
  (:mod:`mailsync.store.purge`), so any crash converges on empty.
* **One place for what follows a purge.** :func:`account_deleted`, :func:`user_purged`
  and :func:`tenant_purged` run exactly when a purge finishes; outbound events hang
  there.
* A provider that cannot be reached does not stop a purge: its push channel is stopped
  where possible (Gmail ``users.stop``, Graph ``DELETE /subscriptions/{id}``), and a
  failure is logged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from mailsync import connectors
from mailsync.config import Settings, get_settings
from mailsync.domain.account import Account
from mailsync.domain.clock import iso, utcnow
from mailsync.domain.user_tokens import MAX_TTL_SECONDS
from mailsync.errors import ConfirmationRequired, UserNotFound, UserPurging
from mailsync.observability import logger, metrics
from mailsync.store import accounts as repo
from mailsync.store import purge, tenants, user_tokens, users
from mailsync.store.queue import sync_jobs

__all__ = [
    "delete_tenant",
    "delete_user",
    "ensure_not_purging",
    "get_user",
    "purge_account_step",
    "purge_tenant_step",
    "purge_user_step",
]


# ----------------------------------------------------------- what follows a purge
def account_deleted(acc: Account) -> None:
    """An account is gone with everything it held (the ``account.deleted`` event's place)."""
    metrics.add_metric(name="AccountsPurged", unit="Count", value=1)
    logger.info("account deleted", extra={"tenant_id": acc.tenant_id, "account_id": acc.account_id})


def user_purged(tenant_id: str, user_id: str, accounts: int) -> None:
    """A user's purge is done (the ``user.purged`` event's place)."""
    logger.info("user purged", extra={"tenant_id": tenant_id, "user_id": user_id, "accounts": accounts})


def tenant_purged(tenant_id: str) -> None:
    logger.info("tenant purged", extra={"tenant_id": tenant_id})


# ------------------------------------------------------------------ accounts
def purge_account_step(
    acc: Account, deadline: float | None, clock: Callable[[], float] = time.monotonic
) -> bool:
    """Mark ``acc`` deleting, stop its push channel, purge it; True when it is gone."""
    if acc.state != "deleting":
        acc = acc.with_(state="deleting", next_due=None)
        repo.save_account(acc, get_settings().due_shards)
    _forget(acc)
    if not purge.purge_account(acc.tenant_id, acc.account_id, acc.email, deadline=deadline, clock=clock):
        return False
    account_deleted(acc)
    return True


def _forget(acc: Account) -> None:
    """Stop the account's push channel at the provider; never fails the purge."""
    if repo.get_credentials_envelope(acc.tenant_id, acc.account_id) is None:
        return  # an earlier step of this purge already dropped the credentials (and forgot)
    try:
        connectors.for_account(acc).forget(acc)
    except Exception as e:  # noqa: BLE001 - the provider may be down or the grant revoked
        logger.warning(
            "could not stop the push channel at the provider; the purge goes on",
            extra={"tenant_id": acc.tenant_id, "account_id": acc.account_id, "error": type(e).__name__},
        )


# --------------------------------------------------------------------- users
def ensure_not_purging(tenant_id: str, user_id: str) -> None:
    """409 ``user_purging`` while the user's purge runs (every connection path calls it)."""
    if users.get_purge(tenant_id, user_id) is not None:
        raise UserPurging("this user's mail is being purged; connect again when it is done")


def delete_user(tenant_id: str, user_id: str) -> dict[str, Any]:
    """Start purging everything of ``user_id``: 202 ``{"user_id", "accounts", "state"}``."""
    accounts = repo.all_of_owner(tenant_id, user_id)
    users.start_purge(tenant_id, user_id, len(accounts), iso(utcnow()), tuple(a.account_id for a in accounts))
    user_tokens.revoke_user(tenant_id, user_id, int(time.time()), MAX_TTL_SECONDS)  # refused at once
    # The job first: if this request dies after it, the job still marks and purges everything.
    sync_jobs.enqueue_purge("purge_user", tenant_id, user_id)
    shards = get_settings().due_shards
    for acc in accounts:
        if acc.state != "deleting":
            repo.save_account(acc.with_(state="deleting", next_due=None), shards)
    logger.info(
        "user purge started", extra={"tenant_id": tenant_id, "user_id": user_id, "accounts": len(accounts)}
    )
    return {"user_id": user_id, "accounts": len(accounts), "state": "purging"}


def get_user(tenant_id: str, user_id: str) -> dict[str, Any]:
    """``{"user_id", "state", "accounts"}``: while purging, the accounts still to purge; else
    the user's accounts (one being deleted on its own no longer counts)."""
    running = users.get_purge(tenant_id, user_id)
    accounts = repo.all_of_owner(tenant_id, user_id)
    if running is None:
        accounts = [a for a in accounts if a.state != "deleting"]
        if not accounts:
            raise UserNotFound("this user has no accounts and no purge runs")
    return {"user_id": user_id, "state": "purging" if running else "active", "accounts": len(accounts)}


def purge_user_step(
    tenant_id: str,
    user_id: str,
    *,
    settings: Settings | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """One job of a user's purge: purge their accounts until the time budget runs out
    (then enqueue the next job), and end the purge when none is left."""
    s = settings or get_settings()
    running = users.get_purge(tenant_id, user_id)
    if running is None:
        return {"status": "none"}
    deadline = clock() + s.sync_time_budget_seconds
    for acc in repo.all_of_owner(tenant_id, user_id):
        if not purge_account_step(acc, deadline, clock):
            sync_jobs.enqueue_purge("purge_user", tenant_id, user_id)
            return {"status": "partial"}
    if repo.all_of_owner(tenant_id, user_id):  # connected in the instant before the record
        sync_jobs.enqueue_purge("purge_user", tenant_id, user_id)
        return {"status": "partial"}
    users.finish_purge(tenant_id, user_id)
    user_purged(tenant_id, user_id, running.accounts)
    return {"status": "purged", "accounts": running.accounts}


# ------------------------------------------------------------------- tenants
def delete_tenant(tenant_id: str, confirm: str | None) -> dict[str, Any]:
    """Revoke every key at once, then purge everything of the tenant in the background."""
    if (confirm or "").strip() != tenant_id:
        raise ConfirmationRequired("deleting a tenant needs the header X-Confirm-Delete with the tenant's id")
    tenants.mark_deleting(tenant_id)
    tenants.revoke_all_keys(tenant_id)
    sync_jobs.enqueue_purge("purge_tenant", tenant_id)
    logger.info("tenant purge started", extra={"tenant_id": tenant_id})
    return {"tenant_id": tenant_id, "state": "purging"}


def purge_tenant_step(
    tenant_id: str,
    *,
    settings: Settings | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """One job of a tenant's purge: accounts, then contacts, OAuth states, webhook endpoints
    (with their deliveries), purge records and keys, the tenant item last. Every list is a Query of the tenant's own partition."""
    s = settings or get_settings()
    deadline = clock() + s.sync_time_budget_seconds

    def again() -> dict[str, Any]:
        sync_jobs.enqueue_purge("purge_tenant", tenant_id)
        return {"status": "partial"}

    if not tenants.is_deleting(tenant_id):
        return {"status": "none"}
    tenants.revoke_all_keys(tenant_id)  # again: a key created in the instant before
    while members := purge.tenant_members(tenant_id, "A"):
        for account_id, _ in members:
            acc = repo.get_account(tenant_id, account_id)
            if acc is None:
                purge.forget_member(tenant_id, "A", account_id)
            elif not purge_account_step(acc, deadline, clock):
                return again()
        if clock() >= deadline:
            return again()
    for kind, drop in (
        ("C", purge.purge_contact),
        ("S", purge.purge_oauth_state),
        ("WH", purge.purge_webhook_endpoint),  # webhook endpoints with their deliveries
    ):
        while members := purge.tenant_members(tenant_id, kind):
            for ident, _ in members:
                drop(tenant_id, ident)
            if clock() >= deadline:
                return again()
    for user_id in users.purging_users(tenant_id):
        users.finish_purge(tenant_id, user_id)
    purge.purge_tenant_objects(tenant_id)
    tenants.delete_tenant_items(tenant_id)
    tenant_purged(tenant_id)
    return {"status": "purged"}
