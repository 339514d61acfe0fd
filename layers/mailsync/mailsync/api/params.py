"""Request parameters and the caller, defined once for every router.

* Ids become parts of DynamoDB keys (at most 2048 bytes): an overlong id is bad
  input (422 ``invalid_request``), never a 500. Every path id is ``Id``.
* Lists take ``limit`` (1..200, default 50) and an opaque ``cursor``.
* The caller (tenant, acting user, API key id) is set by :mod:`mailsync.api.auth`
  before the route runs; :func:`caller` (user routes) and :func:`tenant_caller`
  (tenant routes) read it from the resolver a router is included in.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from mailsync.api.auth import Caller
from mailsync.domain.records import CONTACT_ID_PATTERN
from mailsync.errors import MissingUser

ID_MAX = 128
Id = Annotated[str, Path(min_length=1, max_length=ID_MAX)]
# Contact ids are the CRM's own (usecases/contacts.py checks the same rule on every write).
ContactId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=ID_MAX,
        pattern=CONTACT_ID_PATTERN,
        description="1-128 letters, digits and . _ : @ -, starting with a letter or digit",
    ),
]
Limit = Annotated[int, Query(ge=1, le=200, description="Page size (default 50, max 200)")]
Cursor = Annotated[str | None, Query(max_length=2048, description="next_cursor of the previous page")]


def tenant_caller(router: APIGatewayHttpRouter) -> Caller:
    """The caller of the authenticated request the router is serving (tenant routes)."""
    resolver = router.api_resolver
    assert resolver is not None  # noqa: S101 - set by include_router
    who = resolver.context["caller"]
    assert isinstance(who, Caller)  # noqa: S101 - set by Resolver.resolve before any route
    return who


def caller(router: APIGatewayHttpRouter) -> tuple[str, str]:
    """(tenant_id, user_id) of the authenticated request the router is serving (user routes)."""
    who = tenant_caller(router)
    if who.user_id is None:
        raise MissingUser("the X-User-Id header names the tenant's acting user")
    return who.tenant_id, who.user_id


def public_base_url(router: APIGatewayHttpRouter) -> str:
    """Our public base URL (OAuth callbacks, image links): ``MAILSYNC_PUBLIC_URL``, else
    derived from the request's host (``http`` only for a loopback host)."""
    from mailsync.config import get_settings

    base = get_settings().public_url.rstrip("/")
    if not base:
        resolver = router.api_resolver
        assert resolver is not None  # noqa: S101 - set by include_router
        event = resolver.current_event
        host = event.headers.get("host") or event.request_context.domain_name  # type: ignore[attr-defined]
        local = host.split(":")[0] in ("127.0.0.1", "localhost")
        proto = event.headers.get("x-forwarded-proto") or ("http" if local else "https")
        base = f"{proto}://{host}"
    return base


# Tenant routes (keys, users, tenant) in the spec: the key alone, no X-User-Id.
TENANT_SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}]

_ERROR_TEXT = {
    400: "Bad request",
    401: "Missing or unknown API key",
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    422: "Invalid request",
}


def error_response(description: str) -> OpenAPIResponse:
    """An OpenAPI entry for an error answer (body ``{code, message}``)."""
    from mailsync.api.schemas import Error

    return {"description": description, "content": {"application/json": {"model": Error}}}


def error_responses(*statuses: int) -> dict[int, OpenAPIResponse]:
    """:func:`error_response` entries for the statuses a route answers, with generic text."""
    return {s: error_response(_ERROR_TEXT.get(s, "Error")) for s in statuses}


#: 422 of a route that logs in to a mail server first (connect, new credentials).
LOGIN_CHECK_422 = error_response(
    "Invalid body (`invalid_request`), or the login check failed: `auth_failed`, "
    "`connection_failed`, `tls_error` (the certificate is not trusted or names another host, or "
    "a `starttls` server offers no STARTTLS: never downgraded to plain text), "
    "`host_not_allowed`, `insecure_connection`, `unknown_folder`; nothing is stored"
)


#: 409 of a route that syncs an account now (sync, resync, check).
SYNCABLE_409 = error_response(
    "`account_paused`: resume the account first; `auth_error`: give it new credentials first"
)


def json_response(status: int, body: Any) -> Response[Any]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)
