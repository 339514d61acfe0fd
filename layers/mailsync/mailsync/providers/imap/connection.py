"""The IMAP connection: connect, STARTTLS, LOGIN, ENABLE, error translation, wire counting,
and the low-level commands (SELECT/EXAMINE, UNSELECT, STATUS, FETCH, SEARCH) the jobs use.

Protocols: IMAP4rev1 (RFC 3501), STARTTLS (RFC 3501 section 6.2.1), ENABLE (RFC 5161) of
QRESYNC (RFC 7162), UNSELECT (RFC 3691), command pipelining (RFC 3501 section 5.5).

Invariants
----------
* Every imaplib/imapclient/socket error leaves this module as a typed provider error
  (:meth:`ImapConnection._errors`, mapped by :mod:`~mailsync.providers.imap.errors`): a refused
  LOGIN is :class:`AuthFailed` (``[UNAVAILABLE]``: :class:`ConnectionFailed`), a broken
  connection is :class:`ConnectionFailed` (:class:`TlsFailed` for TLS, :class:`TimedOut` for a
  timeout) and drops the session, a NO/BAD is typed by its RFC 5530 response code
  (``[NOPERM]`` :class:`PermissionDenied`, ``[OVERQUOTA]`` :class:`QuotaExceeded`, ``[LIMIT]``
  :class:`RateLimited`, ...) else :class:`ProviderError`, a folder that does not exist is
  :class:`FolderGone`. A server without STARTTLS when ``starttls`` is asked for is
  :class:`TlsFailed`: the session is never downgraded to plaintext (RFC 8314).
* ``QRESYNC`` is enabled once per connection when the server offers ``ENABLE`` and ``QRESYNC``;
  :attr:`ImapConnection.qresync` tells whether it took.
* Instrumentation (:meth:`ImapConnection._instrument`): ``commands`` lists every command sent
  (``"LOGIN"``, ``"STATUS"``, ``"UID FETCH"``, ...); ``bytes_in``/``bytes_out`` count the bytes
  read/written after the greeting. These are the figures the sync-cost tests and the benchmark
  compare with Dovecot's own ``in=``/``out=`` log.
* Folders are EXAMINEd (read-only) unless a write needs SELECT; before STATUS the session
  unselects (a server may answer STATUS of the selected folder from a stale view). CLOSE after
  EXAMINE never expunges (RFC 3501 section 6.4.2).
"""

from __future__ import annotations

import imaplib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self

from imapclient import IMAPClient
from imapclient import exceptions as imap_exc
from imapclient.response_parser import parse_fetch_response

from mailsync.domain.ports import ConnectionFailed, ProviderError, TlsFailed
from mailsync.providers.imap import errors
from mailsync.providers.imap.fetch import _Fetched, read_fetch
from mailsync.providers.imap.uidset import compress_uids
from mailsync.providers.imap.util import server_message, to_text

__all__ = ["SECURITY_MODES", "ImapConnection", "imap_login_check"]

SECURITY_MODES = ("ssl", "starttls", "none")


@dataclass
class _Box:
    """What SELECT/EXAMINE/STATUS told about a folder."""

    uidvalidity: int
    uidnext: int
    exists: int
    modseq: int | None


class ImapConnection:
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
    def from_settings(cls, settings: Any) -> Self:
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

    def __enter__(self) -> Self:
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
                    raise TlsFailed("the server does not offer STARTTLS")
                client.starttls(self.ssl_context)
        self._login()

    def _login(self) -> None:
        client = self._conn
        try:
            client.login(self.username, self._password)
        except imap_exc.LoginError as e:
            # imapclient turns every IMAP4.error of LOGIN into LoginError, its subclass abort
            # (the connection broke: EOF, reset, timeout) included: that is no refused login.
            if isinstance(e.__context__, imaplib.IMAP4.abort | OSError | EOFError):
                self._drop()
                raise errors.transport(e.__context__) from e
            raise errors.refused(server_message(e), login=True) from e
        except (imaplib.IMAP4.abort, OSError, EOFError) as e:
            self._drop()
            raise errors.transport(e) from e
        except imaplib.IMAP4.error as e:  # pragma: no cover - LoginError covers LOGIN failures
            raise errors.refused(server_message(e), login=True) from e
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
            raise errors.refused(server_message(e), login=True) from e
        except (imaplib.IMAP4.abort, OSError, EOFError) as e:  # ssl.SSLError, TimeoutError included
            self._drop()
            raise errors.transport(e) from e
        except imaplib.IMAP4.error as e:
            raise errors.refused(server_message(e)) from e

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
        """SELECT/EXAMINE ``folder``; raises :class:`FolderGone` when it does not exist and
        :class:`PermissionDenied` when the server refuses it access (``[NOPERM]``, or a NO
        without a code whose text says so)."""
        client = self._conn
        try:
            resp = client.select_folder(folder, readonly=readonly)
        except imaplib.IMAP4.abort:
            raise
        except imaplib.IMAP4.error as e:
            self._selected = None
            raise errors.refused(server_message(e), folder=folder) from e
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
            raise errors.refused(server_message(e), folder=folder) from e

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
            raise imaplib.IMAP4.error(f"fetch failed: {to_text(data[0] if data else '')}")
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


def imap_login_check(settings: Any) -> None:
    """Check IMAP settings at account creation: connect, (STARTTLS,) LOGIN, LOGOUT.

    ``settings`` is a mapping or object with ``host, port, security, username,
    password`` (and optionally ``timeout``, ``ssl_context``). Raises
    :class:`AuthFailed`, :class:`ConnectionFailed` or :class:`ProviderError`.
    """
    with ImapConnection.from_settings(settings):
        pass
