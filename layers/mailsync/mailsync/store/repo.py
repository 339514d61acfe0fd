"""Repositories for tenants, API keys and accounts (GetItem / Query only, never Scan)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from mailsync.errors import AccountExists, InvalidCursor, NotFound
from mailsync.store import keys
from mailsync.store.models import (
    AccountItem,
    ApiKeyItem,
    CredentialItem,
    EmailLockItem,
    FolderItem,
    TenantItem,
)

ACCOUNT_FIELDS = (
    "tenant_id", "account_id", "owner", "email", "provider", "state", "error", "settings", "servers",
    "sync", "sync_start", "backfill_days", "failures", "created_at", "saves_sent",
)  # fmt: skip


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# ------------------------------------------------------------------ tenants
def create_tenant(tenant_id: str, name: str, api_key: str, now: str) -> None:
    TenantItem(keys.tenant(tenant_id), "T", tenant_id=tenant_id, name=name, created_at=now).save()
    ApiKeyItem(keys.api_key(hash_key(api_key)), "K", tenant_id=tenant_id, created_at=now).save()


def allow_redirects(tenant_id: str, patterns: list[str]) -> list[str]:
    """Add OAuth redirect URI patterns to a tenant's allowlist; returns the new list."""
    item = TenantItem.get(keys.tenant(tenant_id), "T", consistent_read=True)
    merged = list(dict.fromkeys([*(str(p) for p in (item.redirect_allowlist or [])), *patterns]))
    item.update(actions=[TenantItem.redirect_allowlist.set(merged)])  # type: ignore[arg-type]
    return merged


def tenant_for_key(api_key: str) -> str | None:
    try:
        return ApiKeyItem.get(keys.api_key(hash_key(api_key)), "K").tenant_id
    except DoesNotExist:
        return None


# ----------------------------------------------------------------- accounts
def account_doc(item: AccountItem) -> dict[str, Any]:
    d = {f: getattr(item, f) for f in ACCOUNT_FIELDS}
    d["backfill_days"] = int(d["backfill_days"] or 0)
    d["failures"] = int(d["failures"] or 0)
    d["next_due"] = item.gsi2sk.split("#", 1)[0] if item.gsi2sk else None
    return d


def account_item(doc: dict[str, Any], due_shards: int) -> AccountItem:
    t, a = doc["tenant_id"], doc["account_id"]
    item = AccountItem(keys.account(t, a), "A")
    for f in ACCOUNT_FIELDS:
        setattr(item, f, doc.get(f))
    item.gsi1pk = keys.owner_accounts(t, doc["owner"])
    item.gsi1sk = f"{doc['created_at']}#{a}"
    if doc.get("next_due") and doc["state"] not in ("paused", "auth_error"):
        shard = int(hashlib.sha1(a.encode(), usedforsecurity=False).hexdigest(), 16) % due_shards
        item.gsi2pk = keys.due_shard(shard)
        item.gsi2sk = f"{doc['next_due']}#{t}#{a}"
    return item


def get_account(tenant_id: str, account_id: str) -> dict[str, Any] | None:
    try:
        return account_doc(AccountItem.get(keys.account(tenant_id, account_id), "A", consistent_read=True))
    except DoesNotExist:
        return None


def save_account(doc: dict[str, Any], due_shards: int) -> None:
    account_item(doc, due_shards).save()


def account_by_email(tenant_id: str, email: str) -> str | None:
    try:
        return EmailLockItem.get(keys.email_lock(tenant_id, email), "E").account_id
    except DoesNotExist:
        return None


def insert_account(doc: dict[str, Any], envelope: dict[str, Any], due_shards: int) -> None:
    """Account + credential + one-per-mailbox lock, atomically (409 when the lock exists)."""
    t, a = doc["tenant_id"], doc["account_id"]
    lock = EmailLockItem(keys.email_lock(t, doc["email"]), "E", account_id=a)
    try:
        with TransactWrite(
            connection=Connection(region=AccountItem.Meta.region, host=AccountItem.Meta.host)
        ) as tx:
            tx.save(lock, condition=EmailLockItem.pk.does_not_exist())
            tx.save(account_item(doc, due_shards))
            tx.save(CredentialItem(keys.account(t, a), "CRED", envelope=envelope))
    except TransactWriteError as e:
        if (
            "ConditionalCheckFailed" in str(e)
            or getattr(e, "cause_response_code", "") == "TransactionCanceledException"
        ):
            raise AccountExists(f"{doc['email']} is already connected in this tenant") from e
        raise


