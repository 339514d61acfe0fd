"""IMAP adapter: :class:`ImapProvider` implements :class:`mailsync.domain.ports.MailProvider`
and :class:`mailsync.domain.ports.MailClient`.

Protocols: IMAP4rev1 (RFC 3501), CONDSTORE/QRESYNC (RFC 7162), SPECIAL-USE
mailboxes (RFC 6154), MOVE (RFC 6851), UIDPLUS (RFC 4315), ENABLE (RFC 5161),
LIST-EXTENDED/LIST-STATUS (RFC 5258, RFC 5819).

One module per job, each with its invariants in its docstring (as imapclient splits its
protocol code):

* :mod:`~mailsync.providers.imap.uidset`: the UID-set codec (compressed, chunked sets);
* :mod:`~mailsync.providers.imap.fetch`: the FETCH response reader (literals read, not scanned);
* :mod:`~mailsync.providers.imap.connection`: connect/LOGIN/ENABLE, error translation, wire
  counting and the low-level commands;
* :mod:`~mailsync.providers.imap.errors`: which typed error a failure is (RFC 5530 codes, TLS,
  timeouts);
* :mod:`~mailsync.providers.imap.sync`: the folder sync state machine (``INITIAL``,
  ``DELTA_QRESYNC``, ``DELTA_PLAIN``), the cursor format and the cost of a sync;
* :mod:`~mailsync.providers.imap.inventory`: the completeness check (UIDs the cursor covers, ids
  only; the missing mails fetched as the initial load builds them);
* :mod:`~mailsync.providers.imap.writes`: write-through (STORE ``\\Seen``, MOVE, EXPUNGE, APPEND);
* :mod:`~mailsync.providers.imap.roles`: folder roles (SPECIAL-USE, else well-known names).

A message location is ``(folder, str(uid))``, valid together with the folder's UIDVALIDITY
that every cursor stores.
"""

from __future__ import annotations

from mailsync.providers.imap.connection import SECURITY_MODES, imap_login_check
from mailsync.providers.imap.inventory import FolderInventory
from mailsync.providers.imap.roles import FolderRoles
from mailsync.providers.imap.writes import WriteThrough

__all__ = ["SECURITY_MODES", "ImapProvider", "imap_login_check"]


class ImapProvider(FolderInventory, WriteThrough, FolderRoles):
    """A connected IMAP session for one mailbox: sync and completeness check
    (:class:`FolderInventory` over :class:`~mailsync.providers.imap.sync.FolderSync`), mail-client
    writes (:class:`WriteThrough`) and folder listing (:class:`FolderRoles`) over one
    :class:`~mailsync.providers.imap.connection.ImapConnection`.

    ``commands`` lists the IMAP commands sent (``"LOGIN"``, ``"STATUS"``, ``"UID FETCH"``,
    ...); ``bytes_in``/``bytes_out`` count the bytes read/written after the greeting.
    """
