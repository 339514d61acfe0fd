"""Google Workspace accounts: hosted OAuth, Pub/Sub push, and watch renewal.

Invariants:

* OAuth (RFC 6749 authorization code + RFC 7636 PKCE S256, OpenID Connect): the
  ``state`` is an HMAC-signed handle of a server-side record that binds tenant,
  user, nonce, redirect URI and PKCE verifier; it expires after 10 minutes and is
  consumed by a conditional delete, so it works once.
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

References: developers.google.com/identity/protocols/oauth2/web-server,
developers.google.com/gmail/api/guides/push, .../reference/rest/v1/users/watch.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets as pysecrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailsync.config import Settings, get_settings
from mailsync.domain.sync import iso
from mailsync.errors import InvalidRequest, MailsyncError, NotConfigured, Unauthorized, Unprocessable
from mailsync.observability import logger
from mailsync.providers.base import ProviderError
from mailsync.store import crypto, keys, repo
from mailsync.store.models import (
    FolderItem,
    GoogleAddressItem,
    OAuthStateItem,
    TenantItem,
    WatchItem,
)
from mailsync.usecases.accounts import credential_context, new_account_doc, now_dt
from mailsync.usecases.jobs import enqueue_sync

SCOPES = "openid email https://www.googleapis.com/auth/gmail.modify"
STATE_TTL_SECONDS = 600
WATCH_RENEW_AFTER_SECONDS = 20 * 3600  # renewed daily; a watch lives 7 days


class InvalidState(MailsyncError):
    """A state we cannot trust: 400, and no redirect (we cannot vouch for its target)."""

    status, code = 400, "invalid_state"


class CallbackError(Exception):
    """A callback failure reported to the tenant's redirect URI as ``?error=<code>``."""

    def __init__(self, code: str, redirect_uri: str) -> None:
        super().__init__(code)
        self.code = code
        self.redirect_uri = redirect_uri


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _secret(s: Settings) -> bytes:
    if not s.state_secret or not s.google_client_id:
        raise NotConfigured("Google OAuth is not configured (client id and state secret)")
    return s.state_secret.encode()


def _sign(s: Settings, state_id: str) -> str:
    return _b64url(hmac.new(_secret(s), state_id.encode(), hashlib.sha256).digest())[:32]


def with_query(uri: str, **params: str) -> str:
    return uri + ("&" if urlsplit(uri).query else "?") + urlencode(params)


# ------------------------------------------------------------ allowlist
def redirect_allowed(uri: str, patterns: list[str]) -> bool:
    """``uri`` matches ``scheme://host[:port]`` (``:*`` = any port) plus an optional path prefix."""
    u = urlsplit(uri)
    if u.scheme not in ("http", "https") or not u.hostname or u.username or u.password:
        return False
    for pattern in patterns:
        p = urlsplit(pattern.replace(":*", ":0", 1))
        any_port = ":*" in pattern
        if p.scheme != u.scheme or p.hostname != u.hostname:
            continue
        if not any_port and (p.port or None) != (u.port or None):
            continue
        if u.path.startswith(p.path or "/") or not p.path:
            return True
    return False


def tenant_allowlist(tenant_id: str) -> list[str]:
    try:
        return [str(p) for p in (TenantItem.get(keys.tenant(tenant_id), "T").redirect_allowlist or [])]
    except DoesNotExist:
        return []


