"""Write-through of the Gmail mail client: label changes, trash, send, and push watch.

References (https://developers.google.com/gmail/api/reference/rest/v1/users.messages):
``users.messages.modify`` (``addLabelIds``/``removeLabelIds``), ``users.messages.trash``,
``users.messages.send`` (``raw``, ``threadId``), ``users.watch`` / ``users.stop`` (push to
Cloud Pub/Sub).

Invariants
----------
* Read state is the UNREAD label; a move is a label change (add ``dest``'s, remove
  ``folder``'s), so message ids stay and ``move`` returns ``{ref: ref}``.
* Several messages go through one batch request per :data:`~mailsync.providers.gmail.client.FETCH_BATCH`;
  a message deleted meanwhile (404) is no error, any other failed part raises.
* ``append`` stores nothing: Gmail files sent mail itself (SENT label).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from mailsync.providers.gmail.labels import GmailLabels
from mailsync.providers.http import Reply

__all__ = ["GmailWrites"]


class GmailWrites(GmailLabels):
    """The mail-client operations of a Gmail session (see the module docstring)."""

    def _modify_each(self, ids: list[str], add: list[str], remove: list[str]) -> list[str]:
        body = {"addLabelIds": add, "removeLabelIds": remove}
        replies = self._batch("messages.modify", [("POST", f"messages/{i}/modify", body) for i in ids])
        return self._check_writes(ids, replies)

    def _check_writes(self, ids: list[str], replies: list[Reply]) -> list[str]:
        ok: list[str] = []
        for mid, rep in zip(ids, replies, strict=True):
            if rep.status == 200:
                ok.append(mid)
            elif rep.status != 404:  # a mail deleted meanwhile is no error
                raise self._reply_error(rep)
        return ok

    def set_seen(self, folder: str, refs: Iterable[str], seen: bool) -> None:
        """``messages.modify`` of the UNREAD label."""
        ids = list(dict.fromkeys(str(r) for r in refs))
        if ids:
            self._modify_each(ids, [] if seen else ["UNREAD"], ["UNREAD"] if seen else [])

    def move(self, folder: str, refs: Iterable[str], dest: str) -> dict[str, str]:
        """A label change: add ``dest``'s label, remove ``folder``'s. Ids stay: ``{ref: ref}``."""
        ids = list(dict.fromkeys(str(r) for r in refs))
        if not ids:
            return {}
        src, dst = self.label_id(folder), self.label_id(dest)
        if src == dst:
            return {i: i for i in ids}
        return {i: i for i in self._modify_each(ids, [dst], [src])}

    def delete(self, folder: str, refs: Iterable[str]) -> None:
        """``messages.trash`` (Gmail empties Trash itself after 30 days)."""
        ids = list(dict.fromkeys(str(r) for r in refs))
        if ids:
            replies = self._batch("messages.trash", [("POST", f"messages/{i}/trash", None) for i in ids])
            self._check_writes(ids, replies)

    def append(
        self, folder: str, raw: bytes, flags: Iterable[str] = (), date: datetime | None = None
    ) -> None:
        """Not needed: Gmail files sent mail itself (SENT label), so no copy is stored."""
        return None

    def send(self, raw: bytes, thread_id: str | None = None) -> dict[str, Any]:
        """``messages.send`` of an RFC 5322 message; ``thread_id`` for replies.
        Returns ``{"id", "threadId", "labelIds"}``."""
        body: dict[str, Any] = {"raw": base64.urlsafe_b64encode(raw).decode("ascii")}
        if thread_id:
            body["threadId"] = thread_id
        return dict(self._call("messages.send", "POST", "messages/send", body=body))

    def watch(
        self, topic: str, label_ids: Iterable[str] | None = None, label_filter_behavior: str = "include"
    ) -> dict[str, Any]:
        """``users.watch``: push notifications to the Pub/Sub ``topic``; ``{historyId, expiration}``."""
        body: dict[str, Any] = {"topicName": topic}
        if label_ids:
            body["labelIds"] = list(label_ids)
            body["labelFilterBehavior"] = label_filter_behavior
        return dict(self._call("watch", "POST", "watch", body=body))

    def stop(self) -> None:
        """``users.stop``: no more push notifications."""
        self._call("stop", "POST", "stop")
