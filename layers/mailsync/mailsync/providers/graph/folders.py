"""Graph mail folders: display paths, ids and roles.

References (https://learn.microsoft.com/graph/...): ``api/resources/mailfolder``,
``api/user-list-mailfolders``, ``api/mailfolder-list-childfolders``, well-known folder names
(``inbox``, ``sentitems``, ``deleteditems``, ``drafts``, ``junkemail``, ``archive``, ``outbox``).

Folders
-------
:meth:`GraphProvider.list_folders` lists every mail folder (``/me/mailFolders`` and, recursively,
``childFolders``, all pages). A folder's *name* is its display path ("Inbox",
"Archive/2024"); the id is mapped internally. Roles come from one ``$batch`` of well-known
name look-ups (``inbox``→inbox, ``sentitems``→sent, ``deleteditems``→trash,
``junkemail``→junk, ``drafts``→drafts, ``archive``→archive); the Outbox is listed as not
selectable. (v1.0 has no ``wellKnownName`` property; the look-ups are the documented way.)

Invariant: the folder map (display path -> resource) is loaded once per session and reloaded
when a name is not in it (or a folder answered 404); the well-known roles are looked up once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from mailsync.domain.ports import FolderGone, FolderInfo
from mailsync.providers.graph.client import GraphClient

__all__ = ["ROLE_BY_WELL_KNOWN", "GraphFolders"]

ROLE_BY_WELL_KNOWN = {
    "inbox": "inbox",
    "sentitems": "sent",
    "deleteditems": "trash",
    "junkemail": "junk",
    "drafts": "drafts",
    "archive": "archive",
    "outbox": None,  # listed, never synced (transient)
}


class GraphFolders(GraphClient):
    """The mail folders of a Graph session (see the module docstring)."""

    def _load_folders(self) -> dict[str, dict[str, Any]]:
        folders: dict[str, dict[str, Any]] = {}

        def walk(items: Iterable[dict[str, Any]], prefix: str) -> None:
            for f in items:
                name = f"{prefix}{f.get('displayName') or ''}"
                folders[name] = dict(f)
                if int(f.get("childFolderCount") or 0) > 0:
                    walk(
                        self._pages(
                            f"me/mailFolders/{quote(str(f['id']), safe='')}/childFolders",
                            {"$top": self.page_size},
                        ),
                        name + "/",
                    )

        walk(self._pages("me/mailFolders", {"$top": self.page_size}), "")
        if not self._roles:
            names = list(ROLE_BY_WELL_KNOWN)
            replies = self._batch(
                [{"method": "GET", "url": f"/me/mailFolders/{n}?$select=id"} for n in names]
            )
            for n, rep in zip(names, replies, strict=True):
                if rep.status == 200 and isinstance(rep.body, dict) and rep.body.get("id"):
                    self._roles[str(rep.body["id"])] = n
        self._folders = folders
        return folders

    def list_folders(self) -> list[FolderInfo]:
        out = []
        for name, f in self._load_folders().items():
            wk = self._roles.get(str(f["id"]))
            out.append(
                FolderInfo(
                    name=name,
                    role=ROLE_BY_WELL_KNOWN.get(wk) if wk else None,
                    messages=int(f["totalItemCount"]) if f.get("totalItemCount") is not None else None,
                    selectable=wk != "outbox",
                )
            )
        return sorted(out, key=lambda f: (f.role != "inbox", f.name.lower()))

    def folder(self, name: str) -> dict[str, Any]:
        """The folder resource of a display path; :class:`FolderGone` when there is none."""
        if self._folders is None or name not in self._folders:
            self._load_folders()
        assert self._folders is not None
        f = self._folders.get(name)
        if f is None:
            raise FolderGone(f"mail folder {name!r} does not exist")
        return f

    def folder_id(self, name: str) -> str:
        return str(self.folder(name)["id"])

    def _dest_id(self, dest: str) -> str:
        if dest.lower() in ROLE_BY_WELL_KNOWN:
            return dest.lower()
        return self.folder_id(dest)
