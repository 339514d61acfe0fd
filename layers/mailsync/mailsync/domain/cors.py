"""Cross-origin access for browsers (issue 17), by the Fetch standard's CORS protocol.

Invariants:

* A tenant lists the origins its web front ends run on (``allowed_origins``). An origin is
  the serialisation a browser sends in ``Origin`` (RFC 6454 section 6.1): ``scheme://host``
  with the port only when it is not the scheme's default, lower case, nothing after it.
  ``https`` only, except loopback over ``http`` for development. At most :data:`MAX_ORIGINS`.
* A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered
  204 with the allow headers when some tenant lists the origin (a preflight carries no
  credentials, so no tenant can be known), and 204 without them otherwise, which makes the
  browser refuse the request.
* An actual response carries ``Access-Control-Allow-Origin: <origin>`` (never ``*``) and
  ``Vary: Origin`` only when the caller's own tenant lists the origin; no cookies are used,
  so no ``Allow-Credentials``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_ORIGINS = 20
LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE"
ALLOW_HEADERS = "authorization, content-type, idempotency-key, x-user-id"
EXPOSE_HEADERS = "location, retry-after, idempotency-key"
MAX_AGE_SECONDS = 600


class InvalidOrigin(ValueError):
    pass


def normalize_origin(value: str) -> str:
    """``HTTPS://CRM.Example:443`` -> ``https://crm.example``; raises :class:`InvalidOrigin`."""
    raw = value.strip()
    try:
        u = urlsplit(raw)
        port = u.port
    except ValueError:
        raise InvalidOrigin(f"not an origin: {value[:100]!r}") from None
    scheme, host = u.scheme.lower(), (u.hostname or "").lower()
    if u.username or u.password or u.path not in ("", "/") or u.query or u.fragment or not host:
        raise InvalidOrigin(f"an origin is scheme://host[:port] only: {value[:100]!r}")
    shown = f"[{host}]" if ":" in host else host
    if scheme == "http" and shown not in LOOPBACK:
        raise InvalidOrigin(f"http is allowed for loopback only (localhost, 127.0.0.1): {value[:100]!r}")
    if scheme not in ("https", "http"):
        raise InvalidOrigin(f"an origin is https (or http on loopback): {value[:100]!r}")
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{shown}" + (f":{port}" if port not in (None, default) else "")


def parse_origins(values: list[str]) -> tuple[str, ...]:
    out = tuple(dict.fromkeys(normalize_origin(v) for v in values))
    if len(out) > MAX_ORIGINS:
        raise InvalidOrigin(f"at most {MAX_ORIGINS} origins")
    return out


def preflight_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Allow-Methods": ALLOW_METHODS,
        "Access-Control-Allow-Headers": ALLOW_HEADERS,
        "Access-Control-Max-Age": str(MAX_AGE_SECONDS),
        "Vary": "Origin",
    }


def response_headers(origin: str) -> dict[str, str]:
    return {
        "Access-Control-Allow-Origin": origin,
        "Access-Control-Expose-Headers": EXPOSE_HEADERS,
        "Vary": "Origin",
    }
