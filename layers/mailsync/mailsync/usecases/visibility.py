"""Which of some messages a user may see: the rules of ``domain.visibility`` over
the contacts the messages are linked to (one BatchGet of those contacts, only
when some message is a colleague's public, linked mail)."""

from __future__ import annotations

from mailsync.domain.records import MessageDoc
from mailsync.domain.visibility import may_see, needs_contacts
from mailsync.store.contacts import ContactRepository


def visible_to_user(
    tenant_id: str, user_id: str, docs: list[MessageDoc], contacts: ContactRepository | None = None
) -> list[MessageDoc]:
    """The docs ``user_id`` may see, in their order. A colleague's mail shows only while its
    account is live: once its deletion (or its user's) began, it is gone from every view,
    before the background purge removed it (one BatchGet for the contacts and accounts)."""
    shared = [d for d in docs if needs_contacts(d, user_id)]
    if not shared:
        return [d for d in docs if may_see(d, user_id, {})]
    found, live = (contacts or ContactRepository(tenant_id)).get_many_with_accounts(
        {cid for d in shared for cid in d["links"]}, {d["account_id"] for d in shared}
    )
    return [
        d for d in docs if may_see(d, user_id, found) and (d["owner"] == user_id or d["account_id"] in live)
    ]