def get_credentials_envelope(tenant_id: str, account_id: str) -> dict[str, Any] | None:
    try:
        return CredentialItem.get(keys.account(tenant_id, account_id), "CRED", consistent_read=True).envelope
    except DoesNotExist:
        return None


def save_credentials_envelope(tenant_id: str, account_id: str, envelope: dict[str, Any]) -> None:
    CredentialItem(keys.account(tenant_id, account_id), "CRED", envelope=envelope).save()


def list_folders(tenant_id: str, account_id: str) -> list[FolderItem]:
    pk = keys.account(tenant_id, account_id)
    return list(FolderItem.query(pk, FolderItem.sk.startswith("F#"), consistent_read=True))


# ---------------------------------------------------------------- paging
def encode_cursor(lek: dict[str, Any] | None) -> str | None:
    if not lek:
        return None
    return base64.urlsafe_b64encode(json.dumps(lek, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, expected: dict[str, str]) -> dict[str, Any] | None:
    """Decode a page cursor and check it belongs to the partition being read.

    A cursor forged for another partition (tenant, user) is refused, not followed.
    """
    if not cursor:
        return None
    try:
        lek = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as e:
        raise InvalidCursor("cursor is not valid") from e
    if not isinstance(lek, dict):
        raise InvalidCursor("cursor is not valid")
    for attr, value in expected.items():
        if not isinstance(lek.get(attr), dict) or lek[attr].get("S") != value:
            raise InvalidCursor("cursor does not belong to this list")
    return lek


def require(doc: dict[str, Any] | None, what: str = "resource") -> dict[str, Any]:
    if doc is None:
        raise NotFound(f"{what} not found")
    return doc


def due_index_keys(doc: dict[str, Any], due_shards: int) -> tuple[str, str] | None:
    item = account_item(doc, due_shards)
    return (item.gsi2pk, item.gsi2sk) if item.gsi2pk and item.gsi2sk else None


SYNC_OWNED_STATES = ("initial_sync", "active", "error")


def push_due(tenant_id: str, account_id: str, due: str, next_due: str) -> bool:
    """Move an account's due time from ``due`` to ``next_due`` with one conditional
    UpdateItem (no read). False when the account changed meanwhile (synced, paused,
    deleted): then its own writer has already set the due time it needs."""
    from pynamodb.exceptions import UpdateError

    item = AccountItem(keys.account(tenant_id, account_id), "A")
    try:  # the due time lives in the due index key (see account_item)
        item.update(
            actions=[AccountItem.gsi2sk.set(f"{next_due}#{tenant_id}#{account_id}")],
            condition=(AccountItem.gsi2sk == f"{due}#{tenant_id}#{account_id}")
            & AccountItem.state.is_in(*SYNC_OWNED_STATES),
        )
        return True
    except UpdateError as e:
        if e.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise


def update_sync_fields(doc: dict[str, Any], due_shards: int, *, fields: tuple[str, ...]) -> bool:
    """Write only the fields the sync worker owns, and only while the account is syncable.

    A concurrent settings change, pause or delete by the user is never overwritten:
    the update is conditional on the account still being in a sync-owned state.
    """
    from pynamodb.exceptions import UpdateError

    item = AccountItem(keys.account(doc["tenant_id"], doc["account_id"]), "A")
    actions: list[Any] = []
    for f in fields:
        attr = getattr(AccountItem, f)
        actions.append(attr.remove() if doc.get(f) is None else attr.set(doc[f]))
    if "state" in fields:
        due = due_index_keys(doc, due_shards)
        if due:
            actions += [AccountItem.gsi2pk.set(due[0]), AccountItem.gsi2sk.set(due[1])]
        else:
            actions += [AccountItem.gsi2pk.remove(), AccountItem.gsi2sk.remove()]
    try:
        item.update(actions=actions, condition=AccountItem.state.is_in(*SYNC_OWNED_STATES))
        return True
    except UpdateError as e:
        if e.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise
