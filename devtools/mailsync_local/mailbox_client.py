"""What a test (or the demo) does to a test server's mailbox, as a mail client would: append,
move, copy, delete, flag and list, over a fresh IMAPClient login each time.

One implementation for every server we start (Dovecot here, Cyrus, Courier and Mailutils in
``tests/support/imap_servers.py``). Where a server lacks an extension the commands fall back
to what RFC 3501 alone offers: MOVE (RFC 6851) becomes COPY + ``\\Deleted`` + EXPUNGE, a
missing APPENDUID (RFC 4315) is replaced by the folder's highest UID, and UID EXPUNGE (RFC
4315) by a plain EXPUNGE (the test folders hold no other ``\\Deleted`` mail).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime

from imapclient import IMAPClient

_APPENDUID_RE = re.compile(rb"\[APPENDUID \d+ (\d+)\]", re.IGNORECASE)


class MailboxClient:
    """Mixin: the host needs ``host``, ``port`` and ``credentials(user) -> (login, password)``."""

    host: str
    port: int

    def credentials(self, user: str) -> tuple[str, str]:
        raise NotImplementedError

    def client(self, user: str) -> IMAPClient:
        login, password = self.credentials(user)
        c = IMAPClient(self.host, self.port, ssl=False, timeout=15)
        c.normalise_times = False
        c.login(login, password)
        return c

    def append(
        self,
        user: str,
        folder: str,
        raw: bytes,
        flags: Sequence[str | bytes] = (),
        internal_date: datetime | None = None,
    ) -> int:
        """APPEND one message and return its UID."""
        with self.client(user) as c:
            return _append(c, folder, raw, flags, internal_date)

    def append_many(
        self,
        user: str,
        folder: str,
        raws: Iterable[bytes],
        flags: Sequence[str | bytes] = (),
        internal_date: datetime | None = None,
    ) -> list[int]:
        """APPEND several messages over one connection; returns their UIDs."""
        with self.client(user) as c:
            return [_append(c, folder, raw, flags, internal_date) for raw in raws]

    def move(self, user: str, src: str, uids: Iterable[int], dst: str) -> None:
        uids = list(uids)
        with self.client(user) as c:
            c.select_folder(src)
            if c.has_capability("MOVE"):
                c.move(uids, dst)
                return
            c.copy(uids, dst)
            _expunge(c, uids)

    def copy(self, user: str, src: str, uids: Iterable[int], dst: str) -> None:
        with self.client(user) as c:
            c.select_folder(src)
            c.copy(list(uids), dst)

    def delete(self, user: str, folder: str, uids: Iterable[int]) -> None:
        """Flag ``\\Deleted`` and expunge these UIDs."""
        with self.client(user) as c:
            c.select_folder(folder)
            _expunge(c, list(uids))

    def set_flag(self, user: str, folder: str, uids: Iterable[int], flag: bytes, on: bool) -> None:
        with self.client(user) as c:
            c.select_folder(folder)
            if on:
                c.add_flags(list(uids), [flag], silent=True)
            else:
                c.remove_flags(list(uids), [flag], silent=True)

    def set_seen(self, user: str, folder: str, uids: Iterable[int], seen: bool) -> None:
        self.set_flag(user, folder, uids, b"\\Seen", seen)

    def uids(self, user: str, folder: str) -> list[int]:
        with self.client(user) as c:
            c.select_folder(folder, readonly=True)
            return sorted(c.search("ALL"))

    def create_folder(self, user: str, folder: str) -> None:
        with self.client(user) as c:
            c.create_folder(folder)


def _append(
    c: IMAPClient, folder: str, raw: bytes, flags: Sequence[str | bytes], internal_date: datetime | None
) -> int:
    resp = c.append(folder, raw, flags=tuple(flags), msg_time=internal_date)
    m = _APPENDUID_RE.search(resp if isinstance(resp, bytes) else str(resp).encode())
    if m:
        return int(m.group(1))
    c.select_folder(folder, readonly=True)
    return int(max(c.search("ALL")))


def _expunge(c: IMAPClient, uids: list[int]) -> None:
    c.add_flags(uids, [b"\\Deleted"], silent=True)
    if c.has_capability("UIDPLUS"):
        c.uid_expunge(uids)
    else:
        c.expunge()
