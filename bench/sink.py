"""(e): a :class:`mailsync.domain.sync.MirrorStore` that discards what it is given.

The engine still fetches, parses, threads and batches exactly as with the real store;
only the storage round trips are gone. To keep the engine on its real code paths the
sink remembers the few small keys a store answers reads from (folder states, locations
and thread refs), so a second sync sees a consistent mirror; message and thread
documents and S3 objects are dropped (counted only).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

from mailsync.domain.sync import FolderState, Writes
from mailsync.store import blobs


class NullStore:
    def __init__(self, tenant_id: str = "bench", account_id: str = "sink") -> None:
        self.prefix = f"t/{tenant_id}/a/{account_id}/m/"
        self.folders: dict[str, FolderState] = {}
        self.locations: dict[tuple[str, int, str], str] = {}
        self.refs: dict[str, str] = {}
        self.commits = 0
        self.messages_put = 0
        self.blob_bytes = 0

    def raw_key(self, mid: str) -> str:
        return f"{self.prefix}{mid}.eml"

    def object_keys(self, doc: dict[str, Any]) -> list[str]:
        return blobs.message_keys(doc)

    def get_locations(self, folder: str, gen: int, refs: list[str]) -> dict[str, str]:
        return {r: self.locations[(folder, gen, r)] for r in refs if (folder, gen, r) in self.locations}

    def list_locations(self, folder: str, gen: int | None = None) -> Iterator[tuple[int, str, str]]:
        for (f, g, r), mid in list(self.locations.items()):
            if f == folder and (gen is None or g == gen):
                yield g, r, mid

    def get_messages(self, mids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {}

    def iter_messages(self, page_size: int) -> Iterator[list[dict[str, Any]]]:
        return iter(())

    def get_refs(self, hashes: Iterable[str]) -> dict[str, str]:
        return {h: self.refs[h] for h in hashes if h in self.refs}

    def get_threads(self, thread_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        return {}

    def contacts_for(self, addresses: Iterable[str]) -> dict[str, dict[str, str]]:
        return {}

    def commit(self, writes: Writes) -> None:
        self.commits += 1
        self.messages_put += len(writes.messages_put)
        self.blob_bytes += sum(len(b) for b in writes.raw.values())
        self.refs.update(writes.refs)
        for folder, gen, ref, mid in writes.locations_put:
            self.locations[(folder, gen, ref)] = mid
        for folder, gen, ref in writes.locations_delete:
            self.locations.pop((folder, gen, ref), None)

    def list_orphans(self) -> list[str]:
        return []

    def get_folders(self) -> dict[str, FolderState]:
        return {k: replace(v) for k, v in self.folders.items()}

    def save_folder(self, state: FolderState) -> None:
        self.folders[state.name] = replace(state)

    def delete_folder(self, name: str) -> None:
        self.folders.pop(name, None)

    def lock(self) -> nullcontext[None]:
        return nullcontext()  # one engine, one thread: nothing to exclude
