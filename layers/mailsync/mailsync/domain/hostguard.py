"""SSRF guard for user-supplied IMAP/SMTP hosts.

A tenant may type any host name into the account settings; the worker then
opens a TCP connection to it from inside our network. :func:`check_host`
rejects hosts that resolve to addresses which are not globally routable, so a
user cannot probe the VPC, the instance metadata service (169.254.169.254) or
localhost.

Invariants:

* **Every** address a name resolves to must be allowed (a name with one public
  and one private record is rejected: the connection may pick either).
* Rejected (RFC 6890 special-purpose registries): loopback (127/8, ::1),
  private (RFC 1918 10/8, 172.16/12, 192.168/16; RFC 4193 fc00::/7),
  link-local (169.254/16, fe80::/10), unspecified (0.0.0.0, ::), "this
  network" 0/8, multicast (224/4, ff00::/8), reserved (240/4, 255.255.255.255),
  shared CGNAT space (RFC 6598 100.64/10), benchmarking/documentation ranges,
  and anything else Python's :mod:`ipaddress` does not consider global.
* IPv6 addresses that embed an IPv4 address — IPv4-mapped ``::ffff:a.b.c.d``
  (RFC 4291 §2.5.5.2), 6to4 ``2002::/16`` (RFC 3056) and NAT64
  ``64:ff9b::/96`` (RFC 6052) — are judged by the embedded IPv4 address too.
* IP literals (also ``[v6]`` in brackets and with ``%zone``) are checked
  without DNS; alternative IPv4 spellings (``127.1``, ``0x7f.1``) are left to
  the resolver, which normalises them, and are then checked like any answer.
* ``allow_private=True`` (local development, integration tests against a
  Dovecot container) skips the address policy, not the resolution.
* Resolution failure raises :class:`HostUnresolvable`; both errors are
  :class:`ValueError` so the API can map them to 422.

Note: this check is advisory against DNS rebinding — callers should connect to
the addresses checked here or re-check at connect time.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["HostNotAllowed", "HostUnresolvable", "check_host", "is_allowed_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class HostNotAllowed(ValueError):
    """The host resolves to an address we must not connect to."""


class HostUnresolvable(ValueError):
    """The host name does not resolve."""


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _v4_allowed(address: ipaddress.IPv4Address) -> bool:
    return not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or address in _CGNAT
        or not address.is_global
    )


def is_allowed_address(address: IPAddress) -> bool:
    """Whether a connection to ``address`` is acceptable for a tenant-supplied host."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return _v4_allowed(embedded)
        return not (
            address.is_loopback
            or address.is_private
            or address.is_link_local
            or address.is_site_local
            or address.is_unspecified
            or address.is_multicast
            or address.is_reserved
            or not address.is_global
        )
    return _v4_allowed(address)


def _literal(host: str) -> IPAddress | None:
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        parsed = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.scope_id:
        parsed = ipaddress.IPv6Address(candidate.split("%", 1)[0])
    return parsed


def _resolve(host: str, resolver: Callable[..., Any]) -> list[IPAddress]:
    try:
        infos = resolver(host, None)
    except (OSError, UnicodeError, ValueError) as exc:  # socket.gaierror is an OSError
        raise HostUnresolvable(f"host {host!r} does not resolve") from exc
    addresses: list[IPAddress] = []
    for info in infos or []:
        try:
            sockaddr = info[4]
            addresses.append(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
        except (IndexError, TypeError, ValueError):
            continue
    if not addresses:
        raise HostUnresolvable(f"host {host!r} does not resolve")
    return addresses


def check_host(
    host: str,
    allow_private: bool,
    resolver: Callable[..., Any] = socket.getaddrinfo,
) -> None:
    """Raise :class:`HostNotAllowed` / :class:`HostUnresolvable` (see the module docstring)."""
    name = (host or "").strip().rstrip(".") if isinstance(host, str) else ""
    if not name:
        raise HostUnresolvable("empty host")
    literal = _literal(name)
    addresses = [literal] if literal is not None else _resolve(name, resolver)
    if allow_private:
        return
    for address in addresses:
        if not is_allowed_address(address):
            raise HostNotAllowed(f"host {host!r} resolves to a non-public address ({address})")
