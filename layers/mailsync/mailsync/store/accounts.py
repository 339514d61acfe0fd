"""Accounts and what lives beside them: credentials, the one-per-mailbox email lock, the
folder list and the due index (GetItem / Query only, never Scan).

Invariants:

* An account, its credential envelope and its email lock are created in one transaction;
  the lock's condition makes a second connect of the same mailbox ``account_exists``.
* The due index (GSI2, sparse) holds an account while it is due-able: not ``paused``,
  ``auth_error`` or ``deleting`` (``next_due`` None). Its shard is a hash of the account id.
* The sync worker writes only the fields it owns, conditionally on the account still being
  in a sync-owned state, so a user's pause, settings change or delete always wins.
* Credentials are envelope-encrypted (``store/crypto.py``) under the account's context.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, PutError, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from mailsync.domain.account import (
    NOT_DUE_STATES,
    SYNC_OWNED_STATES,
    Account,
    AccountSettings,
    Server,
    SyncProgress,
    credential_context,
)
from mailsync.domain.ports import FolderInfo
from mailsync.errors import AccountExists, AccountGone
from mailsync.store import crypto, keys, paging
from mailsync.store.models import (
    AccountItem,
    CredentialItem,
    EmailLockItem,
    FolderItem,
    MirrorLockItem,
    TenantMemberItem,
)

ACCOUNT_FIELDS = (
    "tenant_id", "account_id", "owner", "email", "provider", "state", "error", "settings", "servers",
    "sync", "sync_start", "backfill_days", "failures", "created_at", "saves_sent", "health",
    "exclude_applied",
)  # fmt: skip


@dataclass(frozen=True)
class Folder:
    """A folder as the account side sees it (the engine keeps its own FolderState)."""

    name: str
    role: str | None
    synced: bool
    messages: int
    cursor: dict[str, Any] | None


# ------------------------------------------------------------------ records
def to_doc(acc: Account) -> dict[str, Any]:
    """The account as stored (and as the mail side still reads it): JSON-able fields."""
    return {
        "tenant_id": acc.tenant_id,
        "account_id": acc.account_id,
        "owner": acc.owner,
        "email": acc.email,
        "provider": acc.provider,
        "state": acc.state,
        "error": dict(acc.error) if acc.error else None,
        "settings": acc.settings.as_dict(),
        "servers": {k: asdict(v) for k, v in acc.servers.items()},
        "sync": asdict(acc.sync),
        "sync_start": acc.sync_start,
        "backfill_days": acc.backfill_days,
        "failures": acc.failures,
        "created_at": acc.created_at,
        "saves_sent": acc.saves_sent,
        "next_due": acc.next_due,
        "health": dict(acc.health) if acc.health else None,
        "exclude_applied": acc.exclude_applied,
    }


def account_doc(item: AccountItem) -> dict[str, Any]:
    d = {f: getattr(item, f) for f in ACCOUNT_FIELDS}
    d["backfill_days"] = int(d["backfill_days"] or 0)
    d["failures"] = int(d["failures"] or 0)
    d["next_due"] = item.gsi2sk.split("#", 1)[0] if item.gsi2sk else None
    return d


def from_item(item: AccountItem) -> Account:
    d = account_doc(item)
    sync = d["sync"] or {}
    return Account(
        tenant_id=d["tenant_id"],
        account_id=d["account_id"],
        owner=d["owner"],
        email=d["email"],
        provider=d["provider"],
        state=d["state"],
        error=d["error"],
        settings=AccountSettings.from_dict(d["settings"]),
        servers={
            k: Server(v["host"], v["port"], v["security"], v["username"])
            for k, v in (d["servers"] or {}).items()
        },
        sync=SyncProgress(**{k: sync[k] for k in SyncProgress.__dataclass_fields__ if k in sync}),
        sync_start=d["sync_start"],
        backfill_days=d["backfill_days"],
        failures=d["failures"],
        created_at=d["created_at"],
        next_due=d["next_due"],
        saves_sent=bool(d["saves_sent"]),
        health=d["health"],
        exclude_applied=d["exclude_applied"],
    )


def account_item(acc: Account, due_shards: int) -> AccountItem:
    doc = to_doc(acc)
    t, a = acc.tenant_id, acc.account_id
    item = AccountItem(keys.account(t, a), "A")
    for f in ACCOUNT_FIELDS:
        setattr(item, f, doc.get(f))
    item.gsi1pk = keys.owner_accounts(t, acc.owner)
    item.gsi1sk = keys.owner_accounts_sort(acc.created_at, a)
    item.gsi6pk = keys.state_index(acc.state)
    if acc.next_due and acc.state not in NOT_DUE_STATES:
        shard = int(hashlib.sha1(a.encode(), usedforsecurity=False).hexdigest(), 16) % due_shards
        item.gsi2pk = keys.due_shard(shard)
        item.gsi2sk = keys.due_sort(acc.next_due, t, a)
    return item


def due_index_keys(acc: Account, due_shards: int) -> tuple[str, str] | None:
    item = account_item(acc, due_shards)
    return (item.gsi2pk, item.gsi2sk) if item.gsi2pk and item.gsi2sk else None


# -------------------------------------------------------------------- reads
def get_account(tenant_id: str, account_id: str) -> Account | None:
    try:
        return from_item(AccountItem.get(keys.account(tenant_id, account_id), "A", consistent_read=True))
    except DoesNotExist:
        return None


def account_by_email(tenant_id: str, email: str) -> str | None:
    try:
        return EmailLockItem.get(keys.email_lock(tenant_id, email), "E").account_id
    except DoesNotExist:
        return None


def accounts_of_owner(
    tenant_id: str, user_id: str, *, limit: int, cursor: str | None
) -> tuple[list[Account], str | None]:
    """One page of the owner's accounts (``deleting`` ones left out) after ``cursor``
    (refused when it was issued for another list), and the next page's cursor."""
    pk = keys.owner_accounts(tenant_id, user_id)
    start = paging.page_cursor(tenant_id, cursor, "gsi1pk", pk)
    it = AccountItem.by_owner.query(pk, limit=limit, page_size=limit, last_evaluated_key=start)
    items = [from_item(i) for i in it if i.state != "deleting"]
    return items, paging.encode_cursor(it.last_evaluated_key)


