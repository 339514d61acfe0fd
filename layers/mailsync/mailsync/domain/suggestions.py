"""Suggestions for the unassigned: which contacts a mail probably belongs to (pure rules).

A contact is suggested for a mail by one or more reasons, each worth points (:data:`POINTS`):

* ``thread_linked`` (40): another message of the mail's thread is linked to it;
* ``name_match`` (30): a participant's display name equals the contact's name, compared as
  :func:`normalise_name` keys (case, accents, punctuation and word order do not count);
* ``co_participant`` (20, +2 per further mail up to +10): a participant appears in mail that is
  already linked to the contact (the newest :data:`CO_MAILS_PER_ADDRESS` mails of each of the
  mail's first :data:`MAX_CO_ADDRESSES` participants);
* ``same_domain`` (10): a participant's domain is one of the contact's address domains.

What never counts:

* the owner's own addresses (every mail of theirs has them);
* free-mail domains (``data/free_mail_domains.txt``: gmail.com, gmx.de, web.de, …) for
  ``same_domain``: a shared gmail.com says nothing about who someone works for;
* the owner's own (non-free) domains for ``same_domain`` and ``co_participant``: mail from a
  colleague at the owner's company would otherwise suggest every contact of the firm and every
  customer the colleague ever wrote to;
* contacts the mail is already linked to, and contacts the caller may not see (the use case
  passes only those).

Order: score (the sum of the reasons' points), best first, ties by contact id, so the same
data always gives the same list. The use case reads what :func:`plan` asks for (index items,
thread and participants' mails) and hands it back as :class:`Evidence`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from mailsync.domain.records import Contact, MessageDoc

REASONS = ("thread_linked", "name_match", "co_participant", "same_domain")  # strongest first
POINTS = {"thread_linked": 40, "name_match": 30, "co_participant": 20, "same_domain": 10}
CO_BONUS, CO_BONUS_MAX = 2, 10  # co_participant: per further linked mail, at most

MAX_SUGGESTIONS = 5  # GET /v1/messages/{id}/suggestions
MAX_PARTICIPANTS = 10  # a mail's participants looked at (From, To, Cc, in that order)
MAX_CO_ADDRESSES = 3  # of which the first ones read for co_participant (one Query each)
CO_MAILS_PER_ADDRESS = 10  # newest mails read per co-participant address
THREAD_MAILS = 10  # newest other messages of the thread read for thread_linked
MAX_CANDIDATES = 100  # ranked per mail before the caller filters by visibility
MIN_NAME_CHARS = 3  # a shorter normalised name ("Al") matches nothing


@cache
def free_mail_domains() -> frozenset[str]:
    """The free-mail domains of ``data/free_mail_domains.txt`` (read once per process)."""
    text = resources.files(__package__).joinpath("data", "free_mail_domains.txt").read_text("utf-8")
    lines = (line.split("#", 1)[0].strip().lower() for line in text.splitlines())
    return frozenset(line for line in lines if line)


def domain_of(email: str) -> str | None:
    _, at, domain = email.strip().lower().rpartition("@")
    return domain.rstrip(".") or None if at else None


def is_free_mail(domain: str) -> bool:
    """``gmail.com`` and its subdomains (``mail.gmx.net`` is gmx.net)."""
    domain = domain.lower().rstrip(".")
    free = free_mail_domains()
    parts = domain.split(".")
    return any(".".join(parts[i:]) in free for i in range(len(parts) - 1))


def normalise_name(name: str | None) -> str | None:
    """The key names are compared by: accents dropped, case folded, punctuation gone, words
    sorted ("Muster, Erika" and "erika MUSTER" are "erika muster"); None when it is too short to
    mean anything or is an address."""
    if not name or "@" in name:
        return None
    text = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    words = sorted(re.findall(r"[^\W_]+", text.casefold()))
    key = " ".join(words)
    return key if len(key) - key.count(" ") >= MIN_NAME_CHARS else None


def contact_index_keys(c: Contact) -> tuple[frozenset[str], str | None]:
    """``(domains, name key)`` a contact is indexed under: its addresses' domains that are not
    free-mail, and its normalised name (the contact side of ``same_domain`` / ``name_match``)."""
    domains = {d for d in (domain_of(e) for e in c.emails) if d and not is_free_mail(d)}
    return frozenset(domains), normalise_name(c.name)


# ------------------------------------------------------------------ records
@dataclass(frozen=True)
class Participant:
    email: str
    name: str = ""


@dataclass(frozen=True)
class Mail:
    """What ranking needs of a message."""

    mid: str
    thread_id: str
    participants: tuple[Participant, ...]
    linked: frozenset[str]  # contacts it is linked to already


@dataclass(frozen=True)
class Owner:
    """The caller's own addresses (their accounts) and the non-free domains among them."""

    addresses: frozenset[str]
    domains: frozenset[str]

    @classmethod
    def of(cls, addresses: Iterable[str]) -> Owner:
        own = frozenset(a.strip().lower() for a in addresses if a)
        doms = {d for d in (domain_of(a) for a in own) if d and not is_free_mail(d)}
        return cls(own, frozenset(doms))


