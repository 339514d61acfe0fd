"""The built-in mail client: read state, move and delete, written through to the mailbox.

Invariants:

* The provider is changed first; the mirror only after the provider accepted.
  A refusal answers 502 ``provider_error`` and leaves the local state unchanged.
* The mirror is then updated with the same changes a sync would see
  (``SyncEngine.apply_local``), without moving any folder cursor, so the next
  sync confirms them idempotently: no duplicate, and a moved mail keeps its id,
  thread and links (its identity is its Message-ID).
* Moving into a folder that is not synced removes the mail from the mirror, as
  the mirror rules say; deleting moves it to Trash (found by SPECIAL-USE role,
  then by common names), or purges it when it is already there.

IMAP: STORE ``\\Seen`` (RFC 3501), UID MOVE (RFC 6851) or COPY + UID EXPUNGE
(RFC 4315).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from mailsync.config import get_settings
from mailsync.connectors import open_provider as make_provider
from mailsync.domain.clock import parse_iso
from mailsync.domain.events import DELETED_BY_USER, MOVED_TO_UNSYNCED_FOLDER
from mailsync.domain.ports import Change, MailClient, ProviderError, Remove, SetFlags, Upsert
from mailsync.domain.records import Location, MessageDoc, link_of
from mailsync.domain.sync import FolderState, SyncEngine
from mailsync.domain.visibility import withheld
from mailsync.errors import BadGateway, NotFound, Unprocessable
from mailsync.observability import logger
from mailsync.store import accounts as accounts_repo
from mailsync.store import blobs
from mailsync.store.contacts import LinkRepository
from mailsync.store.messages import MessageRepository
from mailsync.store.mirror import DynamoMirrorStore
from mailsync.usecases.accounts import ProviderFactory, account_context, load_secrets
from mailsync.usecases.reading import summary

TRASH_NAMES = (
    "trash",
    "deleted items",
    "deleted messages",
    "papierkorb",
    "gelöschte elemente",
    "bin",
    "deleted",
)


def own_message(tenant_id: str, user_id: str, mid: str) -> MessageDoc:
    doc = MessageRepository(tenant_id).get(mid)
    if doc is None or doc["owner"] != user_id or doc.get("orphan"):
        raise NotFound("message not found")
    return doc


def _ref(loc: str) -> str:
    return Location.parse(loc).ref


# Write-through operations, run in order in one provider session (``_Session.write_through``).
@dataclass(frozen=True)
class SetSeen:
    folder: str
    refs: list[str]
    seen: bool

    def run(self, client: MailClient) -> None:
        client.set_seen(self.folder, self.refs, self.seen)


@dataclass(frozen=True)
class Move:
    folder: str
    refs: list[str]
    dest: str

    def run(self, client: MailClient) -> dict[Any, Any]:
        """``{old_ref: new_ref}`` when the provider reports the new refs."""
        return client.move(self.folder, self.refs, self.dest)


@dataclass(frozen=True)
class Delete:
    folder: str
    refs: list[str]

    def run(self, client: MailClient) -> None:
        client.delete(self.folder, self.refs)


ClientOp = SetSeen | Move | Delete


class _Session:
    """One account's provider session plus the engine that applies local changes."""

    def __init__(self, tenant_id: str, account_id: str, provider_factory: ProviderFactory) -> None:
        acc = accounts_repo.get_account(tenant_id, account_id)
        if acc is None or acc.state == "deleting":
            raise NotFound("account not found")
        self.acc = acc
        self.store = DynamoMirrorStore(tenant_id, account_id)
        self.states: dict[str, FolderState] = self.store.get_folders()
        self.engine = SyncEngine(self.store, account_context(acc, get_settings()))
        self.provider_factory = provider_factory

    def folder(self, name: str) -> FolderState:
        st = self.states.get(name)
        if st is None:
            raise Unprocessable(f"unknown folder: {name}", code="unknown_folder")
        return st

    def trash(self) -> str | None:
        by_role = [n for n, st in self.states.items() if st.role == "trash"]
        if by_role:
            return by_role[0]
        for name in self.states:
            if name.rsplit("/", 1)[-1].rsplit(".", 1)[-1].lower() in TRASH_NAMES:
                return name
        return None

    def write_through(self, ops: Iterable[ClientOp]) -> list[Any]:
        """Run provider operations in one session, in order; their results in the same
        order. 502 when the provider refuses."""
        results: list[Any] = []
        try:
            with self.provider_factory(self.acc, load_secrets(self.acc)) as provider:
                client: MailClient = provider  # type: ignore[assignment]
                for op in ops:
                    results.append(op.run(client))
        except ProviderError as e:
            logger.warning("provider refused a client operation", extra={"code": getattr(e, "code", "")})
            raise BadGateway(f"the mail server refused: {e}", code="provider_error") from e
        return results


