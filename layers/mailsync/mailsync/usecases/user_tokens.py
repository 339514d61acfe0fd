"""User tokens for browsers (issue 17): minted with a tenant key, accepted as a bearer
token for one user (rules in ``domain/user_tokens.py``, storage in ``store/user_tokens.py``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from mailsync.config import get_settings
from mailsync.domain import user_tokens as rules
from mailsync.domain.clock import iso
from mailsync.errors import TokenExpired, Unauthorized
from mailsync.store import user_tokens as store
from mailsync.usecases.lifecycle import ensure_not_purging

__all__ = ["TokenCaller", "authenticate", "mint", "revoke_user"]


@dataclass(frozen=True)
class TokenCaller:
    tenant_id: str
    user_id: str
    key_id: str | None
    allowed_origins: tuple[str, ...] = ()


def mint(
    tenant_id: str, key_id: str | None, user_id: str, ttl_seconds: int, *, now: float | None = None
) -> dict[str, str]:
    """201 ``{"token", "expires_at"}``; 409 ``user_purging`` while the user is purged."""
    ensure_not_purging(tenant_id, user_id)
    issued = int(now if now is not None else time.time())
    claims = rules.Claims(tenant_id, user_id, key_id, issued, issued + ttl_seconds)
    token = rules.sign(claims, store.token_secret(tenant_id, get_settings().kms_key_id))
    return {"token": token, "expires_at": iso_of(claims.expires_at)}


def iso_of(epoch: int) -> str:
    return iso(datetime.fromtimestamp(epoch, UTC))


def authenticate(token: str, *, now: float | None = None) -> TokenCaller:
    """The user a token acts for; 401 ``unauthorized`` (forged, revoked, its key deleted) or
    ``token_expired``. One BatchGetItem (and a KMS Decrypt per tenant per 5 minutes)."""
    try:
        claims, payload, sig = rules.read(token)
    except rules.BadToken as e:
        raise Unauthorized(str(e)) from None
    state = store.token_state(claims.tenant_id, claims.key_id, claims.user_id)
    if state.secret is None:
        raise Unauthorized("unknown user token")
    try:
        rules.verify(payload, sig, state.secret)
    except rules.BadToken as e:
        raise Unauthorized(str(e)) from None
    if not state.key_exists:
        raise Unauthorized("the API key that minted this token was deleted")
    if state.not_before is not None and claims.issued_at < state.not_before:
        raise Unauthorized("this user was deleted after the token was issued")
    if claims.expires_at <= int(now if now is not None else time.time()):
        raise TokenExpired("the user token has expired; mint a new one")
    return TokenCaller(claims.tenant_id, claims.user_id, claims.key_id, state.allowed_origins)


def revoke_user(tenant_id: str, user_id: str, *, now: float | None = None) -> None:
    """Every token of the user issued so far stops working (the user is deleted)."""
    store.revoke_user(tenant_id, user_id, int(now if now is not None else time.time()), rules.MAX_TTL_SECONDS)
