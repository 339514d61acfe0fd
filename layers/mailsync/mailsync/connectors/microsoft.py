"""Microsoft 365 accounts: Graph sessions with msal tokens, one Graph subscription per
account for change notifications, ``sendMail`` (Graph files the Sent copy).

Invariants:

* msal's serialized token cache is envelope-encrypted (``microsoft_token_cache``) and
  stored again after every session in which msal changed it.
* A subscription's ``clientState`` is random and stored only as its SHA-256.
* Lifecycle events leave their Graph work (renew, recreate) on the registry entry; the
  next sync does it in :meth:`MicrosoftConnector.before_sync`, never the webhook.
"""

from __future__ import annotations

import hashlib
import secrets as pysecrets
import time
from typing import Any

from mailsync.config import Settings, get_settings
from mailsync.connectors.base import BaseConnector, open_provider
from mailsync.domain.account import Account
from mailsync.domain.ports import PENDING, MailProvider, Outgoing, ProviderError, Sent
from mailsync.domain.records import Location
from mailsync.errors import BadGateway
from mailsync.observability import logger
from mailsync.store import accounts, watches

SECRET_KEY = "microsoft_token_cache"
WEBHOOK_PATH = "/v1/webhooks/microsoft"


def client_state_hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def token_source(cache_json: str | None, username: str | None = None) -> Any:
    from mailsync.providers.graph import MsalTokenSource

    s = get_settings()
    return MsalTokenSource(
        s.microsoft_client_id, s.microsoft_client_secret, s.microsoft_authority, cache_json, username=username
    )


def envelope(tenant_id: str, account_id: str, cache_json: str) -> dict[str, Any]:
    return accounts.encrypt_credentials(
        tenant_id, account_id, {SECRET_KEY: cache_json}, get_settings().kms_key_id
    )


def save_tokens(acc: Account, provider: Any) -> None:
    """Store msal's token cache again (encrypted) when msal changed it (new tokens)."""
    tokens = getattr(provider, "_access_token", None)
    if tokens is None or not getattr(tokens, "changed", False):
        return
    try:
        accounts.save_credentials(
            acc.tenant_id,
            acc.account_id,
            envelope(acc.tenant_id, acc.account_id, tokens.serialize()),
        )
        tokens.cache.has_state_changed = False
    except Exception as e:  # noqa: BLE001 - the old cache still works until its refresh token rotates
        logger.warning("could not store the microsoft token cache", extra={"error": type(e).__name__})


def _default_notification_url() -> str:
    base = get_settings().public_url.rstrip("/")
    return f"{base}{WEBHOOK_PATH}" if base else ""


def subscribe(acc: Account, p: Any) -> bool:
    """Create (or replace) the account's Graph subscription; False when Graph refused it."""
    tenant_id, account_id = acc.tenant_id, acc.account_id
    watch = watches.graph_watch(tenant_id, account_id)
    url = (watch.notification_url if watch else None) or _default_notification_url()
    if not url:
        logger.info("no public URL: microsoft account is polled only", extra={"account_id": account_id})
        return False
    if watch and watch.subscription_id:
        try:
            p.unsubscribe(watch.subscription_id)
        except ProviderError:
            pass
        watches.drop_graph_subscription(tenant_id, account_id, watch.subscription_id)
    client_state = pysecrets.token_urlsafe(48)
    try:
        sub = p.subscribe(url, client_state=client_state, lifecycle_url=url)
    except ProviderError as e:
        logger.warning("graph subscription refused", extra={"account_id": account_id, "error": str(e)})
        return False
    watches.save_graph_subscription(
        tenant_id,
        account_id,
        str(sub["id"]),
        client_state_hash(client_state),
        url,
        max(watch.renewed_at if watch else 0, int(time.time())),
    )
    return True


def maintain_subscription(acc: Account, provider: Any) -> None:
    """Run inside a sync: do what a lifecycle event asked for (renew or recreate)."""
    watch = watches.graph_watch(acc.tenant_id, acc.account_id)
    if watch is None or not watch.pending:
        return
    if not watches.take_graph_pending(watch):
        return  # another sync took it
    try:
        if watch.pending == "renew" and watch.subscription_id:
            provider.renew(watch.subscription_id)
            watches.mark_graph_renewed(acc.tenant_id, acc.account_id)
        else:
            subscribe(acc, provider)
    except ProviderError as e:
        logger.warning(
            "graph subscription upkeep failed", extra={"account_id": acc.account_id, "error": str(e)}
        )
        if watch.pending == "renew":
            subscribe(acc, provider)  # an expired subscription cannot be renewed: recreate it


class MicrosoftConnector(BaseConnector):
    provider = "microsoft"

    def open(self, account: Account, secrets: dict[str, str]) -> MailProvider:
        from mailsync.providers.graph import GraphProvider

        s = get_settings()
        ms_tokens = token_source(secrets[SECRET_KEY])
        return GraphProvider(ms_tokens, user=account.email, api_base=s.graph_api_base)

    def poll_seconds(self, settings: Settings) -> int:
        return settings.microsoft_poll_seconds

    def before_sync(self, account: Account, provider: Any, known: Any) -> None:
        maintain_subscription(account, provider)
        # A changed message we already hold is a flag update, not a re-download.
        provider.known = known

    def after_session(self, account: Account, provider: Any) -> None:
        if provider is not None:
            save_tokens(account, provider)

    def watch(self, account: Account, provider: Any) -> None:
        subscribe(account, provider)

    def forget(self, account: Account) -> None:
        """``DELETE /subscriptions/{id}`` (Graph: api/subscription-delete), so Microsoft stops
        notifying us about a mailbox we no longer mirror. Raises when Graph cannot be
        reached; the purge logs that and goes on (the subscription expires by itself)."""
        from mailsync.store.accounts import load_secrets

        watch = watches.graph_watch(account.tenant_id, account.account_id)
        if watch is None or not watch.subscription_id:
            return
        provider: Any
        with open_provider(account, dict(load_secrets(account))) as provider:
            provider.unsubscribe(watch.subscription_id)

    def send(self, account: Account, mail: Outgoing) -> Sent:
        """``sendMail`` (a reply: ``createReply`` + ``send``, which keeps the conversation).
        createReply needs the parent's Graph id; a copy we filed ourselves (``pending-…``, not
        synced back yet) has none: then the MIME reply (In-Reply-To/References) is sent."""
        refs = [
            Location.parse(loc).ref for loc in (mail.parent.get("locs") or {}).values() if ":" in str(loc)
        ]
        real = [r for r in refs if not r.startswith(PENDING)]
        provider = None
        try:
            with mail.open_provider(account, accounts.load_secrets(account)) as provider:
                provider.send(mail.raw, reply_to_id=real[0] if real else None)
        except ProviderError as e:
            raise BadGateway(f"the provider refused to send: {e}", code="provider_error") from e
        finally:
            save_tokens(account, provider)
        return Sent({r: {"status": "accepted"} for r in mail.recipients})


CONNECTOR = MicrosoftConnector()
