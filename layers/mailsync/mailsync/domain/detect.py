"""Mail server settings for an e-mail address (``GET /v1/providers/detect``).

Resolution order, each step reported in ``source``:

1. ``known_provider`` — the address's domain belongs to a well-known mailbox
   provider (gmail.com, outlook.com, gmx.de, ...). Server data follows the
   providers' published settings (the same data Thunderbird's ISPDB ships).
2. ``mx`` — a custom domain whose MX records (RFC 5321 §5.1) point at a hosted
   provider (Google Workspace, Microsoft 365, IONOS, STRATO, iCloud+). The MX
   lookup is injected (``mx_lookup``) so this module stays pure; a lookup that
   fails or raises counts as "no MX".
3. ``guess`` — ``imap.<domain>:993`` with implicit TLS (RFC 8314 §3.2) and
   ``smtp.<domain>:587`` with STARTTLS (RFC 6409 submission, RFC 3207).

Invariants: the username is always the full address as given (trimmed); the
domain is lower-cased without a trailing dot; an invalid address raises
:class:`ValueError` (mapped to HTTP 422 by the API); detection itself never
performs I/O except through ``mx_lookup``. ``saves_sent`` is ``True`` only for
providers that file messages submitted over SMTP into the Sent folder
themselves, so the client must not APPEND a copy (it would appear twice).

:func:`dns_mx_lookup` is a tiny stdlib-only DNS client (RFC 1035, one UDP
query to the first ``nameserver`` of ``/etc/resolv.conf``, 2 s timeout). It
returns ``[]`` on any failure (no resolver, timeout, truncated or malformed
answer) — detection then falls back to the guess; it never raises.
"""

from __future__ import annotations

import re
import secrets
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "PROVIDERS",
    "Provider",
    "Server",
    "build_mx_query",
    "detect",
    "dns_mx_lookup",
    "parse_mx_response",
]


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    security: str  # "ssl" | "starttls" | "none"


@dataclass(frozen=True)
class Provider:
    id: str
    name: str
    imap: Server
    smtp: Server
    domains: frozenset[str] = frozenset()
    domain_patterns: tuple[str, ...] = ()  # regexes on the full domain
    mx_patterns: tuple[str, ...] = ()  # regexes on an MX host name
    saves_sent: bool = False
    oauth: str | None = None


# A country code TLD, com, or a second-level pair like co.uk / com.au.
_CC = r"(?:com|net|[a-z]{2}|co\.[a-z]{2}|com\.[a-z]{2})"

