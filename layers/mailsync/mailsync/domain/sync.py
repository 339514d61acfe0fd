"""The sync engine: applies a provider's change batches to the mirror.

Rules (the product's "mirror, don't archive"):

* Only mails received at or after ``sync_start - backfill_days`` are stored; the
  provider filters by internal date, the engine never widens that window.
* A mail is identified across folders by its Message-ID (``mime.message_key``),
  so the message id (``mid``) is a deterministic hash of tenant, account and key.
  A move between two synced folders therefore keeps the id, thread and links
  whatever order the two folders are synced in (the nylas/sync-engine#281 bug).
* A mail lives while it has at least one *location* ``(folder, ref)``. Losing the
  last one makes it an *orphan*: hidden at once, and purged (item, thread
  membership, S3 objects) only after one more full pass over every synced folder
  has had the chance to show it somewhere else. That pass costs O(1) per unchanged
  folder with CONDSTORE/QRESYNC, so it is cheap.
* Threads: a new mail joins the thread of its In-Reply-To/References (JWZ, RFC 5256
  REFERENCES), else of its base subject + participants; else it starts one whose id
  derives from its root Message-ID. An existing mail never changes thread. The
  thread item is written before the message that points to it, so ``thread_id``
  never dangles.
* Crash safety: every batch is applied by idempotent writes (puts by
  deterministic key, deletes by key), and the folder cursor is saved only after
  them. A crash anywhere replays the batch on the next run and converges.

This module is free of AWS and HTTP; storage is the :class:`MirrorStore` port.
Its records and the port are in ``domain.sync_state``, threads in ``domain.threads``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime
from typing import Any

from mailsync.domain import flaps, mime
from mailsync.domain.clock import iso, utcnow
from mailsync.domain.events import DELETED_AT_PROVIDER, FOLDER_UNSYNCED
from mailsync.domain.models import Address, ParsedMessage
from mailsync.domain.ports import (
    SESSION_KINDS,
    Change,
    ChangeBatch,
    FolderGone,
    FolderInfo,
    MailProvider,
    ProviderError,
    Remove,
    Reset,
    SetFlags,
    Upsert,
)
from mailsync.domain.records import Location, MessageDoc, link_of
from mailsync.domain.scan import scan_message
from mailsync.domain.sync_state import (
    AccountContext,
    FolderState,
    MirrorStore,
    SyncReport,
    Writes,
    message_id_for,
    ref_hash,
)
from mailsync.domain.threads import assign_threads, recompute_thread, thread_member

__all__ = [
    "AccountContext",
    "FolderState",
    "MirrorStore",
    "SyncEngine",
    "SyncReport",
    "Writes",
    "message_id_for",
    "recompute_thread",
    "ref_hash",
    "shown_folder",
    "thread_member",
]


def shown_folder(locs: dict[str, str], current: str | None, fallback: str) -> str:
    """The folder a mail with copies in several folders is shown in.

    INBOX wins (where users look for mail), then the folder it is already shown in,
    then the newest location. Depending only on the copies (plus the current choice)
    keeps it stable whatever order the folders are synced in.
    """
    for name in locs:
        if name.upper() == "INBOX":
            return name
    return current if current in locs else fallback


def participants_of(p: ParsedMessage) -> list[str]:
    """The normalised addresses that take part in a mail (From, To, Cc, Bcc)."""
    return sorted({a.key for a in (*p.from_, *p.to, *p.cc, *p.bcc)})


def _addr_list(addrs: list[Address]) -> list[dict[str, str | None]]:
    return [a.as_dict() for a in addrs]


class SyncEngine:
    """Mirrors one account through a provider into a :class:`MirrorStore`."""

    def __init__(
        self,
        store: MirrorStore,
        ctx: AccountContext,
        *,
        batch_size: int = 100,
        clock: Callable[[], float] = time.monotonic,
        on_progress: Callable[[dict[str, FolderState]], None] | None = None,
        before_batch: Callable[[], None] | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.ctx = ctx
        self.batch_size = batch_size
        self.clock = clock
        self.on_progress = on_progress
        self.before_batch = before_batch  # e.g. refresh ctx.visibility from the account settings
        self.now = now  # wall clock of the flap history (domain.flaps)

    # ------------------------------------------------------------------ folders
    def reconcile_folders(
        self, listed: list[FolderInfo], folder_mode: str, selected: list[str]
    ) -> dict[str, FolderState]:
        """Bring folder items in line with the provider's list and the settings.

        A folder that is no longer synced (turned off, renamed or deleted at the
        provider) loses all its locations, which orphans mails found nowhere else.

        The folder items are written under the mirror lock, like every other write of
        the mirror (and only when something changed, so an unchanged account pays no
        lock): a sync that loaded the account before its deletion gets ``AccountGone``
        here instead of writing folder items back into a purged account.
        """
        states = self.store.get_folders()
        listed_names = {f.name for f in listed}
        with ExitStack() as held:
            taken: list[bool] = []

            def locked() -> None:
                # Taken at the first write and held to the end (one lease per reconcile);
                # each folder item is written right after its change, as before.
                if not taken:
                    held.enter_context(self.store.lock())
                    taken.append(True)

            for info in listed:
                st = states.get(info.name) or FolderState(name=info.name)
                want = self._wants(info, folder_mode, selected)
                changed = st.role != info.role or not st.present or st.synced != want
                st.role, st.present = info.role, True
                if want and not st.synced:
                    st.synced, st.cursor, st.initial_done, st.progress = True, None, False, None
                elif not want and st.synced:
                    locked()
                    self.drop_folder(st)
                    st.synced, st.cursor, st.initial_done, st.progress, st.messages = (
                        False,
                        None,
                        False,
                        None,
                        0,
                    )
                if changed or info.name not in states:
                    locked()
                    self.store.save_folder(st)
                states[info.name] = st
            for name, st in list(states.items()):
                if name not in listed_names:
                    locked()
                    if st.synced:
                        self.drop_folder(st)
                    self.store.delete_folder(name)
                    del states[name]
        return states

    @staticmethod
    def _wants(info: FolderInfo, folder_mode: str, selected: list[str]) -> bool:
        if folder_mode == "selected":
            return info.name in selected
        return info.role not in ("trash", "junk", "drafts", "all") and info.selectable

    def drop_folder(self, st: FolderState) -> None:
        """Remove every location of a folder (all generations)."""
        pending: list[tuple[int, str, str]] = []
        for loc in self.store.list_locations(st.name, None):
            pending.append(loc)
            if len(pending) >= self.batch_size:
                self._drop_locations(st.name, pending)
                pending = []
        if pending:
            self._drop_locations(st.name, pending)

    def _drop_locations(
        self, folder: str, locs: list[tuple[int, str, str]], reason: str = FOLDER_UNSYNCED
    ) -> int:
        with self.store.lock():
            return self._drop_locations_locked(folder, locs, reason)

    def _drop_locations_locked(self, folder: str, locs: list[tuple[int, str, str]], reason: str) -> int:
        w = Writes()
        msgs = self.store.get_messages({mid for _, _, mid in locs})
        thread_changes: dict[str, dict[str, dict[str, Any] | None]] = {}
        removed = 0
        for gen, ref, mid in locs:
            w.locations_delete.append((folder, gen, ref))
            doc = msgs.get(mid)
            if doc and doc["locs"].get(folder) == Location(gen, ref).encode():
                self.remove_loc(doc, folder, w, thread_changes, reason)
                removed += 1
        self.apply_thread_changes(thread_changes, w)
        self.store.commit(w)
        return removed

    # --------------------------------------------------------------------- run
    def run(self, provider: MailProvider, states: dict[str, FolderState], deadline: float) -> SyncReport:
        report = SyncReport()
        synced = [s for s in states.values() if s.synced]
        orphans: list[str] = []
        for pass_no in (1, 2):
            for st in synced:
                if self.clock() >= deadline:
                    report.complete = False
                    return report
                try:
                    done = self.sync_folder(provider, st, deadline, report)
                except ProviderError as e:
                    if e.kind in SESSION_KINDS:
                        raise  # the session is unusable (login, network, throttling): stop
                    # One folder fails (gone, no permission, …): the others stay current.
                    report.folder_errors[st.name] = e
                    if isinstance(e, FolderGone):
                        report.gone_folders.append(st.name)
                    if not isinstance(e, FolderGone) and len(report.folder_errors) == len(synced):
                        raise  # every folder fails: that is the account's failure
                    continue
                report.folders_synced += pass_no == 1
                if not done:
                    report.complete = False
                    return report
            # A second pass is only needed to rescue mails that looked deleted
            # but may have moved to a folder synced earlier in this pass.
            if pass_no == 1:
                orphans = self.store.list_orphans()
                if not orphans:
                    break  # nothing to rescue or purge: one read, the common case
        report.purged = self.purge_orphans() if orphans else 0
        return report

    def sync_folder(
        self, provider: MailProvider, st: FolderState, deadline: float, report: SyncReport
    ) -> bool:
        """Apply the folder's batches; True when it is caught up, False on deadline."""
        for batch in provider.changes(st.name, st.cursor, self.ctx.since, self.batch_size):
            if any(isinstance(c, Reset) and c.cause == "uidvalidity" for c in batch.changes):
                self._flapped(st)  # raises when the folder stops reloading
            if self.before_batch and batch.changes:
                self.before_batch()
            self.apply_batch(st, batch, report)
            if self.on_progress:
                self.on_progress({st.name: st})
            if self.clock() >= deadline and not batch.done:
                return False
        return True

    def _flapped(self, st: FolderState) -> None:
        """The folder's UIDVALIDITY changed: record the flap, or refuse the reload when it
        flaps too often (``domain.flaps``). A reload's flap is stored by the batch's own
        folder write; only the stopping flap costs a write of its own."""
        if flaps.stopped(st.flaps):
            raise flaps.UidValidityFlapping(st.name, st.flaps)
        st.flaps = flaps.record(st.flaps, self.now())
        if flaps.stopped(st.flaps):
            with self.store.lock():
                self.store.save_folder(st)
            raise flaps.UidValidityFlapping(st.name, st.flaps)

    # ------------------------------------------------------------------- batch
    def apply_batch(self, st: FolderState, batch: ChangeBatch, report: SyncReport | None = None) -> None:
        """Apply one batch: read, merge and write under the account's lock, then move the cursor."""
        with self.store.lock():
            self._apply_batch(st, batch, report or SyncReport())

    def _apply_batch(self, st: FolderState, batch: ChangeBatch, report: SyncReport) -> None:
        folder = st.name
        for c in batch.changes:
            if isinstance(c, Reset):
                st.old_gens.append(st.gen)
                st.gen += 1
        gen = st.gen
        upserts = [c for c in batch.changes if isinstance(c, Upsert)]
        flags = [c for c in batch.changes if isinstance(c, SetFlags)]
        removes = [c for c in batch.changes if isinstance(c, Remove)]

        refs = [u.ref for u in upserts] + [f.ref for f in flags] + [r.ref for r in removes]
        known = self.store.get_locations(folder, gen, refs)
        existing_locs = {u.ref for u in upserts if u.ref in known}
        parsed: dict[str, tuple[Upsert, ParsedMessage, str]] = {}
        for u in upserts:
            p = scan_message(u.raw)  # headers and structure; bodies render when read
            key = mime.message_key(p, u.raw)
            mid = message_id_for(self.ctx.tenant_id, self.ctx.account_id, key)
            parsed[u.ref] = (u, p, key)
            known.setdefault(u.ref, mid)  # a known ref keeps its mid
        msgs = self.store.get_messages(set(known.values()))

        w = Writes()
        thread_changes: dict[str, dict[str, dict[str, Any] | None]] = {}

        # A new mail that an exclusion rule matches is not mirrored at all: no object, no
        # thread, no location (domain.exclusions).
        skipped = {
            u.ref
            for u in upserts
            if known[u.ref] not in msgs and self.ctx.exclude.matches(participants_of(parsed[u.ref][1]))
        }
        report.excluded |= skipped
        upserts = [u for u in upserts if u.ref not in skipped]
        # New mails first (oldest first so parents thread before replies).
        new = [(parsed[u.ref], known[u.ref]) for u in upserts if known[u.ref] not in msgs]
        new.sort(key=lambda x: x[0][0].internal_date)
        seen_new: set[str] = set()
        threads = self._assign_threads(
            [(mid, p) for (_, p, _), mid in new],
            w,
            {mid: u.thread_hint for (u, _, _), mid in new if u.thread_hint},
        )
        contacts: dict[str, dict[str, str]] = {}
        if new and self.ctx.auto_assign:
            emails = {a.key for (_, p, _), _m in new for a in (*p.from_, *p.to, *p.cc, *p.bcc)}
            contacts = self.store.contacts_for(emails)
        for (u, p, key), mid in new:
            if mid in seen_new:  # the same mail twice in one folder (a copy)
                continue
            seen_new.add(mid)
            doc = self._new_doc(mid, key, p, u, threads[mid], w)
            # Bulk mail is auto-assigned only where the tenant asks for it (one GetItem, and
            # only when a new bulk mail has a contact to link to).
            matched = any(contacts.get(e) for e in doc["participants"])
            assign = not (p.bulk and matched and not self.store.assigns_bulk())
            for email in doc["participants"]:
                w.addresses_put.append((email, doc["received_at"], mid))
                for cid, kind in contacts.get(email, {}).items() if assign else ():
                    link = doc["links"].setdefault(cid, {"kind": kind, "auto": [], "manual": False})
                    link["auto"] = sorted({*link["auto"], email})
            for cid in doc["links"]:
                w.links_put.append(link_of(doc, cid))
            msgs[mid] = doc
            w.messages_put[mid] = doc
            thread_changes.setdefault(doc["thread_id"], {})[mid] = thread_member(doc)
            report.new += 1

        delta = 0
        for u in upserts:
            mid = known[u.ref]
            doc = msgs[mid]
            loc = Location(gen, u.ref).encode()
            if u.ref not in existing_locs:
                w.locations_put.append((folder, gen, u.ref, mid))
                delta += 1
            if doc["locs"].get(folder) != loc or doc.get("orphan") or doc["unread"] != u.unread:
                if doc["locs"].get(folder) is None and mid not in w.messages_put:
                    report.updated += 1
                self._add_loc(doc, folder, loc, w)
                doc["unread"] = u.unread
                w.messages_put[mid] = doc
                thread_changes.setdefault(doc["thread_id"], {})[mid] = thread_member(doc)

        for f in flags:
            fdoc = msgs.get(known.get(f.ref, ""))
            if fdoc is None or fdoc["unread"] == f.unread:
                continue  # never mirrored (older than the sync start), or no change
            fdoc["unread"] = f.unread
            w.messages_put[fdoc["mid"]] = fdoc
            thread_changes.setdefault(fdoc["thread_id"], {})[fdoc["mid"]] = thread_member(fdoc)
            report.updated += 1

        for r in removes:
            rmid = known.get(r.ref)
            if rmid is None:
                continue  # never mirrored (older than the sync start) or already removed
            w.locations_delete.append((folder, gen, r.ref))
            delta -= 1
            rdoc = msgs.get(rmid)
            if rdoc and rdoc["locs"].get(folder) == Location(gen, r.ref).encode():
                self.remove_loc(rdoc, folder, w, thread_changes, r.reason)
                report.removed += 1

        self.apply_thread_changes(thread_changes, w)
        self.store.commit(w)

        # Only now is it safe to move the cursor past these changes.
        st.cursor = batch.cursor
        st.messages = max(0, st.messages + delta)
        st.last_sync_at = iso(utcnow())
        if batch.progress:
            st.progress = {"done": batch.progress[0], "total": batch.progress[1]}
        if batch.done:
            st.initial_done = True
            st.progress = None
        self.store.save_folder(st)
        if batch.done and st.old_gens:
            self._reconcile_old_gens(st)

    def apply_local(self, changes: list[Change]) -> None:
        """Apply changes we made ourselves at the provider (mail client write-through).

        The folder cursors stay where they are: the next sync sees the same changes
        again and finds them already applied (idempotent), so nothing is duplicated.
        Orphans this creates (a mail moved to an unsynced folder) are purged at once.
        """
        by_folder: dict[str, list[Change]] = {}
        for c in changes:
            by_folder.setdefault(c.folder, []).append(c)
        with self.store.lock():
            # Read under the lock: a sync may have moved a cursor since the caller looked,
            # and saving an older state would rewind it.
            fresh = self.store.get_folders()
            for folder, folder_changes in by_folder.items():
                st = fresh.get(folder)
                if st is None or not st.synced or st.cursor is None:
                    continue  # not mirrored (yet): its initial load will see the result
                batch = ChangeBatch(folder, folder_changes, cursor=st.cursor, done=st.initial_done)
                self.apply_batch(st, batch)
            self.purge_orphans()

    def _reconcile_old_gens(self, st: FolderState) -> None:
        """After a reload (UIDVALIDITY change), drop locations of the old generations.

        Mails seen again in the new generation already point at their new location
        and keep it; the rest lose this folder.
        """
        for g in list(st.old_gens):
            locs = list(self.store.list_locations(st.name, g))
            for i in range(0, len(locs), self.batch_size):
                self._drop_locations(st.name, locs[i : i + self.batch_size], DELETED_AT_PROVIDER)
            st.old_gens.remove(g)
            self.store.save_folder(st)

    # -------------------------------------------------------------- messages
    def _add_loc(self, doc: MessageDoc, folder: str, loc: str, w: Writes) -> None:
        doc["locs"][folder] = loc
        doc["folder"] = shown_folder(doc["locs"], doc.get("folder"), folder)
        if doc.get("orphan"):
            doc["orphan"] = False
            doc["gone_reason"] = None
            w.orphans_remove.add(doc["mid"])

    def remove_loc(
        self,
        doc: MessageDoc,
        folder: str,
        w: Writes,
        thread_changes: dict[str, dict[str, dict[str, Any] | None]],
        reason: str = DELETED_AT_PROVIDER,
    ) -> None:
        doc["locs"].pop(folder, None)
        if doc["locs"]:
            doc["folder"] = shown_folder(doc["locs"], doc.get("folder"), next(reversed(doc["locs"])))
        else:
            # Written with the orphan mark, so the purge's removal says why (message.deleted).
            doc["orphan"], doc["gone_reason"] = True, reason
            w.orphans_add.add(doc["mid"])
        w.messages_put[doc["mid"]] = doc

    def _new_doc(
        self, mid: str, key: str, p: ParsedMessage, u: Upsert, thread_id: str, w: Writes
    ) -> MessageDoc:
        ctx = self.ctx
        raw_key = self.store.raw_key(mid)
        w.raw[raw_key] = u.raw
        received = iso(u.internal_date)
        participants = participants_of(p)
        return {
            "mid": mid,
            "tenant_id": ctx.tenant_id,
            "account_id": ctx.account_id,
            "owner": ctx.owner,
            "thread_id": thread_id,
            "folder": u.folder,
            "locs": {},
            "message_key": key,
            "header_message_id": p.message_id,
            "in_reply_to": p.in_reply_to,
            "references": list(p.references),
            "subject": p.subject or "",
            "from": _addr_list(p.from_),
            "to": _addr_list(p.to),
            "cc": _addr_list(p.cc),
            "bcc": _addr_list(p.bcc),
            "reply_to": _addr_list(p.reply_to),
            "date": iso(p.date) if p.date else received,
            "received_at": received,
            "snippet": p.snippet or "",
            "unread": u.unread,
            "has_attachments": p.has_attachments,
            "bulk": p.bulk,
            "attachments": [
                {"id": a.id, "filename": a.filename, "content_type": a.content_type, "size": a.size}
                for a in p.attachments
            ],
            # Where the bodies sit in the raw object (None: parse it whole when read).
            "body_parts": None if p.body_parts is None else [b.as_dict() for b in p.body_parts],
            "quarantine_reason": p.quarantine_reason,  # not parsed (domain.mimelimits)
            "raw_key": raw_key,
            "size": len(u.raw),
            "visibility": ctx.visibility,
            "participants": participants,
            "created_at": iso(utcnow()),
            "orphan": False,
            "links": {},
            "provider_thread_id": u.thread_hint,
        }

    # --------------------------------------------------------------- threads
    def _assign_threads(
        self, new: list[tuple[str, ParsedMessage]], w: Writes, hints: dict[str, str] | None = None
    ) -> dict[str, str]:
        return assign_threads(self.store, self.ctx, new, w, hints)

    def apply_thread_changes(self, changes: dict[str, dict[str, dict[str, Any] | None]], w: Writes) -> None:
        if not changes:
            return
        current = self.store.get_threads(changes.keys())
        for thid, members in changes.items():
            th = current.get(thid) or {
                "thread_id": thid,
                "tenant_id": self.ctx.tenant_id,
                "account_id": self.ctx.account_id,
                "owner": self.ctx.owner,
                "members": {},
                "subject": "",
                "visibility": self.ctx.visibility,
            }
            for mid, member in members.items():
                if member is None:
                    th["members"].pop(mid, None)
                else:
                    if mid not in th["members"] and th.get("follow") and mid in w.messages_put:
                        self._follow(w.messages_put[mid], th["follow"], w)
                    th["members"][mid] = member
            if th["members"]:
                w.threads_put[thid] = recompute_thread(th)
            else:
                w.threads_delete.add(thid)

    @staticmethod
    def _follow(doc: MessageDoc, follow: dict[str, str], w: Writes) -> None:
        """A new message of a thread linked with ``follow`` joins those contacts (manual)."""
        for cid, kind in follow.items():
            link = doc["links"].setdefault(cid, {"kind": kind, "auto": [], "manual": False})
            if not link["manual"]:
                link["manual"] = True
                w.links_put.append(link_of(doc, cid))

    # --------------------------------------------------------------- orphans
    def purge_orphans(self) -> int:
        """Delete mails that lost their last location and were not seen again."""
        mids = self.store.list_orphans()
        purged = 0
        for i in range(0, len(mids), self.batch_size):
            with self.store.lock():
                purged += self._purge_chunk(mids[i : i + self.batch_size])
        return purged

    def _purge_chunk(self, chunk: list[str]) -> int:
        purged = 0
        msgs = self.store.get_messages(chunk)
        w = Writes()
        thread_changes: dict[str, dict[str, dict[str, Any] | None]] = {}
        for mid in chunk:
            w.orphans_remove.add(mid)
            doc = msgs.get(mid)
            if doc is None or doc["locs"]:
                continue
            w.messages_delete.add(mid)
            w.s3_delete.extend(self.store.object_keys(doc))
            # Links follow the mirror: a mail that left it leaves every contact history.
            w.links_delete.extend((cid, doc["received_at"], mid) for cid in doc.get("links") or {})
            w.addresses_delete.extend((e, doc["received_at"], mid) for e in doc.get("participants") or [])
            thread_changes.setdefault(doc["thread_id"], {})[mid] = None
            purged += 1
        self.apply_thread_changes(thread_changes, w)
        self.store.commit(w)
        return purged
