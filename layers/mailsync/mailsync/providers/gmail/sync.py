"""The Gmail folder sync: initial load by ``messages.list``, then deltas by ``history.list``.

References (https://developers.google.com/gmail/api): ``users.messages.list`` (``labelIds``,
``q=after:<epoch>``, ``maxResults``, ``pageToken``), ``users.messages.get`` (``format=raw``:
base64url RFC 5322, ``labelIds``, ``internalDate`` ms), ``users.history.list``
(``startHistoryId``, ``historyTypes``, ``pageToken``; records ``messagesAdded``/
``messagesDeleted``/``labelsAdded``/``labelsRemoved``; HTTP 404 when the start id is outside
the retained window) and the "Synchronizing clients" guide (full sync then).

Sync model and cursor (JSON, ``v`` = 1)
---------------------------------------
``historyId`` is account-wide; the engine asks per folder. Every folder keeps its own cursor

* ``{"v": 1, "phase": "delta", "historyId": "<id>"}`` once loaded, or
* ``{"v": 1, "phase": "initial", "historyId": "<id>", "page": <pageToken|None>, "skip": n,
  "done": n, "total": n}`` during an initial load (``historyId`` from ``getProfile`` taken
  *before* listing, so the delta after the load catches everything that changed meanwhile;
  ``page``/``skip`` resume a load cut by the time budget; an unusable page token restarts
  the listing, which is idempotent).

Initial load: ``messages.list?labelIds=<label>&q=after:<since-1> -in:draft`` paged, bodies with
``format=raw`` through the batch endpoint (:data:`~mailsync.providers.gmail.client.FETCH_BATCH` per batch), exact filter
``internalDate >= since``. Delta: ``history.list`` from the stored id over every page with
the four history types. The walk is account-wide and cached for the provider session, so
all folders of one sync share one walk (a folder whose cursor is inside the cached range
reuses it). Per folder and per message the net effect of the records is computed
(added to / removed from the label, TRASH/SPAM added or removed, deleted, UNREAD changed);
added messages are fetched (their *current* labels decide: Upsert, or Remove when the label
is gone again, or skipped when older than ``since``), removals become :class:`Remove`, UNREAD
changes :class:`SetFlags`. Batches end on history record boundaries, so every batch's cursor
is that record's id and a cut run resumes exactly there. An unchanged mailbox costs one
``history.list`` per session (2 units) and yields nothing; a mailbox whose changes do not
touch a folder yields one empty batch that advances its cursor. An expired ``historyId``
(404) yields :class:`Reset` followed by a full reload of the window (the engine rebuilds the
locations; ids derive from Message-ID, so no duplicates and no lost links).

States: ``initial`` (:meth:`GmailSync._initial`, cursor ``phase="initial"``) and ``delta``
(:meth:`GmailSync._delta`); no cursor or an unreadable one starts ``initial`` (with Reset
when there was one), an expired ``historyId`` sends ``delta`` back to ``initial`` with Reset.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mailsync.domain.clock import as_utc
from mailsync.domain.events import DELETED_AT_PROVIDER, MOVED_TO_UNSYNCED_FOLDER
from mailsync.domain.ports import (
    Change,
    ChangeBatch,
    FolderGone,
    ProviderError,
    Remove,
    Reset,
    SetFlags,
    Upsert,
)
from mailsync.providers.gmail.labels import NOT_IN_FOLDERS, GmailLabels, _in_folder

__all__ = ["CURSOR_VERSION", "HISTORY_TYPES", "GmailSync", "window_query"]

CURSOR_VERSION = 1
HISTORY_TYPES = ("messageAdded", "messageDeleted", "labelAdded", "labelRemoved")


def window_query(since: datetime) -> str:
    """The ``q`` of the initial load (and of the completeness check): mails after ``since``
    (``after:<epoch>`` is second-granular, hence one second of slack; the exact filter is
    ``internalDate >= since`` on the fetched mail), drafts left out (they are in no folder)."""
    return f"after:{max(int(since.timestamp()) - 1, 0)} -in:draft"


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _ms_to_dt(ms: str | int) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


class _Expired(Exception):
    """history.list answered 404: the start historyId is outside the retained window."""


@dataclass
class _HistoryWalk:
    start: int
    end: int
    records: list[dict[str, Any]]


class GmailSync(GmailLabels):
    """The change stream of a Gmail session's folders (see the module docstring)."""

    _walk: _HistoryWalk | None = None  # the account-wide history walk, cached for the session
    _expired_upto: int | None = None  # start ids up to this one are known to be expired

    def close(self) -> None:
        super().close()
        self._walk = None

    def _label_gone(self, folder: str, e: ProviderError) -> None:
        """A listing by label answered 404: the label went away since it was looked up."""
        if getattr(e, "status", None) == 404:
            self._labels = None
            raise FolderGone(f"label {folder!r} is gone: {e}") from e

    def _fetch_raw(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """``messages.get?format=raw`` of ``ids`` through the batch endpoint; missing ids are absent."""
        replies = self._batch("messages.get", [("GET", f"messages/{i}?format=raw", None) for i in ids])
        out: dict[str, dict[str, Any]] = {}
        for rep in replies:
            if rep.status == 200 and isinstance(rep.body, dict) and rep.body.get("id"):
                out[str(rep.body["id"])] = rep.body
            elif rep.status != 404:
                raise self._reply_error(rep)
        return out

    def _upsert(self, folder: str, label: str, msg: dict[str, Any], since: datetime) -> Upsert | None:
        labels = msg.get("labelIds") or []
        if not _in_folder(labels, label) or "raw" not in msg:
            return None
        when = _ms_to_dt(msg.get("internalDate") or 0)
        if when < since:
            return None
        return Upsert(
            folder,
            str(msg["id"]),
            _b64url_decode(str(msg["raw"])),
            "UNREAD" in labels,
            when,
            thread_hint=str(msg["threadId"]) if msg.get("threadId") else None,
        )

    # -- changes ----------------------------------------------------------------------------------

    def changes(
        self, folder: str, cursor: dict[str, Any] | None, since: datetime, batch_size: int = 100
    ) -> Iterator[ChangeBatch]:
        label = self.label_id(folder)
        since = as_utc(since)
        batch_size = max(1, batch_size)
        if not cursor or cursor.get("v") != CURSOR_VERSION or "historyId" not in cursor:
            yield from self._initial(folder, label, since, batch_size, None, reset=bool(cursor))
        elif cursor.get("phase") == "initial":
            yield from self._initial(folder, label, since, batch_size, cursor, reset=False)
        else:
            yield from self._delta(folder, label, int(cursor["historyId"]), since, batch_size)

    def _initial(
        self,
        folder: str,
        label: str,
        since: datetime,
        batch_size: int,
        resume: dict[str, Any] | None,
        reset: bool,
    ) -> Iterator[ChangeBatch]:
        if resume:
            hid = str(resume["historyId"])
            page_token: str | None = resume.get("page")
            skip = int(resume.get("skip") or 0)
            done = int(resume.get("done") or 0)
            total = int(resume.get("total") or 0)
        else:
            hid = str(self.profile()["historyId"])
            page_token, skip, done, total = None, 0, 0, 0
        pending_reset = reset
        query = window_query(since)

        def initial_cursor(page: str | None, skip_n: int) -> dict[str, Any]:
            return {
                "v": CURSOR_VERSION,
                "phase": "initial",
                "historyId": hid,
                "page": page,
                "skip": skip_n,
                "done": done,
                "total": total,
            }

        final = {"v": CURSOR_VERSION, "phase": "delta", "historyId": hid}
        while True:
            params: dict[str, Any] = {"labelIds": label, "q": query, "maxResults": self.page_size}
            if page_token:
                params["pageToken"] = page_token
            try:
                page = self._call("messages.list", "GET", "messages", params=params)
            except ProviderError as e:
                if page_token and getattr(e, "status", None) == 400:
                    page_token, skip = None, 0  # the token expired: list again (idempotent)
                    continue
                self._label_gone(folder, e)
                raise
            ids = [str(m["id"]) for m in page.get("messages") or []]
            next_token = page.get("nextPageToken")
            if not total:
                total = int(page.get("resultSizeEstimate") or 0)
            todo = ids[skip:]
            if not todo:
                if next_token:
                    page_token, skip = next_token, 0
                    continue
                yield ChangeBatch(
                    folder, [Reset(folder)] if pending_reset else [], dict(final), initial=True, done=True
                )
                return
            for i in range(0, len(todo), batch_size):
                chunk = todo[i : i + batch_size]
                fetched = self._fetch_raw(chunk)
                changes: list[Change] = [Reset(folder)] if pending_reset else []
                pending_reset = False
                for mid in chunk:
                    msg = fetched.get(mid)
                    up = self._upsert(folder, label, msg, since) if msg else None
                    if up is not None:
                        changes.append(up)
                done += len(chunk)
                consumed = skip + i + len(chunk)
                last_of_page = consumed >= len(ids)
                if last_of_page and not next_token:
                    cur, is_done = dict(final), True
                elif last_of_page:
                    cur, is_done = initial_cursor(next_token, 0), False
                else:
                    cur, is_done = initial_cursor(page_token, consumed), False
                yield ChangeBatch(
                    folder, changes, cur, initial=True, done=is_done, progress=(done, max(total, done))
                )
            if not next_token:
                return
            page_token, skip = next_token, 0

    def _history(self, start: int) -> _HistoryWalk:
        """Every history record after ``start`` (cached for the session); raises :class:`_Expired`."""
        walk = self._walk
        if walk is not None and walk.start <= start <= walk.end:
            return _HistoryWalk(start, walk.end, [r for r in walk.records if int(r["id"]) > start])
        if self._expired_upto is not None and start <= self._expired_upto:
            raise _Expired()
        records: list[dict[str, Any]] = []
        end = start
        token: str | None = None
        while True:
            params: list[tuple[str, Any]] = [("startHistoryId", str(start)), ("maxResults", self.page_size)]
            params += [("historyTypes", t) for t in HISTORY_TYPES]
            if token:
                params.append(("pageToken", token))
            try:
                data = self._call("history.list", "GET", "history", params=params)
            except ProviderError as e:
                if getattr(e, "status", None) == 404:
                    self._expired_upto = max(self._expired_upto or 0, start)
                    raise _Expired() from e
                raise
            end = max(end, int(data.get("historyId") or 0))
            records.extend(data.get("history") or [])
            token = data.get("nextPageToken")
            if not token:
                break
        records.sort(key=lambda r: int(r["id"]))
        if records:
            end = max(end, int(records[-1]["id"]))
        walk = _HistoryWalk(start, end, records)
        if self._walk is None or start <= self._walk.start:
            self._walk = walk
        return walk

    def _delta(
        self, folder: str, label: str, hid: int, since: datetime, batch_size: int
    ) -> Iterator[ChangeBatch]:
        try:
            walk = self._history(hid)
        except _Expired:
            yield from self._initial(folder, label, since, batch_size, None, reset=True)
            return
        if not walk.records and walk.end <= hid:
            return  # unchanged
        state: dict[str, str] = {}  # message id -> "add" | "remove" | "moved" (net, in record order)
        flags: dict[str, bool] = {}
        for n, rec in enumerate(walk.records):
            _apply_record(rec, label, state, flags)
            adds = sum(1 for v in state.values() if v == "add")
            if adds >= batch_size and n < len(walk.records) - 1:
                cur = {"v": CURSOR_VERSION, "phase": "delta", "historyId": str(rec["id"])}
                yield ChangeBatch(folder, self._resolve(folder, label, state, flags, since), cur, done=False)
                state, flags = {}, {}
        final = {"v": CURSOR_VERSION, "phase": "delta", "historyId": str(walk.end)}
        yield ChangeBatch(folder, self._resolve(folder, label, state, flags, since), final, done=True)

    def _resolve(
        self, folder: str, label: str, state: dict[str, str], flags: dict[str, bool], since: datetime
    ) -> list[Change]:
        adds = [mid for mid, v in state.items() if v == "add"]
        fetched = self._fetch_raw(adds) if adds else {}
        changes: list[Change] = []
        current: set[str] = set()
        for mid, v in state.items():
            if v == "add":
                msg = fetched.get(mid)
                if msg is not None and _in_folder(msg.get("labelIds") or [], label):
                    current.add(mid)  # its fetched labels are newer than any flag record
                    up = self._upsert(folder, label, msg, since)
                    if up is not None:
                        changes.append(up)
                    continue
                if msg is not None:  # it exists, without this folder's label: moved away
                    changes.append(Remove(folder, mid, MOVED_TO_UNSYNCED_FOLDER))
                    continue
            changes.append(
                Remove(folder, mid, MOVED_TO_UNSYNCED_FOLDER if v == "moved" else DELETED_AT_PROVIDER)
            )
        for mid, unread in flags.items():
            if mid not in current and state.get(mid) not in ("remove", "moved"):
                changes.append(SetFlags(folder, mid, unread))
        return changes

    # -- write-through (mail client) -----------------------------------------------------------


# --------------------------------------------------------------------------------------------
# History records -> net changes of one label


def _apply_record(rec: dict[str, Any], label: str, state: dict[str, str], flags: dict[str, bool]) -> None:
    for e in rec.get("messagesAdded") or []:
        m = e.get("message") or {}
        if _in_folder(m.get("labelIds") or [], label):
            state[str(m["id"])] = "add"
    for e in rec.get("messagesDeleted") or []:
        mid = str((e.get("message") or {})["id"])
        state[mid] = "remove"
        flags.pop(mid, None)
    for e in rec.get("labelsAdded") or []:
        m = e.get("message") or {}
        mid, labels, added = str(m["id"]), set(m.get("labelIds") or []), set(e.get("labelIds") or [])
        if added & NOT_IN_FOLDERS:
            state[mid] = "moved"  # to Trash or Spam: folders we never sync
        elif label in added and _in_folder(labels, label):
            state[mid] = "add"
        if "UNREAD" in added and label in labels:
            flags[mid] = True
    for e in rec.get("labelsRemoved") or []:
        m = e.get("message") or {}
        mid, labels, removed = str(m["id"]), set(m.get("labelIds") or []), set(e.get("labelIds") or [])
        if label in removed:
            state[mid] = "moved"  # the message stays, without this label
        elif removed & NOT_IN_FOLDERS and _in_folder(labels, label):
            state[mid] = "add"
        if "UNREAD" in removed and label in labels:
            flags[mid] = False