PROVIDERS: tuple[Provider, ...] = (
    Provider(
        id="google",
        name="Google",
        imap=Server("imap.gmail.com", 993, "ssl"),
        smtp=Server("smtp.gmail.com", 465, "ssl"),
        domains=frozenset({"gmail.com", "googlemail.com"}),
        mx_patterns=(r"(^|\.)google\.com$", r"(^|\.)googlemail\.com$"),
        saves_sent=True,
        oauth="google",
    ),
    Provider(
        id="microsoft",
        name="Microsoft 365 / Outlook.com",
        imap=Server("outlook.office365.com", 993, "ssl"),
        smtp=Server("smtp.office365.com", 587, "starttls"),
        domains=frozenset({"msn.com", "windowslive.com", "passport.com"}),
        domain_patterns=(rf"^(hotmail|live|outlook)\.{_CC}$",),
        mx_patterns=(r"\.mail\.protection\.outlook\.com$", r"(^|\.)outlook\.com$", r"(^|\.)hotmail\.com$"),
        saves_sent=True,
        oauth="microsoft",
    ),
    Provider(
        id="gmx",
        name="GMX",
        imap=Server("imap.gmx.net", 993, "ssl"),
        smtp=Server("mail.gmx.net", 587, "starttls"),
        domains=frozenset({"gmx.de", "gmx.net", "gmx.at", "gmx.ch", "gmx.li", "gmx.eu"}),
    ),
    # GMX's international service (gmx.com and its country domains) is a
    # separate account system with its own servers.
    Provider(
        id="gmx",
        name="GMX",
        imap=Server("imap.gmx.com", 993, "ssl"),
        smtp=Server("mail.gmx.com", 587, "starttls"),
        domains=frozenset({"gmx.com", "gmx.us", "gmx.co.uk", "gmx.fr", "gmx.es", "gmx.it"}),
    ),
    Provider(
        id="webde",
        name="WEB.DE",
        imap=Server("imap.web.de", 993, "ssl"),
        smtp=Server("smtp.web.de", 587, "starttls"),
        domains=frozenset({"web.de"}),
    ),
    Provider(
        id="t-online",
        name="Telekom (T-Online)",
        imap=Server("secureimap.t-online.de", 993, "ssl"),
        smtp=Server("securesmtp.t-online.de", 465, "ssl"),
        domains=frozenset({"t-online.de", "magenta.de"}),
    ),
    Provider(
        id="icloud",
        name="iCloud Mail",
        imap=Server("imap.mail.me.com", 993, "ssl"),
        smtp=Server("smtp.mail.me.com", 587, "starttls"),
        domains=frozenset({"icloud.com", "me.com", "mac.com"}),
        mx_patterns=(r"(^|\.)mail\.icloud\.com$",),
        saves_sent=True,
    ),
    Provider(
        id="yahoo",
        name="Yahoo Mail",
        imap=Server("imap.mail.yahoo.com", 993, "ssl"),
        smtp=Server("smtp.mail.yahoo.com", 465, "ssl"),
        domains=frozenset({"ymail.com", "rocketmail.com"}),
        domain_patterns=(rf"^yahoo\.{_CC}$",),
    ),
    Provider(
        id="ionos",
        name="IONOS",
        imap=Server("imap.ionos.de", 993, "ssl"),
        smtp=Server("smtp.ionos.de", 465, "ssl"),
        domains=frozenset({"ionos.de", "1und1.de", "online.de", "onlinehome.de"}),
        mx_patterns=(r"(^|\.)ionos\.[a-z.]+$", r"(^|\.)1and1\.[a-z.]+$", r"(^|\.)kundenserver\.de$"),
    ),
    Provider(
        id="strato",
        name="STRATO",
        imap=Server("imap.strato.de", 993, "ssl"),
        smtp=Server("smtp.strato.de", 465, "ssl"),
        domains=frozenset({"strato.de"}),
        mx_patterns=(r"(^|\.)rzone\.de$", r"(^|\.)strato\.de$"),
    ),
    Provider(
        id="maildotde",
        name="mail.de",
        imap=Server("imap.mail.de", 993, "ssl"),
        smtp=Server("smtp.mail.de", 465, "ssl"),
        domains=frozenset({"mail.de"}),
    ),
    Provider(
        id="posteo",
        name="Posteo",
        imap=Server("posteo.de", 993, "ssl"),
        smtp=Server("posteo.de", 465, "ssl"),
        domains=frozenset(
            {
                "posteo.de",
                "posteo.net",
                "posteo.org",
                "posteo.eu",
                "posteo.at",
                "posteo.ch",
                "posteo.be",
                "posteo.us",
                "posteo.me",
                "posteo.uk",
            }
        ),
    ),
)

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOCAL = re.compile(r"^[^\s@<>()\[\],;:\"\\]+$")


def _split_email(email: str) -> tuple[str, str, str]:
    """``(address as given, local part, domain)``; raises :class:`ValueError`."""
    if not isinstance(email, str):
        raise ValueError("email must be a string")
    address = email.strip()
    if len(address) > 254 or address.count("@") != 1:
        raise ValueError("invalid email address")
    local, domain = address.split("@")
    domain = domain.lower().rstrip(".")
    if not local or len(local) > 64 or not _LOCAL.match(local) or ".." in local:
        raise ValueError("invalid email address")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError("invalid email domain") from exc
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ValueError("invalid email domain")
    return address, local, domain


def _by_domain(domain: str) -> Provider | None:
    for provider in PROVIDERS:
        if domain in provider.domains or any(re.match(p, domain) for p in provider.domain_patterns):
            return provider
    return None


def _by_mx(hosts: list[str]) -> Provider | None:
    for host in hosts:
        name = str(host).strip().lower().rstrip(".")
        for provider in PROVIDERS:
            if any(re.search(p, name) for p in provider.mx_patterns):
                return provider
    return None


def _server(server: Server, username: str) -> dict[str, Any]:
    return {"host": server.host, "port": server.port, "security": server.security, "username": username}


