"""Tenants, their API keys and OAuth redirect allowlists (GetItem only, never Scan).

Invariant: an API key is stored only as its SHA-256 (``KEY#<sha256>``); the key item
yields the tenant.
"""

from __future__ import annotations

import hashlib

from pynamodb.exceptions import DoesNotExist

from mailsync.store import keys
from mailsync.store.models import ApiKeyItem, TenantItem


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
