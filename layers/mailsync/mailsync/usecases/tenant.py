"""The tenant's own settings (``GET/PATCH /v1/tenant/settings``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from mailsync.domain import cors
from mailsync.domain.records import TenantSettings
from mailsync.errors import Unprocessable
from mailsync.store import tenants

__all__ = ["get_settings", "update_settings"]


def get_settings(tenant_id: str) -> dict[str, Any]:
    return _out(tenants.settings(tenant_id))


def update_settings(
    tenant_id: str, *, assign_bulk: bool | None = None, allowed_origins: list[str] | None = None
) -> dict[str, Any]:
    """``assign_bulk`` applies to mails stored from now on, and to links made from now on (a
    new or changed contact's retroactive links); links already made stay. ``allowed_origins``
    (422 ``invalid_origin``) applies to the next request."""
    origins = None
    if allowed_origins is not None:
        try:
            origins = cors.parse_origins(allowed_origins)
        except cors.InvalidOrigin as e:
            raise Unprocessable(str(e), code="invalid_origin") from None
    return _out(tenants.update_settings(tenant_id, assign_bulk=assign_bulk, allowed_origins=origins))


def _out(settings: TenantSettings) -> dict[str, Any]:
    return {**asdict(settings), "allowed_origins": list(settings.allowed_origins)}
