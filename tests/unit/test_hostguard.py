"""check_host with an injected resolver (no network)."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from mailsync.domain.hostguard import HostNotAllowed, HostUnresolvable, check_host

pytestmark = pytest.mark.unit


def _resolver(table: dict[str, list[str]]) -> Callable[..., list[tuple]]:
    calls: list[str] = []

    def resolve(host: str, port: object, *args: object, **kwargs: object) -> list[tuple]:
        calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        out = []
        for address in table[host]:
            if ":" in address:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, 0, 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0)))
        return out

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


PUBLIC = {
    "imap.gmail.com": ["142.250.27.108", "2a00:1450:400c:c00::6c"],
    "mail.example.com": ["93.184.216.34"],
}


@pytest.mark.parametrize("host", ["imap.gmail.com", "mail.example.com", "IMAP.GMAIL.COM.".lower()])
def test_public_hosts_pass(host: str) -> None:
    assert check_host(host, allow_private=False, resolver=_resolver(PUBLIC)) is None


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "10.0.0.5",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "0.0.0.0",
        "0.1.2.3",
        "100.64.0.1",  # CGNAT
        "100.127.255.254",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.10",  # documentation
        "198.18.0.1",  # benchmarking
        "::1",
        "::",
        "fc00::1",
        "fd12:3456:789a::1",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2001:db8::1",  # documentation
        "fec0::1",  # deprecated site-local
    ],
)
def test_resolved_non_public_addresses_rejected(address: str) -> None:
    resolver = _resolver({"evil.example": [address]})
    with pytest.raises(HostNotAllowed):
        check_host("evil.example", allow_private=False, resolver=resolver)
    assert check_host("evil.example", allow_private=True, resolver=resolver) is None


def test_any_private_record_rejects_the_host() -> None:
    resolver = _resolver({"mixed.example": ["93.184.216.34", "10.1.2.3"]})
    with pytest.raises(HostNotAllowed, match="10.1.2.3"):
        check_host("mixed.example", allow_private=False, resolver=resolver)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.0.0.1",
        "169.254.169.254",
        "::1",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "fe80::1%eth0",
        "0.0.0.0",
    ],
)
def test_ip_literals_are_checked_without_dns(host: str) -> None:
    resolver = _resolver({})
    with pytest.raises(HostNotAllowed):
        check_host(host, allow_private=False, resolver=resolver)
    assert resolver.calls == []  # type: ignore[attr-defined]
    assert check_host(host, allow_private=True, resolver=resolver) is None


@pytest.mark.parametrize("host", ["93.184.216.34", "[2a00:1450:400c:c00::6c]", "2606:4700:4700::1111"])
def test_public_ip_literals_pass(host: str) -> None:
    assert check_host(host, allow_private=False, resolver=_resolver({})) is None


def test_alternative_ipv4_spellings_are_judged_by_resolution() -> None:
    # getaddrinfo turns "127.1" / "0x7f.1" / "2130706433" into 127.0.0.1
    resolver = _resolver({"127.1": ["127.0.0.1"], "0x7f.1": ["127.0.0.1"], "2130706433": ["127.0.0.1"]})
    for host in ("127.1", "0x7f.1", "2130706433"):
        with pytest.raises(HostNotAllowed):
            check_host(host, allow_private=False, resolver=resolver)


@pytest.mark.parametrize("allow_private", [False, True])
def test_unresolvable(allow_private: bool) -> None:
    with pytest.raises(HostUnresolvable):
        check_host("does-not-exist.invalid", allow_private=allow_private, resolver=_resolver({}))


@pytest.mark.parametrize("host", ["", "   ", None])
def test_empty_host_unresolvable(host: str | None) -> None:
    with pytest.raises(HostUnresolvable):
        check_host(host, allow_private=True, resolver=_resolver({}))  # type: ignore[arg-type]


def test_resolver_returning_nothing_or_garbage_is_unresolvable() -> None:
    with pytest.raises(HostUnresolvable):
        check_host("x.example", allow_private=False, resolver=lambda h, p: [])
    with pytest.raises(HostUnresolvable):
        check_host("x.example", allow_private=False, resolver=lambda h, p: [(2, 1, 6, "", ("not-an-ip", 0))])


def test_resolver_unicode_error_is_unresolvable() -> None:
    def resolver(host: str, port: object) -> list:
        raise UnicodeError("label too long")

    with pytest.raises(HostUnresolvable):
        check_host("a" * 100 + ".example", allow_private=False, resolver=resolver)


def test_scoped_ipv6_answer_is_parsed() -> None:
    resolver = lambda h, p: [(socket.AF_INET6, 1, 6, "", ("fe80::1%eth0", 0, 0, 2))]  # noqa: E731
    with pytest.raises(HostNotAllowed):
        check_host("link.example", allow_private=False, resolver=resolver)


def test_errors_are_value_errors() -> None:
    assert issubclass(HostNotAllowed, ValueError)
    assert issubclass(HostUnresolvable, ValueError)


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",  # decimal 127.0.0.1
        "0177.0.0.1",  # octal
        "0x7f.0.0.1",  # hex
        "127.1",  # short form
        "2852039166",  # decimal 169.254.169.254 (cloud metadata)
        "0251.0376.0251.0376",  # octal 169.254.169.254
        "0xa9fea9fe",  # hex 169.254.169.254
        "[::ffff:a9fe:a9fe]",  # IPv4-mapped metadata, hex form
        "::ffff:7f00:1",  # IPv4-mapped loopback, hex form
    ],
)
def test_numeric_spellings_are_refused_with_the_system_resolver(host: str) -> None:
    # The real getaddrinfo (inet_aton rules, no network for numeric hosts): what a connection
    # to this host would reach is what is judged.
    with pytest.raises(HostNotAllowed):
        check_host(host, allow_private=False)
