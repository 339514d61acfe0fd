"""Who is calling: the tenant from its API key, the acting user from ``X-User-Id``.

Invariants (the public contract):

* Every ``/v1`` route but :data:`PUBLIC_PATHS` needs ``Authorization: Bearer <tenant
  api key>`` (401 ``unauthorized``) and ``X-User-Id`` (400 ``missing_user``).
* Both are checked, and a request body must be UTF-8 JSON (415 / 400), **before**
  the request is validated against its route's schema, so an anonymous caller
  always gets 401 and never learns a route's schema from a 422.
* The check costs one GetItem (the hashed key).

Powertools runs its request validation before any middleware, so this runs in
:meth:`mailsync.api.app.Resolver.resolve`, ahead of the resolver's own pipeline,
through public API only (``resolve``, ``append_context``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from mailsync.errors import InvalidRequest, MissingUser, Unauthorized, UnsupportedMediaType
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


def check_request(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """Authenticate, then check the body's media type; (tenant_id, user_id) or None
    for a public path. Raises a :class:`~mailsync.errors.MailsyncError` (4xx)."""
    ev = APIGatewayProxyEventV2(dict(event))
    who = authenticate(ev)
    check_body(ev)
    return who


def authenticate(ev: APIGatewayProxyEventV2) -> tuple[str, str] | None:
    """(tenant_id, user_id) of an API request, None for a public path; raises otherwise."""
    if ev.path in PUBLIC_PATHS or not ev.path.startswith("/v1"):
        return None
    auth = ev.headers.get("authorization") or ""
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer API key")
    tenant_id = tenants.tenant_for_key(token.strip())
    if tenant_id is None:
        raise Unauthorized("unknown API key")
    user = (ev.headers.get("x-user-id") or "").strip()
    if not user:
        raise MissingUser("the X-User-Id header names the tenant's acting user")
    if len(user) > 256 or "#" in user:
        raise MissingUser("X-User-Id must be at most 256 characters and must not contain '#'")
    return tenant_id, user


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
