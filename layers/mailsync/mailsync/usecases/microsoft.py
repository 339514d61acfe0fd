"""Microsoft 365 accounts: hosted OAuth with msal, Graph change notifications, and renewal.

Invariants (the same shape as :mod:`mailsync.usecases.google`):

* OAuth: msal's ``initiate_auth_code_flow`` (authorization code + PKCE S256 + nonce) with
  our own ``state``: an HMAC-signed handle of a server-side record that binds tenant, user
  and redirect URI and keeps msal's flow dict; it expires after 10 minutes and is consumed
  by a conditional update, so it works once. The redirect allowlist is the shared one
  (:mod:`mailsync.usecases.oauth`, with the state record and the callback's checks).
* Every callback failure redirects to the tenant's redirect URI with an ``error`` code;
  only a state we cannot trust answers 400.
* msal's serialized token cache is envelope-encrypted like IMAP passwords
  (``microsoft_token_cache``) and stored again whenever msal changed it.
* Change notifications: one Graph subscription per account with a random ``clientState``
  stored only as its SHA-256; the webhook answers the validation handshake, checks the
  ``clientState`` in constant time and enqueues one sync per account. The webhook never
  calls Graph: lifecycle events that need Graph (``reauthorizationRequired``,
  ``subscriptionRemoved``) are recorded on the account's watch item and done by the sync
  they enqueue (:func:`mailsync.connectors.microsoft.maintain_subscription`).

References: learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow,
learn.microsoft.com/graph/change-notifications-delivery-webhooks, .../change-notifications-lifecycle-events.
"""

from __future__ import annotations

import hmac
import json
import time
import warnings
from typing import Any

from mailsync.config import Settings, get_settings
from mailsync.connectors.microsoft import SECRET_KEY, WEBHOOK_PATH, save_tokens, subscribe, token_source
from mailsync.connectors.microsoft import client_state_hash as _hash
from mailsync.connectors.microsoft import envelope as _envelope
from mailsync.domain.ports import ProviderError
from mailsync.errors import NotConfigured
from mailsync.observability import logger
from mailsync.store import accounts as repo
from mailsync.store import watches
from mailsync.store.oauth import OAuthState
from mailsync.store.queue import sync_jobs
from mailsync.usecases import oauth
from mailsync.usecases.oauth import CallbackError, InvalidState

PROVIDER = "microsoft"
# A mail subscription lives at most 4,230 minutes (~70 h): renew twice a day.
RENEW_AFTER_SECONDS = 12 * 3600
__all__ = ["SECRET_KEY", "WEBHOOK_PATH", "save_tokens", "token_source"]
SKIP_STATES = ("paused", "auth_error", "deleting")


def _secret(s: Settings) -> bytes:
    if not s.state_secret or not s.microsoft_client_id:
        raise NotConfigured("Microsoft OAuth is not configured (client id and state secret)")
    return s.state_secret.encode()


def _sign(s: Settings, state_id: str) -> str:
    return oauth.signature(_secret(s), f"ms:{state_id}")


def _app_or_callback_error(tokens: Any, redirect_uri: str) -> Any:
    try:
        return tokens.app()
    except ProviderError as e:
        logger.warning("microsoft authority unusable", extra={"error": str(e)})
        raise CallbackError("exchange_failed", redirect_uri) from e


# ------------------------------------------------------------- authorize
def authorize(
    tenant_id: str, user_id: str, redirect_uri: str, callback_url: str, backfill_days: int = 0
) -> dict[str, str]:
    from mailsync.providers.graph import GRAPH_SCOPES

    s = get_settings()
    _secret(s)

    def start(state_id: str) -> oauth.Started:
        try:
            app = token_source(None).app()
            with warnings.catch_warnings():
                # msal recommends form_post; our callback is a GET like Google's (the code is
                # PKCE-bound and the state single use).
                warnings.filterwarnings("ignore", message="response_mode='form_post'")
                flow = app.initiate_auth_code_flow(
                    list(GRAPH_SCOPES), redirect_uri=callback_url, state=f"{state_id}.{_sign(s, state_id)}"
                )
        except ProviderError as e:
            raise NotConfigured(f"Microsoft sign-in is unavailable: {e}") from e
        return oauth.Started(
            str(flow["auth_uri"]),
            nonce=str(flow.get("nonce") or ""),
            verifier=str(flow.get("code_verifier") or ""),
            flow=json.dumps(flow),
        )

    return oauth.authorize(PROVIDER, tenant_id, user_id, redirect_uri, callback_url, backfill_days, start)


# -------------------------------------------------------------- callback
def _require_flow(st: OAuthState) -> None:
    if not st.flow:
        raise InvalidState("the OAuth state carries no Microsoft flow")


def callback(params: dict[str, str], notification_url: str = "") -> str:
    """Finish the flow; returns the URL to redirect the browser to."""
    s = get_settings()

    def connect(st: OAuthState) -> str:
        tokens = token_source(None)
        app = _app_or_callback_error(tokens, st.redirect_uri)
        try:
            result = app.acquire_token_by_auth_code_flow(json.loads(st.flow or "{}"), dict(params))
        except Exception as e:  # noqa: BLE001 - msal raises ValueError on a state mismatch, transport errors
            raise CallbackError("exchange_failed", st.redirect_uri) from e
        if not isinstance(result, dict) or "access_token" not in result:
            raise CallbackError("exchange_failed", st.redirect_uri)
        address = _mailbox_address(str(result["access_token"]), st.redirect_uri)
        return connect_account(
            st.tenant_id,
            st.user_id,
            address,
            tokens.serialize(),
            int(st.backfill_days or 0),
            notification_url=notification_url,
        )

    return oauth.callback(params, PROVIDER, lambda i: _sign(s, i), connect, check_state=_require_flow)


