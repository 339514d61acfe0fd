"""The tenant's own settings (``GET/PATCH /v1/tenant/settings``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from mailsync.store import tenants

__all__ = ["get_settings", "update_settings"]


def get_settings(tenant_id: str) -> dict[str, Any]:
    return asdict(tenants.settings(tenant_id))


def update_settings(tenant_id: str, *, assign_bulk: bool | None = None) -> dict[str, Any]:
    """A change applies to mails stored from now on, and to links made from now on (a new or
    changed contact's retroactive links); links already made stay."""
    return asdict(tenants.update_settings(tenant_id, assign_bulk=assign_bulk))
