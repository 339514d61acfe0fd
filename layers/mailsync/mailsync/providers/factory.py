"""Builds the provider adapter of an account from its stored settings and secrets."""

from __future__ import annotations

from typing import Any

from mailsync.config import get_settings
from mailsync.domain.ports import MailProvider


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
    if account["provider"] == "google":
        from mailsync.providers.gmail import CredentialsTokenSource, GmailProvider, budget_for

        s = get_settings()
        token = secrets["google_refresh_token"]
        tokens = CredentialsTokenSource.from_refresh_token(
            token.reveal() if hasattr(token, "reveal") else token,
            s.google_client_id,
            s.google_client_secret,
            token_uri=s.google_token_uri,
        )
        return GmailProvider(tokens, api_base=s.gmail_api_base, budget=budget_for(account["email"]))
    if account["provider"] == "microsoft":
        from mailsync.providers.graph import GraphProvider, MsalTokenSource

        s = get_settings()
        cache = secrets["microsoft_token_cache"]
        ms_tokens = MsalTokenSource(
            s.microsoft_client_id,
            s.microsoft_client_secret,
            s.microsoft_authority,
            cache.reveal() if hasattr(cache, "reveal") else cache,
        )
        return GraphProvider(ms_tokens, user=account["email"], api_base=s.graph_api_base)
    raise ValueError(f"unsupported provider {account['provider']!r}")
