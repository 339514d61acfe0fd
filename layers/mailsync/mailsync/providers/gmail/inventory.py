"""The completeness check of the Gmail provider: :meth:`GmailInventory.inventory` and
:meth:`GmailInventory.fetch`.

References (https://developers.google.com/gmail/api/reference/rest/v1/users.messages/list):
``users.messages.list`` (``labelIds``, ``q`` in the Gmail search syntax, ``maxResults`` at most
500, ``pageToken``, ``includeSpamTrash`` default false; each message resource holds only ``id``
and ``threadId``; 5 quota units per call) and ``users.messages.get`` (``format=raw``).

Invariants
----------
* :meth:`~GmailInventory.inventory` reads ids only: ``messages.list?labelIds=<label>&q=after:<epoch
  of since - 1 s> -in:draft&maxResults=500`` over every page, the very query of the initial
  load (:mod:`~mailsync.providers.gmail.sync`), so it lists what a load of the folder now would
  list: 1,000 mails cost 2 calls (10 quota units), plus ``labels.list`` once per session.
* TRASH and SPAM are left out as the sync leaves them out (``includeSpamTrash`` is not sent,
  so it is false; :func:`~mailsync.providers.gmail.labels._in_folder`), DRAFT by ``-in:draft``.
* Exactness at ``since``: ``after:<epoch>`` is second-granular, and an exact ``internalDate``
  filter would need a ``messages.get`` per id (5 units each), against "ids only, a few requests
  per 1,000 mails". So the inventory may hold a mail of the second before ``since``; such a
  ref is then reported missing and :meth:`~GmailInventory.fetch` leaves it out, exactly (it
  drops what the initial load drops: ``internalDate < since``, not in the label, TRASH/SPAM/
  DRAFT). The check therefore never mirrors a mail the sync would not.
* Cursor coverage: Gmail's cursor is the account-wide ``historyId``, and ``messages.list`` tells
  no mail's history id. A mail that arrives between the folder's last sync and the listing is
  reported; its fetch then mirrors it (the next delta upserts it again, idempotently). The
  window is the time between the sync and the check of one worker run. A folder without a
  cursor, or still in its initial load (``phase="initial"``), has an empty inventory: nothing
  is known to be covered yet.
* A label that vanished is :class:`~mailsync.domain.ports.FolderGone` (gone from
  ``labels.list``, or a 404 of the listing by it).
* Refs are Gmail message ids, as in :class:`~mailsync.domain.ports.Upsert`. ``requests`` counts
  the API calls made (batch parts each), as ``GmailClient.calls`` does.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mailsync.domain.clock import as_utc
from mailsync.domain.ports import Inventory, ProviderError, Upsert
from mailsync.providers.gmail.sync import CURSOR_VERSION, GmailSync, window_query

__all__ = ["GmailInventory"]


class GmailInventory(GmailSync):
    """The completeness-check methods of a Gmail session (see the module docstring)."""

    def inventory(self, folder: str, cursor: dict[str, Any] | None, since: datetime) -> Inventory:
        """The message ids of ``folder``'s label in the sync window (ids only)."""
        start = len(self.calls)
        if not cursor or cursor.get("v") != CURSOR_VERSION or cursor.get("phase") != "delta":
            return Inventory(frozenset(), 0)
        label = self.label_id(folder)
        params: dict[str, Any] = {
            "labelIds": label,
            "q": window_query(as_utc(since)),
            "maxResults": self.page_size,
        }
        ids: set[str] = set()
        while True:
            try:
                page = self._call("messages.list", "GET", "messages", params=params)
            except ProviderError as e:
                self._label_gone(folder, e)
                raise
            ids.update(str(m["id"]) for m in page.get("messages") or [] if m.get("id"))
            token = page.get("nextPageToken")
            if not token:
                break
            params = {**params, "pageToken": token}
        return Inventory(frozenset(ids), len(self.calls) - start)

    def fetch(self, folder: str, refs: list[str], since: datetime) -> list[Upsert]:
        """The mails at ``refs`` as the initial load builds them (``format=raw`` in batches)."""
        label = self.label_id(folder)
        since = as_utc(since)
        wanted = list(dict.fromkeys(r for r in refs if r))
        fetched = self._fetch_raw(wanted) if wanted else {}
        out: list[Upsert] = []
        for mid in wanted:
            msg = fetched.get(mid)
            up = self._upsert(folder, label, msg, since) if msg else None
            if up is not None:
                out.append(up)
        return out
