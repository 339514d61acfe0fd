"""Write-through of the mail client: STORE ``\\Seen``, MOVE, EXPUNGE, APPEND on the server.

Protocols: STORE (RFC 3501 section 6.4.6), MOVE (RFC 6851), UIDPLUS (RFC 4315: ``UID EXPUNGE``,
COPYUID, APPENDUID), APPEND (RFC 3501 section 6.3.11, ``[TRYCREATE]``).

Invariants
----------
* A write SELECTs its folder read-write (sync only ever EXAMINEs); flags are changed with
  ``.SILENT`` so the server does not echo them.
* Only the named UIDs are ever expunged (:meth:`WriteThrough._expunge_exactly`). With UIDPLUS
  that is ``UID EXPUNGE`` (RFC 4315 section 2.1). Without it (GNU Mailutils imap4d offers
  neither MOVE nor UIDPLUS) a plain EXPUNGE (RFC 3501 section 6.4.3) removes *every* mail
  flagged ``\\Deleted``, also those another client flagged and has not expunged yet. So the
  session first asks ``UID SEARCH DELETED``; mails other than ours that carry ``\\Deleted``
  have the flag taken off for the EXPUNGE and put back right after (the way a client without
  UIDPLUS expunges only chosen mails; refusing instead left such users unable to move or
  delete at all). A connection lost between the two leaves those mails *without*
  ``\\Deleted``: kept, never lost. A third client that flags a mail in the one round trip
  between the SEARCH and the EXPUNGE can still see it expunged; only UIDPLUS closes that window.
* A move without MOVE (RFC 6851 section 3.3) is ``UID COPY`` + ``\\Deleted`` + the expunge above.
* UID sets are chunked (:func:`~mailsync.providers.imap.uidset.compress_uids`), so no command
  line exceeds about 4 KB. An empty set sends nothing.
* ``move`` returns ``{old_uid: new_uid}`` from COPYUID when the server reports it, else ``{}``;
  ``append`` returns the APPENDUID, else the UID that a Message-ID search finds, else None; a
  missing target folder is :class:`FolderGone`.
"""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterable
from datetime import datetime
from email import policy
from email.parser import BytesHeaderParser

from mailsync.domain.ports import FolderGone
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

        Uses ``UID MOVE`` (RFC 6851) or, without MOVE, ``UID COPY`` + ``\\Deleted`` + an
        expunge of exactly these UIDs (:meth:`_expunge_exactly`). Every chunk is copied
        before anything is expunged, so a failure part-way leaves a copy, never a loss.
        """
        uid_list = sorted({int(u) for u in uids})
        if not uid_list:
            return {}
        mapping: dict[int, int] = {}
        with self._errors():
            has_move = b"MOVE" in self._caps
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
                mapping.update(_parse_copyuid(texts))
            if not has_move:
                self._expunge_exactly(uid_list)
        return mapping

    def delete(self, folder: str, uids: Iterable[int | str]) -> None:
        """Permanently remove ``uids`` from ``folder``: ``\\Deleted`` + an expunge of exactly
        these UIDs (:meth:`_expunge_exactly`; ``UID EXPUNGE`` with UIDPLUS, RFC 4315)."""
        uid_list = sorted({int(u) for u in uids})
        if not uid_list:
            return
        with self._errors():
            self._open_rw(folder)
            self._expunge_exactly(uid_list)

    def _expunge_exactly(self, uid_list: list[int]) -> None:
        """Flag ``uid_list`` ``\\Deleted`` in the selected folder and expunge them and no other.

        With UIDPLUS: ``UID STORE +FLAGS.SILENT (\\Deleted)`` and ``UID EXPUNGE`` per chunk (2
        commands). Without it: ``UID SEARCH DELETED``; other flagged mails get ``-FLAGS``,
        ours ``+FLAGS``, one ``EXPUNGE`` (RFC 3501 section 6.4.3), and the others get their
        ``\\Deleted`` back (in ``finally``, so also after a refused EXPUNGE): 3 commands, 5
        when another client had flagged mails. See the module docstring for the one race left.
        """
        client = self._conn
        if b"UIDPLUS" in self._caps:
            for chunk in compress_uids(uid_list):
                client._command_and_check("store", chunk, "+FLAGS.SILENT", "(\\Deleted)", uid=True)
                client._command_and_check("expunge", chunk, uid=True)
            return
        others = sorted(set(self._search(["DELETED"])) - set(uid_list))
        for chunk in compress_uids(others):
            client._command_and_check("store", chunk, "-FLAGS.SILENT", "(\\Deleted)", uid=True)
        try:
            for chunk in compress_uids(uid_list):
                client._command_and_check("store", chunk, "+FLAGS.SILENT", "(\\Deleted)", uid=True)
            client._command_and_check("expunge", unpack=True)
        finally:
            for chunk in compress_uids(others):
                client._command_and_check("store", chunk, "+FLAGS.SILENT", "(\\Deleted)", uid=True)

    def append(
        self,
        folder: str,
        raw: bytes,
        flags: Iterable[str] = (),
        date: datetime | None = None,
    ) -> int | None:
        """APPEND ``raw`` to ``folder``; returns the new UID (APPENDUID or :meth:`_find_appended`)."""
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
        if m:
            return int(m.group(2))
        return self._find_appended(folder, raw)

    def _find_appended(self, folder: str, raw: bytes) -> int | None:
        """The UID of a mail just APPENDed to a server without UIDPLUS (no APPENDUID, RFC 4315
        section 3): ``UID SEARCH HEADER Message-ID`` (RFC 3501 section 6.4.4) in an EXAMINEd
        ``folder``, the highest match (UIDs ascend, so the copy just added). Costs EXAMINE plus
        one SEARCH; None when the mail has no Message-ID or the server does not find it."""
        header = BytesHeaderParser(policy=policy.compat32).parsebytes(raw).get("Message-ID")
        message_id = str(header or "").strip()
        if not message_id or any(c in message_id for c in '"\\\r\n'):
            return None
        with self._errors():
            self._open(folder, readonly=True)
            found = self._search(["HEADER", "Message-ID", message_id])
        return max(found) if found else None


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
