"""The IMAP side of the benchmark: a Dovecot of its own, filling it, and the raw protocol limit."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bench.mailgen import Mail
from bench.timing import settled_heap
from mailsync_local.dovecot import Dovecot

RAW_FETCH_BATCH = 500


def fill(dovecot: Dovecot, user: str, folder: str, mails: Sequence[Mail]) -> list[int]:
    """APPEND every mail over one connection (flags and INTERNALDATE set); returns the UIDs.

    One round trip per mail (~2 ms on loopback); writing maildir files directly would be
    faster but would move Dovecot's indexing cost into the first measured sync.
    """
    uids: list[int] = []
    with dovecot.client(user) as c:
        for m in mails:
            resp = c.append(folder, m.raw, flags=(b"\\Seen",) if m.seen else (), msg_time=m.date)
            text = resp.decode() if isinstance(resp, bytes) else str(resp)
            uids.append(int(text.split("[APPENDUID ", 1)[1].split("]", 1)[0].split()[1]))
    return uids


def raw_fetch(
    dovecot: Dovecot, user: str, folder: str = "INBOX", batch: int = RAW_FETCH_BATCH, ours: bool = False
) -> dict[str, Any]:
    """The protocol limit: one connection, every body in FETCHes of ``batch`` UIDs, nothing stored.

    (a) reads the responses with imapclient; (a') (``ours``) with the engine's own FETCH
    reader (``mailsync.providers.imap.fetch.read_fetch``), the code the engine runs.
    """
    from mailsync.providers.imap.fetch import read_fetch
    from mailsync.providers.imap.uidset import compress_uids

    with settled_heap():
        t0 = time.perf_counter()
        cpu0 = time.process_time()
        sizes: list[int] = []
        with dovecot.client(user) as c:
            c.select_folder(folder, readonly=True)
            uids = sorted(c.search("ALL"))
            imap = c._imap
            for i in range(0, len(uids), batch):
                if not ours:
                    sizes += [
                        len(item[b"BODY[]"])
                        for item in c.fetch(uids[i : i + batch], ["BODY.PEEK[]"]).values()
                    ]
                    continue
                for chunk in compress_uids(uids[i : i + batch]):
                    tag = imap._command("UID", "FETCH", chunk, "(BODY.PEEK[])")
                    sizes += [
                        len(item.raw or b"") for item in read_fetch(imap.readline, imap.read, tag).values()
                    ]
                    imap.tagged_commands.pop(tag, None)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "messages": len(sizes),
        "bytes": sum(sizes),
    }
