"""Provider adapters: they implement the ports of :mod:`mailsync.domain.ports`
(``MailProvider`` for sync, ``MailClient`` for the mail client's writes).

* :mod:`~mailsync.providers.imap`: any IMAP4rev1 server (a package, one module per job);
* :mod:`~mailsync.providers.gmail`: Google mailboxes over the Gmail REST API v1;
* :mod:`~mailsync.providers.graph`: Microsoft 365 / Outlook mailboxes over Microsoft Graph v1.0;
* :mod:`~mailsync.providers.http`: what the two REST adapters share (session, access token,
  quota budget, retries, error mapping);
* :mod:`~mailsync.providers.smtp`: sending through SMTP submission (IMAP accounts);
* :mod:`~mailsync.providers.factory`: builds an account's adapter from its stored settings.

Adapters import the domain; the domain never imports them.
"""
