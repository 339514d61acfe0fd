"""Who sees which mail, and how much of it (exact; see README "Who sees which mail").

* The owner sees every message of their accounts, in full.
* Another user of the tenant sees a message only if it is shared (its level is not
  ``private``), linked to at least one contact, and they may see that contact.
* What they see then is the mail's level (:data:`WITHHELD`): ``metadata`` withholds subject,
  snippet, body and attachments; ``subject`` the body and attachments; ``public`` nothing.
  A mail keeps the level its account had when it was stored (or its owner gave it since).
* Orphans (mails that lost their last location) are seen by no one.

Pure rules: the caller fetches the contacts (one BatchGet) and passes them in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from mailsync.domain.records import Contact, MessageDoc

LEVELS = ("private", "metadata", "subject", "public")
SHARED = ("metadata", "subject", "public")
WITHHELD: dict[str, tuple[str, ...]] = {
    "metadata": ("subject", "snippet", "body", "attachments"),
    "subject": ("body", "attachments"),
    "public": (),
}


def withheld(doc: MessageDoc, user_id: str | None) -> tuple[str, ...]:
    """What of ``doc`` is withheld from ``user_id`` (None: the owner's own view), given that
    they may see it at all (:func:`may_see`)."""
    if user_id is None or doc["owner"] == user_id:
        return ()
    return WITHHELD.get(doc.get("visibility") or "private", WITHHELD["metadata"])


def may_see_contact(visible_to: Iterable[str], user_id: str) -> bool:
    allowed = set(visible_to or ())
    return "*" in allowed or user_id in allowed


def needs_contacts(doc: MessageDoc, user_id: str) -> bool:
    """True when whether ``user_id`` sees ``doc`` depends on its contacts."""
    return doc["owner"] != user_id and doc.get("visibility") in SHARED and bool(doc.get("links"))


def may_see(doc: MessageDoc, user_id: str, contacts: Mapping[str, Contact]) -> bool:
    """``contacts`` must hold (at least) the contacts of ``doc``'s links that exist."""
    if doc.get("orphan"):
        return False
    if doc["owner"] == user_id:
        return True
    return needs_contacts(doc, user_id) and any(
        cid in contacts and may_see_contact(contacts[cid].visible_to, user_id) for cid in doc["links"]
    )
