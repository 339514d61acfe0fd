"""Mail that is never synced: an account's exclusion rules (addresses and domains).

Invariants:

* A mail is excluded when its sender or any recipient (From, To, Cc, Bcc: the mail's
  ``participants``, normalised by :meth:`mailsync.domain.mime.Address.key`) matches a rule.
  An excluded mail is not mirrored at all: no message item, no object, no link, no
  location; the engine skips it at ingest (``SyncEngine``) and removes it when a rule is
  added later (``SyncEngine.remove_excluded``). The provider's copy is never touched.
* An address rule matches the normalised address exactly (case-insensitive). A domain rule
  matches the domain and every subdomain: ``example.com`` covers ``mail.example.com``, not
  ``badexample.com``.
* Entries are validated and normalised here, once (RFC 5321 section 4.1.2 syntax, reduced to
  what real mailboxes use; IDNA labels as their ``xn--`` form): a bad one is
  :class:`InvalidRule` (422 ``invalid_address`` / ``invalid_domain``). At most
  :data:`MAX_ENTRIES` entries in all.
* ``digest`` names a rule set, so the worker knows whether the mirror was cleaned for the
  current rules without storing them twice (the account item, read on every poll, carries a
  16-character digest, not the list).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

MAX_ENTRIES = 500

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOCAL = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")


class InvalidRule(ValueError):
    """An entry that is not an address (``code`` ``invalid_address``) or a domain
    (``invalid_domain``)."""

    def __init__(self, code: str, entry: str) -> None:
        super().__init__(f"{code.removeprefix('invalid_')} not valid: {entry[:100]!r}")
        self.code = code
        self.entry = entry


def normalize_domain(value: str) -> str:
    """``Mail.Example.COM.`` -> ``mail.example.com``; raises :class:`InvalidRule`."""
    d = value.strip().lower().rstrip(".")
    try:
        d = d.encode("idna").decode("ascii") if d and not d.isascii() else d
    except UnicodeError:
        raise InvalidRule("invalid_domain", value) from None
    labels = d.split(".")
    if len(d) > 253 or len(labels) < 2 or not all(_LABEL.match(x) for x in labels) or labels[-1].isdigit():
        raise InvalidRule("invalid_domain", value)
    return d


def normalize_address(value: str) -> str:
    """``Dr.Mueller@Praxis.DE`` -> ``dr.mueller@praxis.de``; raises :class:`InvalidRule`."""
    a = value.strip().lower()
    local, at, domain = a.rpartition("@")
    if not at or not _LOCAL.match(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise InvalidRule("invalid_address", value)
    try:
        return f"{local}@{normalize_domain(domain)}"
    except InvalidRule:
        raise InvalidRule("invalid_address", value) from None


@dataclass(frozen=True)
class ExcludeRules:
    """Normalised, sorted and deduplicated rules (build them with :meth:`parse`)."""

    addresses: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()

    @classmethod
    def parse(cls, addresses: Iterable[str] = (), domains: Iterable[str] = ()) -> ExcludeRules:
        a = tuple(sorted({normalize_address(x) for x in addresses}))
        d = tuple(sorted({normalize_domain(x) for x in domains}))
        if len(a) + len(d) > MAX_ENTRIES:
            raise InvalidRule("too_many_entries", f"{len(a) + len(d)} entries")
        return cls(a, d)

    @classmethod
    def from_dict(cls, d: dict[str, list[str]] | None) -> ExcludeRules:
        """From the stored form (already normalised)."""
        d = d or {}
        return cls(tuple(d.get("addresses") or ()), tuple(d.get("domains") or ()))

    def as_dict(self) -> dict[str, list[str]]:
        return {"addresses": list(self.addresses), "domains": list(self.domains)}

    def __bool__(self) -> bool:
        return bool(self.addresses or self.domains)

    def digest(self) -> str | None:
        """A short name of this rule set; None for no rules."""
        if not self:
            return None
        text = "\n".join((*self.addresses, "", *self.domains))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def matches(self, participants: Iterable[str]) -> bool:
        """Whether any of the (normalised) addresses is excluded."""
        if not self:
            return False
        addresses, domains = set(self.addresses), set(self.domains)
        for p in participants:
            if p in addresses:
                return True
            host = p.rpartition("@")[2]
            while host:
                if host in domains:
                    return True
                _, dot, host = host.partition(".")
                if not dot:
                    break
        return False
