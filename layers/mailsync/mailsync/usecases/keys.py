"""Tenant API keys: create (the key is shown once), list (never the key), delete.

Invariants:

* A tenant sees and deletes only its own keys: another tenant's key id is 404
  ``key_not_found`` (the records live in the tenant's partition).
* The key itself leaves the service once, in :func:`create_key`'s answer; only its
  SHA-256 is stored.
* A tenant never loses its last key through the API (409 ``last_key``), so deleting
  the key that makes the call needs another key first: rotate by creating the new key,
  switching to it, then deleting the old one. A deleted key gets 401 at once.
"""

from __future__ import annotations

from typing import Any

from mailsync.domain import apikeys
from mailsync.domain.apikeys import ApiKey
from mailsync.domain.clock import iso, utcnow
from mailsync.store import tenants


def public_view(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.key_id,
        "name": key.name,
        "prefix": key.prefix,
        "created_at": key.created_at,
        "last_used_at": key.last_used_at,
    }


def create_key(tenant_id: str, name: str) -> dict[str, Any]:
    secret = apikeys.new_secret()
    key = tenants.create_key(tenant_id, name, secret, iso(utcnow()))
    return {
        "id": key.key_id,
        "name": key.name,
        "key": secret,
        "prefix": key.prefix,
        "created_at": key.created_at,
    }


def list_keys(tenant_id: str) -> list[dict[str, Any]]:
    return [public_view(k) for k in tenants.list_keys(tenant_id)]


def delete_key(tenant_id: str, key_id: str, caller_key_id: str | None) -> None:
    tenants.delete_key(tenant_id, key_id, caller_key_id)
