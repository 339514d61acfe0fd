"""The completeness check of the IMAP provider: :meth:`FolderInventory.inventory` and
:meth:`FolderInventory.fetch`.

Protocols: IMAP4rev1 (RFC 3501: EXAMINE, ``UID SEARCH SINCE``/``BEFORE``, ``UID FETCH``).

Invariants
----------
* :meth:`~FolderInventory.inventory` reads UIDs only, never a body: EXAMINE, the two
  ``SEARCH`` commands of the sync's window logic
  (:meth:`~mailsync.providers.imap.sync.FolderSync._candidates`: ``SINCE`` one day early, then
  the INTERNALDATE of the boundary days' few mails), so a folder of 1,000 mails costs 4
  commands (3 when no mail is in the window), each answer a UID list of a few bytes per mail.
* The refs are exactly the locations the sync stores for that folder (``str(uid)``) of mails
  whose INTERNALDATE is at or after ``since`` and that the stored ``cursor`` covers: UIDs below
  the cursor's ``uidnext`` and, while the initial load runs (``phase="initial"``), at most its
  ``initial_done_uid``. A mail that arrived after the last sync is therefore not reported, so
  the check never takes it for a missing one.
* No cursor, a cursor of another format, or one whose UIDVALIDITY is no longer the folder's:
  an empty inventory. Its UIDs name other mails now; the folder's next sync starts with a
  ``Reset`` and reloads it, which is the repair (the port has no "reset needed" flag, and
  reporting every mirrored mail as extra would only remove what the reload brings back).
* :meth:`~FolderInventory.fetch` builds the :class:`Upsert` objects exactly as the initial load
  does (``UID FETCH (UID FLAGS INTERNALDATE BODY.PEEK[])``: same raw MIME, ``unread`` = no
  ``\\Seen``, INTERNALDATE in UTC; never marks mail read), in one pipelined FETCH per ~4 KB of
  UID set; UIDs expunged meanwhile or older than ``since`` are left out. The refs come from
  :meth:`~FolderInventory.inventory` of the same session, so they are valid under the folder's
  current UIDVALIDITY.
* ``requests`` counts the IMAP commands sent (``ImapConnection.commands``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mailsync.domain.clock import as_utc
from mailsync.domain.ports import Inventory, Upsert
from mailsync.providers.imap.sync import CURSOR_VERSION, FolderSync

__all__ = ["FolderInventory"]


class FolderInventory(FolderSync):
    """The completeness-check methods of an IMAP session (see the module docstring)."""

    def inventory(self, folder: str, cursor: dict[str, Any] | None, since: datetime) -> Inventory:
        """The UIDs (as refs) of ``folder`` at or after ``since`` that ``cursor`` covers."""
        if not cursor or cursor.get("v") != CURSOR_VERSION or cursor.get("mode") not in ("qresync", "plain"):
            return Inventory(frozenset(), 0)
        since = as_utc(since)
        start = len(self.commands)
        with self._errors():
            box = self._open(folder)
            if box.uidvalidity != int(cursor["uidvalidity"]):
                return Inventory(frozenset(), len(self.commands) - start)
            below = int(cursor["uidnext"])
            if cursor.get("phase") == "initial":
                below = min(below, int(cursor.get("initial_done_uid", 0)) + 1)
            found, too_old = self._candidates(since, below) if below > 1 else ([], set())
        refs = frozenset(str(u) for u in found if u not in too_old)
        return Inventory(refs, len(self.commands) - start)

    def fetch(self, folder: str, refs: list[str], since: datetime) -> list[Upsert]:
        """The mails at ``refs`` of ``folder`` as the initial load builds them."""
        uids = sorted({int(r) for r in refs if r.isdigit() and int(r) > 0})
        if not uids:
            return []
        since = as_utc(since)
        with self._errors():
            self._open(folder)
            changes = self._upserts(folder, uids, since)
        return [c for c in changes if isinstance(c, Upsert)]
