"""Gmail labels as folders.

References: ``users.labels.list`` and ``users.getProfile``
(https://developers.google.com/gmail/api/reference/rest/v1/users.labels, .../users/getProfile).

Folders
-------
Labels are folders. :meth:`GmailProvider.list_folders` returns every label except TRASH, SPAM,
DRAFT, UNREAD, STARRED, IMPORTANT, CHAT and the CATEGORY_* labels; the folder *name* is the
label's display name (system labels: their id, e.g. ``INBOX``), roles ``inbox``/``sent`` for
INBOX/SENT; names are mapped to label ids internally. A location is ``(label name, message
id)``: Gmail ids are stable, so a label change between synced labels keeps every ref, and the
engine's Message-ID identity keeps the mirrored id, thread and links. A mail carrying TRASH or
SPAM is in no folder (archiving = removing INBOX; trashing removes it everywhere).

Invariant: :func:`_in_folder` is the one rule of folder membership (the label, and none of
TRASH/SPAM/DRAFT), used by the initial load and the history walk alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mailsync.domain.ports import FolderGone, FolderInfo
from mailsync.providers.gmail.client import GmailClient

__all__ = ["HIDDEN_LABELS", "NOT_IN_FOLDERS", "ROLES", "GmailLabels"]

HIDDEN_LABELS = frozenset({"TRASH", "SPAM", "DRAFT", "UNREAD", "STARRED", "IMPORTANT", "CHAT"})
NOT_IN_FOLDERS = frozenset({"TRASH", "SPAM", "DRAFT"})  # a mail with one of these is in no folder
ROLES = {"INBOX": "inbox", "SENT": "sent"}


def _in_folder(labels: Iterable[str], label_id: str) -> bool:
    ls = set(labels)
    return label_id in ls and not (ls & NOT_IN_FOLDERS)


class GmailLabels(GmailClient):
    """Labels and the profile of a Gmail session."""

    def profile(self) -> dict[str, Any]:
        """``users.getProfile``: emailAddress, messagesTotal, threadsTotal, historyId."""
        return dict(self._call("profile", "GET", "profile"))

    def labels(self) -> list[dict[str, Any]]:
        data = self._call("labels.list", "GET", "labels")
        self._label_list = list(data.get("labels") or [])
        self._labels = {str(lab["name"]): str(lab["id"]) for lab in self._label_list}
        return self._label_list

    def list_folders(self) -> list[FolderInfo]:
        out = []
        for lab in self.labels():
            lid = str(lab["id"])
            if lid in HIDDEN_LABELS or lid.startswith("CATEGORY_"):
                continue
            out.append(FolderInfo(name=str(lab["name"]), role=ROLES.get(lid)))
        return sorted(out, key=lambda f: (f.role != "inbox", f.name))

    def label_id(self, folder: str) -> str:
        """The label id of a folder name; :class:`FolderGone` when no such label exists."""
        if self._labels is None or folder not in self._labels:
            self.labels()
        assert self._labels is not None
        lid = self._labels.get(folder)
        if lid is None or lid in HIDDEN_LABELS or lid.startswith("CATEGORY_"):
            raise FolderGone(f"label {folder!r} does not exist")
        return lid
