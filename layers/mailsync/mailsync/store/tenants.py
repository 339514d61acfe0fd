"""Tenants, their API keys and OAuth redirect allowlists (GetItem / Query only, never Scan).

Invariants:

* An API key is stored only as its SHA-256. Two items per key: the auth lookup
  ``KEY#<sha256>`` / ``K`` (yields tenant and key id: one GetItem per request) and the
  record ``T#<t>`` / ``K#<key id>`` in the tenant partition (name, prefix, hash: what
  the tenant lists). They are created and deleted together, in one transaction that
  also moves the tenant's ``key_count``.
* Through the API a tenant never loses its last key: a delete is conditional on
  ``key_count >= 2``, so even concurrent deletes leave one key (409 ``last_key``).
* No key is created for a tenant that is being purged (``state`` ``deleting``).
* ``last_used_at`` costs at most one conditional UpdateItem per key per
  :data:`LAST_USED_INTERVAL`; it never fails the request that triggers it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, PynamoDBException, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from mailsync.domain import apikeys
from mailsync.domain.apikeys import ApiKey, KeyOwner
from mailsync.domain.clock import iso, utcnow
from mailsync.domain.records import TenantSettings
from mailsync.errors import KeyNotFound, LastKey, Unauthorized
from mailsync.observability import logger
from mailsync.store import keys
from mailsync.store.models import (
    ApiKeyItem,
    ApiKeyRecordItem,
    PartitionItem,
    TenantItem,
    TenantRegistryItem,
)
from mailsync.store.models_index import OriginIndexItem

TENANT_SK = "T"
KEY_SK = "K"
LAST_USED_INTERVAL = timedelta(minutes=5)  # last_used_at lags by at most this; one write per interval
_TX_ATTEMPTS = 3  # a transaction that collides with another one on the same items is retried


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# ---------------------------------------------------------------- mutations
def create_tenant(tenant_id: str, name: str, api_key: str, now: str, *, key_name: str = "default") -> str:
    """The tenant with its first API key (auth item + record, ``key_count`` 1) and its entry
    in the tenants registry, in one transaction; returns the key's id."""
    key_id = apikeys.new_key_id()
    with _transaction() as tx:
        tx.save(
            TenantItem(
                keys.tenant(tenant_id), TENANT_SK, tenant_id=tenant_id, name=name, created_at=now, key_count=1
            )
        )
        tx.save(_auth_item(tenant_id, key_id, api_key, now))
        tx.save(_record_item(tenant_id, key_id, key_name, api_key, now))
        tx.save(
            TenantRegistryItem(
                keys.TENANTS, keys.tenant(tenant_id), tenant_id=tenant_id, name=name, created_at=now
            )
        )
    return key_id


def create_key(tenant_id: str, name: str, api_key: str, now: str) -> ApiKey:
    """Another key of a tenant: auth item + record + ``key_count`` + 1, atomically.
    A tenant that is gone or being deleted gets no new key (401 ``unauthorized``)."""
    key_id = apikeys.new_key_id()
    tenant_ok = TenantItem.pk.exists() & (
        TenantItem.state.does_not_exist() | (TenantItem.state != "deleting")
    )

    def write(tx: TransactWrite) -> None:
        # pynamodb orders a transaction's items: puts (auth item 0, record 1), then updates (2).
        tx.save(_auth_item(tenant_id, key_id, api_key, now), condition=ApiKeyItem.pk.does_not_exist())
        tx.save(
            _record_item(tenant_id, key_id, name, api_key, now),
            condition=ApiKeyRecordItem.pk.does_not_exist(),
        )
        tx.update(_tenant_ref(tenant_id), actions=[TenantItem.key_count.add(1)], condition=tenant_ok)

    failed = _run(write)
    if failed:
        if 2 in failed:
            raise Unauthorized("the tenant is being deleted")
        raise RuntimeError(f"API key {key_id} collides with an existing key")  # 2^-128: a bug
    return ApiKey(key_id, name, apikeys.shown_prefix(api_key), now)


def delete_key(tenant_id: str, key_id: str, caller_key_id: str | None) -> None:
    """Delete a tenant's key (record + auth item + ``key_count`` - 1, atomically): its
    next request gets 401. 404 ``key_not_found`` for an id the tenant does not have,
    409 ``last_key`` when it is the tenant's last key. The count condition holds for
    every delete, so two keys deleting each other at once cannot both succeed."""
    try:
        record = ApiKeyRecordItem.get(
            keys.tenant(tenant_id), keys.api_key_record_sk(key_id), consistent_read=True
        )
    except DoesNotExist:
        raise KeyNotFound("no API key of this tenant has this id") from None

    def write(tx: TransactWrite) -> None:
        # Deletes first (record 0, auth item 1), then the update (2).
        tx.delete(record, condition=ApiKeyRecordItem.key_hash == record.key_hash)
        tx.delete(ApiKeyItem(keys.api_key(record.key_hash), KEY_SK))
        tx.update(
            _tenant_ref(tenant_id),
            actions=[TenantItem.key_count.add(-1)],
            condition=TenantItem.key_count >= 2,
        )

    failed = _run(write)
    if 0 in failed:
        raise KeyNotFound("no API key of this tenant has this id")
    if failed:
        if key_id == caller_key_id:
            raise LastKey("this is the tenant's last API key: create another one before deleting this one")
        raise LastKey("deleting this API key would leave the tenant without one")