# ------------------------------------------------------------- authorize
def authorize(
    tenant_id: str, user_id: str, redirect_uri: str, callback_url: str, backfill_days: int = 0
) -> dict[str, str]:
    s = get_settings()
    _secret(s)
    u = urlsplit(redirect_uri)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise InvalidRequest("redirect_uri must be an absolute http(s) URL")
    if not redirect_allowed(redirect_uri, tenant_allowlist(tenant_id)):
        raise Unprocessable("redirect_uri is not on the tenant's allowlist", code="redirect_not_allowed")
    state_id = pysecrets.token_urlsafe(24)
    verifier = pysecrets.token_urlsafe(64)
    nonce = pysecrets.token_urlsafe(16)
    now = int(time.time())
    OAuthStateItem(
        f"OAUTH#{hashlib.sha256(state_id.encode()).hexdigest()}",
        "S",
        provider="google",
        tenant_id=tenant_id,
        user_id=user_id,
        redirect_uri=redirect_uri,
        callback_url=callback_url,
        nonce=nonce,
        verifier=verifier,
        backfill_days=backfill_days,
        expires_at=now + STATE_TTL_SECONDS,
        ttl=now + STATE_TTL_SECONDS + 3600,
    ).save()
    params = {
        "client_id": s.google_client_id,
        "redirect_uri": callback_url,
        "response_type": "code",
        "scope": SCOPES,
        "access_type": "offline",
        "prompt": "consent",
        "include_granted_scopes": "true",
        "state": f"{state_id}.{_sign(s, state_id)}",
        "code_challenge": _b64url(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256",
        "nonce": nonce,
    }
    return {"url": f"{s.google_auth_uri}?{urlencode(params)}"}


def consume_state(state: str, sign: Callable[[str], str], provider: str) -> OAuthStateItem:
    """The state's record, marked used (shared by every OAuth provider).

    An unsigned or unknown state is a 400 (we cannot vouch for any redirect target);
    a replayed one redirects with ``invalid_state``.
    """
    state_id, _, sig = (state or "").partition(".")
    if not state_id or not sig or not hmac.compare_digest(sig, sign(state_id)):
        raise InvalidState("the OAuth state is invalid")
    pk = f"OAUTH#{hashlib.sha256(state_id.encode()).hexdigest()}"
    try:
        item = OAuthStateItem.get(pk, "S", consistent_read=True)
    except DoesNotExist as e:
        raise InvalidState("the OAuth state is unknown") from e
    if item.provider != provider:
        raise InvalidState(f"the OAuth state is not a {provider} flow")
    try:  # single use: of two concurrent callbacks, one loses this condition
        item.update(actions=[OAuthStateItem.used.set(True)], condition=OAuthStateItem.used.does_not_exist())
    except UpdateError as e:
        raise CallbackError("invalid_state", item.redirect_uri) from e
    return item


def check_callback(st: OAuthStateItem, params: dict[str, str]) -> None:
    """The checks every callback makes before exchanging the code."""
    if int(st.expires_at) < time.time():
        raise CallbackError("state_expired", st.redirect_uri)
    if params.get("error"):
        code = params["error"] if params["error"] in ("access_denied",) else "authorization_failed"
        raise CallbackError(code, st.redirect_uri)
    if not params.get("code"):
        raise CallbackError("invalid_request", st.redirect_uri)


# -------------------------------------------------------------- callback
def callback(params: dict[str, str], *, http: Any = None) -> str:
    """Finish the flow; returns the URL to redirect the browser to."""
    s = get_settings()
    try:
        st = consume_state(params.get("state", ""), lambda i: _sign(s, i), "google")
    except CallbackError as e:
        logger.info("google oauth state replayed")
        return with_query(e.redirect_uri, error=e.code)
    try:
        check_callback(st, params)
        tokens = _exchange(s, st, params["code"], http)
        claims = _verify_id_token(s, tokens.get("id_token", ""), st, http)
        if not claims.get("hd"):
            raise CallbackError("workspace_required", st.redirect_uri)
        if not tokens.get("refresh_token"):
            raise CallbackError("exchange_failed", st.redirect_uri)
        account_id = connect_account(
            st.tenant_id, st.user_id, claims["email"], tokens["refresh_token"], int(st.backfill_days or 0)
        )
    except CallbackError as e:
        logger.info("google oauth callback refused", extra={"code": e.code, "tenant_id": st.tenant_id})
        return with_query(e.redirect_uri or st.redirect_uri, error=e.code)
    return with_query(st.redirect_uri, account_id=account_id)


def _http(http: Any) -> Any:
    if http is not None:
        return http
    import requests

    return requests.Session()


def _exchange(s: Settings, st: OAuthStateItem, code: str, http: Any) -> dict[str, Any]:
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


def _verify_id_token(s: Settings, token: str, st: OAuthStateItem, http: Any) -> dict[str, Any]:
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
    existing_id = repo.account_by_email(tenant_id, email)
    envelope_for = lambda aid: crypto.encrypt(  # noqa: E731
        {"google_refresh_token": refresh_token},
        key_id=s.kms_key_id,
        context=credential_context(tenant_id, aid),
    )
    if existing_id:
        acc = repo.get_account(tenant_id, existing_id)
        if acc is None or acc["provider"] != "google" or acc["owner"] != user_id:
            raise CallbackError("account_exists", "")
        repo.save_credentials_envelope(tenant_id, existing_id, envelope_for(existing_id))
        acc.update(state="initial_sync", error=None, failures=0, next_due=iso(now_dt()))
        repo.save_account(acc, s.due_shards)
        account_id = existing_id
    else:
        doc = new_account_doc(
            tenant_id, user_id, email, "google", backfill_days=backfill_days, saves_sent=True
        )
        account_id = doc["account_id"]
        repo.insert_account(doc, envelope_for(account_id), s.due_shards)
        GoogleAddressItem(
            f"GADDR#{email.lower()}",
            keys.account(tenant_id, account_id),
            tenant_id=tenant_id,
            account_id=account_id,
        ).save()
        WatchItem(
            "GWATCH", keys.account(tenant_id, account_id), tenant_id=tenant_id, account_id=account_id
        ).save()
    _list_folders_and_watch(tenant_id, account_id)
    enqueue_sync(tenant_id, account_id, "connect")
    return account_id


def _provider(acc: dict[str, Any]) -> Any:
    from mailsync.providers.factory import make_provider
    from mailsync.usecases.accounts import load_secrets

    return make_provider(acc, load_secrets(acc))


def _list_folders_and_watch(tenant_id: str, account_id: str) -> None:
    s = get_settings()
    acc = repo.get_account(tenant_id, account_id)
    assert acc is not None
    try:
        with _provider(acc) as p:
            folders = p.list_folders()
            if s.google_pubsub_topic:
                p.watch(s.google_pubsub_topic)
    except ProviderError as e:
        logger.warning("google account connected, but listing/watch failed", extra={"error": str(e)})
        return
    pk = keys.account(tenant_id, account_id)
    known = {f.name for f in repo.list_folders(tenant_id, account_id)}
    with FolderItem.batch_write() as b:
        for f in folders:
            if f.name not in known:
                b.save(FolderItem(pk, f"F#{f.name}", name=f.name, role=f.role, synced=False, present=True))


def forget_account(tenant_id: str, account_id: str, email: str) -> None:
    """Drop the push index entries of a deleted google account."""
    GoogleAddressItem(f"GADDR#{email.lower()}", keys.account(tenant_id, account_id)).delete()
    WatchItem("GWATCH", keys.account(tenant_id, account_id)).delete()


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
    targets = list(GoogleAddressItem.query(f"GADDR#{address}"))
    if not targets:
        logger.info("gmail push for an unknown address, acknowledged")
        return
    for t in targets:
        acc = repo.get_account(t.tenant_id, t.account_id)
        if acc is None or acc["state"] in ("paused", "auth_error", "deleting"):
            continue
        cursors = [
            int(f.cursor["historyId"])
            for f in repo.list_folders(t.tenant_id, t.account_id)
            if f.synced and f.cursor and f.cursor.get("phase") == "delta" and f.cursor.get("historyId")
        ]
        if cursors and min(cursors) >= history_id:
            continue  # already synced past this change
        enqueue_sync(t.tenant_id, t.account_id, "push", dedup_id=f"gpush:{message_id}:{t.account_id}")


# --------------------------------------------------------------- renewal
def renew_watches(now: float | None = None) -> int:
    """Re-call users.watch for every google account, once per day each (lease by condition)."""
    s = get_settings()
    if not s.google_pubsub_topic:
        return 0
    now = now or time.time()
    renewed = 0
    for w in WatchItem.query("GWATCH"):
        try:  # the lease: only one renewer wins for this account until the next period
            w.update(
                actions=[WatchItem.renewed_at.set(int(now))],
                condition=WatchItem.renewed_at < int(now - WATCH_RENEW_AFTER_SECONDS),
            )
        except UpdateError:
            continue
        acc = repo.get_account(w.tenant_id, w.account_id)
        if acc is None or acc["state"] in ("auth_error", "deleting", "paused"):
            continue
        try:
            with _provider(acc) as p:
                p.watch(s.google_pubsub_topic)
            renewed += 1
        except ProviderError as e:
            logger.warning("watch renewal failed", extra={"account_id": w.account_id, "error": str(e)})
    return renewed
