"""User tokens: what a browser may hold instead of a tenant key (issue 17).

Invariants:

* A token is ``mut_<claims>.<mac>``: the claims (tenant, user, minting key id, issued and
  expiry time, JSON, base64url) and an HMAC-SHA256 over exactly those bytes with the
  tenant's token secret (RFC 2104; compared in constant time). It carries no mail data and
  no secret; anyone can read its claims, nobody can change them.
* It is valid only until ``exp`` (:data:`MAX_TTL_SECONDS` at most after ``iat``), only while
  the key that minted it exists, and only if it was issued after the user's last deletion
  (``revoked_before``): the caller checks the last two against the store, in the same one
  request that fetches the secret.
* It acts for its user alone and never on tenant-level routes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

PREFIX = "mut_"
DEFAULT_TTL_SECONDS = 900
MIN_TTL_SECONDS = 60
MAX_TTL_SECONDS = 3600
MAX_TOKEN_CHARS = 2048


class BadToken(ValueError):
    """Not a token of ours, or one whose MAC does not match."""


@dataclass(frozen=True)
class Claims:
    tenant_id: str
    user_id: str
    key_id: str | None
    issued_at: int  # Unix seconds
    expires_at: int

    def payload(self) -> bytes:
        d = {
            "t": self.tenant_id,
            "u": self.user_id,
            "k": self.key_id,
            "iat": self.issued_at,
            "exp": self.expires_at,
        }
        return json.dumps(d, separators=(",", ":"), sort_keys=True).encode()


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def _unb64(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def _mac(secret: bytes, payload: bytes) -> bytes:
    return hmac.new(secret, b"mailsync user token v1\n" + payload, hashlib.sha256).digest()


def is_user_token(bearer: str) -> bool:
    return bearer.startswith(PREFIX)


def sign(claims: Claims, secret: bytes) -> str:
    payload = claims.payload()
    return f"{PREFIX}{_b64(payload)}.{_b64(_mac(secret, payload))}"


def read(token: str) -> tuple[Claims, bytes, bytes]:
    """The claims (unverified), the signed bytes and the MAC; raises :class:`BadToken`."""
    if not token.startswith(PREFIX) or len(token) > MAX_TOKEN_CHARS:
        raise BadToken("not a user token")
    body, dot, mac = token[len(PREFIX) :].partition(".")
    try:
        payload = _unb64(body)
        d = json.loads(payload)
        claims = Claims(
            str(d["t"]), str(d["u"]), d["k"] if d["k"] is None else str(d["k"]), int(d["iat"]), int(d["exp"])
        )
        sig = _unb64(mac)
    except (ValueError, KeyError, TypeError) as e:
        raise BadToken("malformed user token") from e
    if not dot or not claims.tenant_id or not claims.user_id:
        raise BadToken("malformed user token")
    return claims, payload, sig


def verify(payload: bytes, sig: bytes, secret: bytes) -> None:
    if not hmac.compare_digest(_mac(secret, payload), sig):
        raise BadToken("user token signature does not match")
