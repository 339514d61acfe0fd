"""Write-through of the Graph mail client: read state, moves, deletes, and sending.

References (https://learn.microsoft.com/graph/...): ``api/message-update`` (``isRead``),
``api/message-move`` (``destinationId``: id or well-known name; 201 and the moved message),
``api/message-delete``, ``api/user-sendmail`` (JSON ``{message, saveToSentItems}`` or base64
MIME as ``text/plain``), ``api/message-createreply`` (a draft, JSON or MIME) and
``api/message-send``; ``api/message-list`` with ``$filter=internetMessageId eq ...``.

Invariants
----------
* One message is one direct call; several go through ``$batch`` (20 per request). A message
  deleted meanwhile (404) is no error; any other failure raises.
* A ``pending-<Message-ID>`` ref (the mirror of a ``sendMail`` Sent copy the delta has not
  brought back yet) is looked up by its Message-ID (:meth:`GraphWrites.locate`); a copy Graph
  has not filed yet is skipped (the sync brings it).
* ``delete`` moves to Deleted Items; only from Deleted Items itself it ``DELETE``s (to
  Recoverable Items). ``append`` stores nothing: Graph files sent mail itself.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from mailsync.domain.ports import PENDING, FolderGone
from mailsync.providers.graph.folders import GraphFolders
from mailsync.providers.http import ApiError, Reply

__all__ = ["GraphWrites"]


class GraphWrites(GraphFolders):
    """The mail-client operations of a Graph session (see the module docstring)."""

    def _each(self, calls: list[dict[str, Any]]) -> list[Reply]:
        """One call directly, several through ``$batch``; errors other than 404 raise."""
        if len(calls) == 1:
            c = calls[0]
            try:
                return [self._request(c["method"], c["url"], json_body=c.get("body"))]
            except ApiError as e:
                if e.status == 404:
                    return [Reply(404, {}, None)]
                raise
        replies = self._batch(calls)
        for rep in replies:
            if rep.status >= 400 and rep.status != 404:  # a message deleted meanwhile is no error
                raise self._reply_error(rep)
        return replies

    def set_seen(self, folder: str, refs: Iterable[str], seen: bool) -> None:
        """``PATCH /me/messages/{id}`` ``{"isRead": seen}``."""
        ids = self._ids(folder, refs)
        if ids:
            self._each(
                [
                    {"method": "PATCH", "url": f"me/messages/{quote(i, safe='')}", "body": {"isRead": seen}}
                    for i in ids
                ]
            )

    def move(self, folder: str, refs: Iterable[str], dest: str) -> dict[str, str]:
        """``POST /me/messages/{id}/move``; returns ``{old id: new id}`` (equal with immutable ids)."""
        ids = self._ids(folder, refs)
        if not ids:
            return {}
        dest_id = self._dest_id(dest)
        replies = self._each(
            [
                {
                    "method": "POST",
                    "url": f"me/messages/{quote(i, safe='')}/move",
                    "body": {"destinationId": dest_id},
                }
                for i in ids
            ]
        )
        out: dict[str, str] = {}
        for mid, rep in zip(ids, replies, strict=True):
            if rep.status < 400 and isinstance(rep.body, dict) and rep.body.get("id"):
                out[mid] = str(rep.body["id"])
        return out

    def _ids(self, folder: str, refs: Iterable[str]) -> list[str]:
        """Graph ids of ``refs`` in ``folder``, without repeats. A ``pending-<Message-ID>`` ref (our
        mirror of a ``sendMail`` Sent copy the delta has not brought back yet) is looked up; a copy
        Graph has not filed yet is skipped (the sync brings it)."""
        out: list[str] = []
        for r in dict.fromkeys(str(r) for r in refs):
            out.extend(self.locate(folder, r[len(PENDING) :]) if r.startswith(PENDING) else [r])
        return list(dict.fromkeys(out))

    def locate(self, folder: str, message_id: str) -> list[str]:
        """The ids of the copies of ``message_id`` (bare, as stored) in ``folder``:
        ``GET /me/mailFolders/{id}/messages?$filter=internetMessageId eq '<...>'``. Finds the Sent
        copy Graph filed for a ``sendMail`` before the delta brought its id back."""
        try:
            fid = self.folder_id(folder)
        except FolderGone:
            return []
        literal = f"<{message_id}>".replace("'", "''")  # OData string literal
        body = self._get(
            f"me/mailFolders/{quote(fid, safe='')}/messages",
            params={"$filter": f"internetMessageId eq '{literal}'", "$select": "id", "$top": "10"},
        )
        return [str(v["id"]) for v in (body or {}).get("value", []) if v.get("id")]

    def delete(self, folder: str, refs: Iterable[str]) -> None:
        """A move to Deleted Items; from Deleted Items itself, ``DELETE`` (to Recoverable Items)."""
        ids = self._ids(folder, refs)
        if not ids:
            return
        in_trash = False
        try:
            in_trash = self._roles.get(self.folder_id(folder)) == "deleteditems"
        except FolderGone:
            pass
        if in_trash:
            self._each([{"method": "DELETE", "url": f"me/messages/{quote(i, safe='')}"} for i in ids])
        else:
            self.move(folder, ids, "deleteditems")

    def append(
        self, folder: str, raw: bytes, flags: Iterable[str] = (), date: datetime | None = None
    ) -> None:
        """Not needed: Graph files sent mail in Sent Items itself (``saveToSentItems``)."""
        return None

    def send(self, message: bytes | dict[str, Any], reply_to_id: str | None = None) -> dict[str, Any]:
        """Send RFC 5322 bytes (as base64 MIME) or a Graph message resource (JSON).

        New mail: ``POST /me/sendMail`` (saved to Sent Items). Replies: ``POST
        /me/messages/{reply_to_id}/createReply`` (the draft keeps the conversation) then ``POST
        /me/messages/{draft}/send``. Returns ``{"draft_id": ... | None}``; the Sent copy comes back
        through the delta and is matched by its ``internetMessageId`` (the MIME's Message-ID)."""
        mime = isinstance(message, bytes | bytearray)
        if reply_to_id is None:
            if mime:
                self._request(
                    "POST",
                    "me/sendMail",
                    data=base64.b64encode(bytes(message)),  # type: ignore[arg-type]
                    headers={"Content-Type": "text/plain"},
                )
            else:
                self._request("POST", "me/sendMail", json_body={"message": message, "saveToSentItems": True})
            return {"draft_id": None}
        path = f"me/messages/{quote(reply_to_id, safe='')}/createReply"
        if mime:
            draft = self._request(
                "POST",
                path,
                data=base64.b64encode(bytes(message)),  # type: ignore[arg-type]
                headers={"Content-Type": "text/plain"},
            ).body
        else:
            draft = self._request("POST", path, json_body={"message": message}).body
        draft_id = str(draft["id"])
        self._request("POST", f"me/messages/{quote(draft_id, safe='')}/send")
        return {"draft_id": draft_id, "conversationId": draft.get("conversationId")}
