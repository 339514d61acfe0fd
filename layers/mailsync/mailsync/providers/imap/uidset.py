"""UID sets (RFC 3501 section 9, ``sequence-set``): the codec of every command argument and cursor field.

Invariants
----------
* :func:`compress_uids` sorts and de-duplicates, then writes ranges (``1:5,7,9:12``) in chunks
  of at most :data:`MAX_UID_SET_LEN` characters, so that no command line exceeds about 4 KB;
  each chunk is a valid set for one command. No UIDs give no chunk.
* :func:`format_uid_set` is the unchunked form stored in cursors (``known``/``unread``), and
  :func:`parse_uid_set` reads it back (sorted, unique; ``*`` is refused): the two round-trip.
* :func:`_parse_vanished` reads the set of ``* VANISHED [(EARLIER)]`` (RFC 7162 section 3.2.10);
  :func:`_expand_ordered` keeps the server's order, which COPYUID (RFC 4315 section 3) uses to
  pair source and target UIDs by position.

Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from mailsync.providers.imap.util import to_text

__all__ = ["MAX_UID_SET_LEN", "compress_uids", "format_uid_set", "in_chunks", "parse_uid_set"]

MAX_UID_SET_LEN = 3800  # chars of one UID set in a command; keeps lines below ~4 KB


def _ranges(uids: Iterable[int]) -> Iterator[str]:
    ordered = sorted(set(uids))
    i = 0
    while i < len(ordered):
        start = end = ordered[i]
        while i + 1 < len(ordered) and ordered[i + 1] == end + 1:
            i += 1
            end = ordered[i]
        yield str(start) if start == end else f"{start}:{end}"
        i += 1


def compress_uids(uids: Iterable[int], max_len: int = MAX_UID_SET_LEN) -> list[str]:
    """Compress UIDs to IMAP sequence sets (``1:5,7,9:12``), chunked to ``max_len`` chars.

    The UIDs are sorted and de-duplicated; each chunk is a valid set for one command.
    No UIDs give an empty list.
    """
    if max_len < 1:
        raise ValueError("max_len must be positive")
    chunks: list[str] = []
    current = ""
    for part in _ranges(uids):
        if len(part) > max_len:  # a single range longer than max_len cannot be split usefully
            raise ValueError(f"max_len {max_len} too small for {part!r}")
        if current and len(current) + 1 + len(part) > max_len:
            chunks.append(current)
            current = part
        else:
            current = f"{current},{part}" if current else part
    if current:
        chunks.append(current)
    return chunks


def format_uid_set(uids: Iterable[int]) -> str:
    """One compressed UID set without chunking (for cursors); ``""`` for no UIDs."""
    return ",".join(_ranges(uids))


def parse_uid_set(text: str | bytes) -> list[int]:
    """Parse ``"1:3,7"`` into ``[1, 2, 3, 7]`` (sorted, unique). ``*`` is not allowed."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    out: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        lo, sep, hi = part.partition(":")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"invalid UID set element {part!r}")
        a = int(lo)
        b = int(hi) if sep else a
        if a < 1 or b < 1:
            raise ValueError(f"UIDs start at 1: {part!r}")
        if a > b:
            a, b = b, a
        out.update(range(a, b + 1))
    return sorted(out)


def in_chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in consecutive lists of at most ``size``."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _parse_vanished(line: object) -> list[int]:
    """UIDs of one ``* VANISHED [(EARLIER)] <uid-set>`` response (as stored by imaplib)."""
    text = to_text(line[0] if isinstance(line, tuple) else line).strip()
    if text.upper().startswith("(EARLIER)"):
        text = text[len("(EARLIER)") :].strip()
    return parse_uid_set(text) if text else []


def _expand_ordered(text: str) -> list[int]:
    """Expand a COPYUID set keeping the server's order (it pairs source and target by position)."""
    out: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.partition(":")
        a, b = int(lo), int(hi) if sep else int(lo)
        out.extend(range(a, b + 1) if a <= b else range(a, b - 1, -1))
    return out