def revoke_all_keys(tenant_id: str) -> None:
    """For the tenant purge: delete every auth item of the tenant at once (batched), so
    each of its keys gets 401 from now on. The records stay for the purge to remove."""
    with ApiKeyItem.batch_write() as batch:
        for key_hash in key_hashes(tenant_id):
            batch.delete(ApiKeyItem(keys.api_key(key_hash), KEY_SK))


def allow_redirects(tenant_id: str, patterns: list[str]) -> list[str]:
    """Add OAuth redirect URI patterns to a tenant's allowlist; returns the new list."""
    item = TenantItem.get(keys.tenant(tenant_id), TENANT_SK, consistent_read=True)
    merged = list(dict.fromkeys([*(str(p) for p in (item.redirect_allowlist or [])), *patterns]))
    item.update(actions=[TenantItem.redirect_allowlist.set(merged)])  # type: ignore[arg-type]
    return merged


def update_settings(
    tenant_id: str, *, assign_bulk: bool | None = None, allowed_origins: tuple[str, ...] | None = None
) -> TenantSettings:
    """Change the tenant's settings (None: keep); returns them. New origins enter the origin
    index before the tenant item names them, and leave it after: a crash between the two
    leaves at most a preflight answered for an origin whose responses carry no CORS headers."""
    item = TenantItem.get(keys.tenant(tenant_id), TENANT_SK, consistent_read=True)
    actions: list[Any] = []
    if assign_bulk is not None and bool(item.assign_bulk) != assign_bulk:
        actions.append(TenantItem.assign_bulk.set(assign_bulk))
    old = tuple(str(o) for o in item.allowed_origins or ())
    if allowed_origins is not None and allowed_origins != old:
        for o in set(allowed_origins) - set(old):
            OriginIndexItem(keys.origin(o), keys.tenant(tenant_id)).save()
        actions.append(TenantItem.allowed_origins.set(list(allowed_origins)))  # type: ignore[arg-type]
    if actions:
        item.update(actions=actions)
    if allowed_origins is not None:
        for o in set(old) - set(allowed_origins):
            OriginIndexItem(keys.origin(str(o)), keys.tenant(tenant_id)).delete()
    return _settings_of(item)


def _settings_of(item: TenantItem) -> TenantSettings:
    return TenantSettings(
        assign_bulk=bool(item.assign_bulk), allowed_origins=tuple(str(o) for o in item.allowed_origins or ())
    )


def origin_listed(origin: str) -> bool:
    """Whether any tenant lists ``origin`` (CORS preflight): one Query of one item."""
    return any(True for _ in OriginIndexItem.query(keys.origin(origin), limit=1))


# -------------------------------------------------------------------- reads
def settings(tenant_id: str) -> TenantSettings:
    """The tenant's settings: one GetItem (defaults for a tenant without the item)."""
    try:
        item = TenantItem.get(keys.tenant(tenant_id), TENANT_SK)
    except DoesNotExist:
        return TenantSettings()
    return _settings_of(item)


def redirect_allowlist(tenant_id: str) -> list[str]:
    try:
        return [str(p) for p in (TenantItem.get(keys.tenant(tenant_id), TENANT_SK).redirect_allowlist or [])]
    except DoesNotExist:
        return []


def key_owner(api_key: str, *, now: datetime | None = None) -> KeyOwner | None:
    """Who an API key authenticates (one consistent GetItem: a deleted key fails at once),
    or None. Saves ``last_used_at`` when it is older than :data:`LAST_USED_INTERVAL`."""
    try:
        item = ApiKeyItem.get(keys.api_key(hash_key(api_key)), KEY_SK, consistent_read=True)
    except DoesNotExist:
        return None
    _touch(item, now or utcnow())
    return KeyOwner(item.tenant_id, item.key_id)


def tenant_for_key(api_key: str, *, now: datetime | None = None) -> str | None:
    owner = key_owner(api_key, now=now)
    return owner.tenant_id if owner else None


def list_keys(tenant_id: str) -> list[ApiKey]:
    """The tenant's keys, oldest first: one Query of its records + one BatchGet of their
    auth items (``last_used_at``; a record whose auth item is gone is no usable key)."""
    records = _records(tenant_id)
    auth = {
        i.pk: i
        for i in ApiKeyItem.batch_get(
            [(keys.api_key(r.key_hash), KEY_SK) for r in records], consistent_read=True
        )
    }
    out = [
        ApiKey(r.key_id, r.name, r.prefix, r.created_at, auth[pk].last_used_at)
        for r in records
        if (pk := keys.api_key(r.key_hash)) in auth
    ]
    return sorted(out, key=lambda k: (k.created_at, k.key_id))


