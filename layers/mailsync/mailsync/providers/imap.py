"""IMAP adapter: :class:`ImapProvider` implements :class:`mailsync.domain.ports.MailProvider`.

Protocols: IMAP4rev1 (RFC 3501), CONDSTORE/QRESYNC (RFC 7162), SPECIAL-USE
mailboxes (RFC 6154), MOVE (RFC 6851), UIDPLUS (RFC 4315), ENABLE (RFC 5161),
LIST-EXTENDED/LIST-STATUS (RFC 5258, RFC 5819).

Invariants
----------
* A message location is ``(folder, str(uid))``. UIDs are only meaningful together
  with the folder's UIDVALIDITY, which every cursor stores; when it changes the
  folder's first batch starts with :class:`Reset` followed by a fresh initial load.
* Mails synced are those whose INTERNALDATE is at or after ``since`` (exact, not
  day-granular). ``SEARCH SINCE`` is day-granular and in the server's or message's
  time zone, so the search looks one day early and the few mails of the boundary
  days (``SEARCH SINCE d-1 BEFORE d+2``) get their INTERNALDATE checked before any
  body is downloaded. Mails moved in from another folder keep their INTERNALDATE,
  so an old mail moved into a synced folder stays out.
* Bodies are fetched with ``BODY.PEEK[]``: syncing never marks mail as read.
  Folders are opened with EXAMINE (read-only) for syncing.
* Every :class:`ChangeBatch` holds at most ``batch_size`` bodies (or at most
  :data:`META_BATCH` flag/removal changes) and a cursor that is valid once that
  batch is stored: resuming from any intermediate cursor replays at most one
  batch and never skips a change. ``SetFlags``/``Remove`` may name locations the
  engine never stored (mails older than ``since``); the engine ignores those.
* ``ChangeBatch.done`` is False on every batch of a ``changes()`` call but the last
  (more batches follow: initial load, reload after ``Reset`` or a long delta), True
  on the last one, after which the folder is caught up.
* ``unread`` is ``\\Seen`` not in FLAGS; ``internal_date`` is timezone-aware UTC.
* No command line exceeds about 4 KB: UID sets are compressed to ranges and
  chunked (:func:`compress_uids`).

Cursor (JSON, ``v`` = 1)
------------------------
``{"v": 1, "mode": "qresync"|"plain", "phase": "initial"|"delta", "uidvalidity": int,
"uidnext": int, "modseq": int (qresync), "initial_done_uid": int (initial phase),
"exists": int, "known": uid-set, "unread": uid-set (plain)}``

``uidnext``/``modseq`` of an initial-phase cursor are the values at the start of
the load; the delta after it therefore catches everything that changed meanwhile.

Cost of a sync
--------------
* QRESYNC mode (server has CONDSTORE+QRESYNC, folder has MODSEQs): an unchanged
  folder costs one ``STATUS (UIDNEXT UIDVALIDITY HIGHESTMODSEQ)`` whatever its size.
  A changed folder costs EXAMINE, one ``UID FETCH 1:<uidnext-1> (FLAGS) (CHANGEDSINCE
  m VANISHED)`` (answer proportional to the changes), one ``UID FETCH <uidnext>:*
  (INTERNALDATE)`` when mail arrived, and one body FETCH per ``batch_size`` new mails.
* Plain mode (no CONDSTORE): every sync costs EXAMINE plus a FLAGS fetch of the
  newest :data:`FLAG_REFRESH_LIMIT` known UIDs (about 40 bytes per message), since
  IMAP4rev1 cannot report flag changes otherwise; read-state changes of older mails
  are not seen. New mail: one ``UID FETCH <uidnext>:* (INTERNALDATE)``. Deletions are
  detected by comparing EXISTS with the expected count; only on a mismatch one
  ``UID SEARCH SINCE`` (answer proportional to the mails in the window) finds them.
  The cursor carries the known and unread UID sets, compressed to ranges.
* One ``ENABLE QRESYNC`` per connection when the server offers it.
"""

from __future__ import annotations

import contextlib
import imaplib
import re
from collections.abc import Generator, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from imapclient import IMAPClient
from imapclient import exceptions as imap_exc
from imapclient.datetime_util import parse_to_datetime
from imapclient.imapclient import decode_utf7
from imapclient.response_parser import parse_fetch_response, parse_response

from mailsync.domain.clock import as_utc
from mailsync.domain.ports import (
    AuthFailed,
    Change,
    ChangeBatch,
    ConnectionFailed,
    FolderGone,
    FolderInfo,
    ProviderError,
    Remove,
    Reset,
    SetFlags,
    Upsert,
)

__all__ = [
    "ImapProvider",
    "compress_uids",
    "folder_infos",
    "format_uid_set",
    "imap_login_check",
    "parse_uid_set",
]

CURSOR_VERSION = 1
MAX_UID_SET_LEN = 3800  # chars of one UID set in a command; keeps lines below ~4 KB
META_BATCH = 1000  # SetFlags/Remove changes per batch
FLAG_REFRESH_LIMIT = 2000  # plain mode: newest known UIDs whose FLAGS are refreshed each sync
SECURITY_MODES = ("ssl", "starttls", "none")

_SEEN = b"\\Seen"

