"""Google Workspace accounts: hosted OAuth, Pub/Sub push, and watch renewal.

Invariants:

* OAuth (RFC 6749 authorization code + RFC 7636 PKCE S256, OpenID Connect): the
  ``state`` is an HMAC-signed handle of a server-side record that binds tenant,
  user, nonce, redirect URI and PKCE verifier; it expires after 10 minutes and is
  consumed by a conditional update, so it works once.
* Only Workspace identities are accepted: an ID token without ``hd`` is consumer
  Gmail and is refused (``workspace_required``).
* Every callback failure redirects to the tenant's redirect URI with an
  ``error`` code; only a state we cannot trust answers 400 (we must not redirect
  to an address we cannot vouch for).
* The refresh token is envelope-encrypted like IMAP passwords; reconnecting an
  account keeps its mails and links.
* The push webhook verifies the OIDC token (signature, audience, verified
  service-account email), never calls Gmail, and always acks (204) what it
  cannot use so that Pub/Sub does not retry forever.

The state record, the redirect allowlist, the callback's shared checks, the account
(re)connection and the renewal lease are the provider-neutral pieces in
:mod:`mailsync.usecases.oauth`.

References: developers.google.com/identity/protocols/oauth2/web-server,
developers.google.com/gmail/api/guides/push, .../reference/rest/v1/users/watch.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets as pysecrets
import time
from typing import Any
from urllib.parse import urlencode

from mailsync import connectors
from mailsync.config import Settings, get_settings
from mailsync.domain.ports import ProviderError
from mailsync.errors import NotConfigured, Unauthorized
from mailsync.observability import logger
from mailsync.store import accounts as repo
from mailsync.store import watches
from mailsync.store.oauth import OAuthState
from mailsync.store.queue import sync_jobs
from mailsync.usecases import oauth
from mailsync.usecases.oauth import CallbackError

SCOPES = "openid email https://www.googleapis.com/auth/gmail.modify"
WATCH_RENEW_AFTER_SECONDS = 20 * 3600  # renewed daily; a watch lives 7 days


def _secret(s: Settings) -> bytes:
    if not s.state_secret or not s.google_client_id:
        raise NotConfigured("Google OAuth is not configured (client id and state secret)")
    return s.state_secret.encode()


def _sign(s: Settings, state_id: str) -> str:
    return oauth.signature(_secret(s), state_id)


# ------------------------------------------------------------- authorize
def authorize(
    tenant_id: str, user_id: str, redirect_uri: str, callback_url: str, backfill_days: int = 0
) -> dict[str, str]:
    s = get_settings()
    _secret(s)

    def start(state_id: str) -> oauth.Started:
        verifier = pysecrets.token_urlsafe(64)
        nonce = pysecrets.token_urlsafe(16)
        params = {
            "client_id": s.google_client_id,
            "redirect_uri": callback_url,
            "response_type": "code",
            "scope": SCOPES,
            "access_type": "offline",
            "prompt": "consent",
            "include_granted_scopes": "true",
            "state": f"{state_id}.{_sign(s, state_id)}",
            "code_challenge": oauth.b64url(hashlib.sha256(verifier.encode()).digest()),
            "code_challenge_method": "S256",
            "nonce": nonce,
        }
        return oauth.Started(f"{s.google_auth_uri}?{urlencode(params)}", nonce, verifier)

    return oauth.authorize("google", tenant_id, user_id, redirect_uri, callback_url, backfill_days, start)


# -------------------------------------------------------------- callback
def callback(params: dict[str, str], *, http: Any = None) -> str:
    """Finish the flow; returns the URL to redirect the browser to."""
    s = get_settings()

    def connect(st: OAuthState) -> str:
        tokens = _exchange(s, st, params["code"], http)
        claims = _verify_id_token(s, tokens.get("id_token", ""), st, http)
        if not claims.get("hd"):
            raise CallbackError("workspace_required", st.redirect_uri)
        if not tokens.get("refresh_token"):
            raise CallbackError("exchange_failed", st.redirect_uri)
        return connect_account(
            st.tenant_id, st.user_id, claims["email"], tokens["refresh_token"], int(st.backfill_days or 0)
        )

    return oauth.callback(params, "google", lambda i: _sign(s, i), connect)


def _http(http: Any) -> Any:
    if http is not None:
        return http
    import requests

    return requests.Session()


def _exchange(s: Settings, st: OAuthState, code: str, http: Any) -> dict[str, Any]:
    try:
        r = _http(http).post(
            s.google_token_uri,
            data={
                "code": code,
                "client_id": s.google_client_id,
                "client_secret": s.google_client_secret,
                "redirect_uri": st.callback_url,
                "grant_type": "authorization_code",
                "code_verifier": st.verifier,
            },
            timeout=15,
        )
        body = r.json()
    except Exception as e:  # noqa: BLE001 - any transport or JSON failure is an exchange failure
        raise CallbackError("exchange_failed", st.redirect_uri) from e
    if r.status_code != 200 or not isinstance(body, dict):
        raise CallbackError("exchange_failed", st.redirect_uri)
    return body


def _google_request(http: Any) -> Any:
    import google.auth.transport.requests

    return (
        google.auth.transport.requests.Request(session=http)
        if http is not None
        else (google.auth.transport.requests.Request())
    )


def _verify_id_token(s: Settings, token: str, st: OAuthState, http: Any) -> dict[str, Any]:
    from google.oauth2 import id_token

    try:
        claims: dict[str, Any] = id_token.verify_token(  # type: ignore[no-untyped-call,assignment]
            token, _google_request(http), audience=s.google_client_id, certs_url=s.google_certs_uri
        )
    except Exception as e:  # noqa: BLE001 - google-auth raises several types for a bad token
        raise CallbackError("invalid_token", st.redirect_uri) from e
    if claims.get("nonce") != st.nonce or not claims.get("email") or not claims.get("email_verified"):
        raise CallbackError("invalid_token", st.redirect_uri)
    return claims


def connect_account(
    tenant_id: str, user_id: str, email: str, refresh_token: str, backfill_days: int = 0
) -> str:
    """Create the google account, or reconnect the existing one (mails and links kept)."""
    s = get_settings()
    envelope_for = lambda aid: repo.encrypt_credentials(  # noqa: E731
        tenant_id, aid, {"google_refresh_token": refresh_token}, s.kms_key_id
    )
    account_id, created = oauth.connect_account(
        tenant_id, user_id, email, "google", envelope_for, backfill_days
    )
    if created:
        watches.add_gmail_watch(tenant_id, account_id, email)
    _list_folders_and_watch(tenant_id, account_id)
    sync_jobs.enqueue(tenant_id, account_id, "connect")
    return account_id


def _list_folders_and_watch(tenant_id: str, account_id: str) -> None:
    acc = repo.get_account(tenant_id, account_id)
    assert acc is not None
    try:
        with oauth.provider_for(acc) as p:
            folders = p.list_folders()
            connectors.for_account(acc).watch(acc, p)
    except ProviderError as e:
        logger.warning("google account connected, but listing/watch failed", extra={"error": str(e)})
        return
    oauth.add_folders(tenant_id, account_id, folders)


# --------------------------------------------------------------- webhook
def handle_push(authorization: str, body: str | None) -> None:
    """Verify a Pub/Sub push and enqueue a sync of the account it names (no Gmail call)."""
    s = get_settings()
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing push token")
    from google.oauth2 import id_token

    try:
        claims = id_token.verify_token(  # type: ignore[no-untyped-call]
            token,
            _google_request(None),
            audience=s.google_push_audience or None,
            certs_url=s.google_certs_uri,
        )
    except Exception as e:  # noqa: BLE001 - any verification failure is a 401
        raise Unauthorized("invalid push token") from e
    if not s.google_push_audience or claims.get("aud") != s.google_push_audience:
        raise Unauthorized("wrong audience")
    if not claims.get("email_verified") or claims.get("email") != s.google_push_service_account:
        raise Unauthorized("push token of an unexpected sender")
    try:
        envelope = json.loads(body or "")
        message = envelope["message"]
        data = json.loads(base64.b64decode(message["data"]))
        address, history_id = str(data["emailAddress"]).lower(), int(data["historyId"])
        message_id = str(message.get("messageId") or message.get("message_id") or history_id)
    except (ValueError, KeyError, TypeError) as e:
        logger.warning("gmail push: malformed body, acknowledged", extra={"error": type(e).__name__})
        return
    targets = watches.gmail_accounts(address)
    if not targets:
        logger.info("gmail push for an unknown address, acknowledged")
        return
    for t in targets:
        acc = repo.get_account(t.tenant_id, t.account_id)
        if acc is None or acc.state in ("paused", "auth_error", "deleting"):
            continue
        cursors = [
            int(f.cursor["historyId"])
            for f in repo.list_folders(t.tenant_id, t.account_id)
            if f.synced and f.cursor and f.cursor.get("phase") == "delta" and f.cursor.get("historyId")
        ]
        if cursors and min(cursors) >= history_id:
            continue  # already synced past this change
        sync_jobs.enqueue(t.tenant_id, t.account_id, "push", dedup_id=f"gpush:{message_id}:{t.account_id}")


# --------------------------------------------------------------- renewal
def renew_watches(now: float | None = None) -> int:
    """Re-call users.watch for every google account, once per day each (lease by condition)."""
    s = get_settings()
    if not s.google_pubsub_topic:
        return 0
    now = now or time.time()
    renewed = 0
    skip = ("auth_error", "deleting", "paused")
    leased = watches.lease_gmail_watches(WATCH_RENEW_AFTER_SECONDS, now)
    for w, acc in oauth.accounts_to_renew(leased, skip):
        try:
            with oauth.provider_for(acc) as p:
                p.watch(s.google_pubsub_topic)
            renewed += 1
        except ProviderError as e:
            logger.warning("watch renewal failed", extra={"account_id": w.account_id, "error": str(e)})
    return renewed
