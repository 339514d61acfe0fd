"""Web app function: serves the reference web client (``static/``) under ``/app``.

A thin, stdlib-only handler for API Gateway HTTP API (payload 2.0) events, so that the
client is served from the same domain as the API (no CDN, no CORS for the default setup).
Every answer carries strict security headers: the client's own files are the only script,
style and font sources; mail HTML is shown in ``<iframe sandbox srcdoc>`` (no scripts), and
its images come only from the API's image route. By default the API is the same origin, so
``connect-src`` and ``img-src`` are ``'self'``; a deployment whose pages talk to an API on
another origin lists it in ``MAILSYNC_WEBAPP_API_ORIGINS``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

STATIC = Path(__file__).resolve().parent / "static"

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".woff2": "font/woff2",
}


def _origins(name: str) -> list[str]:
    """Origins from an environment variable (space or comma separated): https, or http on
    loopback; anything else (a wildcard, a keyword, a path) is ignored."""
    out = []
    for o in os.environ.get(name, "").replace(",", " ").split():
        o = o.rstrip("/")
        if o.startswith(("https://", "http://127.0.0.1", "http://localhost")) and all(
            c not in o for c in "*'; "
        ):
            out.append(o)
    return out


def frame_ancestors() -> str:
    """``'self'`` plus ``MAILSYNC_WEBAPP_FRAME_ANCESTORS``: the CRMs that may embed the client."""
    return " ".join(["'self'", *_origins("MAILSYNC_WEBAPP_FRAME_ANCESTORS")])


def security_headers() -> dict[str, str]:
    api = " ".join(["'self'", *_origins("MAILSYNC_WEBAPP_API_ORIGINS")])
    csp = "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            # The API (and its image route, the only image source of a mail): same origin
            # unless the deployment lists another.
            f"img-src {api}",
            f"connect-src {api}",
            "frame-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            f"frame-ancestors {frame_ancestors()}",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    }


def _answer(status: int, body: bytes, content_type: str, cache: str) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": content_type, "Cache-Control": cache, **security_headers()},
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }


def not_found() -> dict[str, Any]:
    return _answer(404, b"not found\n", "text/plain; charset=utf-8", "no-store")


def resolve(path: str) -> Path | None:
    """The file a request path names, or None (unknown, hidden, outside ``static/``)."""
    if path == "/app/":
        rel = "index.html"
    elif path.startswith("/app/"):
        rel = path[len("/app/") :]
    else:
        return None
    parts = rel.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") or "\\" in p or "\x00" in p for p in parts):
        return None
    target = (STATIC / rel).resolve()
    if not target.is_relative_to(STATIC) or not target.is_file() or target.suffix not in TYPES:
        return None
    return target


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    method = event.get("requestContext", {}).get("http", {}).get("method", "GET")
    if method not in ("GET", "HEAD"):
        return _answer(405, b"method not allowed\n", "text/plain; charset=utf-8", "no-store")
    path = event.get("rawPath") or "/"
    if path == "/app":  # relative module and style URLs resolve below /app/
        answer = _answer(308, b"", "text/plain; charset=utf-8", "no-cache")
        answer["headers"]["Location"] = "/app/"
        return answer
    if "%" in path:  # encoded dots or slashes are never ours
        return not_found()
    target = resolve(path)
    if target is None:
        return not_found()
    # index.html is revalidated (it names the modules); the rest may be cached briefly and
    # revalidated, since module URLs carry no content hash.
    cache = "no-cache" if target.name == "index.html" else "public, max-age=300, must-revalidate"
    return _answer(200, target.read_bytes(), TYPES[target.suffix], cache)
