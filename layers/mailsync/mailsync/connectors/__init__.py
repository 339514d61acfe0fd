"""One connector per provider (imap, google, microsoft): what differs between them, behind
:class:`mailsync.domain.ports.Connector`. Use cases ask :func:`for_account`."""

from mailsync.connectors.base import for_account, open_provider, register

__all__ = ["for_account", "open_provider", "register"]