def _move_changes(
    s: _Session,
    doc: MessageDoc,
    sources: list[str],
    dest: str,
    mappings: list[dict[Any, Any]],
    reason: str = MOVED_TO_UNSYNCED_FOLDER,
) -> list[Change]:
    """The mirror changes of moving every copy of ``doc`` into ``dest`` (dest first: never orphaned)."""
    changes: list[Change] = []
    new_refs = [str(v) for m in mappings for v in (m or {}).values()]
    if s.states[dest].synced and new_refs:
        raw = blobs.get(doc["raw_key"])
        changes.append(Upsert(dest, new_refs[0], raw, bool(doc["unread"]), parse_iso(doc["received_at"])))
    # The user moved it: if it leaves the mirror, it went to a folder that is not synced.
    changes.extend(Remove(src, _ref(doc["locs"][src]), reason) for src in sources)
    return changes


def update_message(
    tenant_id: str,
    user_id: str,
    mid: str,
    *,
    unread: bool | None = None,
    folder: str | None = None,
    provider_factory: ProviderFactory = make_provider,
) -> dict[str, Any]:
    doc = own_message(tenant_id, user_id, mid)
    return _update_docs(tenant_id, doc["account_id"], [doc], unread, folder, provider_factory)[0]


def set_visibility(tenant_id: str, user_id: str, mid: str, level: str) -> dict[str, Any]:
    """``PATCH /v1/messages/{id}`` ``{"visibility"}``: the owner shares or hides one mail after
    the fact. The message and its link items (which the contact histories filter on) change
    together under the account's mirror lock, so colleagues' views follow at once. Local only:
    a sharing level is ours, not the mailbox's."""
    doc = own_message(tenant_id, user_id, mid)
    store = DynamoMirrorStore(tenant_id, doc["account_id"])
    with store.lock():
        got = store.get_messages([mid]).get(mid)
        if got is None or got.get("orphan"):
            raise NotFound("message not found")
        if (got.get("visibility") or "private") != level:
            got["visibility"] = level
            MessageRepository(tenant_id).save([got])
            LinkRepository(tenant_id).put(link_of(got, cid) for cid in got.get("links") or {})
    return {**summary(got), "mirrored": True}


def update_thread(
    tenant_id: str,
    user_id: str,
    thread_id: str,
    *,
    unread: bool | None = None,
    folder: str | None = None,
    provider_factory: ProviderFactory = make_provider,
) -> list[dict[str, Any]]:
    docs = [d for d in MessageRepository(tenant_id).of_thread(thread_id) if d["owner"] == user_id]
    if not docs:
        raise NotFound("thread not found")
    return _update_docs(tenant_id, docs[0]["account_id"], docs, unread, folder, provider_factory)