def all_of_owner(tenant_id: str, user_id: str) -> list[Account]:
    """Every account of the owner, ``deleting`` ones too (Queries of the owner index)."""
    return [from_item(i) for i in AccountItem.by_owner.query(keys.owner_accounts(tenant_id, user_id))]


def count_of_tenant(tenant_id: str) -> int:
    """How many accounts the tenant has (a counting Query of its partition's entries)."""
    return TenantMemberItem.count(
        keys.tenant(tenant_id), TenantMemberItem.sk.startswith(keys.tenant_member_sk("A", ""))
    )


def due_in_shard(shard: int, now: str) -> Iterable[tuple[str, str, str]]:
    """(tenant, account, due) of the shard's accounts due by ``now``: one Query."""
    for item in AccountItem.due.query(keys.due_shard(shard), AccountItem.gsi2sk <= f"{now}#~"):
        due, tenant_id, account_id = item.gsi2sk.split("#", 2)
        yield tenant_id, account_id, due


def list_folders(tenant_id: str, account_id: str) -> list[Folder]:
    pk = keys.account(tenant_id, account_id)
    return [
        Folder(f.name, f.role, bool(f.synced), int(f.messages or 0), f.cursor)
        for f in FolderItem.query(pk, FolderItem.sk.startswith("F#"), consistent_read=True)
    ]


def load_secrets(acc: Account) -> dict[str, crypto.Secret]:
    """The account's decrypted credentials (``{}`` when it has none)."""
    envelope = get_credentials_envelope(acc.tenant_id, acc.account_id)
    return crypto.decrypt(envelope or {}, context=credential_context(acc.tenant_id, acc.account_id))


def get_credentials_envelope(tenant_id: str, account_id: str) -> dict[str, Any] | None:
    try:
        return CredentialItem.get(keys.account(tenant_id, account_id), "CRED", consistent_read=True).envelope
    except DoesNotExist:
        return None


# ---------------------------------------------------------------- mutations
def insert_account(acc: Account, envelope: dict[str, Any], due_shards: int) -> None:
    """Account + credential + one-per-mailbox lock + the (free) mirror lock + the tenant's
    entry for it, atomically (409 when the mailbox lock exists)."""
    t, a = acc.tenant_id, acc.account_id
    lock = EmailLockItem(keys.email_lock(t, acc.email), "E", account_id=a)
    AccountItem._get_connection()  # binds the models (Settings) before Meta is read
    try:
        with TransactWrite(
            connection=Connection(region=AccountItem.Meta.region, host=AccountItem.Meta.host)
        ) as tx:
            tx.save(lock, condition=EmailLockItem.pk.does_not_exist())
            tx.save(account_item(acc, due_shards))
            tx.save(CredentialItem(keys.account(t, a), "CRED", envelope=envelope))
            tx.save(MirrorLockItem(keys.account(t, a), "LOCK"))  # free; a purge holds it for good
            tx.save(TenantMemberItem(keys.tenant(t), keys.tenant_member_sk("A", a), owner=acc.owner))
    except TransactWriteError as e:
        if (
            "ConditionalCheckFailed" in str(e)
            or getattr(e, "cause_response_code", "") == "TransactionCanceledException"
        ):
            raise AccountExists(f"{acc.email} is already connected in this tenant") from e
        raise