def key_hashes(tenant_id: str) -> list[str]:
    """For the tenant purge: the SHA-256 of every key of the tenant (its records)."""
    return [r.key_hash for r in _records(tenant_id)]


# ------------------------------------------------------------------ helpers
def _records(tenant_id: str) -> list[ApiKeyRecordItem]:
    return list(
        ApiKeyRecordItem.query(
            keys.tenant(tenant_id),
            ApiKeyRecordItem.sk.startswith(keys.API_KEY_RECORDS),
            consistent_read=True,
        )
    )


def _auth_item(tenant_id: str, key_id: str, api_key: str, now: str) -> ApiKeyItem:
    return ApiKeyItem(
        keys.api_key(hash_key(api_key)), KEY_SK, tenant_id=tenant_id, created_at=now, key_id=key_id
    )


def _record_item(tenant_id: str, key_id: str, name: str, api_key: str, now: str) -> ApiKeyRecordItem:
    return ApiKeyRecordItem(
        keys.tenant(tenant_id),
        keys.api_key_record_sk(key_id),
        key_id=key_id,
        name=name,
        prefix=apikeys.shown_prefix(api_key),
        key_hash=hash_key(api_key),
        created_at=now,
    )


def _tenant_ref(tenant_id: str) -> TenantItem:
    return TenantItem(keys.tenant(tenant_id), TENANT_SK)


def _touch(item: ApiKeyItem, now: datetime) -> None:
    """``last_used_at`` = now if it is missing or older than the interval: one conditional
    UpdateItem (another request may have won: fine), never on a deleted key, never an error."""
    cutoff = iso(now - LAST_USED_INTERVAL)
    if item.last_used_at is not None and item.last_used_at >= cutoff:
        return
    try:
        item.update(
            actions=[ApiKeyItem.last_used_at.set(iso(now))],
            condition=ApiKeyItem.pk.exists()
            & (ApiKeyItem.last_used_at.does_not_exist() | (ApiKeyItem.last_used_at < cutoff)),
        )
    except UpdateError as e:
        if e.cause_response_code != "ConditionalCheckFailedException":
            logger.warning("API key last_used_at not saved", extra={"error": str(e)})
    except PynamoDBException as e:
        logger.warning("API key last_used_at not saved", extra={"error": str(e)})


def _transaction() -> TransactWrite:
    TenantItem._get_connection()  # binds the models (Settings) before Meta is read
    return TransactWrite(connection=Connection(region=TenantItem.Meta.region, host=TenantItem.Meta.host))


def _run(write: Callable[[TransactWrite], None]) -> set[int]:
    """Run a transaction; the indexes of the items whose condition failed (empty: done).
    A collision with a concurrent transaction on the same items is retried."""
    for attempt in range(_TX_ATTEMPTS):
        try:
            with _transaction() as tx:
                write(tx)
            return set()
        except TransactWriteError as e:
            codes = [r.code if r else None for r in e.cancellation_reasons]
            failed = {i for i, c in enumerate(codes) if c == "ConditionalCheckFailed"}
            if failed:
                return failed
            if "TransactionConflict" not in codes or attempt == _TX_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


# ------------------------------------------------------------------ offboarding
def mark_deleting(tenant_id: str) -> None:
    """``state = deleting`` on the tenant item (conditional: never creates one)."""
    _tenant_ref(tenant_id).update(
        actions=[TenantItem.state.set("deleting")], condition=TenantItem.pk.exists()
    )


def _state(tenant_id: str) -> str | None:
    """The tenant item's ``state`` (``""`` when it has none), None when there is no tenant."""
    try:
        item = TenantItem.get(
            keys.tenant(tenant_id), TENANT_SK, consistent_read=True, attributes_to_get=["sk", "state"]
        )
    except DoesNotExist:
        return None
    return item.state or ""


def exists(tenant_id: str) -> bool:
    return _state(tenant_id) is not None


def is_deleting(tenant_id: str) -> bool:
    return _state(tenant_id) == "deleting"


def delete_tenant_items(tenant_id: str) -> None:
    """The end of a tenant purge: its registry entry, every item left in its partition
    (key records and their auth items included), and the tenant item last."""
    revoke_all_keys(tenant_id)
    TenantRegistryItem(keys.TENANTS, keys.tenant(tenant_id)).delete()
    try:
        listed = TenantItem.get(keys.tenant(tenant_id), TENANT_SK, consistent_read=True).allowed_origins
    except DoesNotExist:
        listed = None
    for o in listed or ():
        OriginIndexItem(keys.origin(str(o)), keys.tenant(tenant_id)).delete()
    pk = keys.tenant(tenant_id)
    with PartitionItem.batch_write() as b:
        for i in PartitionItem.query(pk, consistent_read=True):
            if i.sk != TENANT_SK:
                b.delete(PartitionItem(pk, i.sk))
    _tenant_ref(tenant_id).delete()


def list_tenants() -> list[tuple[str, str, str]]:
    """(tenant_id, name, created_at) of every tenant (one Query of the registry)."""
    return [(i.tenant_id, i.name, i.created_at) for i in TenantRegistryItem.query(keys.TENANTS)]
