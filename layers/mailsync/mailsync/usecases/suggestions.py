"""Suggestions for the unassigned: ``GET /v1/messages/{id}/suggestions`` and the top suggestion
of each mail of ``GET /v1/messages?unassigned=true&with_suggestions=true``.

The rules are ``domain/suggestions.py``; this reads what they need, for a whole page at once:

1. the caller's accounts (their own addresses and domains): one Query of the owner index;
2. the page's domain → contacts and name → contacts items and its threads: one BatchGetItem
   per 100 keys (``store/suggestions.index_and_threads``);
3. the newest mails of each co-participant address (at most 3 per mail): one Query page of
   the address → messages partition each;
4. the other messages of the threads (newest 10 each) and the co-participants' mails, for
   their links: one BatchGetItem per 100;
5. the candidate contacts, best first, until each mail has its suggestions or has no
   candidate left (at most 100 ranked per mail): one BatchGetItem per 100, usually one.

Only the owner asks (a colleague gets 404, as for any message they do not own). A
colleague's mail counts for ``co_participant`` only when it is shared (its level is not
``private``); only contacts the caller may see are suggested.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mailsync.domain import suggestions as rules
from mailsync.domain.records import Contact, MessageDoc
from mailsync.domain.visibility import SHARED, may_see_contact
from mailsync.errors import NotFound
from mailsync.store import accounts as accounts_repo
from mailsync.store.contacts import ContactRepository
from mailsync.store.messages import MessageRepository
from mailsync.store.suggestions import index_and_threads

__all__ = ["suggest", "suggestions_for", "top_suggestions"]


def suggestions_for(tenant_id: str, user_id: str, mid: str) -> list[dict[str, Any]]:
    """Up to 5 contacts for one of the caller's messages, best first."""
    doc = MessageRepository(tenant_id).get(mid)
    if doc is None or doc.get("orphan") or doc["owner"] != user_id:
        raise NotFound("message not found")  # 404, never 403, as the other message routes
    found = suggest(tenant_id, user_id, [doc], rules.MAX_SUGGESTIONS)
    return [s.view() for s in found[mid]]


def top_suggestions(tenant_id: str, user_id: str, docs: list[MessageDoc]) -> dict[str, dict[str, Any] | None]:
    """``{mid: the best suggestion or None}`` for a page of the caller's own messages."""
    found = suggest(tenant_id, user_id, docs, 1)
    return {mid: (s[0].view() if s else None) for mid, s in found.items()}


def suggest(
    tenant_id: str, user_id: str, docs: list[MessageDoc], limit: int
) -> dict[str, list[rules.Suggestion]]:
    if not docs:
        return {}
    owner = rules.Owner.of(a.email for a in accounts_repo.all_of_owner(tenant_id, user_id))
    mails = [rules.mail_of(d) for d in docs]
    plans = {m.mid: rules.plan(m, owner) for m in mails}
    hits = index_and_threads(
        tenant_id,
        {d for p in plans.values() for d in p.domains},
        {n for p in plans.values() for n in p.names},
        {m.thread_id for m in mails},
    )
    contacts = ContactRepository(tenant_id)
    co_addresses = list(dict.fromkeys(a for p in plans.values() for a in p.co_addresses))
    co_mids = {a: contacts.recent_messages_with(a, rules.CO_MAILS_PER_ADDRESS) for a in co_addresses}
    thread_mids = {th: _newest_members(t.get("members") or {}) for th, t in hits.threads.items()}
    have = {d["mid"]: d for d in docs}
    wanted = {m for ms in (*co_mids.values(), *thread_mids.values()) for m in ms} - set(have)
    found = {**MessageRepository(tenant_id).get_many(wanted), **have}

    def links(mids: Iterable[str], counts: bool) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for mid in mids:
            d = found.get(mid)
            if d is None or d.get("orphan") or not _counts(d, user_id, counts):
                continue
            for cid in d.get("links") or {}:
                out.setdefault(cid, set()).add(mid)
        return out

    evidence = rules.Evidence(
        domain_contacts={d: set(c) for d, c in hits.domain_contacts.items()},
        name_contacts={n: set(c) for n, c in hits.name_contacts.items()},
        thread_links={th: links(ms, counts=False) for th, ms in thread_mids.items()},
        co_links={a: links(ms, counts=True) for a, ms in co_mids.items()},
    )
    ranked = {m.mid: rules.rank(m, plans[m.mid], evidence) for m in mails}
    return _pick(contacts, user_id, ranked, limit)


def _counts(doc: MessageDoc, user_id: str, colleagues: bool) -> bool:
    """The caller's own mail counts; a colleague's only for co_participant and only when shared."""
    return doc["owner"] == user_id or (colleagues and (doc.get("visibility") or "private") in SHARED)


def _newest_members(members: dict[str, Any]) -> list[str]:
    """The thread's newest messages (by received date in ``members``), for their links."""
    order = sorted(members, key=lambda mid: str((members[mid] or {}).get("d") or ""), reverse=True)
    return order[: rules.THREAD_MAILS + 1]  # the mail itself may be among them


def _pick(
    contacts: ContactRepository, user_id: str, ranked: dict[str, list[rules.Candidate]], limit: int
) -> dict[str, list[rules.Suggestion]]:
    """Walk each mail's candidates best first, reading the contacts not known yet in rounds
    (one BatchGet of at most 2 x ``limit`` per mail that still needs some), until each mail has
    ``limit`` suggestions it may see or has no candidate left."""
    known: dict[str, Contact | None] = {}
    visible: dict[str, Contact] = {}
    pos = dict.fromkeys(ranked, 0)
    chosen: dict[str, list[rules.Suggestion]] = {mid: [] for mid in ranked}
    while True:
        want: list[str] = []
        for mid, cands in ranked.items():
            i = pos[mid]
            while i < len(cands) and len(chosen[mid]) < limit and cands[i].contact_id in known:
                c = visible.get(cands[i].contact_id)
                if c is not None:
                    chosen[mid].append(rules.suggestion(cands[i], c))
                i += 1
            pos[mid] = i
            if len(chosen[mid]) < limit:
                want += [c.contact_id for c in cands[i : i + 2 * limit] if c.contact_id not in known]
        if not want:
            return chosen
        got = contacts.get_many(want)
        for cid in dict.fromkeys(want):
            c = got.get(cid)
            known[cid] = c
            if c is not None and may_see_contact(c.visible_to, user_id):
                visible[cid] = c
