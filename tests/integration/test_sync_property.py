"""Property test against a real Dovecot: a Hypothesis state machine drives random sequences
of mailbox changes (append, flag/unflag, move, expunge, folder create, rename, delete, and a
UIDVALIDITY change: a folder recreated under its name) and syncs, some of which crash at a
random AWS write (:class:`tests.support.crash.Faults`) and are followed by a clean run.
After every sync the mirror must equal the mailbox by Message-ID, folder and read state.

Bounded in the default run (derandomized, no example database: the same sequences every
time); ``MAILSYNC_FUZZ_EXAMPLES=<n>`` (``make fuzz``) runs ``n`` sequences of 20 steps.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)

from mailsync.store import mirror as mirror_store
from tests.support.accounts import bare_id, connect, mirror, sync
from tests.support.crash import Crash, Faults, Point
from tests.support.dovecot import make_mail

pytestmark = pytest.mark.integration

_N = int(os.environ.get("MAILSYNC_FUZZ_EXAMPLES", "0"))
EXAMPLES = _N or 6
STEPS = 20 if _N else 8
FIXED = ("INBOX", "Archive")
FIGURES = {"sequences": 0, "steps": 0, "syncs": 0, "crashes": 0, "mismatches": 0}


def machine(dovecot: Any, faults: Faults) -> type[RuleBasedStateMachine]:
    class Mailbox(RuleBasedStateMachine):
        """``model``: Message-ID -> (folder, unread), what the mirror must show."""

        @initialize()
        def start(self) -> None:
            FIGURES["sequences"] += 1
            self.user = dovecot.new_user("prop")
            self.acc = connect(dovecot, self.user, backfill_days=1)
            self.model: dict[str, tuple[str, bool]] = {}
            self.folders = list(FIXED)
            self.n = 0

        # -- helpers ---------------------------------------------------------------------
        def uid(self, mid: str) -> int:
            folder = self.model[mid][0]
            with dovecot.client(self.user[0]) as c:
                c.select_folder(folder)
                (uid,) = c.search(["HEADER", "Message-ID", mid])
                return int(uid)

        def step(self) -> None:
            FIGURES["steps"] += 1

        # -- mailbox changes -------------------------------------------------------------
        @rule(data=st.data(), seen=st.booleans())
        def append(self, data: st.DataObject, seen: bool) -> None:
            self.step()
            folder = data.draw(st.sampled_from(self.folders))
            self.n += 1
            mid = f"p{self.n}-{self.user[0]}@example.test"
            dovecot.append(
                self.user[0], folder, make_mail(f"P {self.n}", message_id=mid), ["\\Seen"] if seen else []
            )
            self.model[mid] = (folder, not seen)

        @precondition(lambda self: self.model)
        @rule(data=st.data())
        def toggle_seen(self, data: st.DataObject) -> None:
            self.step()
            mid = data.draw(st.sampled_from(sorted(self.model)))
            folder, unread = self.model[mid]
            dovecot.set_seen(self.user[0], folder, [self.uid(mid)], unread)
            self.model[mid] = (folder, not unread)

        @precondition(lambda self: self.model)
        @rule(data=st.data())
        def move(self, data: st.DataObject) -> None:
            self.step()
            mid = data.draw(st.sampled_from(sorted(self.model)))
            folder, unread = self.model[mid]
            dst = data.draw(st.sampled_from([f for f in self.folders if f != folder]))
            dovecot.move(self.user[0], folder, [self.uid(mid)], dst)
            self.model[mid] = (dst, unread)

        @precondition(lambda self: self.model)
        @rule(data=st.data())
        def expunge(self, data: st.DataObject) -> None:
            self.step()
            mid = data.draw(st.sampled_from(sorted(self.model)))
            dovecot.delete(self.user[0], self.model[mid][0], [self.uid(mid)])
            del self.model[mid]

        @precondition(lambda self: len(self.folders) < 5)
        @rule()
        def create_folder(self) -> None:
            self.step()
            self.n += 1
            name = f"F{self.n}"
            dovecot.create_folder(self.user[0], name)
            self.folders.append(name)

        def own(self) -> list[str]:
            return [f for f in self.folders if f not in FIXED]

        @precondition(lambda self: any(f not in FIXED for f in self.folders))
        @rule(data=st.data())
        def rename_folder(self, data: st.DataObject) -> None:
            self.step()
            old = data.draw(st.sampled_from(self.own()))
            self.n += 1
            new = f"R{self.n}"
            dovecot.rename_folder(self.user[0], old, new)
            self.folders[self.folders.index(old)] = new
            self.model = {m: (new if f == old else f, u) for m, (f, u) in self.model.items()}

        @precondition(lambda self: any(f not in FIXED for f in self.folders))
        @rule(data=st.data())
        def delete_folder(self, data: st.DataObject) -> None:
            self.step()
            name = data.draw(st.sampled_from(self.own()))
            dovecot.delete_folder(self.user[0], name)
            self.folders.remove(name)
            self.model = {m: v for m, v in self.model.items() if v[0] != name}

        @precondition(lambda self: any(f not in FIXED for f in self.folders))
        @rule(data=st.data())
        def recreate_folder(self, data: st.DataObject) -> None:
            """The folder is deleted and made again under its name with the same mails: a new
            UIDVALIDITY (RFC 3501 section 2.3.1.1), the same Message-IDs."""
            self.step()
            name = data.draw(st.sampled_from(self.own()))
            before = dovecot.status(self.user[0], name)[b"UIDVALIDITY"]
            with dovecot.client(self.user[0]) as c:
                c.select_folder(name, readonly=True)
                uids = c.search("ALL")
                raws = c.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
                c.unselect_folder()
                c.delete_folder(name)
                c.create_folder(name)
                for item in raws.values():
                    c.append(name, item[b"BODY[]"], flags=[f for f in item[b"FLAGS"] if f == b"\\Seen"])
            assert dovecot.status(self.user[0], name)[b"UIDVALIDITY"] != before

        # -- syncs -----------------------------------------------------------------------
        @rule(crash=st.integers(min_value=1, max_value=12) | st.none())
        def sync(self, crash: int | None) -> None:
            if crash is not None:
                with faults.run(Point("aws", crash, "before")):
                    try:
                        sync(self.acc)
                    except Crash:
                        FIGURES["crashes"] += 1
                FIGURES["syncs"] += 1
            result = sync(self.acc)
            FIGURES["syncs"] += 1
            assert result["status"] == "ok", result
            got = {bare_id(m["message_id"]): (m["folder"], m["unread"]) for m in mirror(self.acc)}
            want = {bare_id(mid): v for mid, v in self.model.items()}
            if got != want:
                FIGURES["mismatches"] += 1
            assert got == want

    return Mailbox


def test_mirror_equals_mailbox_after_random_changes_and_crashes(
    tenant: Any, dovecot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults = Faults(monkeypatch)
    monkeypatch.setattr(mirror_store, "LOCK_LEASE_SECONDS", 1.0)  # a crash may leave the lock held
    run_state_machine_as_test(
        machine(dovecot, faults),
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        ),
    )
    print(f"\nproperty test: {FIGURES} ({EXAMPLES} sequences of up to {STEPS} steps)")