# RFC 6154 attributes (plus \Important from RFC 8457 and legacy XLIST \Spam).
_FLAG_ROLES = {
    b"\\sent": "sent",
    b"\\drafts": "drafts",
    b"\\trash": "trash",
    b"\\junk": "junk",
    b"\\spam": "junk",
    b"\\archive": "archive",
    b"\\all": "all",
    b"\\allmail": "all",
    b"\\flagged": "flagged",
    b"\\starred": "flagged",
    b"\\important": "important",
}

# Name fallbacks (last path component, case-insensitive) for servers without SPECIAL-USE.
_NAME_ROLES: dict[str, tuple[str, ...]] = {
    "sent": (
        "sent",
        "sent items",
        "sent messages",
        "sent mail",
        "gesendet",
        "gesendete objekte",
        "gesendete elemente",
        "envoyés",
        "éléments envoyés",
        "enviados",
        "posta inviata",
        "verzonden",
    ),
    "drafts": ("drafts", "draft", "entwürfe", "brouillons", "borradores", "bozze", "concepten"),
    "trash": (
        "trash",
        "deleted items",
        "deleted messages",
        "bin",
        "papierkorb",
        "gelöschte objekte",
        "gelöschte elemente",
        "corbeille",
        "papelera",
        "cestino",
        "prullenbak",
    ),
    "junk": ("junk", "spam", "junk e-mail", "junk email", "bulk mail", "spamverdacht", "indésirables"),
    "archive": ("archive", "archives", "archiv", "archivo", "archivio", "archief"),
}

_GONE_RE = re.compile(
    r"\[NONEXISTENT\]|does ?n[o']t exist|not exist|no such (mailbox|folder)|unknown mailbox|not found",
    re.IGNORECASE,
)
_APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) (\d+)\]", re.IGNORECASE)
_COPYUID_RE = re.compile(rb"\[COPYUID (\d+) ([0-9:,]+) ([0-9:,]+)\]", re.IGNORECASE)


# --------------------------------------------------------------------------------------------
# UID sets


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


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --------------------------------------------------------------------------------------------
# Provider


@dataclass
class _Box:
    """What SELECT/EXAMINE/STATUS told about a folder."""

    uidvalidity: int
    uidnext: int
    exists: int
    modseq: int | None


@dataclass
class _Fetched:
    uid: int
    flags: tuple[bytes, ...]
    internal_date: datetime | None
    raw: bytes | None


# One FETCH response (RFC 3501 §7.4.2 / RFC 9051 §7.5.2); literals are replaced by "{#i}".
_FETCH_RESPONSE = re.compile(rb"\* (\d+) FETCH \((.*)\)\r?\n?\Z", re.DOTALL)
_FETCH_ITEM = re.compile(
    rb'(UID|MODSEQ) \(?(\d+)\)?|FLAGS \(([^)]*)\)|INTERNALDATE "([^"]*)"'
    rb'|BODY\[\] (?:\{#(\d+)\}|"((?:[^"\\]|\\.)*)"|(NIL))',
    re.IGNORECASE,
)
_LITERAL_END = re.compile(rb"\{(\d+)\}\r\n\Z")
_UNTAGGED = re.compile(rb"\* (?:(\d+) )?([A-Za-z-]+)(?: (.*))?\r?\n?\Z", re.DOTALL)
_INTERNALDATE = re.compile(r" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")
_MONTHS = {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)}


def read_fetch(readline: Any, read: Any, tag: bytes, untagged: Any = None) -> dict[int, _Fetched]:
    """Read the responses to a ``UID FETCH`` up to its tagged completion.

    Returns ``{uid: _Fetched}`` for the FETCH responses that carry a UID (unsolicited
    ones without a UID are dropped, several responses for one UID are merged). Other
    untagged responses (EXISTS, EXPUNGE ...) go to ``untagged(type, data)`` as imaplib
    would keep them. Literals are read with one ``read(n)`` each and never scanned,
    which makes this reader several times cheaper per message than imaplib plus
    imapclient's generic parser; everything but BODY[] is a short regex match.
    Raises ``imaplib.IMAP4.error`` on NO/BAD and ``imaplib.IMAP4.abort`` on BYE/EOF.
    """
    out: dict[int, _Fetched] = {}
    done = tag + b" "
    while True:
        line = readline()
        if not line:
            raise imaplib.IMAP4.abort("socket error: EOF")
        if line.startswith(done):
            status, _, text = line[len(done) :].rstrip(b"\r\n").partition(b" ")
            if status.upper() != b"OK":
                raise imaplib.IMAP4.error(f"fetch failed: {_text(text)}")
            return out
        literals: list[bytes] = []
        while (end := _LITERAL_END.search(line)) is not None:
            literals.append(read(int(end.group(1))))
            line = line[: end.start()] + b"{#%d}" % (len(literals) - 1) + readline()
        match = _FETCH_RESPONSE.match(line)
        if match is None:
            other = _UNTAGGED.match(line)
            if other is None:
                continue  # "+" continuation or noise: nothing to keep
            kind = other.group(2).upper()
            if kind == b"BYE":
                raise imaplib.IMAP4.abort(_text(other.group(3) or b""))
            if untagged is not None:
                data = other.group(1) if other.group(1) else other.group(3)
                untagged(kind.decode("ascii"), data)
            continue
        uid = flags = idate = None
        body: bytes | None = None
        for item in _FETCH_ITEM.finditer(match.group(2)):
            name, number, flag_list, date_text, lit, quoted, _nil = item.groups()
            if name is not None and name.upper() == b"UID":
                uid = int(number)
            elif flag_list is not None:
                flags = tuple(flag_list.split())
            elif date_text is not None:
                idate = _internaldate(date_text.decode("ascii", "replace"))
            elif lit is not None:
                body = literals[int(lit)]
            elif quoted is not None:
                body = re.sub(rb"\\(.)", rb"\1", quoted)
        if uid is None:
            continue
        prev = out.get(uid)
        out[uid] = _Fetched(
            uid=uid,
            flags=flags if flags is not None else (prev.flags if prev else ()),
            internal_date=idate or (prev.internal_date if prev else None),
            raw=body if body is not None else (prev.raw if prev else None),
        )


