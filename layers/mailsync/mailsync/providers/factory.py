"""Builds the provider adapter of an account from its stored settings and secrets."""

from __future__ import annotations

from typing import Any

from mailsync.config import get_settings
from mailsync.providers.base import MailProvider


def make_provider(account: dict[str, Any], secrets: dict[str, Any]) -> MailProvider:
    if account["provider"] == "imap":
        from mailsync.providers.imap import ImapProvider

        imap = account["servers"]["imap"]
        return ImapProvider(
            host=imap["host"],
            port=int(imap["port"]),
            security=imap["security"],
            username=imap["username"],
            password=secrets["imap_password"].reveal()
            if hasattr(secrets["imap_password"], "reveal")
            else secrets["imap_password"],
            timeout=get_settings().imap_timeout_seconds,
        )
    raise ValueError(f"unsupported provider {account['provider']!r}")