def _mailbox_address(access_token: str, redirect_uri: str) -> str:
    from mailsync.providers.graph import GraphProvider

    try:
        with GraphProvider(
            lambda: access_token,
            user="pending-" + _hash(access_token)[:12],
            api_base=get_settings().graph_api_base,
        ) as p:
            address = p.mailbox_address()
    except ProviderError as e:
        raise CallbackError("profile_failed", redirect_uri) from e
    if not address or "@" not in address:
        raise CallbackError("profile_failed", redirect_uri)
    return address.lower()


def connect_account(
    tenant_id: str,
    user_id: str,
    email: str,
    cache_json: str,
    backfill_days: int = 0,
    *,
    notification_url: str = "",
) -> str:
    """Create the microsoft account, or reconnect the existing one (mails and links kept)."""
    account_id, _ = oauth.connect_account(
        tenant_id, user_id, email, PROVIDER, lambda aid: _envelope(tenant_id, aid, cache_json), backfill_days
    )
    watches.register_graph_account(tenant_id, account_id, notification_url)
    _list_folders_and_subscribe(tenant_id, account_id)
    sync_jobs.enqueue(tenant_id, account_id, "connect")
    return account_id


def _list_folders_and_subscribe(tenant_id: str, account_id: str) -> None:
    acc = repo.get_account(tenant_id, account_id)
    assert acc is not None
    provider = oauth.provider_for(acc)
    try:
        with provider as p:
            folders = p.list_folders()
            subscribe(acc, p)
    except ProviderError as e:
        logger.warning("microsoft account connected, but listing failed", extra={"error": str(e)})
        return
    finally:
        save_tokens(acc, provider)
    oauth.add_folders(tenant_id, account_id, folders)


# --------------------------------------------------------------- webhook
def handle_notification(query: dict[str, str], body: str | None) -> tuple[int, str]:
    """Answer a Graph POST to the webhook: (status, text/plain body). Never calls Graph."""
    token = (query or {}).get("validationToken")
    if token is not None:
        return 200, token  # the validation handshake (API Gateway decoded the query string)
    try:
        payload = json.loads(body or "")
        items = payload["value"]
        if not isinstance(items, list):
            raise TypeError("value")
    except (ValueError, KeyError, TypeError) as e:
        logger.warning("graph notification: malformed body, dropped", extra={"error": type(e).__name__})
        return 202, ""
    enqueued: set[tuple[str, str]] = set()
    for n in items:
        if not isinstance(n, dict):
            continue
        sid = str(n.get("subscriptionId") or "")
        targets = watches.graph_subscribers(sid) if sid else []
        client_state = str(n.get("clientState") or "")
        ok = [t for t in targets if hmac.compare_digest(_hash(client_state), t.client_state_hash)]
        if not ok:
            logger.warning(
                "graph notification with an unknown subscription or a wrong clientState, dropped",
                extra={"known_subscription": bool(targets)},
            )
            continue
        event = n.get("lifecycleEvent")
        for t in ok:
            acc = repo.get_account(t.tenant_id, t.account_id)
            if acc is None or acc.state in SKIP_STATES:
                continue
            if event in ("reauthorizationRequired", "subscriptionRemoved"):
                _mark(
                    t.tenant_id, t.account_id, "renew" if event == "reauthorizationRequired" else "recreate"
                )
            elif event and event != "missed":
                logger.info("graph lifecycle event ignored", extra={"event": str(event)})
                continue
            key = (t.tenant_id, t.account_id)
            if key not in enqueued:
                enqueued.add(key)
                sync_jobs.enqueue(t.tenant_id, t.account_id, str(event or "push"))
    return 202, ""


def _mark(tenant_id: str, account_id: str, pending: str) -> None:
    watches.mark_graph_pending(tenant_id, account_id, pending)


# --------------------------------------------------------------- renewal
def renew_subscriptions(now: float | None = None) -> int:
    """Renew every microsoft account's Graph subscription, once per period each, well before
    the 4,230-minute maximum (lease by condition). A missing or unrenewable subscription is
    marked for the account's next sync to recreate (the renewer only reads and updates)."""
    now = now or time.time()
    renewed = 0
    leased = watches.lease_graph_watches(RENEW_AFTER_SECONDS, now)
    for w, acc in oauth.accounts_to_renew(leased, SKIP_STATES):
        if not w.subscription_id:
            _mark(w.tenant_id, w.account_id, "recreate")
            continue
        try:
            with oauth.provider_for(acc) as p:
                p.renew(w.subscription_id)
            renewed += 1
        except ProviderError as e:
            logger.warning("subscription renewal failed", extra={"account_id": w.account_id, "error": str(e)})
            _mark(w.tenant_id, w.account_id, "recreate")
    return renewed
