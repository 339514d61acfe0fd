"""Recovery use cases of sync health: new credentials, a resync, a completeness check on
demand, the sync history, and the support views of ``mailsync admin``.

Invariants:

* New credentials are tried first (an IMAP login): a refused login answers ``auth_failed``
  and changes nothing. Accepted ones replace the envelope and make the account healthy at
  once, with every message, id, thread, link and cursor kept.
* A resync drops the cursors of the synced folders (as a UIDVALIDITY change would), so the
  next sync reloads them; ids, threads and links survive. The reset is stored before the job
  is queued, so a lost job only delays it to the next poll.
* Both clear the folders' UIDVALIDITY flap history (``domain.flaps``): a folder stopped for
  flapping is reloaded by the next sync.
* None of these reads more than the account, its folders and its own partition.
"""

from __future__ import annotations

from typing import Any

from mailsync import connectors
from mailsync.config import get_settings
from mailsync.domain.account import SYNC_OWNED_STATES, Account
from mailsync.domain.check import clear_flaps, reset_for_resync
from mailsync.domain.clock import utcnow
from mailsync.domain.health import recovered
from mailsync.domain.sync import SyncEngine
from mailsync.errors import AccountBusy, Conflict
from mailsync.store import accounts as repo
from mailsync.store import health as health_store
from mailsync.store.accounts import load_secrets
from mailsync.store.mirror import DynamoMirrorStore
from mailsync.store.queue import sync_jobs
from mailsync.usecases.accounts import (
    ProviderFactory,
    _owned,
    account_context,
    login_check,
    public_view,
    require_syncable,
    view,
)

USER_STATES = ("paused",)  # the user owns these; a worker never writes over them


def update_credentials(
    tenant_id: str,
    user_id: str,
    account_id: str,
    body: dict[str, Any],
    *,
    provider_factory: ProviderFactory = connectors.open_provider,
) -> dict[str, Any]:
    """``PUT /v1/accounts/{id}/credentials``: log in with the new password(s), then store them
    and make the account healthy (``active``, or ``initial_sync`` before its first load)."""
    s = get_settings()
    acc = _owned(tenant_id, user_id, account_id)
    if not connectors.for_account(acc).password_credentials:
        raise Conflict(
            "this account signs in through OAuth: reconnect it with the provider's authorize route",
            code="oauth_account",
        )
    current = {k: str(v) for k, v in load_secrets(acc).items()}
    imap_pw = body.get("password") or (body.get("imap") or {}).get("password") or current.get("imap_password")
    smtp_pw = body.get("password") or (body.get("smtp") or {}).get("password") or current.get("smtp_password")
    new = {"imap_password": imap_pw or "", "smtp_password": smtp_pw or ""}
    login_check(acc, new, provider_factory)
    repo.save_credentials(
        tenant_id, account_id, repo.encrypt_credentials(tenant_id, account_id, new, s.kms_key_id)
    )
    # New credentials are the user's "try again": a folder stopped for flapping reloads.
    clear_flaps(SyncEngine(DynamoMirrorStore(tenant_id, account_id), account_context(acc, s)))
    fixed = _recover(acc)
    return view(fixed)


def _recover(acc: Account, attempts: int = 3) -> Account:
    """Healthy at once (a conditional write on the state read: a concurrent worker's result
    loses, we read again and retry), and a sync queued unless the account is paused."""
    s = get_settings()
    fixed = recovered(acc, now=utcnow())
    if not repo.update_sync_fields(
        fixed,
        s.due_shards,
        fields=("state", "error", "failures", "health"),
        expected_state=acc.state,
        states=(*SYNC_OWNED_STATES, *USER_STATES),
    ):
        again = _owned(acc.tenant_id, acc.owner, acc.account_id)  # 404 when deleted meanwhile
        if attempts <= 1:
            raise AccountBusy("the account changed while its credentials were replaced; retry")
        return _recover(again, attempts - 1)
    if fixed.state != "paused":
        sync_jobs.enqueue(acc.tenant_id, acc.account_id, "credentials")
    return fixed


def resync(tenant_id: str, user_id: str, account_id: str) -> dict[str, Any]:
    """``POST /v1/accounts/{id}/resync``: reload every synced folder from the provider."""
    acc = _owned(tenant_id, user_id, account_id)
    require_syncable(acc)
    engine = SyncEngine(DynamoMirrorStore(tenant_id, account_id), account_context(acc, get_settings()))
    folders = reset_for_resync(engine)
    sync_jobs.enqueue(tenant_id, account_id, "resync")
    return {"account_id": account_id, "queued": True, "folders": folders}


def request_check(tenant_id: str, user_id: str, account_id: str) -> dict[str, Any]:
    """``POST /v1/accounts/{id}/check``: a sync followed by the completeness check."""
    acc = _owned(tenant_id, user_id, account_id)
    require_syncable(acc)
    sync_jobs.enqueue(tenant_id, account_id, "check")
    return {"account_id": account_id, "queued": True}


def list_syncs(tenant_id: str, user_id: str, account_id: str) -> dict[str, Any]:
    """``GET /v1/accounts/{id}/syncs``: the last 50 recorded runs, newest first."""
    _owned(tenant_id, user_id, account_id)
    return {"items": health_store.recent_runs(tenant_id, account_id)}


# ------------------------------------------------------------------- support (CLI)
def accounts_in_state(state: str, tenant_id: str | None = None) -> list[dict[str, Any]]:
    """Accounts in ``state`` (of one tenant), for support: a Query of the state index and a
    GetItem per account found."""
    out = []
    for t, a in repo.in_state(state, tenant_id):
        acc = repo.get_account(t, a)
        if acc is not None and acc.state == state:
            out.append({"tenant_id": t, **public_view(acc)})
    return out


def admin_resync(tenant_id: str, account_id: str) -> dict[str, Any]:
    acc = _existing(tenant_id, account_id)
    return resync(tenant_id, acc.owner, account_id)


def admin_check(tenant_id: str, account_id: str) -> dict[str, Any]:
    acc = _existing(tenant_id, account_id)
    return request_check(tenant_id, acc.owner, account_id)


def _existing(tenant_id: str, account_id: str) -> Account:
    acc = repo.get_account(tenant_id, account_id)
    if acc is None:
        return _owned(tenant_id, "", account_id)  # raises the usual 404
    return acc


__all__ = [
    "accounts_in_state", "admin_check", "admin_resync", "list_syncs", "request_check",
    "resync", "update_credentials",
]  # fmt: skip
