"""The completeness check: compare each synced folder at the provider with the mirror, and
heal every difference through the engine's normal path.

Invariants:

* Ids only: the provider's :meth:`~mailsync.domain.ports.MailProvider.inventory` lists the
  refs its stored cursor covers (a mail that arrived after the cursor is not "missing"); the
  mirror side is the folder's locations of the current generation. Bodies are fetched only
  for the missing mails, to store them.
* A missing mail is fetched and applied as an upsert; an extra one is applied as a removal,
  so threads, links and orphans stay as consistent as after any sync. Orphans this makes are
  purged at once (the check runs after a full pass, as ``apply_local`` does). The cursor does
  not move: the next sync finds the same changes applied (idempotent).
* One folder failing does not stop the others (as in ``SyncEngine.run``): a folder that
  failed earlier in the run is skipped, one that fails in its check is put into ``failed``;
  only the account-wide kinds (:data:`~mailsync.domain.ports.SESSION_KINDS`) end the check.
* A folder whose first load is not complete is not checked (its inventory would be the
  unfinished rest of the load, not a difference).
* A mail an exclusion rule matches (``domain.exclusions``) is fetched by each check, found
  excluded and counted as neither missing nor healed: the mirror keeps no trace of it.
* Known races, documented in docs/performance.md: a Gmail or Graph mail that arrives between
  the sync and the check, or an IMAP mail expunged in that instant, counts as a difference
  and is healed (harmlessly) by the check.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from datetime import datetime

from mailsync.domain.clock import iso
from mailsync.domain.health import CheckResult, FolderCheck
from mailsync.domain.ports import SESSION_KINDS, ChangeBatch, MailProvider, ProviderError, Remove
from mailsync.domain.sync import SyncEngine
from mailsync.domain.sync_state import FolderState, SyncReport


def check_folders(
    engine: SyncEngine,
    provider: MailProvider,
    states: dict[str, FolderState],
    now: datetime,
    *,
    on_healed: Callable[[str, str, str], None] | None = None,
    failed: MutableMapping[str, ProviderError] | None = None,
) -> CheckResult:
    """Check (and heal) every synced, loaded folder; ``on_healed(folder, ref, "missing" |
    "extra")`` is told of each healed difference (logged and counted by the caller).
    ``failed``: the run's folder errors; their folders are skipped, and a folder whose check
    fails is added (a session-wide error is raised)."""
    result = CheckResult(iso(now))
    failed = {} if failed is None else failed
    for st in states.values():
        if not (st.synced and st.initial_done and st.cursor is not None) or st.name in failed:
            continue
        try:
            result.folders.append(check_folder(engine, provider, st, on_healed=on_healed))
        except ProviderError as e:
            if e.kind in SESSION_KINDS:
                raise
            failed[st.name] = e
    if result.healed:
        engine.purge_orphans()
    return result


def check_folder(
    engine: SyncEngine,
    provider: MailProvider,
    st: FolderState,
    *,
    on_healed: Callable[[str, str, str], None] | None = None,
) -> FolderCheck:
    cursor = st.cursor or {}
    inv = provider.inventory(st.name, cursor, engine.ctx.since)
    mirror = {ref for _gen, ref, _mid in engine.store.list_locations(st.name, st.gen)}
    candidates = sorted(inv.refs - mirror, key=_ref_order)
    extra = sorted(mirror - inv.refs, key=_ref_order)
    healed = dropped = 0
    for i in range(0, len(candidates), engine.batch_size):
        chunk = candidates[i : i + engine.batch_size]
        upserts = provider.fetch(st.name, chunk, engine.ctx.since)
        # A ref the fetch leaves out is older than the window (an inventory may be
        # day-granular) or gone meanwhile: not a difference.
        dropped += len(chunk) - len(upserts)
        applied = SyncReport()
        if upserts:
            engine.apply_batch(st, ChangeBatch(st.name, list(upserts), cursor=cursor, done=True), applied)
        # A mail an exclusion rule matches is never mirrored: not a difference either.
        kept = [u for u in upserts if u.ref not in applied.excluded]
        dropped += len(upserts) - len(kept)
        for u in kept:
            healed += 1
            if on_healed:
                on_healed(st.name, u.ref, "missing")
    for i in range(0, len(extra), engine.batch_size):
        chunk = extra[i : i + engine.batch_size]
        engine.apply_batch(
            st, ChangeBatch(st.name, [Remove(st.name, r) for r in chunk], cursor=cursor, done=True)
        )
        for ref in chunk:
            healed += 1
            if on_healed:
                on_healed(st.name, ref, "extra")
    return FolderCheck(
        name=st.name,
        provider_count=len(inv.refs) - dropped,
        mirror_count=len(mirror),
        missing=len(candidates) - dropped,
        extra=len(extra),
        healed=healed,
    )


def _ref_order(ref: str) -> tuple[int, str]:
    return (int(ref), "") if ref.isdigit() else (0, ref)


def reset_for_resync(engine: SyncEngine) -> int:
    """Drop the cursors of every synced folder, as a UIDVALIDITY change does: the next sync
    reloads each folder from the provider into a new generation, and the locations of the
    old one are reconciled when that load completes (``SyncEngine._reconcile_old_gens``).
    Message ids derive from Message-IDs, so ids, threads and links survive. Returns the
    number of folders reset; written under the mirror lock."""
    n = 0
    with engine.store.lock():
        for st in engine.store.get_folders().values():
            if not st.synced:
                continue
            st.old_gens.append(st.gen)
            st.gen += 1
            st.cursor, st.initial_done, st.progress, st.messages = None, False, None, 0
            st.flaps = []  # the user asked to try again (domain.flaps)
            engine.store.save_folder(st)
            n += 1
    return n


def clear_flaps(engine: SyncEngine) -> int:
    """Forget the UIDVALIDITY flaps of every folder (``domain.flaps``): a folder stopped for
    flapping is reloaded again by the next sync. Writes only the folders that had flaps;
    returns their number."""
    n = 0
    with engine.store.lock():
        for st in engine.store.get_folders().values():
            if st.flaps:
                st.flaps = []
                engine.store.save_folder(st)
                n += 1
    return n
