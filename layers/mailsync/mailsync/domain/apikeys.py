"""Tenant API keys: their format and the records that cross rooms.

Invariants:

* A key is ``msk_`` + 32 random bytes (url-safe base64); it is shown once, when it is
  made, and only its SHA-256 is stored (``store/tenants.py``).
* ``prefix`` is the key's first :data:`PREFIX_CHARS` characters: enough to recognise a
  key in a list, never enough to use it (``msk_`` + 8 of the 43 random characters). A
  short key made by hand (the local runner's ``dev-key``) shows at most a third of itself.
* Key ids (``key_`` + 16 hex digits) name a key in the API; they are not secret.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

SECRET_PREFIX = "msk_"
PREFIX_CHARS = 12


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def new_key_id() -> str:
    return "key_" + secrets.token_hex(8)


def shown_prefix(secret: str) -> str:
    return secret[: min(PREFIX_CHARS, len(secret) // 3)]


@dataclass(frozen=True)
class KeyOwner:
    """Whom an API key authenticates: its tenant, and the key's id (None for a key made
    before key ids existed: it works, but is neither listed nor deletable by id)."""

    tenant_id: str
    key_id: str | None


@dataclass(frozen=True)
class ApiKey:
    """A tenant's API key as it is listed: never the key itself."""

    key_id: str
    name: str
    prefix: str
    created_at: str
    last_used_at: str | None = None
