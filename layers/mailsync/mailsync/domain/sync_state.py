"""The sync engine's records and its storage port.

* :class:`AccountContext`: what the engine knows of the account it mirrors.
* :class:`FolderState`: one folder's cursor and generation, saved only after the
  writes of the batch it covers (crash safety: a replay converges).
* :class:`Writes`: the unit of work of one batch, committed by the store in a
  crash-safe order (``store.mirror.DynamoMirrorStore.commit`` documents it).
* :class:`MirrorStore`: the storage port (DynamoDB + S3 in ``store.mirror``).

Ids are deterministic hashes (:func:`message_id_for`, :func:`ref_hash`), so every
write is an idempotent put by key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from mailsync.domain.exclusions import ExcludeRules
from mailsync.domain.ports import ProviderError
from mailsync.domain.records import Link, MessageDoc, ThreadDoc


def digest(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def message_id_for(tenant_id: str, account_id: str, key: str) -> str:
    return "m_" + digest(tenant_id, account_id, key)[:24]


def ref_hash(message_id: str) -> str:
    return digest("mid", message_id.strip().lower())[:32]


@dataclass
class AccountContext:
    tenant_id: str
    account_id: str
    owner: str
    email: str
    visibility: str
    sync_start: datetime
    backfill_days: int = 0
    auto_assign: bool = True
    exclude: ExcludeRules = ExcludeRules()  # mail never synced (domain.exclusions)

    @property
    def since(self) -> datetime:
        return self.sync_start - timedelta(days=self.backfill_days)


@dataclass
class FolderState:
    name: str
    role: str | None = None
    synced: bool = False
    present: bool = True
    cursor: dict[str, Any] | None = None
    gen: int = 0
    old_gens: list[int] = field(default_factory=list)
    messages: int = 0
    initial_done: bool = False
    progress: dict[str, int] | None = None
    last_sync_at: str | None = None
    flaps: list[str] = field(default_factory=list)  # last UIDVALIDITY changes (domain.flaps)


@dataclass
class Writes:
    """Everything one batch changes, committed by the store in a crash-safe order."""

    raw: dict[str, bytes] = field(default_factory=dict)  # S3 key -> MIME
    refs: dict[str, str] = field(default_factory=dict)  # ref hash -> thread id
    threads_put: dict[str, ThreadDoc] = field(default_factory=dict)
    threads_delete: set[str] = field(default_factory=set)
    messages_put: dict[str, MessageDoc] = field(default_factory=dict)
    messages_delete: set[str] = field(default_factory=set)
    locations_put: list[tuple[str, int, str, str]] = field(default_factory=list)  # folder, gen, ref, mid
    locations_delete: list[tuple[str, int, str]] = field(default_factory=list)
    orphans_add: set[str] = field(default_factory=set)
    orphans_remove: set[str] = field(default_factory=set)
    s3_delete: list[str] = field(default_factory=list)
    links_put: list[Link] = field(default_factory=list)  # contact-history entries
    links_delete: list[tuple[str, str, str]] = field(default_factory=list)  # contact, received, mid
    addresses_put: list[tuple[str, str, str]] = field(default_factory=list)  # email, received, mid
    addresses_delete: list[tuple[str, str, str]] = field(default_factory=list)

    def empty(self) -> bool:
        return not any(
            (
                self.raw,
                self.refs,
                self.threads_put,
                self.threads_delete,
                self.messages_put,
                self.messages_delete,
                self.locations_put,
                self.locations_delete,
                self.orphans_add,
                self.orphans_remove,
            )
        )


class MirrorStore(Protocol):
    """Storage port of the engine (DynamoDB + S3 in ``store.mirror``)."""

    def raw_key(self, mid: str) -> str: ...

    def object_keys(self, doc: MessageDoc) -> list[str]:
        """Every stored object of a message (raw MIME and what derives from it)."""
        ...

    def get_locations(self, folder: str, gen: int, refs: list[str]) -> dict[str, str]: ...

    def list_locations(self, folder: str, gen: int | None = None) -> Iterator[tuple[int, str, str]]: ...

    def get_messages(self, mids: Iterable[str]) -> dict[str, MessageDoc]: ...

    def iter_messages(self, page_size: int) -> Iterator[list[MessageDoc]]:
        """Every message of the account, a page at a time (the exclusion pass)."""
        ...

    def get_refs(self, hashes: Iterable[str]) -> dict[str, str]: ...

    def get_threads(self, thread_ids: Iterable[str]) -> dict[str, ThreadDoc]: ...

    def contacts_for(self, addresses: Iterable[str]) -> dict[str, dict[str, str]]:
        """{address: {contact_id: kind}} for the addresses some contact has."""
        ...

    def assigns_bulk(self) -> bool:
        """Whether the tenant auto-assigns bulk mail (``PATCH /v1/tenant/settings``)."""
        ...

    def commit(self, writes: Writes) -> None: ...

    def list_orphans(self) -> list[str]: ...

    def get_folders(self) -> dict[str, FolderState]: ...

    def save_folder(self, state: FolderState) -> None: ...

    def delete_folder(self, name: str) -> None: ...

    def lock(self) -> AbstractContextManager[None]:
        """Exclusive use of the account's mirror (reentrant): a sync and the mail client
        both read, merge and write the same message items."""
        ...


@dataclass
class SyncReport:
    folders_synced: int = 0
    new: int = 0
    updated: int = 0
    removed: int = 0
    purged: int = 0
    # Refs of new mails not mirrored: an exclusion rule matched (domain.exclusions).
    excluded: set[str] = field(default_factory=set)
    complete: bool = True  # False when the time budget ran out; re-run to continue
    gone_folders: list[str] = field(default_factory=list)
    # Folders whose sync failed while the others went on (folder name -> the provider error).
    folder_errors: dict[str, ProviderError] = field(default_factory=dict)
