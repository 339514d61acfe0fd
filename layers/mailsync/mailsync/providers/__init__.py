"""Provider adapters (IMAP now; Gmail and Graph later) behind :mod:`mailsync.domain.ports`."""
