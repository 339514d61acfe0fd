"""The HTTP client of webhook deliveries (implements :class:`mailsync.domain.webhooks.WebhookSender`).

Invariants:

* The host guard holds at connect time and TLS is verified (``providers/guarded_http``).
* **No redirect is followed** and nothing is retried here: a 3xx is a failed attempt with its
  status code; retries are the use case's schedule.
* One timeout bounds connecting and each read (10 s); the answer's body is never read.
* Errors are short, fixed texts plus the host (never a header or the body, which carry the
  signature): ``host_not_allowed``, ``host_unresolvable``, ``tls_error``, ``timeout``,
  ``connection_failed``.
"""

from __future__ import annotations

import socket

from mailsync.config import get_settings
from mailsync.domain.webhooks import TIMEOUT_SECONDS, InvalidUrl, Response, parse_url
from mailsync.providers.guarded_http import (
    REQUEST_ERRORS,
    GuardRefused,
    Resolver,
    describe,
    open_pool,
)

__all__ = ["HttpWebhookSender"]


class HttpWebhookSender:
    """POSTs webhook bodies (see the module docstring). ``resolver`` is
    :func:`socket.getaddrinfo`-shaped (called as ``resolver(host, port)``)."""

    def __init__(
        self,
        *,
        allow_private: bool | None = None,
        resolver: Resolver = socket.getaddrinfo,
        ca_bundle: str | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.allow_private = allow_private
        self.resolver = resolver
        self.ca_bundle = ca_bundle
        self.timeout = timeout

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
        s = get_settings()
        allow_private = s.allow_private_hosts if self.allow_private is None else self.allow_private
        try:
            target = parse_url(url, allow_http=allow_private)
        except InvalidUrl as e:
            return Response(error=f"invalid_url: {e}")
        try:
            pool = open_pool(
                target,
                allow_private=allow_private,
                timeout=self.timeout,
                resolver=self.resolver,
                ca_bundle=self.ca_bundle,
            )
        except GuardRefused as e:
            return Response(error=str(e))
        try:
            answer = pool.urlopen(
                "POST",
                target.target,
                body=body,
                headers={**headers, "Host": target.host_header, "Content-Length": str(len(body))},
                redirect=False,
                retries=False,
                assert_same_host=False,
                preload_content=False,
            )
            status = int(answer.status)
            answer.release_conn()
            return Response(status=status)
        except REQUEST_ERRORS as e:
            return Response(error=describe(e, target, self.timeout))
        finally:
            pool.close()
