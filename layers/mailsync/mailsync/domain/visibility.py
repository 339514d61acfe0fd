"""Who sees which mail (exact; see README "Who sees which mail").

* The owner sees every message of their accounts.
* Another user of the tenant sees a message only if it is public, linked to at
  least one contact, and they may see that contact.
* Orphans (mails that lost their last location) are seen by no one.

Pure rules: the caller fetches the contacts (one BatchGet) and passes them in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mailsync.domain.records import Contact, MessageDoc


def may_see_contact(visible_to: Iterable[str], user_id: str) -> bool:
    allowed = set(visible_to or ())
    return "*" in allowed or user_id in allowed


def needs_contacts(doc: MessageDoc, user_id: str) -> bool:
    """True when whether ``user_id`` sees ``doc`` depends on its contacts."""
    return doc["owner"] != user_id and doc.get("visibility") == "public" and bool(doc.get("links"))


def may_see(doc: MessageDoc, user_id: str, contacts: Mapping[str, Contact]) -> bool:
    """``contacts`` must hold (at least) the contacts of ``doc``'s links that exist."""
    if doc.get("orphan"):
        return False
    if doc["owner"] == user_id:
        return True
    return needs_contacts(doc, user_id) and any(
        cid in contacts and may_see_contact(contacts[cid].visible_to, user_id) for cid in doc["links"]
    )
