"""Microsoft identity platform tokens for the Graph adapter: msal's serialized token cache.

References: msal for Python (``ConfidentialClientApplication``, ``SerializableTokenCache``,
``acquire_token_silent_with_error``) and the Microsoft identity platform's OAuth 2.0 error
codes (``invalid_grant``, ``interaction_required``, ``consent_required``, ``login_required``).

The provider takes any ``() -> access token`` callable. :class:`MsalTokenSource` is the one
for production: msal ``ConfidentialClientApplication`` with a ``SerializableTokenCache``
loaded from the stored JSON, ``acquire_token_silent_with_error`` (the error-reporting variant of
``acquire_token_silent``); ``invalid_grant`` / ``interaction_required`` (and a cache without a
usable account) raise :class:`AuthFailed`. When msal rotated the refresh token,
:attr:`MsalTokenSource.changed` is true and :meth:`MsalTokenSource.serialize` gives the JSON
to store (encrypted) again.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import requests

from mailsync.domain.ports import AuthFailed, ConnectionFailed, ProviderError

__all__ = ["AUTH_ERRORS", "DEFAULT_AUTHORITY", "GRAPH_SCOPES", "MsalTokenSource"]

DEFAULT_AUTHORITY = "https://login.microsoftonline.com/organizations"
# msal adds offline_access, openid and profile itself (and refuses them in this list).
GRAPH_SCOPES = ("Mail.ReadWrite", "Mail.Send", "User.Read")
AUTH_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required", "login_required"})


class MsalTokenSource:
    """Access tokens for Graph from msal's serialized token cache.

    ``authority`` is e.g. ``https://login.microsoftonline.com/organizations`` (or the fake's).
    Instance discovery is turned off for hosts msal does not know (it would ask
    login.microsoftonline.com about them). ``http_client`` is a ``requests.Session`` (tests give
    one that trusts the fake's CA; ``REQUESTS_CA_BUNDLE`` works too). The msal application is
    built lazily (its construction fetches the OpenID configuration).
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        authority: str,
        cache_json: str | None,
        http_client: Any = None,
        *,
        scopes: Iterable[str] = GRAPH_SCOPES,
        home_account_id: str | None = None,
        username: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        import msal

        self.client_id = client_id
        self.client_secret = client_secret
        self.authority = authority.rstrip("/")
        self.http_client = http_client
        self.scopes = list(scopes)
        self.home_account_id = home_account_id
        self.username = username
        self.timeout = timeout  # every identity-platform request (msal's own default: none)
        self.cache = msal.SerializableTokenCache()
        if cache_json:
            self.cache.deserialize(cache_json)
        self._app: Any = None
        self._force = False
        self._lock = threading.Lock()
        self.last_result: dict[str, Any] | None = None

    def app(self) -> Any:
        if self._app is None:
            import msal
            from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

            host = (urlsplit(self.authority).hostname or "").lower()
            kwargs: dict[str, Any] = {}
            if host not in WELL_KNOWN_AUTHORITY_HOSTS:
                kwargs["instance_discovery"] = False
            if self.http_client is not None:
                kwargs["http_client"] = self.http_client
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=self.client_secret,
                    authority=self.authority,
                    token_cache=self.cache,
                    timeout=self.timeout,
                    **kwargs,
                )
            except ValueError as e:
                raise ProviderError(f"Microsoft authority unusable: {e}") from e
            except (requests.RequestException, OSError) as e:
                raise ConnectionFailed(f"Microsoft identity platform unreachable: {e}") from e
        return self._app

    def account(self) -> dict[str, Any]:
        accounts = (
            self.app().get_accounts(username=self.username) if self.username else self.app().get_accounts()
        )
        if self.home_account_id:
            accounts = [a for a in accounts if a.get("home_account_id") == self.home_account_id]
        if not accounts:
            raise AuthFailed("Microsoft: no signed-in account in the token cache")
        return dict(accounts[0])

    def invalidate(self) -> None:
        """The next call skips cached access tokens (after a 401)."""
        self._force = True

    def __call__(self) -> str:
        with self._lock:
            app = self.app()
            account = self.account()
            try:
                result = app.acquire_token_silent_with_error(self.scopes, account, force_refresh=self._force)
            except (requests.RequestException, OSError) as e:
                raise ConnectionFailed(f"Microsoft token endpoint unreachable: {e}") from e
            self.last_result = result
            if not result:
                raise AuthFailed("Microsoft: no usable token in the cache (sign in again)")
            if "access_token" not in result:
                error = str(result.get("error") or "")
                desc = str(result.get("error_description") or "").splitlines()[0:1]
                text = f"{error}: {desc[0] if desc else ''}".strip(": ")
                if error in AUTH_ERRORS:
                    raise AuthFailed(f"Microsoft refused the refresh token ({text})")
                raise ProviderError(f"Microsoft token error ({text})")
            self._force = False
            return str(result["access_token"])

    @property
    def changed(self) -> bool:
        """True when msal changed the cache (a new access/refresh token): store :meth:`serialize`."""
        return bool(self.cache.has_state_changed)

    def serialize(self) -> str:
        return str(self.cache.serialize())
