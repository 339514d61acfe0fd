"""CORS on the wire (rules and their invariants: ``domain/cors.py``): the preflight answer,
and the headers an actual response gains for an origin its caller's tenant lists."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mailsync.domain import cors
from mailsync.store import tenants


def request_origin(event: Mapping[str, Any]) -> str | None:
    """The request's ``Origin``, normalised, or None (absent, ``null`` or not an origin)."""
    headers = {k.lower(): v for k, v in (event.get("headers") or {}).items()}
    raw = headers.get("origin")
    if not raw or raw == "null":
        return None
    try:
        return cors.normalize_origin(raw)
    except cors.InvalidOrigin:
        return None


def preflight(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The answer to a CORS preflight, or None when ``event`` is not one. One Query of the
    origin's partition; an origin no tenant lists gets 204 without allow headers."""
    ctx = event.get("requestContext") or {}
    method = str((ctx.get("http") or {}).get("method") or "").upper()
    headers = {k.lower() for k in (event.get("headers") or {})}
    if method != "OPTIONS" or "origin" not in headers or "access-control-request-method" not in headers:
        return None
    origin = request_origin(event)
    allowed = origin is not None and tenants.origin_listed(origin)
    return {
        "statusCode": 204,
        "headers": cors.preflight_headers(origin) if allowed and origin else {"Vary": "Origin"},
        "cookies": [],
        "body": "",
        "isBase64Encoded": False,
    }


def decorate(response: dict[str, Any], origin: str | None, allowed: tuple[str, ...] | bool) -> dict[str, Any]:
    """Add the response headers when ``origin`` is allowed (a tenant's list, or True)."""
    if origin is None or not (allowed is True or (isinstance(allowed, tuple) and origin in allowed)):
        return response
    response["headers"] = {**(response.get("headers") or {}), **cors.response_headers(origin)}
    return response


def listed(origin: str | None) -> bool:
    """Whether some tenant lists ``origin`` (an answer before the caller is known)."""
    return origin is not None and tenants.origin_listed(origin)
