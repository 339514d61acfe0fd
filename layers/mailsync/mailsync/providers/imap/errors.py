"""Typed IMAP errors: which :class:`~mailsync.domain.ports.ProviderError` a failure is.

Protocols: IMAP4rev1 responses (RFC 3501 section 7.1: tagged NO/BAD, untagged BYE), IMAP
response codes (RFC 5530: ``AUTHENTICATIONFAILED``, ``AUTHORIZATIONFAILED``, ``EXPIRED``,
``PRIVACYREQUIRED``, ``UNAVAILABLE``, ``NOPERM``, ``OVERQUOTA``, ``LIMIT``, ``NONEXISTENT``, ...),
TLS on connect or by STARTTLS (RFC 8314, RFC 3501 section 6.2.1).

Invariants
----------
* :func:`refused` maps a server's NO by its response code first; only without a code it knows
  it reads the human text (``Permission denied`` / ``access denied`` / ``not allowed``; the usual
  "does not exist" wordings), since servers word these freely. A refused LOGIN is always
  :class:`AuthFailed` unless its code says otherwise (``[UNAVAILABLE]``, ``[PRIVACYREQUIRED]``).
* :func:`transport` maps a broken exchange by its cause, looking through imaplib's wrapping
  (imaplib turns a socket error inside a command into ``IMAP4.abort``, keeping the original as
  ``__context__``): an ``ssl.SSLError`` (handshake, certificate) is :class:`TlsFailed`, a
  ``TimeoutError`` (``socket.timeout``) is :class:`TimedOut`, anything else
  :class:`ConnectionFailed`.
* What a server really answers was checked against Dovecot 2.3.19: a SELECT/EXAMINE/STATUS of a
  folder whose maildir the server may not read answers ``NO [SERVERBUG] Internal error occurred``
  (the permission error is only in the server log), which stays ``provider_error``: nothing in
  the answer says it is a permission. With the ACL plugin, a folder without the read right
  answers ``NO [NOPERM] Permission denied``, which is :class:`PermissionDenied`.
* Messages are the server's text (with the folder prefixed by the caller); never a password.
"""

from __future__ import annotations

import re
import ssl

from mailsync.domain.ports import (
    AuthFailed,
    ConnectionFailed,
    FolderGone,
    PermissionDenied,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    TimedOut,
    TlsFailed,
)

__all__ = ["refused", "response_code", "transport"]

_CODE_RE = re.compile(r"\[([A-Z][A-Z0-9-]*)[^\]]*\]")
# RFC 5530 response codes (and RFC 3501's TRYCREATE) -> error class.
_BY_CODE: dict[str, type[ProviderError]] = {
    "AUTHENTICATIONFAILED": AuthFailed,
    "AUTHORIZATIONFAILED": AuthFailed,
    "EXPIRED": AuthFailed,
    "PRIVACYREQUIRED": TlsFailed,  # the server wants TLS first
    "UNAVAILABLE": ConnectionFailed,
    "NOPERM": PermissionDenied,
    "OVERQUOTA": QuotaExceeded,
    "LIMIT": RateLimited,
    "NONEXISTENT": FolderGone,
    "TRYCREATE": FolderGone,
}
_GONE_TEXT = re.compile(
    r"does ?n[o']t exist|not exist|no such (mailbox|folder)|unknown mailbox|not found", re.IGNORECASE
)
_PERM_TEXT = re.compile(
    r"permission denied|access denied|not allowed|insufficient (rights|permission)", re.IGNORECASE
)


def response_code(message: str) -> str | None:
    """The first RFC 5530 response code in a server's text (``"NOPERM"``), upper-cased."""
    m = _CODE_RE.search(message.upper())
    return m.group(1) if m else None


def refused(message: str, *, folder: str | None = None, login: bool = False) -> ProviderError:
    """The typed error of a tagged NO/BAD with the server's ``message`` (see the module docstring).

    ``folder``: the command named a folder (SELECT, EXAMINE, STATUS, APPEND), so a "does not
    exist" or "permission denied" text without a code concerns that folder; it is prefixed.
    ``login``: the command was LOGIN/AUTHENTICATE, refused means :class:`AuthFailed`.
    """
    text = f"{folder}: {message}" if folder is not None else message
    code = response_code(message)
    cls = _BY_CODE.get(code or "")
    if cls is FolderGone and folder is None and code == "TRYCREATE":
        cls = None  # TRYCREATE outside a folder command names no folder of ours
    if cls is not None:
        return cls(text)
    if login:
        return AuthFailed(text)
    if folder is not None:  # no code, or one that says nothing about this (e.g. CLIENTBUG)
        if _GONE_TEXT.search(message):
            return FolderGone(text)
        if _PERM_TEXT.search(message):
            return PermissionDenied(text)
    return ProviderError(text)


def transport(e: BaseException) -> ProviderError:
    """The typed error of a broken connection ``e`` (an OSError, EOF or ``IMAP4.abort``)."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError):  # ssl.CertificateError included
            return TlsFailed(f"TLS failed: {type(cur).__name__}: {cur}")
        if isinstance(cur, TimeoutError):  # socket.timeout is TimeoutError
            return TimedOut(f"the server did not answer in time: {cur or type(cur).__name__}")
        cur = cur.__cause__ or cur.__context__
    text = str(e)
    if "timed out" in text.lower():  # imaplib wrapped a timeout into its abort's text only
        return TimedOut(f"the server did not answer in time: {text}")
    return ConnectionFailed(f"{type(e).__name__}: {e}")