@dataclass(frozen=True)
class Plan:
    """What to read for one mail: index items and the co-participants' recent mail."""

    domains: frozenset[str]
    names: frozenset[str]
    co_addresses: tuple[str, ...]


@dataclass(frozen=True)
class Evidence:
    """What the store found, for a whole page of mails at once.

    ``thread_links`` / ``co_links``: thread id / participant address → contact → the ids of
    the mails linked to that contact (the mail itself is ignored by :func:`rank`)."""

    domain_contacts: Mapping[str, Collection[str]] = field(default_factory=dict)
    name_contacts: Mapping[str, Collection[str]] = field(default_factory=dict)
    thread_links: Mapping[str, Mapping[str, Collection[str]]] = field(default_factory=dict)
    co_links: Mapping[str, Mapping[str, Collection[str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    contact_id: str
    score: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Suggestion:
    contact_id: str
    kind: str
    name: str
    score: int
    reasons: tuple[str, ...]

    def view(self) -> dict[str, Any]:
        return {
            "contact_id": self.contact_id,
            "kind": self.kind,
            "name": self.name,
            "score": self.score,
            "reasons": list(self.reasons),
        }


# ------------------------------------------------------------------ rules
def mail_of(doc: MessageDoc) -> Mail:
    seen: dict[str, Participant] = {}
    for field_name in ("from", "to", "cc"):
        for a in doc.get(field_name) or []:
            email = str(a.get("email") or "").strip().lower()
            if email and email not in seen:
                seen[email] = Participant(email, str(a.get("name") or ""))
    return Mail(
        mid=doc["mid"],
        thread_id=doc["thread_id"],
        participants=tuple(seen.values())[:MAX_PARTICIPANTS],
        linked=frozenset(doc.get("links") or {}),
    )


def plan(mail: Mail, owner: Owner) -> Plan:
    others = [p for p in mail.participants if p.email not in owner.addresses]
    domains = {d for d in (domain_of(p.email) for p in others) if d}
    company = [p.email for p in others if domain_of(p.email) not in owner.domains]
    return Plan(
        domains=frozenset(d for d in domains if not is_free_mail(d) and d not in owner.domains),
        names=frozenset(n for n in (normalise_name(p.name) for p in others) if n),
        co_addresses=tuple(company[:MAX_CO_ADDRESSES]),
    )


def rank(mail: Mail, p: Plan, ev: Evidence) -> list[Candidate]:
    """The mail's candidates, best first (at most :data:`MAX_CANDIDATES`)."""
    reasons: dict[str, set[str]] = {}
    co_mails: dict[str, set[str]] = {}

    def add(cids: Iterable[str], reason: str) -> None:
        for cid in cids:
            reasons.setdefault(cid, set()).add(reason)

    for d in p.domains:
        add(ev.domain_contacts.get(d, ()), "same_domain")
    for n in p.names:
        add(ev.name_contacts.get(n, ()), "name_match")
    for cid, mids in (ev.thread_links.get(mail.thread_id) or {}).items():
        if set(mids) - {mail.mid}:
            add([cid], "thread_linked")
    for address in p.co_addresses:
        for cid, mids in (ev.co_links.get(address) or {}).items():
            co_mails.setdefault(cid, set()).update(set(mids) - {mail.mid})
    add((cid for cid, mids in co_mails.items() if mids), "co_participant")

    out = []
    for cid, why in reasons.items():
        if cid in mail.linked:
            continue
        score = sum(POINTS[r] for r in why)
        if "co_participant" in why:
            score += min(CO_BONUS * (len(co_mails[cid]) - 1), CO_BONUS_MAX)
        out.append(Candidate(cid, score, tuple(r for r in REASONS if r in why)))
    out.sort(key=lambda c: (-c.score, c.contact_id))
    return out[:MAX_CANDIDATES]


def suggestion(c: Candidate, contact: Contact) -> Suggestion:
    return Suggestion(c.contact_id, contact.kind, contact.name, c.score, c.reasons)
