"""Write-through of the mail client: STORE ``\\Seen``, MOVE, EXPUNGE, APPEND on the server.

Protocols: STORE (RFC 3501 section 6.4.6), MOVE (RFC 6851), UIDPLUS (RFC 4315: ``UID EXPUNGE``,
COPYUID, APPENDUID), APPEND (RFC 3501 section 6.3.11, ``[TRYCREATE]``).

Invariants
----------
* A write SELECTs its folder read-write (sync only ever EXAMINEs); flags are changed with
  ``.SILENT`` so the server does not echo them.
* Only the named UIDs are ever expunged: a delete, and a move without MOVE (``UID COPY`` +
  ``\\Deleted`` + ``UID EXPUNGE``), need UIDPLUS and are refused without it, since a plain
  EXPUNGE could remove other mails the user flagged ``\\Deleted``.
* UID sets are chunked (:func:`~mailsync.providers.imap.uidset.compress_uids`), so no command
  line exceeds about 4 KB. An empty set sends nothing.
* ``move`` returns ``{old_uid: new_uid}`` from COPYUID when the server reports it, else ``{}``;
  ``append`` returns the APPENDUID or None; a missing target folder is :class:`FolderGone`.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterable
from datetime import datetime

from mailsync.domain.ports import FolderGone, ProviderError
from mailsync.providers.imap.connection import ImapConnection
from mailsync.providers.imap.uidset import _expand_ordered, compress_uids
from mailsync.providers.imap.util import server_message, to_text

__all__ = ["WriteThrough"]

_APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)
_COPYUID_RE = re.compile(rb"\[COPYUID (\d+) ([0-9:,]+) ([0-9:,]+)\]", re.IGNORECASE)


class WriteThrough(ImapConnection):
    """The mail-client operations of an IMAP session (see the module docstring)."""

    def _open_rw(self, folder: str) -> None:
        if self._selected != (folder, False):
            self._open(folder, readonly=False)

    def set_seen(self, folder: str, uids: Iterable[int], seen: bool) -> None:
        """Add or remove ``\\Seen`` on ``uids`` in ``folder``."""
        uid_list = sorted({int(u) for u in uids})
        if not uid_list:
            return
        with self._errors():
            self._open_rw(folder)
            for chunk in compress_uids(uid_list):
                op = "+FLAGS.SILENT" if seen else "-FLAGS.SILENT"
                self._conn._command_and_check("store", chunk, op, "(\\Seen)", uid=True)

    def move(self, folder: str, uids: Iterable[int], dest: str) -> dict[int, int]:
        """Move ``uids`` from ``folder`` to ``dest``; returns ``{old_uid: new_uid}`` when the
        server reports COPYUID (UIDPLUS), else ``{}``.

        Uses ``UID MOVE`` (RFC 6851) or, without MOVE, ``UID COPY`` + ``\\Deleted`` +
        ``UID EXPUNGE`` of exactly these UIDs (needs UIDPLUS, RFC 4315).
        """
        uid_list = sorted({int(u) for u in uids})
        if not uid_list:
            return {}
        mapping: dict[int, int] = {}
        with self._errors():
            has_move = b"MOVE" in self._caps
            if not has_move and b"UIDPLUS" not in self._caps:
                raise ProviderError("the server supports neither MOVE nor UIDPLUS; cannot move safely")
            self._open_rw(folder)
            client = self._conn
            imap = client._imap
            for chunk in compress_uids(uid_list):
                imap.untagged_responses.pop("OK", None)
                if has_move:
                    typ, data = imap.uid("MOVE", chunk, client._normalise_folder(dest))
                    client._checkok("move", typ, data)
                    texts = list(data) + list(imap.untagged_responses.pop("OK", []))
                else:
                    typ, data = imap.uid("COPY", chunk, client._normalise_folder(dest))
                    client._checkok("copy", typ, data)
                    texts = list(data)
                    client._command_and_check("store", chunk, "+FLAGS.SILENT", "(\\Deleted)", uid=True)
                    client._command_and_check("expunge", chunk, uid=True)
                mapping.update(_parse_copyuid(texts))
        return mapping

    def delete(self, folder: str, uids: Iterable[int | str]) -> None:
        """Permanently remove ``uids`` from ``folder``: ``\\Deleted`` + ``UID EXPUNGE``.

        ``UID EXPUNGE`` (UIDPLUS, RFC 4315) touches exactly these UIDs; without it a
        plain EXPUNGE could remove other mails the user flagged, so we refuse.
        """
        uid_list = sorted({int(u) for u in uids})
        if not uid_list:
            return
        with self._errors():
            if b"UIDPLUS" not in self._caps:
                raise ProviderError("the server lacks UIDPLUS; cannot expunge single messages safely")
            self._open_rw(folder)
            for chunk in compress_uids(uid_list):
                self._conn._command_and_check("store", chunk, "+FLAGS.SILENT", "(\\Deleted)", uid=True)
                self._conn._command_and_check("expunge", chunk, uid=True)

    def append(
        self,
        folder: str,
        raw: bytes,
        flags: Iterable[str] = (),
        date: datetime | None = None,
    ) -> int | None:
        """APPEND ``raw`` to ``folder``; returns the new UID (APPENDUID) or None."""
        with self._errors():
            try:
                resp = self._conn.append(folder, raw, flags=tuple(flags), msg_time=date)
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as e:
                msg = server_message(e)
                if "[TRYCREATE]" in msg.upper():
                    raise FolderGone(f"{folder}: {msg}") from e
                raise
        m = _APPENDUID_RE.search(resp if isinstance(resp, bytes) else str(resp).encode())
        return int(m.group(2)) if m else None


def _parse_copyuid(texts: Iterable[object]) -> dict[int, int]:
    for t in texts:
        data = t if isinstance(t, bytes) else to_text(t).encode()
        m = _COPYUID_RE.search(data)
        if m:
            src = _expand_ordered(m.group(2).decode())
            dst = _expand_ordered(m.group(3).decode())
            if len(src) == len(dst):
                return dict(zip(src, dst, strict=True))
    return {}
