"""Images of a rendered mail: signed links to our image route, never the sender's server.

A mail's HTML reaches the reader sanitized (:mod:`mailsync.domain.sanitize`): remote images
are links, ``cid:`` images (RFC 2392) have no ``src``. When a body is read, the reading use
case may pass an :class:`ImageLinks` to the sanitizer, which then asks it for a ``src``:

* ``cid(content_id)``: the mail's own inline part. Always rendered: it is in the mail, so
  showing it tells the sender nothing.
* ``remote(url)``: an ``http(s)`` image. Rendered only when the reader asks for it
  (``GET /v1/messages/{id}?images=load``), and then through our proxy route, so the sender
  sees our server fetch it, never the reader's IP, browser, cookies or referrer.

Both come back as ``<base>/v1/images/<token>``. An ``<img>`` cannot send the API key, so the
token is the authority: ``payload.signature``, where the payload (base64url JSON) names the
tenant, the message, what to serve and when the link expires, and the signature is an
HMAC-SHA256 of the payload under a key derived from the deployment's secret. Only a caller
who could read the body is ever given a token; it serves that one image of that one
message, and nothing else, until it expires (:data:`TOKEN_SECONDS`). A token whose message
is gone (deleted, purged) serves nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = [
    "IMAGE_TYPES",
    "TOKEN_MAX",
    "TOKEN_SECONDS",
    "ImageLinks",
    "ImageRef",
    "TokenExpired",
    "TokenInvalid",
    "image_key",
    "read_token",
    "sign_token",
]

TOKEN_SECONDS = 24 * 3600
"""A link lives a day: long enough for a reader who keeps a mail open, short enough that a
copied link stops working."""

TOKEN_MAX = 4096
"""The longest token we accept (the payload holds the image URL: at most 2,048 characters)."""

URL_MAX = 2048

IMAGE_TYPES = frozenset(
    {"image/png", "image/jpeg", "image/gif", "image/webp", "image/avif", "image/bmp", "image/x-icon"}
)
"""Raster types only. ``image/svg+xml`` is a document that can carry script and links; served
from our origin it would be an XSS carrier, so it is never served."""


class ImageLinks(Protocol):
    """What the sanitizer asks when it meets an image (see the module docstring)."""

    def cid(self, content_id: str) -> str | None: ...

    def remote(self, url: str) -> str | None: ...


@dataclass(frozen=True)
class ImageRef:
    """What a token serves: part ``value`` (a Content-ID) or the remote URL ``value`` of
    message ``message_id`` in ``tenant_id``; valid until ``expires`` (epoch seconds)."""

    tenant_id: str
    message_id: str
    kind: Literal["cid", "url"]
    value: str
    expires: int


class TokenInvalid(ValueError):
    """Not a token we signed (forged, truncated, altered)."""


class TokenExpired(ValueError):
    """A genuine token past its expiry."""


def image_key(secret: bytes) -> bytes:
    """The image-link key, derived from the deployment secret so that a token can never pass
    for an OAuth state (domain separation), and one secret is all ops keep."""
    return hmac.new(secret, b"mailsync image links v1", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, payload: str) -> str:
    return _b64(hmac.new(key, payload.encode(), hashlib.sha256).digest())


def sign_token(key: bytes, ref: ImageRef) -> str:
    """The token of ``ref`` (URL-safe: base64url and one ``.``)."""
    body = [ref.tenant_id, ref.message_id, ref.kind, ref.value, ref.expires]
    payload = _b64(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode())
    return f"{payload}.{_mac(key, payload)}"


def read_token(key: bytes, token: str, now: float) -> ImageRef:
    """The :class:`ImageRef` of a token we signed; raises :class:`TokenInvalid` or
    :class:`TokenExpired`. The signature is checked in constant time before anything in the
    payload is believed."""
    payload, dot, mac = token.partition(".")
    if not dot or len(token) > TOKEN_MAX or not hmac.compare_digest(mac, _mac(key, payload)):
        raise TokenInvalid("not a valid image link")
    try:
        tenant_id, message_id, kind, value, expires = json.loads(_unb64(payload))
    except (binascii.Error, ValueError, TypeError) as e:
        raise TokenInvalid("not a valid image link") from e
    if kind not in ("cid", "url") or not isinstance(expires, int):
        raise TokenInvalid("not a valid image link")
    if expires < now:
        raise TokenExpired("the image link has expired")
    return ImageRef(str(tenant_id), str(message_id), kind, str(value), expires)
