"""Hosted OAuth pieces every provider shares (:mod:`mailsync.usecases.google`,
:mod:`mailsync.usecases.microsoft`): the ``state`` record, the redirect allowlist, the
callback's checks and redirects, connecting (or reconnecting) the account, and the lease
under which its push channel (Gmail watch, Graph subscription) is renewed.

Invariants:

* The ``state`` (RFC 6749 section 10.12) is ``<id>.<sig>``: a random id and its HMAC-SHA256
  under the state secret (each provider signs in its own domain). The id names a
  server-side record (``OAUTH#<sha256(id)>``) that binds provider, tenant, user, redirect
  URI, nonce and PKCE verifier (RFC 7636); it expires after :data:`STATE_TTL_SECONDS` and
  is consumed by a conditional update, so it works once.
* A state we cannot trust (unsigned, unknown, or another provider's) answers 400
  (:class:`InvalidState`): we must not redirect to an address we cannot vouch for. Every
  other callback failure redirects to the tenant's redirect URI with ``?error=<code>``
  (:class:`CallbackError`); a replayed state redirects with ``invalid_state``.
* A redirect URI is an absolute http(s) URL on the tenant's allowlist
  (``scheme://host[:port]``, ``:*`` = any port, plus an optional path prefix).
* Connecting an address that is already an account of the same user and provider
  reconnects it (new credentials, mails and links kept); anyone else's is ``account_exists``.
* A push channel is renewed at most once per period and account: the renewer that wins
  the conditional update of the watch item's ``renewed_at`` does it (a lease).

References: RFC 6749 (authorization code grant), RFC 7636 (PKCE),
developers.google.com/identity/protocols/oauth2/web-server,
learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as pysecrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from mailsync import connectors
from mailsync.config import get_settings
from mailsync.domain.account import Account, new_account
from mailsync.domain.clock import utcnow
from mailsync.domain.health import recovered
from mailsync.domain.ports import FolderInfo
from mailsync.errors import InvalidRequest, MailsyncError, Unprocessable, UserPurging
from mailsync.observability import logger, trace_http
from mailsync.store import accounts as repo
from mailsync.store import oauth as states
from mailsync.store import tenants
from mailsync.store.accounts import load_secrets
from mailsync.store.oauth import OAuthState
from mailsync.usecases.lifecycle import ensure_not_purging

trace_http()  # the token exchanges with Google and Microsoft are HTTP calls

STATE_TTL_SECONDS = 600


class InvalidState(MailsyncError):
    """A state we cannot trust: 400, and no redirect (we cannot vouch for its target)."""

    status, code = 400, "invalid_state"


class CallbackError(Exception):
    """A callback failure reported to the tenant's redirect URI as ``?error=<code>``."""

    def __init__(self, code: str, redirect_uri: str) -> None:
        super().__init__(code)
        self.code = code
        self.redirect_uri = redirect_uri


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def signature(secret: bytes, message: str) -> str:
    """The state signature: HMAC-SHA256 of ``message``, base64url, 32 characters."""
    return b64url(hmac.new(secret, message.encode(), hashlib.sha256).digest())[:32]


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
    return tenants.redirect_allowlist(tenant_id)


# ------------------------------------------------------------- authorize
@dataclass
class Started:
    """What a provider's sign-in start gives for the state record: the URL to send the browser
    to, the nonce and PKCE verifier, and (msal) the flow to keep server-side."""

    url: str
    nonce: str
    verifier: str
    flow: str | None = None


def authorize(
    provider: str,
    tenant_id: str,
    user_id: str,
    redirect_uri: str,
    callback_url: str,
    backfill_days: int,
    start: Callable[[str], Started],
) -> dict[str, str]:
    """Check ``redirect_uri``, let ``start(state id)`` begin the provider's flow, and store the
    state record; returns ``{"url": ...}`` for the browser (409 ``user_purging`` while the
    user's mail is being purged)."""
    ensure_not_purging(tenant_id, user_id)
    u = urlsplit(redirect_uri)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise InvalidRequest("redirect_uri must be an absolute http(s) URL")
    if not redirect_allowed(redirect_uri, tenant_allowlist(tenant_id)):
        raise Unprocessable("redirect_uri is not on the tenant's allowlist", code="redirect_not_allowed")
    state_id = pysecrets.token_urlsafe(24)
    started = start(state_id)
    now = int(time.time())
    record = OAuthState(
        provider=provider,
        tenant_id=tenant_id,
        user_id=user_id,
        redirect_uri=redirect_uri,
        callback_url=callback_url,
        nonce=started.nonce,
        verifier=started.verifier,
        expires_at=now + STATE_TTL_SECONDS,
        backfill_days=backfill_days,
        flow=started.flow,
    )
    states.save_state(state_id, record, ttl=now + STATE_TTL_SECONDS + 3600)
    return {"url": started.url}


