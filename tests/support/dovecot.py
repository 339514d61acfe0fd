"""The Dovecot test server lives in the package (``mailsync demo`` uses it too)."""

from mailsync_local.dovecot import *  # noqa: F403
from mailsync_local.dovecot import CAPABILITIES_WITHOUT_CONDSTORE, Dovecot, DovecotError, free_port, make_mail

__all__ = ["CAPABILITIES_WITHOUT_CONDSTORE", "Dovecot", "DovecotError", "free_port", "make_mail"]
