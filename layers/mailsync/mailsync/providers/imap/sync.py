"""The folder sync state machine of the IMAP provider: :meth:`FolderSync.changes`.

Protocols: IMAP4rev1 (RFC 3501: SEARCH, FETCH, EXAMINE, STATUS), CONDSTORE/QRESYNC
(RFC 7162: HIGHESTMODSEQ, ``CHANGEDSINCE``, ``VANISHED (EARLIER)``), pipelining (RFC 3501
section 5.5).

States
------
The cursor a folder stored names its state (``mode``/``phase``, see *Cursor* below):

* ``INITIAL`` (:meth:`FolderSync._initial`): load the window (``SEARCH SINCE``), ``batch_size``
  bodies per batch, the next batch's FETCH already sent while the engine stores this one.
  Cursor ``phase="initial"`` with ``initial_done_uid`` until the last batch.
* ``DELTA_QRESYNC`` (:meth:`FolderSync._delta_qresync`): ``mode="qresync", phase="delta"``;
  one STATUS when unchanged, else EXAMINE, ``CHANGEDSINCE``/``VANISHED`` and the new mail.
* ``DELTA_PLAIN`` (:meth:`FolderSync._delta_plain`): ``mode="plain", phase="delta"``; EXISTS
  against the expected count, a bounded FLAGS refresh and the new mail.

Transitions (:meth:`FolderSync._state` picks the state from the cursor; a delta handler hands
over to ``INITIAL`` when the folder was recreated)::

         no cursor          cursor of another "v" or "mode", or a qresync
             |              cursor on a connection without QRESYNC (Reset)
             |                                 |
             v                                 v
      +----------------------------------------------+ ---+  a batch stored, more to
      |                   INITIAL                    |    |  load: phase="initial",
      | (resumed: skips UIDs <= initial_done_uid)    | <--+  initial_done_uid=<uid>
      +----------------------------------------------+
             |                                 |
             | last batch, QRESYNC enabled     | last batch, otherwise
             | and the folder has MODSEQs      | (mode="plain")
             | (mode="qresync")                |
             v                                 v
      +---------------+                 +-------------+
      | DELTA_QRESYNC | ---+            | DELTA_PLAIN | ---+
      +---------------+    | every      +-------------+    | every
             |   ^         | sync             |   ^        | sync
             |   +---------+                  |   +--------+
             |                                |
             | UIDVALIDITY changed, or        | UIDVALIDITY changed
             | HIGHESTMODSEQ gone             |
             v                                v
          INITIAL (first batch: Reset alone, then a fresh load from ``since``)

An ``INITIAL`` resumed with a cursor whose UIDVALIDITY is no longer the folder's starts over
the same way (Reset, fresh load).

Invariants
----------
* A message location is ``(folder, str(uid))``. UIDs are only meaningful together
  with the folder's UIDVALIDITY, which every cursor stores; when it changes the
  folder's first batch is a lone :class:`Reset` (``cause="uidvalidity"``; a cursor of
  another format: ``"expired"``), sent before any SEARCH or FETCH, followed by a fresh
  initial load. An engine that stops there (flapping, ``domain.flaps``) downloads nothing.
* Mails synced are those whose INTERNALDATE is at or after ``since`` (exact, not
  day-granular). ``SEARCH SINCE`` is day-granular and in the server's or message's
  time zone, so the search looks one day early and the few mails of the boundary
  days (``SEARCH SINCE d-1 BEFORE d+2``) get their INTERNALDATE checked before any
  body is downloaded. Mails moved in from another folder keep their INTERNALDATE,
  so an old mail moved into a synced folder stays out.
* Bodies are fetched with ``BODY.PEEK[]``: syncing never marks mail as read.
  Folders are opened with EXAMINE (read-only) for syncing.
* Every :class:`ChangeBatch` holds at most ``batch_size`` bodies (or at most
  :data:`META_BATCH` flag/removal changes) and a cursor that is valid once that
  batch is stored: resuming from any intermediate cursor replays at most one
  batch and never skips a change. ``SetFlags``/``Remove`` may name locations the
  engine never stored (mails older than ``since``); the engine ignores those.
* ``ChangeBatch.done`` is False on every batch of a ``changes()`` call but the last
  (more batches follow: initial load, reload after ``Reset`` or a long delta), True
  on the last one, after which the folder is caught up.
* ``unread`` is ``\\Seen`` not in FLAGS; ``internal_date`` is timezone-aware UTC.
* No command line exceeds about 4 KB: UID sets are compressed to ranges and
  chunked (:func:`compress_uids`).

Cursor (JSON, ``v`` = 1)
------------------------
``{"v": 1, "mode": "qresync"|"plain", "phase": "initial"|"delta", "uidvalidity": int,
"uidnext": int, "modseq": int (qresync), "initial_done_uid": int (initial phase),
"exists": int, "known": uid-set, "unread": uid-set (plain)}``

``uidnext``/``modseq`` of an initial-phase cursor are the values at the start of
the load; the delta after it therefore catches everything that changed meanwhile.

Cost of a sync
--------------
* QRESYNC mode (server has CONDSTORE+QRESYNC, folder has MODSEQs): an unchanged
  folder costs one ``STATUS (UIDNEXT UIDVALIDITY HIGHESTMODSEQ)`` whatever its size.
  A changed folder costs EXAMINE, one ``UID FETCH 1:<uidnext-1> (FLAGS) (CHANGEDSINCE
  m VANISHED)`` (answer proportional to the changes), one ``UID FETCH <uidnext>:*
  (INTERNALDATE)`` when mail arrived, and one body FETCH per ``batch_size`` new mails.
* Plain mode (no CONDSTORE): every sync costs EXAMINE plus a FLAGS fetch of the
  newest :data:`FLAG_REFRESH_LIMIT` known UIDs (about 40 bytes per message), since
  IMAP4rev1 cannot report flag changes otherwise; read-state changes of older mails
  are not seen. New mail: one ``UID FETCH <uidnext>:* (INTERNALDATE)``. Deletions are
  detected by comparing EXISTS with the expected count; only on a mismatch one
  ``UID SEARCH SINCE`` (answer proportional to the mails in the window) finds them.
  The cursor carries the known and unread UID sets, compressed to ranges.
* One ``ENABLE QRESYNC`` per connection when the server offers it.
"""

