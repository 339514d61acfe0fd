"""The SMTP test server lives in the package (``mailsync demo`` uses it too)."""

from mailsync_local.smtp_server import DOMAIN, SmtpServer

__all__ = ["DOMAIN", "SmtpServer"]
