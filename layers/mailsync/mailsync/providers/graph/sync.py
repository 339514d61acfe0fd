"""The Graph folder sync: one message delta round per folder, followed page by page.

References (https://learn.microsoft.com/graph/...): ``api/resources/message`` and
``api/message-delta`` (``GET /me/mailFolders/{id}/messages/delta``: ``$select``; ``$filter``
only on ``receivedDateTime ge|gt``, first call only; ``Prefer: odata.maxpagesize``;
``@odata.nextLink`` pages, then ``@odata.deltaLink``; ``@removed`` rows with ``reason``
``changed``/``deleted``), ``delta-query-messages`` and ``delta-query-overview`` (an expired
token answers 410 Gone / ``syncStateNotFound``: full resync), ``api/message-get`` (``/$value``
for the MIME).

Sync model and cursor (JSON, ``v`` = 1)
---------------------------------------
One delta per folder. A folder's cursor is

* ``{"v": 1, "phase": "delta", "deltaLink": "<url>"}`` once caught up, or
* ``{"v": 1, "phase": "initial"|"delta", "nextLink": "<url>", "skip": n, "done": n}`` in the
  middle of a round (``skip``: rows of that page already stored; ``done``: rows so far).

The first call (no cursor, or after an expiry) is ``.../messages/delta?$select=<fields>&
$filter=receivedDateTime ge <since>`` with ``Prefer: odata.maxpagesize=<batch size>``, so that
one page is one :class:`ChangeBatch`; every batch carries the link of the *next* request
and is stored by the engine only after its changes. Links are followed verbatim (they must
stay on ``api_base``'s origin, else the cursor is treated as invalid and the folder reloads).

Rows become changes: ``@removed`` → :class:`Remove`. Any other row is a message present in
the folder: when a ``known(folder, refs)`` callback is set (the sync use case sets the
mirror's location lookup) and the row's id is already mirrored at that folder during a delta round,
it becomes :class:`SetFlags` from ``isRead`` (Outlook message content is immutable once
received; only flags change); otherwise its MIME is fetched with ``GET
/me/messages/{id}/$value`` and it becomes an :class:`Upsert` (``thread_hint`` =
``conversationId``, ``internal_date`` = ``receivedDateTime``; rows older than ``since`` are
skipped). Without ``known`` every row is fetched and upserted (correct, the engine treats
the upsert of a known location as a flag update, just dearer).

MIME is fetched per message, up to :data:`MAX_CONCURRENT` in parallel: ``$batch`` would not
save Graph requests (every part counts against the mailbox limits) and answers a non-JSON
body as a base64 string, which is only community-documented. ``$batch`` is used where it
saves round trips with documented JSON answers: the well-known folder look-ups and the
mail-client writes (``PATCH isRead``/``move`` for several messages, 20 per batch).

Moves: with immutable ids a move between synced folders shows as ``@removed`` in one
folder's delta and as a new row in the other, with the same id; the engine identifies the
mail by its Message-ID and keeps its id, thread and links. A move to an unsynced folder, or
a delete, leaves only the ``@removed`` (the engine orphans, then purges it).

An expired token (410 Gone, or ``syncStateNotFound``/``resyncRequired``/``syncStateInvalid``)
yields :class:`Reset` in the first batch of a reload from ``since``; the engine rebuilds the
locations under a new generation, so no duplicates appear. A folder that vanished answers
404 and raises :class:`FolderGone`.

States: ``initial`` and ``delta`` rounds (cursor ``phase``), both run by :meth:`GraphSync._round`;
no cursor or an invalid one starts an initial round (with Reset when there was one), an
expired token turns the round into a fresh initial one with Reset.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from mailsync.domain.clock import as_utc, iso
from mailsync.domain.events import DELETED_AT_PROVIDER
from mailsync.domain.events import MOVED_TO_UNSYNCED_FOLDER as MOVED
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
from mailsync.providers.graph.folders import GraphFolders
from mailsync.providers.http import ApiError

__all__ = ["CURSOR_VERSION", "DELTA_SELECT", "EXPIRED_CODES", "GraphSync"]

CURSOR_VERSION = 1
DELTA_SELECT = (
    "id",
    "internetMessageId",
    "conversationId",
    "subject",
    "from",
    "receivedDateTime",
    "isRead",
    "isDraft",
    "parentFolderId",
    "hasAttachments",
)
EXPIRED_CODES = frozenset({"syncstatenotfound", "syncstateinvalid", "resyncrequired"})


def _is_expired(status: int, code: str) -> bool:
    return status == 410 or (status in (400, 404) and code.lower() in EXPIRED_CODES)


def _parse_dt(text: str | None) -> datetime | None:
    if not text:
        return None
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    if "." in t:  # Graph may write 7 fractional digits
        head, _, tail = t.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        rest = tail[len(digits) :]
        t = f"{head}.{digits[:6]}{rest}" if digits else head + rest
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


class GraphSync(GraphFolders):
    """The change stream of a Graph session's folders (see the module docstring)."""

    def fetch_mime(self, ids: list[str]) -> dict[str, bytes]:
        """``GET /me/messages/{id}/$value`` of ``ids`` (up to 4 in parallel); vanished ids are absent."""
        out: dict[str, bytes] = {}

        def one(mid: str) -> tuple[str, bytes | None]:
            try:
                rep = self._request("GET", f"me/messages/{quote(mid, safe='')}/$value", raw=True)
            except ApiError as e:
                if e.status == 404:
                    return mid, None
                raise
            return mid, bytes(rep.body)

        if len(ids) <= 1 or self.max_concurrency == 1:
            results = [one(m) for m in ids]
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(ids))) as pool:
                results = list(pool.map(one, ids))
        for mid, raw in results:
            if raw is not None:
                out[mid] = raw
        return out

    # -- changes ----------------------------------------------------------------------------------

    def changes(
        self, folder: str, cursor: dict[str, Any] | None, since: datetime, batch_size: int = 100
    ) -> Iterator[ChangeBatch]:
        fid = self.folder_id(folder)
        since = as_utc(since)
        batch_size = max(1, min(batch_size, 1000))
        valid = (
            isinstance(cursor, dict)
            and cursor.get("v") == CURSOR_VERSION
            and any(
                isinstance(cursor.get(k), str) and self._same_origin(cursor[k])
                for k in ("deltaLink", "nextLink")
            )
        )
        if not cursor or not valid:
            yield from self._round(
                folder, fid, None, 0, 0, since, batch_size, initial=True, reset=bool(cursor)
            )
            return
        assert cursor is not None
        initial = cursor.get("phase") == "initial"
        link = str(cursor.get("nextLink") or cursor.get("deltaLink"))
        skip = int(cursor.get("skip") or 0) if cursor.get("nextLink") else 0
        done = int(cursor.get("done") or 0)
        yield from self._round(folder, fid, link, skip, done, since, batch_size, initial=initial, reset=False)

    def _first_url(self, fid: str, since: datetime) -> str:
        """The first delta request of a round, as a link (so a cursor can replay it)."""
        query = urlencode(
            {"$select": ",".join(DELTA_SELECT), "$filter": f"receivedDateTime ge {iso(since)}"},
            quote_via=quote,
            safe="$,:",
        )
        return f"{self.api_base}/me/mailFolders/{quote(fid, safe='')}/messages/delta?{query}"

    def _round(
        self,
        folder: str,
        fid: str,
        link: str | None,
        skip: int,
        done: int,
        since: datetime,
        batch_size: int,
        *,
        initial: bool,
        reset: bool,
    ) -> Iterator[ChangeBatch]:
        """Follow one delta round from ``link`` (a fresh initial round when None) to its deltaLink."""
        pending_reset = reset
        prefer = {"Prefer": f"odata.maxpagesize={batch_size}"}
        total = int((self._folders or {}).get(folder, {}).get("totalItemCount") or 0)
        phase = "initial" if initial else "delta"
        while True:
            url = link or self._first_url(fid, since)
            try:
                page = self._get(url, headers=prefer)
            except ApiError as e:
                if _is_expired(e.status, e.code) and link is not None:
                    # The token expired: Reset, then reload the folder from ``since``.
                    link, skip, done, initial, phase, pending_reset = None, 0, 0, True, "initial", True
                    continue
                if e.status == 404:
                    self._folders = None
                    raise FolderGone(f"mail folder {folder!r} is gone: {e}") from e
                raise
            rows = [r for r in page.get("value") or [] if isinstance(r, dict)]
            next_link = page.get("@odata.nextLink")
            delta_link = page.get("@odata.deltaLink")
            if not next_link and not delta_link:
                raise ProviderError("Graph delta page without nextLink or deltaLink")
            todo = rows[skip:]
            chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)] or [[]]
            consumed = skip
            for n, chunk in enumerate(chunks):
                changes: list[Change] = [Reset(folder)] if pending_reset else []
                pending_reset = False
                changes += self._resolve(folder, chunk, since, initial)
                done += len(chunk)
                consumed += len(chunk)
                finished = False
                if n < len(chunks) - 1:
                    # The server sent a bigger page than asked: resume inside it (a replayed
                    # first request restarts the page, which is idempotent).
                    cur: dict[str, Any] = {
                        "v": CURSOR_VERSION,
                        "phase": phase,
                        "nextLink": url,
                        "skip": consumed if link else 0,
                        "done": done,
                    }
                elif delta_link:
                    cur = {"v": CURSOR_VERSION, "phase": "delta", "deltaLink": str(delta_link)}
                    finished = True
                else:
                    cur = {
                        "v": CURSOR_VERSION,
                        "phase": phase,
                        "nextLink": str(next_link),
                        "skip": 0,
                        "done": done,
                    }
                progress = (done, max(total, done)) if initial else None
                yield ChangeBatch(folder, changes, cur, initial=initial, done=finished, progress=progress)
            if delta_link:
                return
            link, skip = str(next_link), 0

    def _resolve(
        self, folder: str, rows: list[dict[str, Any]], since: datetime, initial: bool
    ) -> list[Change]:
        removes: list[Change] = []
        present: list[dict[str, Any]] = []
        for r in rows:
            rid = str(r.get("id") or "")
            if not rid:
                continue
            if "@removed" in r:
                # "deleted": gone for good; "changed": moved out of this folder (also a soft
                # delete, which moves it to Deleted Items) (Graph, message: delta).
                why = (r.get("@removed") or {}).get("reason")
                removes.append(Remove(folder, rid, MOVED if why == "changed" else DELETED_AT_PROVIDER))
            else:
                present.append(r)
        known: set[str] = set()
        if present and self.known is not None and not initial:
            known = {str(x) for x in self.known(folder, [str(r["id"]) for r in present])}
        flags: list[Change] = []
        fetch: list[dict[str, Any]] = []
        for r in present:
            when = _parse_dt(r.get("receivedDateTime"))
            if when is not None and when < since:
                continue  # older than the sync window (e.g. an old mail moved in)
            if str(r["id"]) in known and "isRead" in r:
                flags.append(SetFlags(folder, str(r["id"]), not bool(r["isRead"])))
            else:
                fetch.append(r)
        mime = self.fetch_mime([str(r["id"]) for r in fetch]) if fetch else {}
        ups: list[Change] = []
        for r in fetch:
            raw = mime.get(str(r["id"]))
            if raw is None:
                continue  # deleted meanwhile: its @removed comes with a later round
            when = _parse_dt(r.get("receivedDateTime")) or datetime.now(UTC)
            ups.append(
                Upsert(
                    folder,
                    str(r["id"]),
                    raw,
                    not bool(r.get("isRead", False)),
                    when,
                    thread_hint=str(r["conversationId"]) if r.get("conversationId") else None,
                )
            )
        return removes + ups + flags
