"""Prefix search over contacts (the web client's contact picker, ``GET /v1/contacts?q=``).

A contact is findable by the start of its name, of any word of its name, or of any of its
addresses ("mül", "hans mü", "erika@", "allianz" for "info@allianz.de" is *not* a prefix and
does not match; "info@al" does). Terms and queries are folded the same way: Unicode NFKD with
combining marks dropped, case folded, runs of white space made one space ("Müller" and
"MULLER" are "muller").

Visibility decides *where* a contact is indexed, so that a search reads only what the caller
may see and never filters a tenant's whole contact list: a contact visible to everyone
(``visible_to`` holds ``"*"``) is indexed once under the audience ``*``; otherwise once under
each user it names. A search is then two Queries, the ``*`` audience and the caller's own.

Invariants:

* an entry is the triple (audience, term, contact id) and carries what the picker shows
  (kind, name, emails), so a search needs no further read;
* a contact has at most :data:`MAX_TERMS` terms (the name, its first words and its first
  addresses); a term is at most :data:`MAX_TERM_CHARS` characters (DynamoDB sort keys are
  limited to 1,024 bytes).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from mailsync.domain.records import Contact

EVERYONE = "*"
MAX_TERMS = 16
MAX_NAME_WORDS = 6
MAX_TERM_CHARS = 200
#: ``q`` length accepted by the route.
MAX_QUERY_CHARS = 100


def fold(text: str) -> str:
    """The form terms and queries are compared in (see the module docstring)."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"\s+", " ", plain.casefold()).strip()


def terms(c: Contact) -> list[str]:
    """The terms ``c`` is found by, most telling first: its full name, its name's words, its
    addresses. Duplicates and empty terms are dropped; at most :data:`MAX_TERMS`."""
    out: list[str] = []
    name = fold(c.name)
    candidates = [name, *re.findall(r"[^\W_]+", name)[:MAX_NAME_WORDS], *(fold(e) for e in c.emails)]
    for t in candidates:
        t = t[:MAX_TERM_CHARS]
        if t and t not in out:
            out.append(t)
    return out[:MAX_TERMS]


def audiences(visible_to: Iterable[str]) -> list[str]:
    """Where a contact is indexed: ``["*"]`` when everyone may see it, else the user ids."""
    users = list(dict.fromkeys(visible_to))
    return [EVERYONE] if EVERYONE in users else users


def entries(c: Contact | None) -> set[tuple[str, str]]:
    """(audience, term) pairs a contact is indexed under (none for a deleted contact)."""
    if c is None:
        return set()
    ts = terms(c)
    return {(a, t) for a in audiences(c.visible_to) for t in ts}


def display_changed(old: Contact | None, new: Contact | None) -> bool:
    """True when the copies an entry carries (kind, name, emails) are out of date."""
    return (
        old is not None
        and new is not None
        and (old.kind, old.name, old.emails) != (new.kind, new.name, new.emails)
    )


def rank(found: Iterable[Contact], query: str, kind: str | None, limit: int) -> list[Contact]:
    """One list from the entries both audiences matched: each contact once, of ``kind`` when
    given; a contact whose name starts with the query first, then by name and id."""
    seen: dict[str, Contact] = {}
    for c in found:
        if (kind is None or c.kind == kind) and c.id not in seen:
            seen[c.id] = c
    return sorted(seen.values(), key=lambda c: (not fold(c.name).startswith(query), fold(c.name), c.id))[
        :limit
    ]
