"""The image proxy's fetcher: one remote image, fetched by us on the reader's behalf.

Invariants (``GET /v1/images/{token}``, :mod:`mailsync.domain.images`):

* **The reader is never revealed.** The request carries only ``Host``, ``Accept``,
  ``Accept-Encoding: identity`` and our own ``User-Agent``: no cookie, no referrer, no
  forwarded-for, nothing of the reader's request. The sender's server sees our address.
* **SSRF.** Every hop goes through the host guard (``providers/guarded_http``): a mail cannot
  make us fetch from our own network, directly or by a redirect. ``http`` images are fetched
  (most mail images are); the reader still gets them over our ``https``.
* At most :data:`MAX_REDIRECTS` redirects, each checked again; at most :data:`MAX_BYTES`
  read (a longer answer is refused, never truncated); the answer must declare a raster
  image type (:data:`~mailsync.domain.images.IMAGE_TYPES`), never SVG.
* Failures raise :class:`ImageUnavailable` with a short code-and-reason text.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

from mailsync.domain.images import IMAGE_TYPES
from mailsync.domain.webhooks import InvalidUrl, parse_url
from mailsync.providers.guarded_http import REQUEST_ERRORS, GuardRefused, Resolver, describe, open_pool

__all__ = ["MAX_BYTES", "MAX_REDIRECTS", "FetchedImage", "HttpImageFetcher", "ImageUnavailable"]

MAX_BYTES = 5 * 1024 * 1024
MAX_REDIRECTS = 3
TIMEOUT_SECONDS = 10.0
USER_AGENT = "mailsync-image-proxy/1"


class ImageUnavailable(Exception):
    """The image could not be fetched or is not one we serve."""


@dataclass(frozen=True)
class FetchedImage:
    content_type: str
    data: bytes


class HttpImageFetcher:
    """Fetches remote images (see the module docstring)."""

    def __init__(
        self,
        *,
        allow_private: bool = False,
        resolver: Resolver = socket.getaddrinfo,
        ca_bundle: str | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self.ca_bundle = ca_bundle
        self.timeout = timeout

    def fetch(self, url: str) -> FetchedImage:
        for _hop in range(MAX_REDIRECTS + 1):
            status, location, ctype, data = self._get(url)
            if status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                continue
            if status != 200:
                raise ImageUnavailable(f"upstream_status: the image server answered {status}")
            if ctype not in IMAGE_TYPES:
                raise ImageUnavailable(f"not_an_image: the answer is {ctype or 'untyped'}")
            return FetchedImage(ctype, data)
        raise ImageUnavailable(f"too_many_redirects: more than {MAX_REDIRECTS}")

    def _get(self, url: str) -> tuple[int, str | None, str, bytes]:
        parts = urlsplit(url)
        try:  # the fragment never goes on the wire
            target = parse_url(urlunsplit(parts._replace(fragment="")), allow_http=True)
        except (InvalidUrl, ValueError) as e:
            raise ImageUnavailable(f"invalid_url: {e}") from e
        try:
            pool = open_pool(
                target,
                allow_private=self.allow_private,
                timeout=self.timeout,
                resolver=self.resolver,
                ca_bundle=self.ca_bundle,
            )
        except GuardRefused as e:
            raise ImageUnavailable(str(e)) from e
        try:
            answer = pool.urlopen(
                "GET",
                target.target,
                headers={
                    "Host": target.host_header,
                    "User-Agent": USER_AGENT,
                    "Accept": ", ".join(sorted(IMAGE_TYPES)),
                    "Accept-Encoding": "identity",
                },
                redirect=False,
                retries=False,
                assert_same_host=False,
                preload_content=False,
            )
            try:
                status = int(answer.status)
                ctype = (answer.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
                location = answer.headers.get("location")
                data = b""
                if status == 200:
                    declared = answer.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > MAX_BYTES:
                        raise ImageUnavailable(f"too_large: more than {MAX_BYTES} bytes")
                    data = answer.read(MAX_BYTES + 1, decode_content=False)
                    if len(data) > MAX_BYTES:
                        raise ImageUnavailable(f"too_large: more than {MAX_BYTES} bytes")
                return status, location, ctype, data
            finally:
                answer.release_conn()
        except REQUEST_ERRORS as e:
            raise ImageUnavailable(describe(e, target, self.timeout)) from e
        finally:
            pool.close()