def _internaldate(text: str) -> datetime | None:
    """RFC 3501 date-time (``"05-Mar-2024 14:30:00 +0100"``, day may be space-padded) in UTC."""
    m = _INTERNALDATE.fullmatch(text)
    month = _MONTHS.get(m.group(2).lower()) if m else None
    if m is None or month is None:
        try:
            return as_utc(parse_to_datetime(text.encode("ascii", "replace"), normalise=False))
        except (ValueError, TypeError):
            return None
    offset = timedelta(hours=int(m.group(8)), minutes=int(m.group(9)))
    if m.group(7) == "-":
        offset = -offset
    try:
        local = datetime(
            int(m.group(3)), month, int(m.group(1)), int(m.group(4)), int(m.group(5)), int(m.group(6))
        )
    except ValueError:
        return None
    return (local - offset).replace(tzinfo=UTC)


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _server_message(exc: BaseException) -> str:
    """The server's text of an imaplib/imapclient error, without Python reprs."""
    msg = str(exc)
    m = re.search(r"b'(.*)'|b\"(.*)\"", msg)
    if m:
        inner = m.group(1) if m.group(1) is not None else m.group(2)
        prefix = msg[: m.start()].strip()
        return f"{prefix} {inner}".strip()
    return msg


class ImapProvider:
    """A connected IMAP session for one mailbox (see the module docstring).

    ``commands`` lists the IMAP commands sent (``"LOGIN"``, ``"STATUS"``, ``"UID FETCH"``,
    ...); ``bytes_in``/``bytes_out`` count the bytes read/written after the greeting.
    """

    def __init__(
        self,
        host: str,
        port: int,
        security: str,
        username: str,
        password: str,
        timeout: float = 30.0,
        ssl_context: Any = None,
    ) -> None:
        if security not in SECURITY_MODES:
            raise ValueError(f"security must be one of {SECURITY_MODES}, not {security!r}")
        self.host = host
        self.port = int(port)
        self.security = security
        self.username = username
        self._password = password
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.commands: list[str] = []
        self.bytes_in = 0
        self.bytes_out = 0
        self._client: IMAPClient | None = None
        self._caps: frozenset[bytes] = frozenset()
        self._qresync = False
        self._selected: tuple[str, bool] | None = None  # (folder, readonly)

    @classmethod
    def from_settings(cls, settings: Any) -> ImapProvider:
        """Build from a mapping or object with ``host, port, security, username, password``
        and optionally ``timeout`` and ``ssl_context``."""

        def get(name: str, default: Any = None) -> Any:
            if isinstance(settings, Mapping):
                return settings.get(name, default)
            return getattr(settings, name, default)

        return cls(
            host=get("host"),
            port=int(get("port")),
            security=get("security", "ssl"),
            username=get("username"),
            password=get("password"),
            timeout=float(get("timeout", 30.0) or 30.0),
            ssl_context=get("ssl_context"),
        )

    # -- connection --------------------------------------------------------------------------

    def __enter__(self) -> ImapProvider:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def connect(self) -> None:
        if self._client is not None:
            return
        with self._errors():
            client = IMAPClient(
                self.host,
                self.port,
                ssl=self.security == "ssl",
                ssl_context=self.ssl_context,
                timeout=self.timeout,
            )
            self._client = client
            self._instrument(client)
            client.normalise_times = False
            if self.security == "starttls":
                if not client.has_capability("STARTTLS"):
                    raise ProviderError("the server does not offer STARTTLS")
                client.starttls(self.ssl_context)
        self._login()

    def _login(self) -> None:
        client = self._conn
        try:
            client.login(self.username, self._password)
        except imap_exc.LoginError as e:
            msg = _server_message(e)
            upper = msg.upper()
            if "[UNAVAILABLE]" in upper:
                raise ConnectionFailed(msg) from e
            if "[PRIVACYREQUIRED]" in upper:
                raise ProviderError(msg) from e
            raise AuthFailed(msg) from e
        except (imaplib.IMAP4.abort, OSError, EOFError) as e:
            raise ConnectionFailed(f"{type(e).__name__}: {e}") from e
        except imaplib.IMAP4.error as e:  # pragma: no cover - LoginError covers LOGIN failures
            raise AuthFailed(_server_message(e)) from e
        with self._errors():
            self._caps = frozenset(c.upper() for c in client.capabilities())
            if b"QRESYNC" in self._caps and b"ENABLE" in self._caps:
                enabled = {c.upper() for c in client.enable("QRESYNC")}
                self._qresync = b"QRESYNC" in enabled

    def close(self) -> None:
        client, self._client = self._client, None
        self._selected = None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # noqa: BLE001 - the connection may already be gone
            try:
                client.shutdown()
            except Exception:  # noqa: BLE001, S110
                pass

    @property
    def capabilities(self) -> frozenset[bytes]:
        return self._caps

    @property
    def qresync(self) -> bool:
        """True when QRESYNC was enabled on this connection."""
        return self._qresync

    @property
    def _conn(self) -> IMAPClient:
        if self._client is None:
            raise ConnectionFailed("not connected")
        return self._client

    def _instrument(self, client: IMAPClient) -> None:
        imap = client._imap
        orig_send, orig_new_tag = imap.send, imap._new_tag
        orig_read, orig_readline = imap.read, imap.readline
        pending: list[bytes | None] = [None]

        def new_tag() -> bytes:
            tag = orig_new_tag()
            pending[0] = tag
            return tag

        def send(data: bytes) -> None:
            self.bytes_out += len(data)
            tag = pending[0]
            if tag is not None and data.startswith(tag + b" "):
                pending[0] = None
                words = data[len(tag) + 1 :].split(None, 2)
                name = words[0].upper() if words else b""
                if name == b"UID" and len(words) > 1:
                    name += b" " + words[1].upper()
                self.commands.append(name.decode("ascii", "replace"))
            orig_send(data)

        def read(size: int) -> bytes:
            data = orig_read(size)
            self.bytes_in += len(data)
            return data

        def readline() -> bytes:
            data = orig_readline()
            self.bytes_in += len(data)
            return data

        imap._new_tag = new_tag
        imap.send = send
        imap.read = read
        imap.readline = readline

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Translate imaplib/imapclient/socket errors into the provider's error types."""
        try:
            yield
        except ProviderError:
            raise
        except imap_exc.LoginError as e:
            raise AuthFailed(_server_message(e)) from e
        except (imaplib.IMAP4.abort, OSError, EOFError) as e:
            self._drop()
            raise ConnectionFailed(f"{type(e).__name__}: {e}") from e
        except imaplib.IMAP4.error as e:
            raise ProviderError(_server_message(e)) from e

    def _drop(self) -> None:
        client, self._client = self._client, None
        self._selected = None
        if client is not None:
            try:
                client.shutdown()
            except Exception:  # noqa: BLE001, S110
                pass

    # -- low-level commands ------------------------------------------------------------------

    def _open(self, folder: str, readonly: bool = True) -> _Box:
        """SELECT/EXAMINE ``folder``; raises :class:`FolderGone` when it does not exist."""
        client = self._conn
        try:
            resp = client.select_folder(folder, readonly=readonly)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as e:
            self._selected = None
            msg = _server_message(e)
            if _GONE_RE.search(msg):
                raise FolderGone(f"{folder}: {msg}") from e
            raise ProviderError(msg) from e
        self._selected = (folder, readonly)
        uidvalidity = resp.get(b"UIDVALIDITY")
        if uidvalidity is None:
            raise ProviderError(f"{folder}: the server sent no UIDVALIDITY")
        exists = int(resp.get(b"EXISTS", 0))
        uidnext = resp.get(b"UIDNEXT")
        if uidnext is None:  # rare; derive it from the highest UID
            uidnext = 1
            if exists:
                last = self._uid_fetch("*", "(UID)", seq=True)
                uidnext = max(last, default=0) + 1
        modseq = resp.get(b"HIGHESTMODSEQ")
        return _Box(int(uidvalidity), int(uidnext), exists, int(modseq) if modseq else None)

    def _unselect(self) -> None:
        """Leave the selected folder without expunging (a server may answer STATUS for
        the selected folder from the session's stale view, so deltas unselect first)."""
        if self._selected is None:
            return
        client = self._conn
        if b"UNSELECT" in self._caps:
            client.unselect_folder()
        else:
            if not self._selected[1]:
                client.select_folder(self._selected[0], readonly=True)
            client.close_folder()  # CLOSE after EXAMINE never expunges (RFC 3501 6.4.2)
        self._selected = None

    def _status(self, folder: str, items: tuple[str, ...]) -> dict[bytes, int]:
        self._unselect()
        try:
            return self._conn.folder_status(folder, list(items))
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as e:
            msg = _server_message(e)
            if _GONE_RE.search(msg):
                raise FolderGone(f"{folder}: {msg}") from e
            raise ProviderError(msg) from e

    def _uid_fetch(
        self, uid_set: str, items: str, modifiers: str | None = None, seq: bool = False
    ) -> dict[int, dict[bytes, Any]]:
        """``UID FETCH`` (or ``FETCH`` with ``seq``) returning ``{uid: {item: value}}``.

        Unlike :meth:`IMAPClient.fetch` this accepts ranges with ``*`` and keeps only
        responses that carry a UID (unsolicited FETCH responses without one are dropped).
        """
        imap = self._conn._imap
        args = [uid_set, items] + ([modifiers] if modifiers else [])
        tag = imap._command("FETCH", *args) if seq else imap._command("UID", "FETCH", *args)
        typ, data = imap._command_complete("FETCH", tag)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"fetch failed: {_text(data[0] if data else '')}")
        typ, data = imap._untagged_response(typ, data, "FETCH")
        parsed = parse_fetch_response(data, normalise_times=False, uid_is_key=False)
        out: dict[int, dict[bytes, Any]] = {}
        for item in parsed.values():
            uid = item.get(b"UID")
            if uid is None:
                continue
            out.setdefault(int(uid), {}).update(item)
        return out

    def _fetch_messages(self, uids: list[int], items: str) -> dict[int, _Fetched]:
        """``UID FETCH`` of UID/FLAGS/INTERNALDATE/BODY[] through :func:`read_fetch`: the
        bulk path of every initial load, so its reader is built for throughput."""
        return self._read_fetches(self._send_fetch(uids, items))

    def _send_fetch(self, uids: list[int], items: str) -> list[bytes]:
        """Send the ``UID FETCH`` commands for ``uids``; their responses are read by
        :meth:`_read_fetches`, possibly after other work (RFC 3501 §5.5 pipelining)."""
        imap = self._conn._imap
        return [imap._command("UID", "FETCH", chunk, items) for chunk in compress_uids(uids)]

    def _read_fetches(self, tags: list[bytes]) -> dict[int, _Fetched]:
        """Read the responses of the FETCH commands ``tags``, in order. Every one is read
        even when an earlier one failed, so the connection stays in step."""
        imap = self._conn._imap
        out: dict[int, _Fetched] = {}
        failed: imaplib.IMAP4.error | None = None
        for tag in tags:
            try:
                out.update(read_fetch(imap.readline, imap.read, tag, imap._append_untagged))
            except imaplib.IMAP4.abort:
                raise
            except imaplib.IMAP4.error as e:
                failed = failed or e
            finally:
                imap.tagged_commands.pop(tag, None)  # completed here, not through imaplib
        if failed is not None:
            raise failed
        return out

    def _search(self, criteria: list[Any]) -> list[int]:
        return sorted(int(u) for u in self._conn.search(criteria))

    def _candidates(self, since: datetime, below: int) -> tuple[list[int], set[int]]:
        """UIDs < ``below`` that may be at/after ``since``, and those of them found too old.

        ``SEARCH SINCE`` works on dates; one day of slack on each side covers every time
        zone, and only the boundary days' INTERNALDATEs are fetched to decide exactly.
        """
        day = since.date()
        if day <= date(1970, 1, 3):
            found = self._search(["ALL"])
            return [u for u in found if u < below], set()
        found = [u for u in self._search(["SINCE", day - timedelta(days=1)]) if u < below]
        if not found:
            return [], set()
        boundary = [
            u
            for u in self._search(["SINCE", day - timedelta(days=1), "BEFORE", day + timedelta(days=2)])
            if u < below
        ]
        too_old: set[int] = set()
        if boundary:
            dates = self._fetch_messages(boundary, "(UID INTERNALDATE)")
            too_old = {u for u, f in dates.items() if f.internal_date is not None and f.internal_date < since}
        return found, too_old

    # -- folders -----------------------------------------------------------------------------

    def list_folders(self) -> list[FolderInfo]:
        """Selectable folders with roles (SPECIAL-USE, else well-known names) and counts."""
        with self._errors():
            client = self._conn
            imap = client._imap
            options = []
            if b"LIST-EXTENDED" in self._caps:
                if b"SPECIAL-USE" in self._caps:
                    options.append("SPECIAL-USE")
                if b"LIST-STATUS" in self._caps:
                    options.append("STATUS (MESSAGES)")
            args = ['""', '"*"']
            if options:
                args += ["RETURN", "(" + " ".join(options) + ")"]
            imap.untagged_responses.pop("STATUS", None)
            typ, data = imap._simple_command("LIST", *args)
            if typ != "OK":
                raise ProviderError(f"LIST failed: {_text(data[0] if data else '')}")
            typ, data = imap._untagged_response(typ, data, "LIST")
            listing = client._proc_folder_list(data)
            counts: dict[str, int] = {}
            for line in imap.untagged_responses.pop("STATUS", []):
                try:
                    parsed = parse_response([line] if not isinstance(line, list) else line)
                    name, items = parsed[0], parsed[-1]
                    name = str(name) if isinstance(name, int) else decode_utf7(name)
                    values = dict(zip(items[::2], items[1::2], strict=False))
                    if b"MESSAGES" in values:
                        counts[name] = int(values[b"MESSAGES"])
                except (imap_exc.ProtocolError, ValueError, IndexError, TypeError):
                    continue

        return folder_infos(listing, counts)

    # -- changes -----------------------------------------------------------------------------

    def changes(
        self, folder: str, cursor: dict[str, Any] | None, since: datetime, batch_size: int = 100
    ) -> Iterator[ChangeBatch]:
        """Stream the changes of ``folder`` after ``cursor`` (see the module docstring)."""
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        since = as_utc(since)
        gen = self._changes(folder, cursor, since, batch_size)
        try:
            while True:
                with self._errors():
                    try:
                        batch = next(gen)
                    except StopIteration:
                        return
                yield batch
        finally:
            with self._errors():
                gen.close()  # a consumer that stops early: an in-flight FETCH is read off now

    def _changes(
        self, folder: str, cursor: dict[str, Any] | None, since: datetime, batch_size: int
    ) -> Generator[ChangeBatch, None, None]:
        if not cursor:
            yield from self._initial(folder, None, since, batch_size, reset=False)
            return
        if cursor.get("v") != CURSOR_VERSION or cursor.get("mode") not in ("qresync", "plain"):
            yield from self._initial(folder, None, since, batch_size, reset=True)
            return
        if cursor.get("mode") == "qresync" and not self._qresync:
            # The server stopped offering QRESYNC: start over in plain mode.
            yield from self._initial(folder, None, since, batch_size, reset=True)
            return
        if cursor.get("phase") == "initial":
            yield from self._initial(folder, cursor, since, batch_size, reset=False)
        elif cursor["mode"] == "qresync":
            yield from self._delta_qresync(folder, cursor, since, batch_size)
        else:
            yield from self._delta_plain(folder, cursor, since, batch_size)

    # initial load ------------------------------------------------------------------------------

    def _initial(
        self,
        folder: str,
        cursor: dict[str, Any] | None,
        since: datetime,
        batch_size: int,
        reset: bool,
    ) -> Iterator[ChangeBatch]:
        box = self._open(folder)
        if cursor is not None and int(cursor["uidvalidity"]) != box.uidvalidity:
            cursor, reset = None, True
        if cursor is None:
            mode = "qresync" if self._qresync and box.modseq is not None else "plain"
            base: dict[str, Any] = {
                "v": CURSOR_VERSION,
                "mode": mode,
                "uidvalidity": box.uidvalidity,
                "uidnext": box.uidnext,
            }
            if mode == "qresync":
                base["modseq"] = box.modseq
            else:
                base["exists"] = box.exists
            done_uid = 0
            known: set[int] = set()
            unread: set[int] = set()
        else:
            base = {
                k: cursor[k]
                for k in ("v", "mode", "uidvalidity", "uidnext", "exists", "modseq")
                if k in cursor
            }
            mode = base["mode"]
            done_uid = int(cursor.get("initial_done_uid", 0))
            known = set(parse_uid_set(cursor.get("known", "")))
            unread = set(parse_uid_set(cursor.get("unread", "")))

        start_uidnext = int(base["uidnext"])
        found, too_old = self._candidates(since, start_uidnext)
        already = sum(1 for u in found if u <= done_uid)
        todo = [u for u in found if u > done_uid and u not in too_old]
        total = already + len(todo)
        done = already

        def make_cursor(last_uid: int | None) -> dict[str, Any]:
            c = dict(base)
            if last_uid is None:
                c["phase"] = "delta"
            else:
                c["phase"] = "initial"
                c["initial_done_uid"] = last_uid
            if mode == "plain":
                c["known"] = format_uid_set(known)
                c["unread"] = format_uid_set(unread)
            return c

        chunks = list(_chunks(todo, batch_size)) or [[]]
        items = "(UID FLAGS INTERNALDATE BODY.PEEK[])"
        pending = self._send_fetch(chunks[0], items)
        try:
            for i, chunk in enumerate(chunks):
                changes: list[Change] = [Reset(folder)] if reset and i == 0 else []
                tags, pending = pending, []
                fetched = self._read_fetches(tags)
                # Ask for the next batch before this one is handed over: the server reads and
                # sends it while the engine stores this one (pipelining, RFC 3501 §5.5).
                pending = self._send_fetch(chunks[i + 1], items) if i + 1 < len(chunks) else []
                for uid in chunk:
                    f = fetched.get(uid)
                    if f is None or f.raw is None or f.internal_date is None or f.internal_date < since:
                        continue  # expunged meanwhile, or older than since
                    is_unread = _SEEN not in f.flags
                    changes.append(Upsert(folder, str(uid), f.raw, is_unread, f.internal_date))
                    if mode == "plain":
                        known.add(uid)
                        if is_unread:
                            unread.add(uid)
                done += len(chunk)
                last = i == len(chunks) - 1
                yield ChangeBatch(
                    folder=folder,
                    changes=changes,
                    cursor=make_cursor(None if last else chunk[-1]),
                    done=last,
                    initial=True,
                    progress=(done, total),
                )
        finally:
            if pending:  # the consumer stopped early (time budget): keep the connection in step
                with contextlib.suppress(imaplib.IMAP4.error):
                    self._read_fetches(pending)

    # delta with QRESYNC -----------------------------------------------------------------------

    def _delta_qresync(
        self, folder: str, cursor: dict[str, Any], since: datetime, batch_size: int
    ) -> Iterator[ChangeBatch]:
        old_validity = int(cursor["uidvalidity"])
        old_next = int(cursor["uidnext"])
        old_modseq = int(cursor["modseq"])

        st = self._status(folder, ("UIDNEXT", "UIDVALIDITY", "HIGHESTMODSEQ"))
        if int(st.get(b"UIDVALIDITY", -1)) != old_validity:
            yield from self._initial(folder, None, since, batch_size, reset=True)
            return
        if int(st.get(b"UIDNEXT", -1)) == old_next and int(st.get(b"HIGHESTMODSEQ", -1)) == old_modseq:
            return  # unchanged: one STATUS, whatever the folder's size

        box = self._open(folder)
        if box.uidvalidity != old_validity or box.modseq is None:
            yield from self._initial(folder, None, since, batch_size, reset=True)
            return

        meta: list[Change] = []
        if old_next > 1 and box.modseq != old_modseq:
            imap = self._conn._imap
            changed = self._uid_fetch(
                f"1:{old_next - 1}", "(UID FLAGS)", f"(CHANGEDSINCE {old_modseq} VANISHED)"
            )
            vanished: set[int] = set()
            for line in imap.untagged_responses.pop("VANISHED", []):
                vanished.update(_parse_vanished(line))
            vanished = {u for u in vanished if u < old_next}
            meta.extend(Remove(folder, str(u)) for u in sorted(vanished))
            for uid in sorted(changed):
                if uid < old_next and uid not in vanished and b"FLAGS" in changed[uid]:
                    meta.append(SetFlags(folder, str(uid), _SEEN not in changed[uid][b"FLAGS"]))

        new: list[int] = []
        if box.uidnext > old_next:
            dates = self._fetch_messages_range(old_next, box.uidnext)
            new = sorted(u for u, d in dates.items() if d >= since)

        def make_cursor(uidnext: int, modseq: int) -> dict[str, Any]:
            return {
                "v": CURSOR_VERSION,
                "mode": "qresync",
                "phase": "delta",
                "uidvalidity": box.uidvalidity,
                "uidnext": uidnext,
                "modseq": modseq,
            }

        final = make_cursor(box.uidnext, box.modseq)
        yield from self._emit_meta(folder, meta, cursor, make_cursor(old_next, box.modseq), final, bool(new))
        for chunk, last_uid, is_last in self._body_chunks(new, batch_size):
            changes = self._upserts(folder, chunk, since)
            cur = final if is_last else make_cursor(last_uid + 1, box.modseq)
            yield ChangeBatch(folder, changes, cur, done=is_last)
        if not meta and not new:
            yield ChangeBatch(folder, [], final, done=True)

    # delta without CONDSTORE -------------------------------------------------------------------

    def _delta_plain(
        self, folder: str, cursor: dict[str, Any], since: datetime, batch_size: int
    ) -> Iterator[ChangeBatch]:
        old_next = int(cursor["uidnext"])
        old_exists = int(cursor.get("exists", 0))
        known = set(parse_uid_set(cursor.get("known", "")))
        unread = set(parse_uid_set(cursor.get("unread", "")))

        box = self._open(folder)
        if box.uidvalidity != int(cursor["uidvalidity"]):
            yield from self._initial(folder, None, since, batch_size, reset=True)
            return

        arrived: dict[int, datetime] = {}
        if box.uidnext > old_next:
            arrived = self._fetch_messages_range(old_next, box.uidnext)

        removed: set[int] = set()
        if known and box.exists != old_exists + len(arrived):
            day = since.date()
            criteria: list[Any] = ["ALL"] if day <= date(1970, 1, 3) else ["SINCE", day - timedelta(days=1)]
            present = set(self._search(criteria))
            removed = known - present

        # Bounded flag refresh of the newest known UIDs.
        refresh = sorted(known - removed)[-FLAG_REFRESH_LIMIT:]
        flags: dict[int, tuple[bytes, ...]] = {}
        for uid_set in compress_uids(refresh):
            for uid, item in self._uid_fetch(uid_set, "(UID FLAGS)").items():
                if b"FLAGS" in item:
                    flags[uid] = tuple(item[b"FLAGS"])
        if refresh:
            # A refreshed UID the server no longer has was expunged.
            removed |= {u for u in refresh if u not in flags and u < old_next}

        meta: list[Change] = [Remove(folder, str(u)) for u in sorted(removed)]
        new_unread = set(unread) - removed
        for uid in sorted(flags):
            if uid in removed:
                continue
            is_unread = _SEEN not in flags[uid]
            if is_unread != (uid in unread):
                meta.append(SetFlags(folder, str(uid), is_unread))
                if is_unread:
                    new_unread.add(uid)
                else:
                    new_unread.discard(uid)
        known -= removed
        unread = new_unread

        new = sorted(u for u, d in arrived.items() if d >= since)
        arrived_uids = sorted(arrived)

        def make_cursor(uidnext: int) -> dict[str, Any]:
            later = sum(1 for u in arrived_uids if u >= uidnext)
            return {
                "v": CURSOR_VERSION,
                "mode": "plain",
                "phase": "delta",
                "uidvalidity": box.uidvalidity,
                "uidnext": uidnext,
                "exists": box.exists - later,
                "known": format_uid_set(known),
                "unread": format_uid_set(unread),
            }

        if not meta and not new and box.uidnext == old_next and box.exists == old_exists:
            return  # nothing changed (the cursor would be identical)
        yield from self._emit_meta(
            folder, meta, cursor, make_cursor(old_next), make_cursor(box.uidnext), bool(new)
        )
        if not new:
            if not meta:
                yield ChangeBatch(folder, [], make_cursor(box.uidnext), done=True)
            return
        for chunk, last_uid, is_last in self._body_chunks(new, batch_size):
            changes = self._upserts(folder, chunk, since)
            for ch in changes:
                assert isinstance(ch, Upsert)
                known.add(int(ch.ref))
                if ch.unread:
                    unread.add(int(ch.ref))
            cur = make_cursor(box.uidnext if is_last else last_uid + 1)
            yield ChangeBatch(folder, changes, cur, done=is_last)

    # helpers for deltas ------------------------------------------------------------------------

    def _fetch_messages_range(self, first: int, below: int) -> dict[int, datetime]:
        """INTERNALDATE of the UIDs in ``first <= uid < below`` (``UID FETCH first:*``)."""
        out: dict[int, datetime] = {}
        for uid, item in self._uid_fetch(f"{first}:*", "(UID INTERNALDATE)").items():
            idate = item.get(b"INTERNALDATE")
            if first <= uid < below and isinstance(idate, datetime):
                out[uid] = as_utc(idate)
        return out

    def _upserts(self, folder: str, uids: list[int], since: datetime) -> list[Change]:
        fetched = self._fetch_messages(uids, "(UID FLAGS INTERNALDATE BODY.PEEK[])")
        out: list[Change] = []
        for uid in uids:
            f = fetched.get(uid)
            if f is None or f.raw is None or f.internal_date is None or f.internal_date < since:
                continue
            out.append(Upsert(folder, str(uid), f.raw, _SEEN not in f.flags, f.internal_date))
        return out

    @staticmethod
    def _body_chunks(uids: list[int], batch_size: int) -> Iterator[tuple[list[int], int, bool]]:
        chunks = list(_chunks(uids, batch_size))
        for i, chunk in enumerate(chunks):
            yield chunk, chunk[-1], i == len(chunks) - 1

    @staticmethod
    def _emit_meta(
        folder: str,
        meta: list[Change],
        old_cursor: dict[str, Any],
        after_meta: dict[str, Any],
        final: dict[str, Any],
        more: bool,
    ) -> Iterator[ChangeBatch]:
        """Yield flag/removal changes; only the last of these batches advances the cursor."""
        chunks = list(_chunks(meta, META_BATCH))
        for i, chunk in enumerate(chunks):
            if i < len(chunks) - 1:
                cur = old_cursor
            elif more:
                cur = after_meta
            else:
                cur = final
            yield ChangeBatch(folder, chunk, dict(cur), done=i == len(chunks) - 1 and not more)

    # -- write-through (mail client) ---------------------------------------------------------

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
                msg = _server_message(e)
                if "[TRYCREATE]" in msg.upper():
                    raise FolderGone(f"{folder}: {msg}") from e
                raise
        m = _APPENDUID_RE.search(resp if isinstance(resp, bytes) else str(resp).encode())
        return int(m.group(2)) if m else None


