"""Images of a mail: the links a read hands out, and the route that serves them.

* :class:`Linker` is the :class:`~mailsync.domain.images.ImageLinks` of one read of one
  message: ``cid:`` images always get a link, remote ones only with ``load`` (``GET
  /v1/messages/{id}?images=load``); it counts the remote images either way, so that a client
  can offer "load images".
* :func:`serve` answers ``GET /v1/images/{token}``: the token is checked before anything is
  read; then one GetItem (the message must still exist: a deleted or purged mail serves
  nothing) and either one S3 GET of the raw mail (``cid``) or one guarded fetch of the remote
  image (``url``, ``providers/image_http``). Nothing is written, nothing is cached by us.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

from mailsync.config import get_settings
from mailsync.domain import images
from mailsync.errors import BadGateway, LinkExpired, NotFound
from mailsync.store import blobs
from mailsync.store.messages import MessageRepository

__all__ = ["ImageFetcher", "Linker", "ServedImage", "linker", "serve"]


class ImageFetcher(Protocol):
    def fetch(self, url: str):  # noqa: ANN201 - a FetchedImage (content_type, data)
        ...


@dataclass(frozen=True)
class ServedImage:
    content_type: str
    data: bytes


def _key() -> bytes | None:
    secret = get_settings().state_secret
    return images.image_key(secret.encode()) if secret else None


class Linker:
    """Signs the image links of one message for one read (see the module docstring)."""

    def __init__(
        self, key: bytes | None, base_url: str | None, tenant_id: str, mid: str, *, load: bool
    ) -> None:
        self.key, self.base = key, (base_url or "").rstrip("/")
        self.tenant_id, self.mid, self.load = tenant_id, mid, load
        self.expires = int(time.time()) + images.TOKEN_SECONDS
        self.remote_images = 0

    def _link(self, kind: str, value: str) -> str | None:
        if self.key is None or not self.base:
            return None
        ref = images.ImageRef(self.tenant_id, self.mid, kind, value, self.expires)  # type: ignore[arg-type]
        return f"{self.base}/v1/images/{images.sign_token(self.key, ref)}"

    def cid(self, content_id: str) -> str | None:
        return self._link("cid", content_id) if 0 < len(content_id) <= 998 else None

    def remote(self, url: str) -> str | None:
        self.remote_images += 1
        if not self.load or len(url) > images.URL_MAX:
            return None
        return self._link("url", url)


def linker(tenant_id: str, mid: str, base_url: str | None, *, load: bool) -> Linker:
    """The :class:`Linker` of a read. Where links cannot be signed (no deployment secret, no
    public URL) it hands out none: cid images stay without ``src``, remote ones stay links."""
    return Linker(_key(), base_url, tenant_id, mid, load=load)


def _default_fetcher() -> ImageFetcher:
    from mailsync.providers.image_http import HttpImageFetcher

    return HttpImageFetcher(allow_private=get_settings().allow_private_hosts)


def serve(token: str, fetcher: ImageFetcher | None = None, now: float | None = None) -> ServedImage:
    """The image a token names. 404 ``not_found``: not our token, or its message or part is
    gone; 410 ``link_expired``; 502 ``image_unavailable``: the remote image could not be
    fetched or is not a raster image."""
    key = _key()
    if key is None:
        raise NotFound("image not found")
    try:
        ref = images.read_token(key, token, time.time() if now is None else now)
    except images.TokenExpired as e:
        raise LinkExpired("the image link has expired: read the message again for a new one") from e
    except images.TokenInvalid as e:
        raise NotFound("image not found") from e
    doc = MessageRepository(ref.tenant_id).get(ref.message_id)
    if doc is None or doc.get("orphan"):
        raise NotFound("image not found")
    if ref.kind == "cid":
        from mailsync.domain import mime

        found = mime.get_inline_image(blobs.get(doc["raw_key"]), ref.value)
        if found is None:
            raise NotFound("image not found")
        return ServedImage(*found)
    from mailsync.providers.image_http import ImageUnavailable

    try:
        fetched = (fetcher or _default_fetcher()).fetch(ref.value)
    except ImageUnavailable as e:
        raise BadGateway(f"the image could not be loaded ({e})", code="image_unavailable") from e
    return ServedImage(fetched.content_type, fetched.data)