def _update_docs(
    tenant_id: str,
    account_id: str,
    docs: list[MessageDoc],
    unread: bool | None,
    folder: str | None,
    provider_factory: ProviderFactory,
) -> list[dict[str, Any]]:
    s = _Session(tenant_id, account_id, provider_factory)
    if folder is not None:
        s.folder(folder)
    ops: list[ClientOp] = []
    if unread is not None:
        # Every copy, even when the message already looks read: copies can differ
        # (a mail sent to oneself is read in Sent and unread in INBOX); STORE is idempotent.
        for f, refs in _by_folder(docs).items():
            ops.append(SetSeen(f, refs, not unread))
    # A message is all its copies (one Message-ID): moving it moves every copy.
    move_plan: list[tuple[MessageDoc, list[str]]] = []
    for d in docs:
        sources = [f for f in d["locs"] if f != folder] if folder is not None else []
        if sources:
            assert folder is not None
            move_plan.append((d, sources))
            ops.extend(Move(src, [_ref(d["locs"][src])], folder) for src in sources)
    results = s.write_through(ops)

    changes: list[Change] = []
    if unread is not None:
        for d in docs:
            for f, loc in d["locs"].items():
                changes.append(SetFlags(f, _ref(loc), unread))
            d["unread"] = unread
    move_results = iter([r for op, r in zip(ops, results, strict=True) if isinstance(op, Move)])
    removed: set[str] = set()
    moved: set[str] = set()
    for d, sources in move_plan:
        assert folder is not None
        mappings = [next(move_results) for _ in sources]
        changes.extend(_move_changes(s, d, sources, folder, mappings))
        if not s.states[folder].synced:
            removed.add(d["mid"])
        moved.add(d["mid"])
    s.engine.apply_local(changes)
    out = []
    for d in docs:
        view = summary(d)
        if d["mid"] in moved:  # every copy is in ``folder`` now
            view["folder"], view["folders"] = folder, [folder]
        view["mirrored"] = d["mid"] not in removed
        out.append(view)
    return out


def _by_folder(docs: Iterable[MessageDoc]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for d in docs:
        for f, loc in d["locs"].items():
            out.setdefault(f, []).append(_ref(loc))
    return out


def delete_message(
    tenant_id: str, user_id: str, mid: str, *, provider_factory: ProviderFactory = make_provider
) -> None:
    doc = own_message(tenant_id, user_id, mid)
    s = _Session(tenant_id, doc["account_id"], provider_factory)
    trash = s.trash()
    if trash is None or trash in doc["locs"] and len(doc["locs"]) == 1:
        # Already in Trash (or there is none): purge at the provider.
        s.write_through([Delete(f, [_ref(loc)]) for f, loc in doc["locs"].items()])
        s.engine.apply_local([Remove(f, _ref(loc), DELETED_BY_USER) for f, loc in doc["locs"].items()])
        return
    sources = [f for f in doc["locs"] if f != trash]
    mappings = s.write_through([Move(src, [_ref(doc["locs"][src])], trash) for src in sources])
    s.engine.apply_local(_move_changes(s, doc, sources, trash, mappings, DELETED_BY_USER))


def get_attachment(tenant_id: str, user_id: str, mid: str, attachment_id: str) -> dict[str, Any]:
    """Bytes of one attachment (received or sent mail), or a short-lived S3 URL when large."""
    from mailsync.domain import mime
    from mailsync.usecases.reading import visible_message

    doc = visible_message(tenant_id, user_id, mid)  # colleagues may read what they may see
    if "attachments" in withheld(doc, user_id):
        raise NotFound("attachment not found")
    if attachment_id not in {a["id"] for a in doc.get("attachments") or []}:
        raise NotFound("attachment not found")
    found = mime.get_attachment(blobs.get(doc["raw_key"]), attachment_id)
    if found is None:
        raise NotFound("attachment not found")
    filename, content_type, data = found
    if len(data) > blobs.LARGE_ATTACHMENT_BYTES:  # a presigned redirect, purged with the message
        key = blobs.attachment_key(doc["raw_key"], attachment_id)
        blobs.put_attachment(key, data, content_type, filename)
        return {"redirect": blobs.presigned_url(key, seconds=300)}
    return {"filename": filename, "content_type": content_type, "data": data}