from __future__ import annotations

import contextlib
import imaplib
from collections.abc import Generator, Iterator
from datetime import date, datetime, timedelta
from typing import Any

from mailsync.domain.clock import as_utc
from mailsync.domain.ports import Change, ChangeBatch, Remove, Reset, SetFlags, Upsert
from mailsync.providers.imap.connection import ImapConnection
from mailsync.providers.imap.uidset import (
    _parse_vanished,
    compress_uids,
    format_uid_set,
    in_chunks,
    parse_uid_set,
)

__all__ = [
    "CURSOR_VERSION",
    "DELTA_PLAIN",
    "DELTA_QRESYNC",
    "FLAG_REFRESH_LIMIT",
    "INITIAL",
    "META_BATCH",
    "FolderSync",
]

CURSOR_VERSION = 1
META_BATCH = 1000  # SetFlags/Remove changes per batch
FLAG_REFRESH_LIMIT = 2000  # plain mode: newest known UIDs whose FLAGS are refreshed each sync

# The states of a folder (see the module docstring).
INITIAL = "initial"
DELTA_QRESYNC = "delta_qresync"
DELTA_PLAIN = "delta_plain"

_SEEN = b"\\Seen"


class FolderSync(ImapConnection):
    """The change stream of an IMAP session's folders (see the module docstring)."""

    def changes(
        self, folder: str, cursor: dict[str, Any] | None, since: datetime, batch_size: int = 100
    ) -> Iterator[ChangeBatch]:
        """Stream the changes of ``folder`` after ``cursor`` (see the module docstring)."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        since = as_utc(since)
        gen = self._changes(folder, cursor, since, batch_size)
        try:
            while True:
                with self._errors():
                    try:
                        batch = next(gen)
                    except StopIteration:
                        return
                yield batch
        finally:
            with self._errors():
                gen.close()  # a consumer that stops early: an in-flight FETCH is read off now

    def _state(self, cursor: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None, bool]:
        """The state of a folder whose stored cursor is ``cursor``: ``(state, cursor to resume
        from or None, whether the first batch starts with Reset)``."""
        if not cursor:
            return INITIAL, None, False
        if cursor.get("v") != CURSOR_VERSION or cursor.get("mode") not in ("qresync", "plain"):
            return INITIAL, None, True
        if cursor.get("mode") == "qresync" and not self._qresync:
            # The server stopped offering QRESYNC: start over in plain mode.
            return INITIAL, None, True
        if cursor.get("phase") == "initial":
            return INITIAL, cursor, False
        return (DELTA_QRESYNC if cursor["mode"] == "qresync" else DELTA_PLAIN), cursor, False

    def _changes(
        self, folder: str, cursor: dict[str, Any] | None, since: datetime, batch_size: int
    ) -> Generator[ChangeBatch]:
        """Run the handler of the folder's state."""
        state, resume, reset = self._state(cursor)
        if state == INITIAL:
            yield from self._initial(folder, resume, since, batch_size, reset=reset)
            return
        assert resume is not None
        if state == DELTA_QRESYNC:
            yield from self._delta_qresync(folder, resume, since, batch_size)
        else:
            yield from self._delta_plain(folder, resume, since, batch_size)

    # INITIAL -------------------------------------------------------------------------------

    def _initial(
        self,
        folder: str,
        cursor: dict[str, Any] | None,
        since: datetime,
        batch_size: int,
        reset: bool,
        flapped: bool = False,
    ) -> Iterator[ChangeBatch]:
        box = self._open(folder)
        if cursor is not None and int(cursor["uidvalidity"]) != box.uidvalidity:
            cursor, reset, flapped = None, True, True
        if cursor is None:
            mode = "qresync" if self._qresync and box.modseq is not None else "plain"
            base: dict[str, Any] = {
                "v": CURSOR_VERSION,
                "mode": mode,
                "uidvalidity": box.uidvalidity,
                "uidnext": box.uidnext,
            }
            if mode == "qresync":
                base["modseq"] = box.modseq
            else:
                base["exists"] = box.exists
            done_uid = 0
            known: set[int] = set()
            unread: set[int] = set()
        else:
            base = {
                k: cursor[k]
                for k in ("v", "mode", "uidvalidity", "uidnext", "exists", "modseq")
                if k in cursor
            }
            mode = base["mode"]
            done_uid = int(cursor.get("initial_done_uid", 0))
            known = set(parse_uid_set(cursor.get("known", "")))
            unread = set(parse_uid_set(cursor.get("unread", "")))

        if reset:
            # The Reset travels alone, before any SEARCH or FETCH: the engine may refuse the
            # reload (UIDVALIDITY flapping, domain.flaps) and then nothing is downloaded.
            first = dict(base, phase="initial", initial_done_uid=0)
            if mode == "plain":
                first["known"] = first["unread"] = ""
            cause = "uidvalidity" if flapped else "expired"
            yield ChangeBatch(folder, [Reset(folder, cause)], first, initial=True)
            reset = False
        start_uidnext = int(base["uidnext"])
        found, too_old = self._candidates(since, start_uidnext)
        already = sum(1 for u in found if u <= done_uid)
        todo = [u for u in found if u > done_uid and u not in too_old]
        total = already + len(todo)
        done = already

        def make_cursor(last_uid: int | None) -> dict[str, Any]:
            c = dict(base)
            if last_uid is None:
                c["phase"] = "delta"
            else:
                c["phase"] = "initial"
                c["initial_done_uid"] = last_uid
            if mode == "plain":
                c["known"] = format_uid_set(known)
                c["unread"] = format_uid_set(unread)
            return c

        chunks = list(in_chunks(todo, batch_size)) or [[]]
        items = "(UID FLAGS INTERNALDATE BODY.PEEK[])"
        pending = self._send_fetch(chunks[0], items)
        try:
            for i, chunk in enumerate(chunks):
                changes: list[Change] = [Reset(folder)] if reset and i == 0 else []
                tags, pending = pending, []
                fetched = self._read_fetches(tags)
                # Ask for the next batch before this one is handed over: the server reads and
                # sends it while the engine stores this one (pipelining, RFC 3501 §5.5).
                pending = self._send_fetch(chunks[i + 1], items) if i + 1 < len(chunks) else []
                for uid in chunk:
                    f = fetched.get(uid)
                    if f is None or f.raw is None or f.internal_date is None or f.internal_date < since:
                        continue  # expunged meanwhile, or older than since
                    is_unread = _SEEN not in f.flags
                    changes.append(Upsert(folder, str(uid), f.raw, is_unread, f.internal_date))
                    if mode == "plain":
                        known.add(uid)
                        if is_unread:
                            unread.add(uid)
                done += len(chunk)
                last = i == len(chunks) - 1
                yield ChangeBatch(
                    folder=folder,
                    changes=changes,
                    cursor=make_cursor(None if last else chunk[-1]),
                    done=last,
                    initial=True,
                    progress=(done, total),
                )
        finally:
            if pending:  # the consumer stopped early (time budget): keep the connection in step
                with contextlib.suppress(imaplib.IMAP4.error):
                    self._read_fetches(pending)

    # DELTA_QRESYNC -----------------------------------------------------------------------

    def _delta_qresync(
        self, folder: str, cursor: dict[str, Any], since: datetime, batch_size: int
    ) -> Iterator[ChangeBatch]:
        old_validity = int(cursor["uidvalidity"])
        old_next = int(cursor["uidnext"])
        old_modseq = int(cursor["modseq"])

        st = self._status(folder, ("UIDNEXT", "UIDVALIDITY", "HIGHESTMODSEQ"))
        if int(st.get(b"UIDVALIDITY", -1)) != old_validity:
            yield from self._initial(folder, None, since, batch_size, reset=True, flapped=True)
            return
        if int(st.get(b"UIDNEXT", -1)) == old_next and int(st.get(b"HIGHESTMODSEQ", -1)) == old_modseq:
            return  # unchanged: one STATUS, whatever the folder's size

        box = self._open(folder)
        if box.uidvalidity != old_validity or box.modseq is None:
            flapped = box.uidvalidity != old_validity
            yield from self._initial(folder, None, since, batch_size, reset=True, flapped=flapped)
            return

        meta: list[Change] = []
        if old_next > 1 and box.modseq != old_modseq:
            imap = self._conn._imap
            changed = self._uid_fetch(
                f"1:{old_next - 1}", "(UID FLAGS)", f"(CHANGEDSINCE {old_modseq} VANISHED)"
            )
            vanished: set[int] = set()
            for line in imap.untagged_responses.pop("VANISHED", []):
                vanished.update(_parse_vanished(line))
            vanished = {u for u in vanished if u < old_next}
            meta.extend(Remove(folder, str(u)) for u in sorted(vanished))
            for uid in sorted(changed):
                if uid < old_next and uid not in vanished and b"FLAGS" in changed[uid]:
                    meta.append(SetFlags(folder, str(uid), _SEEN not in changed[uid][b"FLAGS"]))

        new: list[int] = []
        if box.uidnext > old_next:
            dates = self._fetch_messages_range(old_next, box.uidnext)
            new = sorted(u for u, d in dates.items() if d >= since)

        def make_cursor(uidnext: int, modseq: int) -> dict[str, Any]:
            return {
                "v": CURSOR_VERSION,
                "mode": "qresync",
                "phase": "delta",
                "uidvalidity": box.uidvalidity,
                "uidnext": uidnext,
                "modseq": modseq,
            }

        final = make_cursor(box.uidnext, box.modseq)
        yield from self._emit_meta(folder, meta, cursor, make_cursor(old_next, box.modseq), final, bool(new))
        for chunk, last_uid, is_last in self._body_chunks(new, batch_size):
            changes = self._upserts(folder, chunk, since)
            cur = final if is_last else make_cursor(last_uid + 1, box.modseq)
            yield ChangeBatch(folder, changes, cur, done=is_last)
        if not meta and not new:
            yield ChangeBatch(folder, [], final, done=True)

    # DELTA_PLAIN -------------------------------------------------------------------

    def _delta_plain(
        self, folder: str, cursor: dict[str, Any], since: datetime, batch_size: int
    ) -> Iterator[ChangeBatch]:
        old_next = int(cursor["uidnext"])
        old_exists = int(cursor.get("exists", 0))
        known = set(parse_uid_set(cursor.get("known", "")))
        unread = set(parse_uid_set(cursor.get("unread", "")))

        box = self._open(folder)
        if box.uidvalidity != int(cursor["uidvalidity"]):
            yield from self._initial(folder, None, since, batch_size, reset=True, flapped=True)
            return

        arrived: dict[int, datetime] = {}
        if box.uidnext > old_next:
            arrived = self._fetch_messages_range(old_next, box.uidnext)

        removed: set[int] = set()
        if known and box.exists != old_exists + len(arrived):
            day = since.date()
            criteria: list[Any] = ["ALL"] if day <= date(1970, 1, 3) else ["SINCE", day - timedelta(days=1)]
            present = set(self._search(criteria))
            removed = known - present

        # Bounded flag refresh of the newest known UIDs.
        refresh = sorted(known - removed)[-FLAG_REFRESH_LIMIT:]
        flags: dict[int, tuple[bytes, ...]] = {}
        for uid_set in compress_uids(refresh):
            for uid, item in self._uid_fetch(uid_set, "(UID FLAGS)").items():
                if b"FLAGS" in item:
                    flags[uid] = tuple(item[b"FLAGS"])
        if refresh:
            # A refreshed UID the server no longer has was expunged.
            removed |= {u for u in refresh if u not in flags and u < old_next}

        meta: list[Change] = [Remove(folder, str(u)) for u in sorted(removed)]
        new_unread = set(unread) - removed
        for uid in sorted(flags):
            if uid in removed:
                continue
            is_unread = _SEEN not in flags[uid]
            if is_unread != (uid in unread):
                meta.append(SetFlags(folder, str(uid), is_unread))
                if is_unread:
                    new_unread.add(uid)
                else:
                    new_unread.discard(uid)
        known -= removed
        unread = new_unread

        new = sorted(u for u, d in arrived.items() if d >= since)
        arrived_uids = sorted(arrived)

        def make_cursor(uidnext: int) -> dict[str, Any]:
            later = sum(1 for u in arrived_uids if u >= uidnext)
            return {
                "v": CURSOR_VERSION,
                "mode": "plain",
                "phase": "delta",
                "uidvalidity": box.uidvalidity,
                "uidnext": uidnext,
                "exists": box.exists - later,
                "known": format_uid_set(known),
                "unread": format_uid_set(unread),
            }

        if not meta and not new and box.uidnext == old_next and box.exists == old_exists:
            return  # nothing changed (the cursor would be identical)
        yield from self._emit_meta(
            folder, meta, cursor, make_cursor(old_next), make_cursor(box.uidnext), bool(new)
        )
        if not new:
            if not meta:
                yield ChangeBatch(folder, [], make_cursor(box.uidnext), done=True)
            return
        for chunk, last_uid, is_last in self._body_chunks(new, batch_size):
            changes = self._upserts(folder, chunk, since)
            for ch in changes:
                assert isinstance(ch, Upsert)
                known.add(int(ch.ref))
                if ch.unread:
                    unread.add(int(ch.ref))
            cur = make_cursor(box.uidnext if is_last else last_uid + 1)
            yield ChangeBatch(folder, changes, cur, done=is_last)

    # helpers ------------------------------------------------------------------------

    def _fetch_messages_range(self, first: int, below: int) -> dict[int, datetime]:
        """INTERNALDATE of the UIDs in ``first <= uid < below`` (``UID FETCH first:*``)."""
        out: dict[int, datetime] = {}
        for uid, item in self._uid_fetch(f"{first}:*", "(UID INTERNALDATE)").items():
            idate = item.get(b"INTERNALDATE")
            if first <= uid < below and isinstance(idate, datetime):
                out[uid] = as_utc(idate)
        return out

    def _upserts(self, folder: str, uids: list[int], since: datetime) -> list[Change]:
        fetched = self._fetch_messages(uids, "(UID FLAGS INTERNALDATE BODY.PEEK[])")
        out: list[Change] = []
        for uid in uids:
            f = fetched.get(uid)
            if f is None or f.raw is None or f.internal_date is None or f.internal_date < since:
                continue
            out.append(Upsert(folder, str(uid), f.raw, _SEEN not in f.flags, f.internal_date))
        return out

    @staticmethod
    def _body_chunks(uids: list[int], batch_size: int) -> Iterator[tuple[list[int], int, bool]]:
        chunks = list(in_chunks(uids, batch_size))
        for i, chunk in enumerate(chunks):
            yield chunk, chunk[-1], i == len(chunks) - 1

    @staticmethod
    def _emit_meta(
        folder: str,
        meta: list[Change],
        old_cursor: dict[str, Any],
        after_meta: dict[str, Any],
        final: dict[str, Any],
        more: bool,
    ) -> Iterator[ChangeBatch]:
        """Yield flag/removal changes; only the last of these batches advances the cursor."""
        chunks = list(in_chunks(meta, META_BATCH))
        for i, chunk in enumerate(chunks):
            if i < len(chunks) - 1:
                cur = old_cursor
            elif more:
                cur = after_meta
            else:
                cur = final
            yield ChangeBatch(folder, chunk, dict(cur), done=i == len(chunks) - 1 and not more)

    def _candidates(self, since: datetime, below: int) -> tuple[list[int], set[int]]:
        """UIDs < ``below`` that may be at/after ``since``, and those of them found too old.

        ``SEARCH SINCE`` works on dates; one day of slack on each side covers every time
        zone, and only the boundary days' INTERNALDATEs are fetched to decide exactly.
        """
        day = since.date()
        if day <= date(1970, 1, 3):
            found = self._search(["ALL"])
            return [u for u in found if u < below], set()
        found = [u for u in self._search(["SINCE", day - timedelta(days=1)]) if u < below]
        if not found:
            return [], set()
        boundary = [
            u
            for u in self._search(["SINCE", day - timedelta(days=1), "BEFORE", day + timedelta(days=2)])
            if u < below
        ]
        too_old: set[int] = set()
        if boundary:
            dates = self._fetch_messages(boundary, "(UID INTERNALDATE)")
            too_old = {u for u, f in dates.items() if f.internal_date is not None and f.internal_date < since}
        return found, too_old
