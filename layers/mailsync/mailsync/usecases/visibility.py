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
    """The docs ``user_id`` may see, in their order."""
    cids = {cid for d in docs if needs_contacts(d, user_id) for cid in d["links"]}
    found = (contacts or ContactRepository(tenant_id)).get_many(cids) if cids else {}
    return [d for d in docs if may_see(d, user_id, found)]
