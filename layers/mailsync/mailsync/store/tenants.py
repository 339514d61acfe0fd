"""Tenants, their API keys and OAuth redirect allowlists (GetItem only, never Scan).

Invariant: an API key is stored only as its SHA-256 (``KEY#<sha256>``); the key item
yields the tenant.
"""

from __future__ import annotations

import hashlib

from pynamodb.exceptions import DoesNotExist

from mailsync.store import keys
from mailsync.store.models import ApiKeyItem, PartitionItem, TenantItem, TenantRegistryItem


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_tenant(tenant_id: str, name: str, api_key: str, now: str) -> None:
    TenantItem(keys.tenant(tenant_id), "T", tenant_id=tenant_id, name=name, created_at=now).save()
    ApiKeyItem(keys.api_key(hash_key(api_key)), "K", tenant_id=tenant_id, created_at=now).save()


def allow_redirects(tenant_id: str, patterns: list[str]) -> list[str]:
    """Add OAuth redirect URI patterns to a tenant's allowlist; returns the new list."""
    item = TenantItem.get(keys.tenant(tenant_id), "T", consistent_read=True)
    merged = list(dict.fromkeys([*(str(p) for p in (item.redirect_allowlist or [])), *patterns]))
    item.update(actions=[TenantItem.redirect_allowlist.set(merged)])  # type: ignore[arg-type]
    return merged


def redirect_allowlist(tenant_id: str) -> list[str]:
    try:
        return [str(p) for p in (TenantItem.get(keys.tenant(tenant_id), "T").redirect_allowlist or [])]
    except DoesNotExist:
        return []


def tenant_for_key(api_key: str) -> str | None:
    try:
        return ApiKeyItem.get(keys.api_key(hash_key(api_key)), "K").tenant_id
    except DoesNotExist:
        return None


# ------------------------------------------------------------------ offboarding
def mark_deleting(tenant_id: str) -> None:
    """``state = deleting`` on the tenant item (404 ``not_found`` semantics are the caller's)."""
    TenantItem(keys.tenant(tenant_id), "T").update(actions=[TenantItem.state.set("deleting")])


def exists(tenant_id: str) -> bool:
    return TenantItem.count(keys.tenant(tenant_id), TenantItem.sk == "T") > 0


def is_deleting(tenant_id: str) -> bool:
    try:
        return TenantItem.get(keys.tenant(tenant_id), "T", consistent_read=True).state == "deleting"
    except DoesNotExist:
        return False


def delete_tenant_items(tenant_id: str) -> None:
    """The end of a tenant purge: its registry entry, every item left in its partition
    (key records and their auth items included), and the tenant item last."""
    revoke_all_keys(tenant_id)
    TenantRegistryItem(keys.TENANTS, keys.tenant(tenant_id)).delete()
    pk = keys.tenant(tenant_id)
    with PartitionItem.batch_write() as b:
        for i in PartitionItem.query(pk, consistent_read=True):
            if i.sk != "T":
                b.delete(PartitionItem(pk, i.sk))
    TenantItem(pk, "T").delete()


def list_tenants() -> list[tuple[str, str, str]]:
    """(tenant_id, name, created_at) of every tenant (one Query of the registry)."""
    return [(i.tenant_id, i.name, i.created_at) for i in TenantRegistryItem.query(keys.TENANTS)]
