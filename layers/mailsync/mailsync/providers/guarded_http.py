"""Outbound HTTP to hosts a mail or a tenant names: the host guard at connect time.

Used by webhook deliveries (``webhook_http``) and the image proxy (``image_http``): both
reach URLs that someone outside our trust boundary chose, so both must never reach our own
network (SSRF, OWASP).

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
* One timeout bounds connecting and each read. Pools hold one connection and retry nothing.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from typing import Any

import urllib3
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError, ReadTimeoutError, SSLError

from mailsync.domain import hostguard
from mailsync.domain.webhooks import Target

Resolver = Callable[..., Any]


def default_ca_bundle() -> str | None:
    """The CA bundle requests would use: ``REQUESTS_CA_BUNDLE`` where it is set (as for the
    Google and Microsoft clients: tests point it at a throw-away CA), else certifi's. It only
    chooses which CAs are trusted; verification itself is never turned off."""
    if os.environ.get("REQUESTS_CA_BUNDLE"):
        return os.environ["REQUESTS_CA_BUNDLE"]
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi ships with requests in the layer
        return None
    return str(certifi.where())


class GuardRefused(Exception):
    """The target may not be reached; ``str()`` is a short ``code: text`` without secrets."""


def addresses(host: str, port: int, resolver: Resolver) -> list[hostguard.IPAddress]:
    """Every address ``host`` resolves to (an IP literal is itself); raises
    :class:`hostguard.HostUnresolvable`."""
    literal = host.split("%", 1)[0]
    try:
        return [ipaddress.ip_address(literal)]
    except ValueError:
        pass
    try:
        infos = resolver(host, port)
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


def open_pool(
    target: Target,
    *,
    allow_private: bool,
    timeout: float,
    resolver: Resolver = socket.getaddrinfo,
    ca_bundle: str | None = None,
) -> urllib3.HTTPConnectionPool:
    """A one-connection pool to the checked IP of ``target`` (see the module docstring);
    raises :class:`GuardRefused` (``host_unresolvable``, ``host_not_allowed``)."""
    try:
        found = addresses(target.host, target.port, resolver)
    except hostguard.HostUnresolvable as e:
        raise GuardRefused(f"host_unresolvable: {target.host} does not resolve") from e
    if not allow_private:
        for address in found:
            if not hostguard.is_allowed_address(address):
                raise GuardRefused(
                    f"host_not_allowed: {target.host} resolves to a non-public address ({address})"
                )
    ip = str(found[0])
    limits = urllib3.Timeout(connect=timeout, read=timeout)
    if target.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            ip,
            target.port,
            timeout=limits,
            retries=False,
            maxsize=1,
            cert_reqs="CERT_REQUIRED",
            ca_certs=ca_bundle or default_ca_bundle(),
            server_hostname=target.host,
            assert_hostname=target.host,
        )
    return urllib3.HTTPConnectionPool(ip, target.port, timeout=limits, retries=False, maxsize=1)


def describe(error: BaseException, target: Target, timeout: float) -> str:
    """A short ``code: text`` for a failed request (never a header or a body)."""
    if isinstance(error, SSLError):
        return f"tls_error: the certificate of {target.host} is not trusted or names another host"
    if isinstance(error, NewConnectionError):  # urllib3 2 derives it from ConnectTimeoutError
        return f"connection_failed: could not reach {target.host}:{target.port}"
    if isinstance(error, ConnectTimeoutError | ReadTimeoutError | TimeoutError):
        return f"timeout: {target.host} did not answer within {timeout:g} s"
    return f"connection_failed: could not reach {target.host}:{target.port}"


REQUEST_ERRORS = (HTTPError, OSError)
"""What a request through :func:`open_pool` may raise (give it to :func:`describe`)."""