def save_account(acc: Account, due_shards: int) -> None:
    """Write the whole account (a user's change: settings, pause, resume, delete, reconnect)."""
    account_item(acc, due_shards).save()


def save_credentials(tenant_id: str, account_id: str, envelope: dict[str, Any]) -> None:
    """Replace the account's credentials (a reconnect, refreshed tokens). Conditional on the
    item existing: a session that outlived its account's purge must not write them back
    (:class:`AccountGone`)."""
    try:
        CredentialItem(keys.account(tenant_id, account_id), "CRED", envelope=envelope).save(
            condition=CredentialItem.pk.exists()
        )
    except PutError as e:
        if e.cause_response_code == "ConditionalCheckFailedException":
            raise AccountGone() from e
        raise


def encrypt_credentials(
    tenant_id: str, account_id: str, values: dict[str, str], key_id: str
) -> dict[str, Any]:
    """The envelope of ``values`` under the account's credential context."""
    return crypto.encrypt(values, key_id=key_id, context=credential_context(tenant_id, account_id))


def add_folders(tenant_id: str, account_id: str, folders: Iterable[FolderInfo]) -> None:
    """Store the folders the account does not know yet (not synced until chosen)."""
    pk = keys.account(tenant_id, account_id)
    known = {f.name for f in list_folders(tenant_id, account_id)}
    with FolderItem.batch_write() as b:
        for f in folders:
            if f.name not in known:
                b.save(
                    FolderItem(
                        pk, keys.folder_sk(f.name), name=f.name, role=f.role, synced=False, present=True
                    )
                )


def push_due(tenant_id: str, account_id: str, due: str, next_due: str) -> bool:
    """Move an account's due time from ``due`` to ``next_due`` with one conditional
    UpdateItem (no read). False when the account changed meanwhile (synced, paused,
    deleted): then its own writer has already set the due time it needs."""
    item = AccountItem(keys.account(tenant_id, account_id), "A")
    try:  # the due time lives in the due index key (see account_item)
        item.update(
            actions=[AccountItem.gsi2sk.set(keys.due_sort(next_due, tenant_id, account_id))],
            condition=(AccountItem.gsi2sk == keys.due_sort(due, tenant_id, account_id))
            & AccountItem.state.is_in(*SYNC_OWNED_STATES),
        )
        return True
    except UpdateError as e:
        if e.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise


def update_sync_fields(
    acc: Account,
    due_shards: int,
    *,
    fields: tuple[str, ...],
    expected_state: str | None = None,
    states: tuple[str, ...] = SYNC_OWNED_STATES,
) -> bool:
    """Write only ``fields`` of the account, and only while it is in one of ``states`` (by
    default the sync-owned ones) and, when given, still in ``expected_state``.

    A concurrent settings change, pause or delete by the user is never overwritten, and two
    writers never flip a state back and forth: a state change is conditional on the state its
    writer read. False when the condition failed (nothing written).
    """
    doc = to_doc(acc)
    item = AccountItem(keys.account(acc.tenant_id, acc.account_id), "A")
    actions: list[Any] = []
    for f in fields:
        attr = getattr(AccountItem, f)
        actions.append(attr.remove() if doc.get(f) is None else attr.set(doc[f]))
    if "state" in fields:
        due = due_index_keys(acc, due_shards)
        if due:
            actions += [AccountItem.gsi2pk.set(due[0]), AccountItem.gsi2sk.set(due[1])]
        else:
            actions += [AccountItem.gsi2pk.remove(), AccountItem.gsi2sk.remove()]
    if "state" in fields and acc.state != expected_state:
        # The state index is rewritten only when the state moves: a poll that keeps it costs
        # no index write (the condition below guarantees the stored state is expected_state).
        actions.append(AccountItem.gsi6pk.set(keys.state_index(acc.state)))
    condition = AccountItem.state.is_in(*states)
    if expected_state is not None:
        condition = condition & (AccountItem.state == expected_state)
    try:
        item.update(actions=actions, condition=condition)
        return True
    except UpdateError as e:
        if e.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise


# ------------------------------------------------------------------ by state
def count_in_state(state: str) -> int:
    """How many accounts are in ``state`` (a counting Query of the keys-only state index)."""
    return AccountItem.by_state.count(keys.state_index(state))


def in_state(state: str, tenant_id: str | None = None, *, limit: int = 1000) -> list[tuple[str, str]]:
    """``(tenant, account)`` of accounts in ``state`` (of one tenant, when given): a Query."""
    cond = AccountItem.pk.startswith(keys.account(tenant_id, "")) if tenant_id else None
    return [
        keys.parse_account(item.pk)
        for item in AccountItem.by_state.query(keys.state_index(state), cond, limit=limit)
    ]
