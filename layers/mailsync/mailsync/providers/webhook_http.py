"""The HTTP client of webhook deliveries (implements :class:`mailsync.domain.webhooks.WebhookSender`).

Invariants:

* **The host guard holds at connect time, against DNS rebinding.** The host is resolved once
  here, *every* address is checked (``domain/hostguard.is_allowed_address``), and the
  connection goes to the checked IP itself (``HTTPSConnectionPool(ip, server_hostname=host,
  assert_hostname=host)`` with a ``Host`` header): a name that answers a public address at
  registration and a private one now is refused, and one that changes between our check and
  our connect cannot reach the second address. ``allow_private`` (local runner, tests) skips
  the address policy, never the resolution.
* **TLS is verified** against the host name, with the default CA bundle (certifi's, else the
  system's); ``REQUESTS_CA_BUNDLE`` chooses another bundle, as it does for requests.
* **No redirect is followed** and nothing is retried here: a 3xx is a failed attempt with its
  status code; retries are the use case's schedule.
* One timeout bounds connecting and each read (10 s); the answer's body is never read.
* Errors are short, fixed texts plus the host (never a header or the body, which carry the
  signature): ``host_not_allowed``, ``host_unresolvable``, ``tls_error``, ``timeout``,
  ``connection_failed``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)

from mailsync.config import get_settings
from mailsync.domain import hostguard
from mailsync.domain.webhooks import TIMEOUT_SECONDS, InvalidUrl, Response, parse_url

Resolver = Callable[..., Any]


def default_ca_bundle() -> str | None:
    """The CA bundle requests would use: ``REQUESTS_CA_BUNDLE`` where it is set (as for the
    Google and Microsoft clients: tests point it at a throw-away CA), else certifi's. It only
    chooses which CAs are trusted; verification itself is never turned off."""
    import os

    if os.environ.get("REQUESTS_CA_BUNDLE"):
        return os.environ["REQUESTS_CA_BUNDLE"]
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi ships with requests in the layer
        return None
    return str(certifi.where())


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

    def _addresses(self, host: str, port: int) -> list[hostguard.IPAddress]:
        literal = host.split("%", 1)[0]
        try:
            return [ipaddress.ip_address(literal)]
        except ValueError:
            pass
        try:
            infos = self.resolver(host, port)
        except (OSError, UnicodeError, ValueError) as e:
            raise hostguard.HostUnresolvable(host) from e
        found: list[hostguard.IPAddress] = []
        for info in infos or []:
            try:
                found.append(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
            except (IndexError, TypeError, ValueError):
                continue
        if not found:
            raise hostguard.HostUnresolvable(host)
        return found

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response:
        s = get_settings()
        allow_private = s.allow_private_hosts if self.allow_private is None else self.allow_private
        try:
            target = parse_url(url, allow_http=allow_private)
        except InvalidUrl as e:
            return Response(error=f"invalid_url: {e}")
        try:
            addresses = self._addresses(target.host, target.port)
        except hostguard.HostUnresolvable:
            return Response(error=f"host_unresolvable: {target.host} does not resolve")
        if not allow_private:
            for address in addresses:
                if not hostguard.is_allowed_address(address):
                    return Response(
                        error=f"host_not_allowed: {target.host} resolves to a non-public address ({address})"
                    )
        ip = str(addresses[0])
        timeout = urllib3.Timeout(connect=self.timeout, read=self.timeout)
        pool: urllib3.HTTPConnectionPool
        if target.scheme == "https":
            pool = urllib3.HTTPSConnectionPool(
                ip,
                target.port,
                timeout=timeout,
                retries=False,
                maxsize=1,
                cert_reqs="CERT_REQUIRED",
                ca_certs=self.ca_bundle or default_ca_bundle(),
                server_hostname=target.host,
                assert_hostname=target.host,
            )
        else:
            pool = urllib3.HTTPConnectionPool(ip, target.port, timeout=timeout, retries=False, maxsize=1)
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
        except SSLError:
            return Response(
                error=f"tls_error: the certificate of {target.host} is not trusted or names another host"
            )
        except NewConnectionError:  # urllib3 2 derives it from ConnectTimeoutError: first
            return Response(error=f"connection_failed: could not reach {target.host}:{target.port}")
        except (ConnectTimeoutError, ReadTimeoutError, TimeoutError):
            return Response(error=f"timeout: {target.host} did not answer within {self.timeout:g} s")
        except (HTTPError, OSError):
            return Response(error=f"connection_failed: could not reach {target.host}:{target.port}")
        finally:
            pool.close()