def detect(email: str, mx_lookup: Callable[[str], list[str]] | None = None) -> dict[str, Any]:
    """Settings for ``email`` (see the module docstring for the result shape)."""
    address, _local, domain = _split_email(email)
    provider = _by_domain(domain)
    source = "known_provider"
    if provider is None and mx_lookup is not None:
        try:
            hosts = list(mx_lookup(domain) or [])
        except Exception:  # noqa: BLE001 - a failing resolver means "no MX", not an error
            hosts = []
        provider = _by_mx(hosts)
        source = "mx"
    if provider is None:
        return {
            "email": address,
            "domain": domain,
            "provider": None,
            "name": domain,
            "imap": _server(Server(f"imap.{domain}", 993, "ssl"), address),
            "smtp": _server(Server(f"smtp.{domain}", 587, "starttls"), address),
            "source": {"imap": "guess", "smtp": "guess"},
            "saves_sent": False,
            "oauth": None,
        }
    return {
        "email": address,
        "domain": domain,
        "provider": provider.id,
        "name": provider.name,
        "imap": _server(provider.imap, address),
        "smtp": _server(provider.smtp, address),
        "source": {"imap": source, "smtp": source},
        "saves_sent": provider.saves_sent,
        "oauth": provider.oauth,
    }


# --------------------------------------------------------------------------- stdlib DNS MX


def _nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            out.append(fields[1])
    return out


def build_mx_query(domain: str, query_id: int) -> bytes:
    """An RFC 1035 query packet: one question ``domain IN MX``, recursion desired."""
    header = struct.pack(">HHHHHH", query_id, 0x0100, 1, 0, 0, 0)
    qname = b"".join(bytes([len(label)]) + label for label in domain.encode("idna").split(b".") if label)
    return header + qname + b"\x00" + struct.pack(">HH", 15, 1)


def _read_name(packet: bytes, offset: int, depth: int = 0) -> tuple[str, int]:
    labels: list[str] = []
    while True:
        if depth > 20 or offset >= len(packet):
            raise ValueError("bad name")
        length = packet[offset]
        if length & 0xC0 == 0xC0:
            pointer = struct.unpack(">H", packet[offset : offset + 2])[0] & 0x3FFF
            name, _ = _read_name(packet, pointer, depth + 1)
            labels.append(name)
            return ".".join(x for x in labels if x), offset + 2
        offset += 1
        if length == 0:
            return ".".join(labels), offset
        labels.append(packet[offset : offset + length].decode("ascii", "replace"))
        offset += length


def parse_mx_response(packet: bytes, query_id: int) -> list[str]:
    """MX host names of a response, lowest preference first; ``[]`` when invalid."""
    try:
        qid, flags, qdcount, ancount, _ns, _ar = struct.unpack(">HHHHHH", packet[:12])
        if qid != query_id or not flags & 0x8000 or flags & 0x000F or flags & 0x0200:
            return []
        offset = 12
        for _ in range(qdcount):
            _, offset = _read_name(packet, offset)
            offset += 4
        records: list[tuple[int, str]] = []
        for _ in range(ancount):
            _, offset = _read_name(packet, offset)
            rtype, _cls, _ttl, rdlength = struct.unpack(">HHIH", packet[offset : offset + 10])
            offset += 10
            if rtype == 15:
                preference = struct.unpack(">H", packet[offset : offset + 2])[0]
                host, _ = _read_name(packet, offset + 2)
                records.append((preference, host.lower().rstrip(".")))
            offset += rdlength
    except (struct.error, ValueError, IndexError):
        return []
    return [host for _, host in sorted(records) if host]


def dns_mx_lookup(domain: str, timeout: float = 2.0) -> list[str]:
    """MX hosts of ``domain`` via one UDP query (stdlib only); ``[]`` on any failure."""
    servers = _nameservers()
    if not servers:
        return []
    query_id = secrets.randbelow(0x10000)
    try:
        packet = build_mx_query(domain, query_id)
        family = socket.AF_INET6 if ":" in servers[0] else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(timeout)
            sock.connect((servers[0], 53))
            sock.send(packet)
            answer = sock.recv(4096)
    except (OSError, UnicodeError, ValueError):
        return []
    return parse_mx_response(answer, query_id)
