"""Thread membership and aggregates, and the thread assignment of new mails.

A thread item holds its members' summaries (``thread_member``) and every
aggregate derives from them (``recompute_thread``, idempotent), so a replayed
batch writes the same thread. Ref items (Message-ID or subject key hash ->
thread id) are written before the messages that use them.
"""

from __future__ import annotations

from typing import Any

from mailsync.domain import threading
from mailsync.domain.models import ParsedMessage
from mailsync.domain.records import MessageDoc, ThreadDoc
from mailsync.domain.sync_state import AccountContext, MirrorStore, Writes, digest, ref_hash


def thread_member(doc: MessageDoc) -> dict[str, Any]:
    frm = (doc.get("from") or [{}])[0] if doc.get("from") else {}
    return {
        "d": doc["received_at"],
        "u": bool(doc.get("unread")),
        "f": (frm.get("email") or "").lower(),
        "n": frm.get("name"),
        "s": (doc.get("snippet") or "")[:140],
        "j": doc.get("subject") or "",
    }


def recompute_thread(thread: ThreadDoc) -> ThreadDoc:
    """Derive every aggregate of a thread from its members (idempotent)."""
    members: dict[str, dict[str, Any]] = thread.get("members") or {}
    ordered = sorted(members.values(), key=lambda m: m["d"])
    thread["message_count"] = len(ordered)
    thread["unread_count"] = sum(1 for m in ordered if m["u"])
    thread["last_date"] = ordered[-1]["d"] if ordered else ""
    thread["snippet"] = ordered[-1]["s"] if ordered else ""
    if ordered and not thread.get("subject"):
        thread["subject"] = ordered[0]["j"]
    seen: dict[str, dict[str, str | None]] = {}
    for m in ordered:
        if m["f"] and m["f"] not in seen:
            seen[m["f"]] = {"name": m.get("n"), "email": m["f"]}
    thread["participants"] = list(seen.values())
    return thread


def assign_threads(
    store: MirrorStore,
    ctx: AccountContext,
    new: list[tuple[str, ParsedMessage]],
    w: Writes,
    hints: dict[str, str] | None = None,
) -> dict[str, str]:
    """The thread of each new mail (see the threading rules of ``domain.sync``); the
    refs it announces go to ``w.refs``, written before the messages that use them."""
    wanted: set[str] = set()
    plan = []
    for mid, p in new:
        cands = [ref_hash(x) for x in threading.thread_candidates(p)]
        own = ref_hash(p.message_id) if p.message_id else None
        skey = threading.subject_key(p, ctx.email)
        sref = "s" + skey[:31] if skey else None
        wanted.update(cands)
        wanted.update(x for x in (own, sref) if x)
        plan.append((mid, p, cands, own, sref))
    known = store.get_refs(wanted) if wanted else {}
    out: dict[str, str] = {}
    for mid, p, cands, own, sref in plan:
        thid: str | None = None
        if hints and mid in hints:  # the provider's conversation id is authoritative
            thid = "t_" + digest(ctx.tenant_id, ctx.account_id, "hint", hints[mid])[:24]
        if thid is None:
            thid = next((known[c] for c in cands if c in known), None)
        if thid is None and own and own in known:
            thid = known[own]  # a reply arrived first and announced us
        if thid is None and sref and sref in known:
            thid = known[sref]
        if thid is None:
            root = threading.root_id(p)
            thid = "t_" + digest(ctx.tenant_id, ctx.account_id, (root or mid).lower())[:24]
        out[mid] = thid
        for ref in (*cands, own, sref):
            if ref and known.get(ref) != thid and (ref == sref or ref not in known):
                known[ref] = thid
                w.refs[ref] = thid
    return out