def folder_infos(
    listing: Iterable[tuple[tuple[bytes, ...], bytes | str | None, str]],
    counts: Mapping[str, int] | None = None,
) -> list[FolderInfo]:
    """Turn LIST entries ``(flags, delimiter, decoded name)`` into :class:`FolderInfo`.

    \\Noselect/\\NonExistent folders are skipped. Roles come from SPECIAL-USE
    attributes (RFC 6154); for roles no folder claims, well-known names (last path
    component, case-insensitive, shallowest folder first) are used. INBOX is ``inbox``.
    """
    counts = counts or {}
    folders: list[tuple[str, str | None, str | None]] = []  # (name, delimiter, flag role)
    for flags, delim, name in listing:
        lowered = {f.lower() for f in flags}
        if b"\\noselect" in lowered or b"\\nonexistent" in lowered:
            continue
        role = None
        if name.upper() == "INBOX":
            role = "inbox"
        else:
            for f in flags:
                role = _FLAG_ROLES.get(f.lower())
                if role:
                    break
        folders.append((name, _text(delim) if delim else None, role))

    taken = {role for _, _, role in folders if role}
    by_name: dict[str, str] = {}
    # Shallow folders first, so "Sent" wins over "Archive/2020/Sent".
    for name, delim, role in sorted(folders, key=lambda f: (f[0].count(f[1] or "\0"), f[0])):
        if role:
            continue
        leaf = name.rsplit(delim, 1)[-1] if delim else name
        for candidate, names in _NAME_ROLES.items():
            if candidate not in taken and leaf.casefold() in names:
                by_name[name] = candidate
                taken.add(candidate)
                break
    return [
        FolderInfo(name=name, role=role or by_name.get(name), messages=counts.get(name))
        for name, _, role in folders
    ]


