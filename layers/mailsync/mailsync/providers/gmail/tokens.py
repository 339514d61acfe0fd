"""Google access tokens for the Gmail adapter: google-auth credentials from a stored refresh token.

References: Google Identity "Using OAuth 2.0 for Web Server Applications" (refresh tokens,
``invalid_grant`` when revoked or expired) and the google-auth ``Credentials.refresh`` API.

Invariants: a refused refresh token (``invalid_grant``, or any non-retryable refresh error)
raises :class:`AuthFailed`; a transport failure raises :class:`ConnectionFailed`. The token is
refreshed when expired and once more after :meth:`CredentialsTokenSource.invalidate` (a 401).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable
from typing import Any

from mailsync.domain.ports import AuthFailed, ConnectionFailed

__all__ = ["DEFAULT_TOKEN_URI", "GMAIL_SCOPES", "CredentialsTokenSource"]

DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
GMAIL_SCOPES = ("openid", "email", "https://www.googleapis.com/auth/gmail.modify")


REFRESH_TIMEOUT_SECONDS = 30.0


class CredentialsTokenSource:
    """Access tokens from google-auth credentials, refreshed when expired or after a 401.

    ``invalid_grant`` (revoked or expired refresh token) raises :class:`AuthFailed`; network
    failures raise :class:`ConnectionFailed`.
    """

    def __init__(self, credentials: Any, request: Any = None) -> None:
        self.credentials = credentials
        self._request = request
        self._stale = False
        self._lock = threading.Lock()

    @classmethod
    def from_refresh_token(
        cls,
        refresh_token: str,
        client_id: str,
        client_secret: str,
        token_uri: str = DEFAULT_TOKEN_URI,
        scopes: Iterable[str] = GMAIL_SCOPES,
    ) -> CredentialsTokenSource:
        from google.oauth2.credentials import Credentials

        creds = Credentials(  # type: ignore[no-untyped-call]
            token=None,
            refresh_token=refresh_token,
            token_uri=token_uri,
            client_id=client_id,
            client_secret=client_secret,
            scopes=list(scopes),
        )
        return cls(creds)

    def invalidate(self) -> None:
        self._stale = True

    def __call__(self) -> str:
        from google.auth import exceptions as gexc

        with self._lock:
            creds = self.credentials
            if self._stale or not creds.valid:
                if self._request is None:
                    from google.auth.transport.requests import Request

                    # google-auth waits 120 s for the token endpoint by default: far longer
                    # than any of our provider requests (30 s).
                    self._request = functools.partial(Request(), timeout=REFRESH_TIMEOUT_SECONDS)
                try:
                    creds.refresh(self._request)
                except gexc.RefreshError as e:
                    if "invalid_grant" in str(e) or not getattr(e, "retryable", False):
                        raise AuthFailed(f"Google refused the refresh token: {e}") from e
                    raise ConnectionFailed(f"token refresh failed: {e}") from e
                except gexc.TransportError as e:
                    raise ConnectionFailed(f"token endpoint unreachable: {e}") from e
                self._stale = False
            return str(creds.token)
