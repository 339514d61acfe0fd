"""Google Workspace accounts: Gmail API sessions, ``users.watch`` push, ``users.messages.send``
(Gmail files the Sent copy and tells us its id and thread)."""

from __future__ import annotations

from typing import Any

from mailsync.config import Settings, get_settings
from mailsync.connectors.base import BaseConnector, open_provider
from mailsync.domain.account import Account
from mailsync.domain.ports import MailProvider, Outgoing, ProviderError, Sent
from mailsync.errors import BadGateway


class GoogleConnector(BaseConnector):
    provider = "google"

    def open(self, account: Account, secrets: dict[str, str]) -> MailProvider:
        from mailsync.providers.gmail import CredentialsTokenSource, GmailProvider, budget_for

        s = get_settings()
        tokens = CredentialsTokenSource.from_refresh_token(
            secrets["google_refresh_token"],
            s.google_client_id,
            s.google_client_secret,
            token_uri=s.google_token_uri,
        )
        return GmailProvider(tokens, api_base=s.gmail_api_base, budget=budget_for(account.email))

    def poll_seconds(self, settings: Settings) -> int:
        return settings.google_poll_seconds

    def watch(self, account: Account, provider: Any) -> None:
        topic = get_settings().google_pubsub_topic
        if topic:
            provider.watch(topic)

    def forget(self, account: Account) -> None:
        """``users.stop`` (Gmail API: users/stop), so Google stops publishing changes of a
        mailbox we no longer mirror. Raises when Google cannot be reached; the purge logs
        that and goes on (a watch expires by itself within 7 days)."""
        from mailsync.store import watches
        from mailsync.store.accounts import load_secrets

        if not watches.has_gmail_watch(account.tenant_id, account.account_id):
            return  # never watched
        provider: Any
        with open_provider(account, dict(load_secrets(account))) as provider:
            provider.stop()

    def send(self, account: Account, mail: Outgoing) -> Sent:
        """``users.messages.send``; a reply carries the parent's ``threadId``."""
        from mailsync.store.accounts import load_secrets

        try:
            with mail.open_provider(account, load_secrets(account)) as provider:
                sent = provider.send(mail.raw, thread_id=mail.parent.get("provider_thread_id"))
        except ProviderError as e:
            raise BadGateway(f"the provider refused to send: {e}", code="provider_error") from e
        sent = sent or {}
        return Sent(
            {r: {"status": "accepted"} for r in mail.recipients},
            str(sent["id"]) if sent.get("id") else None,
            str(sent["threadId"]) if sent.get("threadId") else None,
        )


CONNECTOR = GoogleConnector()
