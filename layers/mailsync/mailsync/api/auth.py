"""Who is calling: the tenant (and which of its keys) from the API key, the acting user
from ``X-User-Id``.

Invariants (the public contract):

* Every ``/v1`` route but :data:`PUBLIC_PATHS` needs ``Authorization: Bearer <tenant
  api key>`` (401 ``unauthorized``); every one but :data:`TENANT_PATHS` also needs
  ``X-User-Id`` (400 ``missing_user``). Instead of both, a user route takes a user token
  (``domain/user_tokens.py``; 401 ``unauthorized`` / ``token_expired``); on a tenant route
  it answers 403 ``tenant_key_required``, and with another user's ``X-User-Id`` 403
  ``user_mismatch``. Tenant routes act for the tenant: they ignore
  ``X-User-Id`` (the caller's ``user_id`` is None).
* Both are checked, and a request body must be UTF-8 JSON (415 / 400), **before**
  the request is validated against its route's schema, so an anonymous caller
  always gets 401 and never learns a route's schema from a 422.
* The check costs one GetItem (the hashed key), plus at most one UpdateItem per key
  per 5 minutes for ``last_used_at`` (``store/tenants.py``).

Powertools runs its request validation before any middleware, so this runs in
:meth:`mailsync.api.app.Resolver.resolve`, ahead of the resolver's own pipeline,
through public API only (``resolve``, ``append_context``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from mailsync.domain.user_tokens import is_user_token
from mailsync.errors import (
    InvalidRequest,
    MissingUser,
    TenantKeyRequired,
    Unauthorized,
    UnsupportedMediaType,
    UserMismatch,
)
from mailsync.store import tenants

# Routes that authenticate otherwise: the spec holds no data; the OAuth callbacks are
# bound to their tenant by the signed state; webhooks verify the provider's token.
PUBLIC_PATHS = frozenset(
    {
        "/v1/openapi.json",
        "/v1/oauth/google/callback",
        "/v1/webhooks/google",
        "/v1/oauth/microsoft/callback",
        "/v1/webhooks/microsoft",
    }
)

# Signed links (``<img src>`` cannot send a key): these paths and everything below them.
PUBLIC_PREFIXES = ("/v1/images/",)


def is_public_path(path: str) -> bool:
    """A route that authenticates otherwise (OpenAPI paths and route rules alike)."""
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


# Tenant-level routes (these paths and everything below them): the key alone, no X-User-Id.
TENANT_PATHS = (
    "/v1/api-keys", "/v1/users", "/v1/tenant", "/v1/events", "/v1/webhook-endpoints", "/v1/user-tokens",
)  # fmt: skip


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: its tenant, the acting user (None on a tenant route) and
    the id of the API key it used (None for a key made before key ids)."""

    tenant_id: str
    user_id: str | None
    key_id: str | None
    allowed_origins: tuple[str, ...] = ()  # user tokens: the tenant's CORS origins


def is_tenant_path(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in TENANT_PATHS)


def check_request(event: Mapping[str, Any]) -> Caller | None:
    """Authenticate, then check the body's media type; the caller, or None for a public
    path. Raises a :class:`~mailsync.errors.MailsyncError` (4xx)."""
    ev = APIGatewayProxyEventV2(dict(event))
    who = authenticate(ev)
    check_body(ev)
    return who


def authenticate(ev: APIGatewayProxyEventV2) -> Caller | None:
    """The caller of an API request, None for a public path; raises otherwise."""
    if is_public_path(ev.path) or not ev.path.startswith("/v1"):
        return None
    auth = ev.headers.get("authorization") or ""
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer API key")
    if is_user_token(token.strip()):
        return _token_caller(ev, token.strip())
    owner = tenants.key_owner(token.strip())
    if owner is None:
        raise Unauthorized("unknown API key")
    if is_tenant_path(ev.path):
        return Caller(owner.tenant_id, None, owner.key_id)
    user = (ev.headers.get("x-user-id") or "").strip()
    if not user:
        raise MissingUser("the X-User-Id header names the tenant's acting user")
    if len(user) > 256 or "#" in user:
        raise MissingUser("X-User-Id must be at most 256 characters and must not contain '#'")
    return Caller(owner.tenant_id, user, owner.key_id)


def _token_caller(ev: APIGatewayProxyEventV2, token: str) -> Caller:
    """A user token (``domain/user_tokens.py``): its user alone, never a tenant route."""
    from mailsync.usecases import user_tokens

    who = user_tokens.authenticate(token)
    if is_tenant_path(ev.path):
        raise TenantKeyRequired("this route needs the tenant's API key, not a user token")
    named = (ev.headers.get("x-user-id") or "").strip()
    if named and named != who.user_id:
        raise UserMismatch("a user token acts for its own user; leave X-User-Id out")
    return Caller(who.tenant_id, who.user_id, who.key_id, who.allowed_origins)


def check_body(ev: APIGatewayProxyEventV2) -> None:
    """The API speaks JSON only: refuse other media types and bodies that are not UTF-8."""
    if not ev.body:
        return
    content_type = (ev.headers.get("content-type") or "").strip().lower()
    if content_type and not content_type.startswith("application/json"):
        raise UnsupportedMediaType("request bodies must be application/json")
    try:
        ev.decoded_body  # noqa: B018 - decodes (base64 + UTF-8) or raises
    except ValueError as e:  # UnicodeDecodeError, binascii.Error
        raise InvalidRequest("the request body is not valid UTF-8 JSON") from e
