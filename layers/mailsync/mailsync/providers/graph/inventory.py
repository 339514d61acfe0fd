"""The completeness check of the Graph provider: :meth:`GraphInventory.inventory` and
:meth:`GraphInventory.fetch`.

References (https://learn.microsoft.com/graph/...): ``api/mailfolder-list-messages`` and
``api/user-list-messages`` (``GET /me/mailFolders/{id}/messages``; ``$select``, ``$filter``,
``$top`` "within the range of 1 and 1000", default 10; further pages by following
``@odata.nextLink`` verbatim), ``outlook-immutable-id`` (``Prefer: IdType="ImmutableId"``, sent
on every call by the client), ``json-batching`` (``$batch``, 20 requests) and ``api/message-get``.

Invariants
----------
* :meth:`~GraphInventory.inventory` reads ids only: ``GET /me/mailFolders/{id}/messages?$select=
  id,receivedDateTime&$filter=receivedDateTime ge <since>&$top=1000`` over every page, the
  filter of the delta's first call (:mod:`~mailsync.providers.graph.sync`), so 1,000 mails cost
  one request. Ids are immutable ids, the refs of the delta sync; rows before ``since`` (there
  should be none) are dropped as the delta drops them.
* Cursor coverage: the delta cursor is an opaque ``deltaLink`` that tells no time. A mail that
  arrives between the folder's last delta and the listing is reported; its fetch mirrors it and
  the next delta round upserts it again, idempotently. The window is the time between the sync
  and the check of one worker run. A folder without a cursor, or in the middle of a round
  (``nextLink``), has an empty inventory: nothing is known to be covered yet.
* :meth:`~GraphInventory.fetch` builds the :class:`Upsert` objects with the delta's own code
  (:meth:`~mailsync.providers.graph.sync.GraphSync._resolve` of an initial round: MIME from
  ``/$value``, ``unread`` = not ``isRead``, ``internal_date`` = ``receivedDateTime``,
  ``thread_hint`` = ``conversationId``) from the rows of one ``$batch`` of ``GET
  /me/messages/{id}?$select=...`` per 20 refs; a ref gone meanwhile (404), moved to another
  folder (``parentFolderId``) or older than ``since`` is left out.
* ``requests`` counts the Graph requests made (``GraphClient.calls``; a ``$batch`` part each).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode

from mailsync.domain.clock import as_utc, iso
from mailsync.domain.ports import FolderGone, Inventory, Upsert
from mailsync.providers.graph.sync import CURSOR_VERSION, DELTA_SELECT, GraphSync, _parse_dt
from mailsync.providers.http import ApiError

__all__ = ["LIST_TOP", "GraphInventory"]

LIST_TOP = 1000  # the largest $top of a message list (user-list-messages: 1 to 1000)


class GraphInventory(GraphSync):
    """The completeness-check methods of a Graph session (see the module docstring)."""

    def inventory(self, folder: str, cursor: dict[str, Any] | None, since: datetime) -> Inventory:
        """The immutable ids of ``folder``'s messages received at or after ``since``."""
        start = len(self.calls)
        if not cursor or cursor.get("v") != CURSOR_VERSION or not cursor.get("deltaLink"):
            return Inventory(frozenset(), 0)
        since = as_utc(since)
        fid = self.folder_id(folder)
        # Encoded as the delta's first link is (spaces as %20, ``$`` and ``:`` kept).
        query = urlencode(
            {
                "$select": "id,receivedDateTime",
                "$filter": f"receivedDateTime ge {iso(since)}",
                "$top": LIST_TOP,
            },
            quote_via=quote,
            safe="$,:",
        )
        refs: set[str] = set()
        try:
            for row in self._pages(f"me/mailFolders/{quote(fid, safe='')}/messages?{query}"):
                when = _parse_dt(row.get("receivedDateTime"))
                if row.get("id") and (when is None or when >= since):
                    refs.add(str(row["id"]))
        except ApiError as e:
            if e.status == 404:
                self._folders = None
                raise FolderGone(f"mail folder {folder!r} is gone: {e}") from e
            raise
        return Inventory(frozenset(refs), len(self.calls) - start)

    def fetch(self, folder: str, refs: list[str], since: datetime) -> list[Upsert]:
        """The mails at ``refs`` of ``folder`` as the folder's initial round builds them."""
        wanted = list(dict.fromkeys(r for r in refs if r))
        if not wanted:
            return []
        fid = self.folder_id(folder)
        select = ",".join(DELTA_SELECT)
        replies = self._batch(
            [{"method": "GET", "url": f"/me/messages/{quote(r, safe='')}?$select={select}"} for r in wanted]
        )
        rows: list[dict[str, Any]] = []
        for rep in replies:
            if rep.status == 404:
                continue  # deleted meanwhile
            if rep.status >= 400:
                raise self._reply_error(rep)
            row = rep.body if isinstance(rep.body, dict) else {}
            if row.get("id") and row.get("parentFolderId") == fid:
                rows.append(row)
        changes = self._resolve(folder, rows, as_utc(since), initial=True)
        return [c for c in changes if isinstance(c, Upsert)]