def _parse_vanished(line: object) -> list[int]:
    """UIDs of one ``* VANISHED [(EARLIER)] <uid-set>`` response (as stored by imaplib)."""
    text = _text(line[0] if isinstance(line, tuple) else line).strip()
    if text.upper().startswith("(EARLIER)"):
        text = text[len("(EARLIER)") :].strip()
    return parse_uid_set(text) if text else []


def _parse_copyuid(texts: Iterable[object]) -> dict[int, int]:
    for t in texts:
        data = t if isinstance(t, bytes) else _text(t).encode()
        m = _COPYUID_RE.search(data)
        if m:
            src = _expand_ordered(m.group(2).decode())
            dst = _expand_ordered(m.group(3).decode())
            if len(src) == len(dst):
                return dict(zip(src, dst, strict=True))
    return {}


def _expand_ordered(text: str) -> list[int]:
    """Expand a COPYUID set keeping the server's order (it pairs source and target by position)."""
    out: list[int] = []
    for part in text.split(","):
        lo, sep, hi = part.partition(":")
        a, b = int(lo), int(hi) if sep else int(lo)
        out.extend(range(a, b + 1) if a <= b else range(a, b - 1, -1))
    return out


def imap_login_check(settings: Any) -> None:
    """Check IMAP settings at account creation: connect, (STARTTLS,) LOGIN, LOGOUT.

    ``settings`` is a mapping or object with ``host, port, security, username,
    password`` (and optionally ``timeout``, ``ssl_context``). Raises
    :class:`AuthFailed`, :class:`ConnectionFailed` or :class:`ProviderError`.
    """
    with ImapProvider.from_settings(settings):
        pass
