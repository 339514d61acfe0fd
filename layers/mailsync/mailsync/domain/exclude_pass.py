"""The exclusion pass: remove the mirrored mails that an account's exclusion rules match.

Invariants (see ``domain.exclusions`` for the rules themselves):

* Runs when the rules differ from the ones the mirror was last cleaned for (the account's
  ``exclude_applied`` digest), before the sync; it needs no provider connection, so a paused
  account is cleaned too. The caller records the digest only after the pass completed.
* A matching mail loses every location in one step under the mirror lock (the folders'
  message counts follow), becomes an orphan with the reason ``excluded`` and is purged
  through the engine's one purge path (``SyncEngine.purge_orphans``): its object, thread
  membership, links and address entries go, and ``message.deleted`` says ``excluded``.
  The provider's copy is untouched.
* Idempotent: a crash in the middle leaves the digest unrecorded, the next run passes again
  and finds what is left. Mails that arrive meanwhile are filtered at ingest.
* Cost: one paged Query of the account's messages (its index partition) per rule change, a
  BatchGet per page that holds a match, and the usual purge writes per removed mail.
  Removing a rule finds nothing to remove; the mails come back on the next resync.
"""

from __future__ import annotations

from typing import Any

from mailsync.domain.events import EXCLUDED
from mailsync.domain.exclusions import ExcludeRules
from mailsync.domain.records import Location
from mailsync.domain.sync import SyncEngine
from mailsync.domain.sync_state import Writes


def remove_excluded(engine: SyncEngine, rules: ExcludeRules) -> int:
    """Remove the account's mirrored mails that ``rules`` match; returns how many were
    purged."""
    if not rules:
        return 0
    found = 0
    for page in engine.store.iter_messages(engine.batch_size):
        hits = [d["mid"] for d in page if rules.matches(d.get("participants") or ())]
        if hits:
            with engine.store.lock():
                found += _drop(engine, rules, hits)
    return engine.purge_orphans() if found else 0


def _drop(engine: SyncEngine, rules: ExcludeRules, mids: list[str]) -> int:
    # Read again under the lock: a sync or the client may have changed them meanwhile.
    msgs = engine.store.get_messages(mids)
    states = engine.store.get_folders()
    w = Writes()
    thread_changes: dict[str, dict[str, dict[str, Any] | None]] = {}
    counts: dict[str, int] = {}
    dropped = 0
    for doc in msgs.values():
        if not rules.matches(doc.get("participants") or ()):
            continue
        dropped += 1
        if not doc["locs"]:
            if not doc.get("orphan"):
                doc["orphan"], doc["gone_reason"] = True, EXCLUDED
                w.orphans_add.add(doc["mid"])
                w.messages_put[doc["mid"]] = doc
            continue
        for folder, encoded in list(doc["locs"].items()):
            loc = Location.parse(encoded)
            w.locations_delete.append((folder, loc.gen, loc.ref))
            if folder in states and loc.gen == states[folder].gen:
                counts[folder] = counts.get(folder, 0) + 1
            engine.remove_loc(doc, folder, w, thread_changes, EXCLUDED)
    engine.apply_thread_changes(thread_changes, w)
    engine.store.commit(w)
    for folder, n in counts.items():
        st = states[folder]
        st.messages = max(0, st.messages - n)
        engine.store.save_folder(st)
    return dropped