# -------------------------------------------------------------- callback
def consume_state(state: str, sign: Callable[[str], str], provider: str) -> OAuthState:
    """The state's record, marked used (shared by every OAuth provider).

    An unsigned or unknown state is a 400 (we cannot vouch for any redirect target);
    a replayed one redirects with ``invalid_state``.
    """
    state_id, _, sig = (state or "").partition(".")
    if not state_id or not sig or not hmac.compare_digest(sig, sign(state_id)):
        raise InvalidState("the OAuth state is invalid")
    item = states.get_state(state_id)
    if item is None:
        raise InvalidState("the OAuth state is unknown")
    if item.provider != provider:
        raise InvalidState(f"the OAuth state is not a {provider} flow")
    try:
        states.mark_used(state_id, item)
    except states.StateUsed as e:
        raise CallbackError("invalid_state", item.redirect_uri) from e
    return item


def check_callback(st: OAuthState, params: dict[str, str]) -> None:
    """The checks every callback makes before exchanging the code."""
    if int(st.expires_at) < time.time():
        raise CallbackError("state_expired", st.redirect_uri)
    if params.get("error"):
        code = params["error"] if params["error"] in ("access_denied",) else "authorization_failed"
        raise CallbackError(code, st.redirect_uri)
    if not params.get("code"):
        raise CallbackError("invalid_request", st.redirect_uri)


def callback(
    params: dict[str, str],
    provider: str,
    sign: Callable[[str], str],
    connect: Callable[[OAuthState], str],
    *,
    check_state: Callable[[OAuthState], None] | None = None,
) -> str:
    """Finish a flow: consume the state (``check_state`` may refuse it with a 400), run the
    shared checks, and ``connect(state)`` (the provider's exchange; returns the account id).
    Returns the URL to redirect the browser to: ``account_id`` or ``error`` on the tenant's
    redirect URI."""
    try:
        st = consume_state(params.get("state", ""), sign, provider)
        if check_state is not None:
            check_state(st)
    except CallbackError as e:
        logger.info(f"{provider} oauth state replayed")
        return with_query(e.redirect_uri, error=e.code)
    try:
        check_callback(st, params)
        account_id = connect(st)
    except CallbackError as e:
        logger.info(f"{provider} oauth callback refused", extra={"code": e.code, "tenant_id": st.tenant_id})
        return with_query(e.redirect_uri or st.redirect_uri, error=e.code)
    return with_query(st.redirect_uri, account_id=account_id)


# --------------------------------------------------------------- account
def connect_account(
    tenant_id: str,
    user_id: str,
    email: str,
    provider: str,
    envelope_for: Callable[[str], dict[str, Any]],
    backfill_days: int = 0,
) -> tuple[str, bool]:
    """Create the account of ``email`` (True), or reconnect the user's existing one of this
    provider (False: new credentials, mails and links kept); ``envelope_for(account id)`` is
    the encrypted credentials. Someone else's address raises ``account_exists``."""
    s = get_settings()
    try:
        ensure_not_purging(tenant_id, user_id)  # the flow may have begun before the DELETE
    except UserPurging as e:
        raise CallbackError(e.code, "") from e
    if tenants.is_deleting(tenant_id):  # the tenant left while its user was at the provider
        raise CallbackError("tenant_deleted", "")
    existing_id = repo.account_by_email(tenant_id, email)
    if existing_id:
        acc = repo.get_account(tenant_id, existing_id)
        if acc is not None and acc.state == "deleting":
            raise CallbackError("account_deleting", "")
        if acc is None or acc.provider != provider or acc.owner != user_id:
            raise CallbackError("account_exists", "")
        repo.save_credentials(tenant_id, existing_id, envelope_for(existing_id))
        # Healthy at once (auth_error cleared): active, or initial_sync before its first load.
        acc = recovered(acc.with_(state="initial_sync"), now=utcnow())
        repo.save_account(acc, s.due_shards)
        return existing_id, False
    doc = new_account(tenant_id, user_id, email, provider, backfill_days=backfill_days, saves_sent=True)
    account_id = doc.account_id
    repo.insert_account(doc, envelope_for(account_id), s.due_shards)
    return account_id, True


def provider_for(acc: Account) -> Any:
    """The provider session of an account (its stored credentials decrypted)."""
    return connectors.open_provider(acc, load_secrets(acc))


def add_folders(tenant_id: str, account_id: str, folders: Iterable[FolderInfo]) -> None:
    """Store the folders the account does not know yet (not synced until chosen)."""
    repo.add_folders(tenant_id, account_id, folders)


# --------------------------------------------------------------- renewal
def accounts_to_renew(leased: Iterable[Any], skip_states: Iterable[str]) -> Iterator[tuple[Any, Account]]:
    """Each leased registry entry with its account (accounts in ``skip_states`` are passed over)."""
    skip = tuple(skip_states)
    for w in leased:
        acc = repo.get_account(w.tenant_id, w.account_id)
        if acc is None or acc.state in skip:
            continue
        yield w, acc
