"""The Gmail and Graph sides of the crash matrix (tests/integration/test_crash_safety.py): one
mailbox per injection point on the fakes, connected through the real OAuth routes, a seed and
a delta of mailbox changes, and two oracles read from the fake's own state:

* :meth:`World.expected`: the exact mirror (Message-ID, folder, unread) the mailbox calls for;
* :meth:`World.cursor_violations`: every stored folder cursor is covered by the stored data.
  A cursor stands for a state of the folder at the provider (Gmail: the label at a
  ``historyId``, replayed from the fake's history; Graph: the folder snapshot a
  ``$deltatoken`` stands for, or the rows a ``$skiptoken`` round delivered before it). Every
  mail in the folder then *and* now must have its location stored, no location may exist of
  a mail in the folder neither then nor now, an unread flag unchanged since must match, and an
  initial load's ``done`` mails must all be stored. (All changes happen before the crashing
  run, so "now" is never older than the cursor.)
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from mailsync import connectors
from mailsync.domain.account import Account
from mailsync.store.mirror import DynamoMirrorStore
from mailsync.usecases.sync_account import sync_account
from tests.support.api import ApiClient
from tests.support.crash import check_integrity, host_of
from tests.support.dovecot import make_mail
from tests.support.google import connect_google
from tests.support.microsoft import connect_microsoft

PAGE = 3  # listing and history page size, and the sync batch size: every stream pages
NOT_IN_FOLDERS = {"TRASH", "SPAM", "DRAFT"}


def _bare(message_id: str | None) -> str:
    return (message_id or "").strip().strip("<>")


def quick_provider(page_size: int | None) -> Callable[[Account, dict[str, Any]], Any]:
    """The real provider factory, with small pages and retries that do not sleep (the
    backoff's clock is injectable; its timing is tested elsewhere)."""

    def factory(acc: Account, secrets: dict[str, Any]) -> Any:
        p: Any = connectors.open_provider(acc, secrets)
        p.sleep = lambda _s: None
        if page_size is not None:
            p.page_size = page_size
        return p

    return factory


@dataclass
class Cover:
    """What a stored cursor vouches for: the refs that must be stored at its folder, those
    that must not be, the unread flags it saw that are still current, and the refs in the
    folder now."""

    required: set[str]
    forbidden: set[str]
    flags: dict[str, bool]
    now: set[str]


class World:
    """One mailbox on a fake and its account; subclasses know the provider."""

    name = ""
    page_size: int | None = None

    def __init__(self, fake: Any, email: str) -> None:
        self.fake = fake
        self.email = email
        self.api = ApiClient("key-t1", "alice")
        self.ids: dict[str, str] = {}  # our names -> provider ids
        self.acc = {"id": self.connect()}
        self.factory = quick_provider(self.page_size)

    @property
    def hosts(self) -> set[str]:
        raise NotImplementedError

    def connect(self) -> str:
        raise NotImplementedError

    def sync(self) -> dict[str, Any]:
        """One sync run. Its clock ticks half a second per reading, so the throttled progress
        writes (and hence the numbering of the AWS writes) do not depend on the machine's speed."""
        ticks = itertools.count(0.0, 0.5)
        return sync_account("t1", self.acc["id"], provider_factory=self.factory, clock=lambda: next(ticks))

    def seed(self) -> None:
        raise NotImplementedError

    def mutate(self) -> None:
        raise NotImplementedError

    def expected(self) -> list[tuple[str, str, bool]]:
        raise NotImplementedError

    def mirrored(self) -> list[tuple[str, str, bool]]:
        """The visible mirror after the integrity checks (tests.support.crash)."""
        msgs = check_integrity(self.acc)
        return sorted((_bare(m["message_id"]), m["folder"], m["unread"]) for m in msgs)

    def cursor_violations(self) -> list[str]:
        store = DynamoMirrorStore("t1", self.acc["id"])
        out: list[str] = []
        for st in store.get_folders().values():
            if not st.synced or not st.cursor:
                continue
            stored = {ref: mid for _, ref, mid in store.list_locations(st.name, st.gen)}
            docs = store.get_messages(set(stored.values()))
            unread = {ref: docs[mid]["unread"] for ref, mid in stored.items() if mid in docs}
            c = self.cover(st.name, st.cursor)
            for ref in sorted(c.required - set(stored)):
                out.append(f"{st.name}: {ref} is behind the cursor but not stored")
            for ref in sorted(set(stored) & c.forbidden):
                out.append(f"{st.name}: {ref} left the folder before the cursor but is still stored")
            for ref, want in c.flags.items():
                if ref in unread and unread[ref] != want:
                    out.append(f"{st.name}: {ref} unread={unread[ref]} although the cursor saw {want}")
            done = int(st.cursor.get("done") or 0) if st.cursor.get("phase") == "initial" else 0
            if len(set(stored) & c.now) < done:
                out.append(f"{st.name}: {done} mails loaded by the cursor, {len(stored)} stored")
        return out

    def cover(self, folder: str, cursor: dict[str, Any]) -> Cover:
        """What a stored ``cursor`` of ``folder`` says must (not) be stored."""
        raise NotImplementedError


class GmailWorld(World):
    name = "gmail"
    page_size = PAGE

    @property
    def hosts(self) -> set[str]:
        return {host_of(self.fake.api_base), host_of(self.fake.token_uri)}

    def connect(self) -> str:
        status, q = connect_google(self.api, self.fake, self.email)
        assert status == 302 and "account_id" in q, q
        return q["account_id"]

    def deliver(self, name: str, labels: tuple[str, ...], **kw: Any) -> None:
        raw = make_mail(name, "kunde@example.org", self.email, message_id=f"{name}@x", **kw)
        self.ids[name] = self.fake.deliver(self.email, raw, labels)

    def seed(self) -> None:
        self.label = self.fake.create_label(self.email, "Kunden")
        for i in range(1, 8):
            self.deliver(f"s{i}", ("INBOX",) if i == 2 else ("INBOX", "UNREAD"))
        self.deliver("k1", (self.label, "UNREAD"))
        self.deliver("k2", (self.label,), in_reply_to="s1@x", references="s1@x")

    def mutate(self) -> None:
        for i in range(1, 4):
            reply = {"in_reply_to": "s3@x", "references": "s3@x"} if i == 3 else {}
            self.deliver(f"n{i}", ("INBOX", "UNREAD"), **reply)
        self.fake.remove_labels(self.email, self.ids["s1"], "UNREAD")  # read elsewhere
        self.fake.add_labels(self.email, self.ids["s2"], "UNREAD")  # marked unread
        self.fake.move(self.email, self.ids["s4"], "INBOX", self.label)
        self.fake.delete(self.email, self.ids["s5"])
        self.fake.trash(self.email, self.ids["s6"])

    def _folder_of(self, labels: list[str]) -> str | None:
        if set(labels) & NOT_IN_FOLDERS:
            return None
        box = self.fake.mailbox(self.email)
        names = [box.labels[lid]["name"] for lid in labels if lid in ("INBOX", "SENT", self.label)]
        return "INBOX" if "INBOX" in names else (names[0] if names else None)

    def expected(self) -> list[tuple[str, str, bool]]:
        out = []
        for m in self.fake.mailbox(self.email).messages.values():
            folder = self._folder_of(m.label_ids)
            if folder is not None:
                out.append((_bare(m.message_id), folder, "UNREAD" in m.label_ids))
        return sorted(out)

    def cover(self, folder: str, cursor: dict[str, Any]) -> Cover:
        box = self.fake.mailbox(self.email)
        lid = self.fake.label_id(self.email, folder) if folder not in ("INBOX", "SENT") else folder

        def inside(labels: list[str] | None) -> bool:
            return labels is not None and lid in labels and not set(labels) & NOT_IN_FOLDERS

        upto = int(cursor["historyId"])
        at: dict[str, list[str] | None] = {}  # labels at the cursor (None: deleted)
        for rec in box.history:
            if int(rec["id"]) > upto:
                break
            for key in ("messagesAdded", "labelsAdded", "labelsRemoved"):
                for e in rec.get(key) or []:
                    at[e["message"]["id"]] = list(e["message"].get("labelIds") or [])
            for e in rec.get("messagesDeleted") or []:
                at[e["message"]["id"]] = None
        if cursor.get("phase") == "initial":
            at = {}  # a load in progress: only its "done" count is checked
        current = {mid: m.label_ids for mid, m in box.messages.items()}
        then = {mid for mid, labels in at.items() if inside(labels)}
        now = {mid for mid, labels in current.items() if inside(labels)}
        flags = {
            mid: "UNREAD" in current[mid]
            for mid in then & now
            if ("UNREAD" in (at[mid] or [])) == ("UNREAD" in current[mid])
        }
        known = set(at) | set(current)
        return Cover(then & now, known - then - now, flags, now)


class GraphWorld(World):
    name = "graph"

    @property
    def hosts(self) -> set[str]:
        return {host_of(self.fake.api_base), host_of(self.fake.authority)}

    def connect(self) -> str:
        status, q = connect_microsoft(self.api, self.fake, self.email)
        assert status == 302 and "account_id" in q, q
        return q["account_id"]

    def deliver(self, name: str, folder: str, read: bool = False, **kw: Any) -> None:
        raw = make_mail(name, "kunde@example.org", self.email, message_id=f"{name}@x", **kw)
        self.ids[name] = self.fake.deliver(self.email, raw, folder, read=read)

    def seed(self) -> None:
        self.fake.create_folder(self.email, "Kunden")
        for i in range(1, 8):
            self.deliver(f"s{i}", "inbox", read=i == 2)
        self.deliver("k1", "Kunden")
        self.deliver("k2", "Kunden", read=True, in_reply_to="s1@x", references="s1@x")

    def mutate(self) -> None:
        for i in range(1, 4):
            reply = {"in_reply_to": "s3@x", "references": "s3@x"} if i == 3 else {}
            self.deliver(f"n{i}", "inbox", **reply)
        self.fake.mark_read(self.email, self.ids["s1"], True)
        self.fake.mark_read(self.email, self.ids["s2"], False)
        self.fake.move(self.email, self.ids["s4"], "Kunden")
        self.fake.delete(self.email, self.ids["s5"])
        self.fake.move(self.email, self.ids["s6"], "deleteditems")

    def _synced(self) -> dict[str, str]:
        """folder id -> display path of the folders the engine mirrors by default."""
        box = self.fake.mailbox(self.email)
        skip = {"deleteditems", "junkemail", "drafts", "outbox"}
        return {
            fid: self.fake._path(box, f)
            for fid, f in box.folders.items()
            if f.parent_id is not None and f.well_known not in skip
        }

    def expected(self) -> list[tuple[str, str, bool]]:
        synced = self._synced()
        return sorted(
            (_bare(m.internet_message_id), synced[m.folder_id], not m.is_read)
            for m in self.fake.mailbox(self.email).messages.values()
            if m.folder_id in synced
        )

    def cover(self, folder: str, cursor: dict[str, Any]) -> Cover:
        box = self.fake.mailbox(self.email)
        fid = self.fake.folder_id(self.email, folder)
        current = {m.key: m for m in box.messages.values()}
        now = {m.immutable_id for m in current.values() if m.folder_id == fid}
        link = str(cursor.get("deltaLink") or cursor.get("nextLink") or "")
        query = {k: unquote(v[-1]) for k, v in parse_qs(urlsplit(link).query).items()}
        if "$deltatoken" in query:
            state = self.fake._states.get(query["$deltatoken"])
            assert state is not None, f"{folder}: the stored deltaLink is unknown to Graph"
            then: set[str] = set()
            flags: dict[str, bool] = {}
            for key, (change, _rest, imm) in state.snapshot.items():
                then.add(imm)
                m = current.get(key)
                if m is not None and m.folder_id == fid and m.change == change:
                    flags[imm] = not m.is_read
            everyone = {m.immutable_id for m in current.values()} | then
            return Cover(then & now, everyone - then - now, flags, now)
        if "$skiptoken" in query:
            # Inside a round: the rows it delivered before the token are vouched for.
            round_id, _, offset = query["$skiptoken"].rpartition(".")
            rnd = self.fake._rounds.get(round_id)
            assert rnd is not None, f"{folder}: the stored nextLink is unknown to Graph"
            present: set[str] = set()
            removed: set[str] = set()
            for _key, reason, (_rest, imm) in rnd.items[: int(offset)]:
                (removed if reason else present).add(imm)
            return Cover(present & now, removed - now, {}, now)
        return Cover(set(), set(), {}, now)  # the first request of a round: "done" only
