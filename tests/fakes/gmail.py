"""A fake Gmail API and Google OAuth server for tests (a real HTTP server on 127.0.0.1).

Written from the published references, for the subset mailsync uses:

* OAuth 2.0 for web server apps (https://developers.google.com/identity/protocols/oauth2/web-server):
  ``GET /o/oauth2/v2/auth`` (auto-consent for a pre-announced login, see :meth:`FakeGoogle.next_login`),
  ``POST /token`` (``authorization_code`` with PKCE S256, ``refresh_token``; errors as
  ``{"error": "invalid_grant", "error_description": ...}``), ``POST /revoke``.
* OpenID Connect ID tokens (RS256, ``iss``/``aud``/``azp``/``sub``/``email``/``email_verified``/
  ``hd``/``iat``/``exp``) and ``GET /oauth2/v1/certs`` (``{kid: x509 PEM}``, the format
  ``google.oauth2.id_token.verify_token(..., certs_url=...)`` reads). Pub/Sub push OIDC
  tokens are signed with the same key (:meth:`FakeGoogle.push_token`).
* Gmail API v1 (https://developers.google.com/gmail/api/reference/rest) under
  ``/gmail/v1/users/{me|email}/``: ``profile``, ``labels`` (list, create), ``messages``
  (list with ``q``/``labelIds``/``maxResults``/``pageToken``/``includeSpamTrash``; get with
  ``format=full|metadata|minimal|raw``; ``send``; ``{id}/modify``; ``{id}/trash``;
  ``{id}/untrash``), ``history`` (list with ``startHistoryId``/``historyTypes``/``labelId``/
  ``maxResults``/``pageToken``; 404 ``notFound`` below the retained window), ``watch``, ``stop``.
* Batch requests (https://developers.google.com/gmail/api/guides/batch): ``POST /batch/gmail/v1``,
  ``multipart/mixed`` of ``application/http`` parts, answered part by part with
  ``Content-ID: <response-...>``; at most 100 calls.
* Errors use Google's JSON error body ``{"error": {"code", "message", "errors": [{"message",
  "domain", "reason"}], "status"}}``; rate limits (https://developers.google.com/gmail/api/reference/quota)
  are 429 ``rateLimitExceeded`` / 403 ``userRateLimitExceeded`` with ``Retry-After``
  (injected with :meth:`FakeGoogle.fail_next`). Quota units are counted per user.
* Fault injection for the error modes: :meth:`FakeGoogle.fail_next` (the next calls, by path,
  any status/reason, ``Retry-After``), :meth:`FakeGoogle.fail_folder` (every call naming a
  label fails until cleared), :meth:`FakeGoogle.fail_refresh` (the token endpoint refuses a
  user's refresh token), :meth:`FakeGoogle.revoke_user`, :meth:`FakeGoogle.expire_access_tokens`,
  :meth:`FakeGoogle.clear_faults`.

Tests act as the user through :meth:`deliver`, :meth:`add_labels`, :meth:`remove_labels`,
:meth:`trash`, :meth:`untrash`, :meth:`delete`, :meth:`create_label`; every change bumps the
user's ``historyId`` (with gaps, as Gmail's ids are not contiguous) and appends the history
record Gmail would report.

Usage::

    with FakeGoogle() as g:
        tokens = g.issue_tokens("alice@acme.test")
        g.deliver("alice@acme.test", raw)
        requests.get(g.api_base + "/gmail/v1/users/me/profile",
                     headers={"Authorization": "Bearer " + tokens["access_token"]})
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import itertools
import json
import re
import secrets
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.fakes import base
from tests.support import secrets as leakscan  # every token handed out is scanned for

DEFAULT_CLIENT_ID = "1234567890-mailsync.apps.googleusercontent.com"
DEFAULT_CLIENT_SECRET = "fake-client-secret"
DEFAULT_SCOPES = ("openid", "email", "https://www.googleapis.com/auth/gmail.modify")
DEFAULT_PUSH_SERVICE_ACCOUNT = "gmail-push@mailsync-test.iam.gserviceaccount.com"
ISSUER = "https://accounts.google.com"

SYSTEM_LABELS = (
    "CHAT",
    "SENT",
    "INBOX",
    "IMPORTANT",
    "TRASH",
    "DRAFT",
    "SPAM",
    "CATEGORY_FORUMS",
    "CATEGORY_UPDATES",
    "CATEGORY_PERSONAL",
    "CATEGORY_PROMOTIONS",
    "CATEGORY_SOCIAL",
    "STARRED",
    "UNREAD",
)

# Quota units per method (Gmail API usage limits page).
QUOTA_UNITS = {
    "profile": 1,
    "labels.list": 1,
    "labels.create": 5,
    "messages.list": 5,
    "messages.get": 5,
    "messages.send": 100,
    "messages.modify": 5,
    "messages.trash": 5,
    "messages.untrash": 5,
    "history.list": 2,
    "watch": 100,
    "stop": 50,
}

MAX_BATCH = 100
HISTORY_TYPES = ("messageAdded", "messageDeleted", "labelAdded", "labelRemoved")
_HISTORY_KEYS = {
    "messageAdded": "messagesAdded",
    "messageDeleted": "messagesDeleted",
    "labelAdded": "labelsAdded",
    "labelRemoved": "labelsRemoved",
}
_STATUS_TEXT = {  # reason phrases of the status lines of batch answer parts
    200: "OK",
    204: "No Content",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_ERROR_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_AUTO = object()


def _b64url(data: bytes, pad: bool = False) -> str:
    out = base64.urlsafe_b64encode(data).decode("ascii")
    return out if pad else out.rstrip("=")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def google_error(code: int, message: str, reason: str, domain: str = "global") -> dict[str, Any]:
    """Google's JSON error body."""
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
            "status": _ERROR_STATUS.get(code, "UNKNOWN"),
        }
    }


class _HttpError(Exception):
    def __init__(self, code: int, message: str, reason: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code, self.message, self.reason = code, message, reason
        self.headers = headers or {}


class Response(base.Response):
    json_content_type = "application/json; charset=UTF-8"


@dataclass
class FakeMessage:
    id: str
    thread_id: str
    raw: bytes
    label_ids: list[str]
    internal_date: int  # epoch ms
    history_id: int
    message_id: str | None = None

    def minimal(self) -> dict[str, Any]:
        return {"id": self.id, "threadId": self.thread_id, "labelIds": list(self.label_ids)}


@dataclass
class Mailbox:
    email: str
    hd: str | None
    sub: str
    labels: dict[str, dict[str, Any]] = field(default_factory=dict)
    messages: dict[str, FakeMessage] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    history_id: int = 0
    min_history_id: int = 0  # startHistoryId below this answers 404
    next_label: int = 1
    watch: dict[str, Any] | None = None


@dataclass
class _Fault:
    remaining: int
    status: int
    reason: str
    retry_after: str | None
    path: str | None
    message: str


@dataclass
class _Grant:
    email: str
    scopes: tuple[str, ...]
    client_id: str
    code_challenge: str | None = None
    code_challenge_method: str = "S256"
    redirect_uri: str | None = None
    nonce: str | None = None
    used: bool = False


def _parse_labels(values: Iterable[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        out.extend(x for x in v.split(",") if x)
    return out


def _snippet(msg: email.message.Message) -> str:
    try:
        part = msg.get_body(preferencelist=("plain", "html"))  # type: ignore[attr-defined]
        text = part.get_content() if part is not None else ""
    except Exception:
        text = ""
    text = re.sub(r"<[^>]+>", " ", text)
    return " ".join(text.split())[:200]


class FakeGoogle(base.FakeServer):
    """Fake Google OAuth + Gmail API. Start with :meth:`start` or use as a context manager."""

    def __init__(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        *,
        history_retention: int | None = None,
        access_token_lifetime: int = 3599,
        push_service_account: str = DEFAULT_PUSH_SERVICE_ACCOUNT,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        leakscan.register("client secret", client_secret)
        self.history_retention = history_retention  # records kept per user (None: all)
        self.access_token_lifetime = access_token_lifetime
        self.push_service_account = push_service_account
        self.lock = threading.RLock()
        self.users: dict[str, Mailbox] = {}
        self.requests: Counter[str] = Counter()  # endpoint name -> calls (batch parts included)
        self.quota: Counter[str] = Counter()  # user email -> quota units used
        self.log: list[tuple[str, str]] = []  # (method, path with query) of every call
        self.batch_sizes: list[int] = []
        self._faults: list[_Fault] = []
        self._label_faults: dict[tuple[str, str], _Fault] = {}  # (mailbox, label id) -> answer
        self._refresh_errors: dict[str, tuple[int, str, str]] = {}  # mailbox -> refresh answer
        self._codes: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}
        self._access: dict[str, tuple[str, tuple[str, ...], float, str | None]] = {}
        self._next_login: tuple[str, Any, bool] | None = None
        self._ids = itertools.count(1)
        self._gap = itertools.cycle((1, 3, 2, 7, 1, 4))  # historyIds are not contiguous
        self.kid = secrets.token_hex(20)
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._cert_pem = self._make_cert(self._key)
        self._untrusted_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        super().__init__()

    # ------------------------------------------------------------------ server (base.FakeServer)
    @property
    def api_base(self) -> str:
        """What ``MAILSYNC_GMAIL_API_BASE`` should be."""
        return self.base_url

    @property
    def token_uri(self) -> str:
        return self.base_url + "/token"

    @property
    def auth_uri(self) -> str:
        return self.base_url + "/o/oauth2/v2/auth"

    @property
    def certs_uri(self) -> str:
        return self.base_url + "/oauth2/v1/certs"

    @property
    def revoke_uri(self) -> str:
        return self.base_url + "/revoke"

    # ------------------------------------------------------------ keys, JWTs
    @staticmethod
    def _make_cert(key: rsa.RSAPrivateKey) -> str:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-google-oauth")])
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .sign(key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")

    def certs(self) -> dict[str, str]:
        """``{kid: PEM certificate}`` as served at ``/oauth2/v1/certs``."""
        return {self.kid: self._cert_pem}

    def sign_jwt(self, claims: dict[str, Any], *, untrusted: bool = False, kid: str | None = None) -> str:
        """RS256-sign ``claims`` with the served key (or an untrusted one, same ``kid``)."""
        header = {"alg": "RS256", "kid": kid or self.kid, "typ": "JWT"}
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        key = self._untrusted_key if untrusted else self._key
        sig = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(sig)

    def id_token(
        self,
        user: str,
        *,
        audience: str | None = None,
        nonce: str | None = None,
        lifetime: int = 3600,
        untrusted: bool = False,
    ) -> str:
        box = self.mailbox(user)
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "azp": audience or self.client_id,
            "aud": audience or self.client_id,
            "sub": box.sub,
            "email": box.email,
            "email_verified": True,
            "iat": now,
            "exp": now + lifetime,
        }
        if box.hd:
            claims["hd"] = box.hd
        if nonce:
            claims["nonce"] = nonce
        return self.sign_jwt(claims, untrusted=untrusted)

    def push_token(
        self,
        audience: str,
        *,
        email: str | None = None,
        email_verified: bool = True,
        forged: bool = False,
        lifetime: int = 3600,
        issued_at: int | None = None,
    ) -> str:
        """The OIDC token Pub/Sub puts in ``Authorization: Bearer`` of a push request.

        ``forged=True`` signs it with a key the certs endpoint does not serve.
        """
        now = int(time.time()) if issued_at is None else issued_at
        sa = email or self.push_service_account
        claims = {
            "iss": ISSUER,
            "aud": audience,
            "azp": "1" + hashlib.sha256(sa.encode()).hexdigest()[:20],
            "sub": "1" + hashlib.sha256(sa.encode()).hexdigest()[20:40],
            "email": sa,
            "email_verified": email_verified,
            "iat": now,
            "exp": now + lifetime,
        }
        return self.sign_jwt(claims, untrusted=forged)

    def push_envelope(
        self,
        user: str,
        history_id: int | str | None = None,
        *,
        subscription: str = "projects/mailsync-test/subscriptions/gmail-push",
    ) -> dict[str, Any]:
        """The JSON body Pub/Sub POSTs for a Gmail notification (current historyId by default)."""
        box = self.mailbox(user)
        hid = box.history_id if history_id is None else history_id
        data = json.dumps({"emailAddress": box.email, "historyId": int(hid)}).encode()
        mid = str(next(self._ids) + 10_000_000)
        published = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {
            "message": {
                "data": base64.b64encode(data).decode("ascii"),
                "messageId": mid,
                "message_id": mid,
                "publishTime": published,
                "publish_time": published,
            },
            "subscription": subscription,
        }

    # ------------------------------------------------------------------ OAuth
    def add_user(self, user: str, hd: Any = _AUTO) -> Mailbox:
        """Create (or return) the mailbox of ``user``. ``hd`` defaults to the address's
        domain, except for gmail.com/googlemail.com (consumer accounts have no ``hd``)."""
        key = user.lower()
        with self.lock:
            box = self.users.get(key)
            if box is None:
                domain = key.rsplit("@", 1)[-1]
                if hd is _AUTO:
                    hd = None if domain in ("gmail.com", "googlemail.com") else domain
                box = Mailbox(
                    email=user,
                    hd=hd,
                    sub=str(
                        100_000_000_000_000_000_000 + int(hashlib.sha256(key.encode()).hexdigest()[:15], 16)
                    ),
                )
                for lid in SYSTEM_LABELS:
                    box.labels[lid] = {
                        "id": lid,
                        "name": lid,
                        "type": "system",
                        **(
                            {"messageListVisibility": "hide", "labelListVisibility": "labelHide"}
                            if lid in ("CHAT", "UNREAD", "IMPORTANT")
                            else {}
                        ),
                    }
                box.history_id = 1000 + next(self._ids) * 100
                box.min_history_id = box.history_id
                self.users[key] = box
            elif hd is not _AUTO:
                box.hd = hd
            return box

    def mailbox(self, user: str) -> Mailbox:
        with self.lock:
            box = self.users.get(user.lower())
            if box is None:
                raise KeyError(f"unknown user {user}")
            return box

    def authorize(
        self,
        user: str,
        *,
        hd: Any = _AUTO,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        code_challenge: str | None = None,
        code_challenge_method: str = "S256",
        redirect_uri: str | None = None,
        nonce: str | None = None,
        client_id: str | None = None,
    ) -> str:
        """Mint an authorization ``code`` as if ``user`` consented (no browser)."""
        self.add_user(user, hd)
        code = "4/0" + secrets.token_urlsafe(32)
        with self.lock:
            self._codes[code] = _Grant(
                email=self.mailbox(user).email,
                scopes=tuple(scopes),
                client_id=client_id or self.client_id,
                code_challenge=code_challenge,
                code_challenge_method=code_challenge_method,
                redirect_uri=redirect_uri,
                nonce=nonce,
            )
        return code

    def next_login(self, user: str, *, hd: Any = _AUTO, deny: bool = False) -> None:
        """The next ``GET /o/oauth2/v2/auth`` consents as ``user`` (or denies: ``access_denied``)."""
        self.add_user(user, hd)
        self._next_login = (user, hd, deny)

    def issue_tokens(
        self, user: str, *, hd: Any = _AUTO, scopes: Iterable[str] = DEFAULT_SCOPES
    ) -> dict[str, Any]:
        """Shortcut: authorize + code exchange; the token endpoint's JSON answer."""
        code = self.authorize(user, hd=hd, scopes=scopes)
        with self.lock:
            grant = self._codes.pop(code)
        return self._tokens_for(grant, with_refresh=True)

    def _tokens_for(
        self, grant: _Grant, *, with_refresh: bool, refresh_token: str | None = None
    ) -> dict[str, Any]:
        access = "ya29.fake-" + secrets.token_urlsafe(24)
        with self.lock:
            self._access[access] = (
                grant.email,
                grant.scopes,
                time.time() + self.access_token_lifetime,
                refresh_token,
            )
        out: dict[str, Any] = {
            "access_token": leakscan.registered("access token", access),
            "expires_in": self.access_token_lifetime,
            "scope": " ".join(grant.scopes),
            "token_type": "Bearer",
        }
        if with_refresh:
            refresh = "1//fake-" + secrets.token_urlsafe(32)
            with self.lock:
                self._refresh[refresh] = grant
                self._access[access] = (
                    grant.email,
                    grant.scopes,
                    time.time() + self.access_token_lifetime,
                    refresh,
                )
            out["refresh_token"] = leakscan.registered("refresh token", refresh)
        if "openid" in grant.scopes:
            out["id_token"] = self.id_token(grant.email, audience=grant.client_id, nonce=grant.nonce)
        return out

    def revoke(self, token: str) -> None:
        """Revoke a refresh token (and its access tokens) or a single access token."""
        with self.lock:
            self._refresh.pop(token, None)
            for access, (_, _, _, refresh) in list(self._access.items()):
                if access == token or refresh == token:
                    del self._access[access]

    def revoke_user(self, user: str) -> None:
        """Revoke every grant of ``user`` (the user removed the app's access)."""
        with self.lock:
            for r, g in list(self._refresh.items()):
                if g.email.lower() == user.lower():
                    self.revoke(r)
            for a, (e, *_rest) in list(self._access.items()):
                if e.lower() == user.lower():
                    del self._access[a]

    def expire_access_tokens(self) -> None:
        """Every access token issued so far answers 401 from now on."""
        with self.lock:
            for a, (e, s, _, r) in list(self._access.items()):
                self._access[a] = (e, s, 0.0, r)

    # ----------------------------------------------------------- fault injection
    def fail_next(
        self,
        n: int = 1,
        status: int = 429,
        *,
        path: str | None = None,
        retry_after: float | str | None = 1,
        reason: str | None = None,
    ) -> None:
        """The next ``n`` Gmail API calls (batch parts included) whose path contains ``path``
        answer ``status`` with ``reason`` (429 ``rateLimitExceeded``, 403 ``userRateLimitExceeded``
        by default; any reason of the "Resolve errors" guide, e.g. ``dailyLimitExceeded``,
        ``quotaExceeded``, ``insufficientPermissions``) and ``Retry-After`` (delta-seconds, or an
        HTTP-date given as a string; None sends none)."""
        reason = reason or ("userRateLimitExceeded" if status == 403 else "rateLimitExceeded")
        message = {
            "rateLimitExceeded": "Too many concurrent requests for user",
            "userRateLimitExceeded": "User-rate limit exceeded.",
            "dailyLimitExceeded": "Daily Limit Exceeded",
            "quotaExceeded": "Quota exceeded for quota metric.",
            "insufficientPermissions": "Request had insufficient authentication scopes.",
            "forbidden": "Forbidden",
        }.get(reason, "Backend Error")
        ra = None if retry_after is None else str(retry_after)
        with self.lock:
            self._faults.append(_Fault(n, status, reason, ra, path, message))

    def fail_folder(
        self,
        user: str,
        label: str,
        status: int | None = 403,
        *,
        reason: str | None = None,
        message: str | None = None,
        retry_after: float | str | None = None,
    ) -> None:
        """Every Gmail API call of ``user`` that names ``label`` (its display name or id) answers
        ``status`` with Google's error body, until called with ``status=None`` (or
        :meth:`clear_faults`). A call names a label when it lists by it (``messages.list``
        ``labelIds``, ``history.list`` ``labelId``) or adds/removes it (``messages.modify``);
        other calls (``history.list`` without ``labelId``, ``messages.get``) are account-wide
        in Gmail and keep working. ``reason`` defaults by status (403 ``insufficientPermissions``,
        404 ``notFound``, 429 ``rateLimitExceeded``, 5xx ``backendError``); ``Retry-After`` is
        sent when ``retry_after`` is given."""
        with self.lock:
            box = self.mailbox(user)
            lid = label if label in box.labels else self.label_id(user, label)
            key = (box.email.lower(), lid)
            if status is None:
                self._label_faults.pop(key, None)
                return
            reason = reason or {
                403: "insufficientPermissions",
                404: "notFound",
                429: "rateLimitExceeded",
            }.get(status, "backendError")
            message = message or {
                "insufficientPermissions": "Request had insufficient authentication scopes.",
                "forbidden": "Forbidden",
                "notFound": "Requested entity was not found.",
                "rateLimitExceeded": "Too many concurrent requests for user",
                "userRateLimitExceeded": "User-rate limit exceeded.",
                "dailyLimitExceeded": "Daily Limit Exceeded",
                "quotaExceeded": "Quota exceeded for quota metric.",
            }.get(reason, "Backend Error")
            ra = None if retry_after is None else str(retry_after)
            self._label_faults[key] = _Fault(1, status, reason, ra, None, message)

    def fail_refresh(
        self,
        user: str,
        error: str | None = "invalid_grant",
        *,
        status: int = 400,
        description: str | None = None,
    ) -> None:
        """Refresh-token grants of ``user`` at ``POST /token`` answer ``status`` with the OAuth error
        body ``{"error": error, "error_description": ...}`` (default 400 ``invalid_grant``, what
        Google answers for a revoked or expired refresh token; a 5xx makes the endpoint look
        down), until called with ``error=None`` (or :meth:`clear_faults`). Access tokens issued
        before keep working until they expire (:meth:`expire_access_tokens`)."""
        with self.lock:
            if error is None:
                self._refresh_errors.pop(user.lower(), None)
            else:
                text = description or {"invalid_grant": "Token has been expired or revoked."}.get(
                    error, "Internal error"
                )
                self._refresh_errors[user.lower()] = (status, error, text)

    def clear_faults(self) -> None:
        """Drop every injected fault: :meth:`fail_next`, :meth:`fail_folder`, :meth:`fail_refresh`."""
        with self.lock:
            self._faults.clear()
            self._label_faults.clear()
            self._refresh_errors.clear()

    def _label_fault(
        self, box: Mailbox, endpoint: str, query: dict[str, list[str]], body: bytes
    ) -> _Fault | None:
        """The :meth:`fail_folder` fault of a call that names a failing label, if any."""
        if not self._label_faults:
            return None
        named: list[str] = []
        if endpoint == "messages.list":
            named = _parse_labels(query.get("labelIds", []))
        elif endpoint == "history.list":
            named = query.get("labelId", [])
        elif endpoint == "messages.modify":
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                data = {}
            if isinstance(data, dict):
                named = [*(data.get("addLabelIds") or []), *(data.get("removeLabelIds") or [])]
        for lid in named:
            fault = self._label_faults.get((box.email.lower(), str(lid)))
            if fault is not None:
                return fault
        return None

    def _fault_for(self, path: str) -> _Fault | None:
        with self.lock:
            for f in self._faults:
                if f.remaining > 0 and (f.path is None or f.path in path):
                    f.remaining -= 1
                    return f
            self._faults = [f for f in self._faults if f.remaining > 0]
        return None

    # --------------------------------------------------------- user mailbox API
    def _bump(self, box: Mailbox) -> int:
        box.history_id += next(self._gap)
        return box.history_id

    def _record(self, box: Mailbox, msg: FakeMessage, **kinds: list[str] | None) -> None:
        """Append one history record; ``kinds`` maps messagesAdded/messagesDeleted (None) and
        labelsAdded/labelsRemoved (label ids) to the change."""
        hid = self._bump(box)
        msg.history_id = hid
        rec: dict[str, Any] = {"id": str(hid), "messages": [{"id": msg.id, "threadId": msg.thread_id}]}
        for key, labels in kinds.items():
            entry: dict[str, Any] = {"message": msg.minimal()}
            if labels is not None:
                entry["labelIds"] = list(labels)
            rec[key] = [entry]
        box.history.append(rec)
        if self.history_retention is not None and len(box.history) > self.history_retention:
            dropped = box.history[: len(box.history) - self.history_retention]
            box.history = box.history[len(dropped) :]
            box.min_history_id = int(dropped[-1]["id"])

    def _thread_for(self, box: Mailbox, parsed: email.message.Message, thread_id: str | None) -> str | None:
        if thread_id and any(m.thread_id == thread_id for m in box.messages.values()):
            return thread_id
        refs = " ".join(str(parsed.get(h, "")) for h in ("In-Reply-To", "References"))
        wanted = {r.strip().lower() for r in re.findall(r"<[^>]+>", refs)}
        for m in box.messages.values():
            if m.message_id and m.message_id.lower() in wanted:
                return m.thread_id
        return None

    def _new_id(self) -> str:
        return f"18f{next(self._ids):013x}"

    def deliver(
        self,
        user: str,
        raw: bytes,
        label_ids: Iterable[str] = ("INBOX", "UNREAD"),
        internal_date: datetime | None = None,
        *,
        thread_id: str | None = None,
    ) -> str:
        """A mail arrives (or is imported) with ``label_ids``; returns its Gmail id."""
        box = self.add_user(user)
        parsed = email.message_from_bytes(raw)
        when = internal_date or datetime.now(UTC)
        with self.lock:
            for lid in label_ids:
                if lid not in box.labels:
                    raise KeyError(f"unknown label {lid}")
            mid = self._new_id()
            msg = FakeMessage(
                id=mid,
                thread_id=self._thread_for(box, parsed, thread_id) or mid,
                raw=raw,
                label_ids=list(dict.fromkeys(label_ids)),
                internal_date=int(when.timestamp() * 1000),
                history_id=0,
                message_id=(str(parsed["Message-ID"]).strip() if parsed["Message-ID"] else None),
            )
            box.messages[mid] = msg
            self._record(box, msg, messagesAdded=None)
        return mid

    def create_label(self, user: str, name: str) -> str:
        box = self.add_user(user)
        with self.lock:
            for lab in box.labels.values():
                if lab["name"].lower() == name.lower():
                    raise ValueError(f"label exists: {name}")
            lid = f"Label_{box.next_label}"
            box.next_label += 1
            box.labels[lid] = {
                "id": lid,
                "name": name,
                "type": "user",
                "messageListVisibility": "show",
                "labelListVisibility": "labelShow",
            }
            return lid

    def label_id(self, user: str, name: str) -> str:
        for lab in self.mailbox(user).labels.values():
            if lab["name"] == name:
                return str(lab["id"])
        raise KeyError(name)

    def _modify(self, box: Mailbox, msg: FakeMessage, add: Iterable[str], remove: Iterable[str]) -> None:
        add_l = [x for x in dict.fromkeys(add) if x not in msg.label_ids]
        rem_l = [x for x in dict.fromkeys(remove) if x in msg.label_ids and x not in add_l]
        for lid in (*add_l, *rem_l):
            if lid not in box.labels:
                raise _HttpError(400, f"Invalid label: {lid}", "invalidArgument")
        if not add_l and not rem_l:
            return
        msg.label_ids = [x for x in msg.label_ids if x not in rem_l] + add_l
        kinds: dict[str, list[str] | None] = {}
        if add_l:
            kinds["labelsAdded"] = add_l
        if rem_l:
            kinds["labelsRemoved"] = rem_l
        self._record(box, msg, **kinds)

    def _message(self, box: Mailbox, mid: str) -> FakeMessage:
        msg = box.messages.get(mid)
        if msg is None:
            raise _HttpError(404, "Requested entity was not found.", "notFound")
        return msg

    def add_labels(self, user: str, mid: str, *label_ids: str) -> None:
        box = self.mailbox(user)
        with self.lock:
            self._modify(box, self._message(box, mid), label_ids, ())

    def remove_labels(self, user: str, mid: str, *label_ids: str) -> None:
        box = self.mailbox(user)
        with self.lock:
            self._modify(box, self._message(box, mid), (), label_ids)

    def move(self, user: str, mid: str, src: str, dest: str) -> None:
        """A label change in one step (as Gmail's "Move to")."""
        box = self.mailbox(user)
        with self.lock:
            self._modify(box, self._message(box, mid), (dest,), (src,))

    def trash(self, user: str, mid: str) -> None:
        box = self.mailbox(user)
        with self.lock:
            self._modify(box, self._message(box, mid), ("TRASH",), ("SPAM",))

    def untrash(self, user: str, mid: str) -> None:
        box = self.mailbox(user)
        with self.lock:
            self._modify(box, self._message(box, mid), (), ("TRASH",))

    def delete(self, user: str, mid: str) -> None:
        """Permanent deletion (``messagesDeleted``)."""
        box = self.mailbox(user)
        with self.lock:
            msg = self._message(box, mid)
            del box.messages[mid]
            self._record(box, msg, messagesDeleted=None)

    def expire_history(self, user: str) -> None:
        """Every historyId issued so far is now out of the retained window (404)."""
        box = self.mailbox(user)
        with self.lock:
            box.min_history_id = box.history_id
            box.history.clear()

    def labels_of(self, user: str, mid: str) -> list[str]:
        return list(self._message(self.mailbox(user), mid).label_ids)

    def message_ids(self, user: str, label_id: str | None = None) -> list[str]:
        box = self.mailbox(user)
        return [m.id for m in box.messages.values() if label_id is None or label_id in m.label_ids]

    def history_id(self, user: str) -> int:
        return self.mailbox(user).history_id

    def reset_counters(self) -> None:
        with self.lock:
            self.requests.clear()
            self.quota.clear()
            self.log.clear()
            self.batch_sizes.clear()

    # --------------------------------------------------------------- dispatch
    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        """Answer one HTTP request (``headers`` lower-cased)."""
        url = urlsplit(target)
        path, query = url.path, parse_qs(url.query, keep_blank_values=True)
        try:
            if path == "/token" and method == "POST":
                self.requests["token"] += 1
                return self._token(headers, body)
            if path == "/revoke" and method == "POST":
                form = {k: v[-1] for k, v in parse_qs(body.decode() or url.query).items()}
                self.revoke(form.get("token", ""))
                return Response(200)
            if path == "/oauth2/v1/certs" and method == "GET":
                self.requests["certs"] += 1
                return Response.json(200, self.certs(), {"Cache-Control": "public, max-age=300"})
            if path == "/o/oauth2/v2/auth" and method == "GET":
                return self._authorize_endpoint(query)
            if path == "/batch/gmail/v1" and method == "POST":
                with self.lock:
                    self.log.append((method, target))
                fault = self._fault_for(path)
                if fault:
                    return self._fault_response(fault)
                self.requests["batch"] += 1
                return self._batch(headers, body)
            if path.startswith("/gmail/v1/users/"):
                return self._api(method, target, headers, body)
        except _HttpError as e:
            return Response.json(e.code, google_error(e.code, e.message, e.reason), e.headers)
        return Response.json(404, google_error(404, "Not Found", "notFound"))

    @staticmethod
    def _fault_response(fault: _Fault) -> Response:
        headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        domain = (
            "usageLimits" if fault.reason in ("userRateLimitExceeded", "dailyLimitExceeded") else "global"
        )
        return Response.json(
            fault.status, google_error(fault.status, fault.message, fault.reason, domain), headers
        )

    # -- OAuth endpoints
    def _authorize_endpoint(self, query: dict[str, list[str]]) -> Response:
        q = {k: v[-1] for k, v in query.items()}
        redirect = q.get("redirect_uri", "")
        if q.get("client_id") != self.client_id or not redirect:
            return Response(400, b"Error 400: invalid_request", {"Content-Type": "text/plain"})
        login, self._next_login = self._next_login, None
        params: dict[str, str] = {}
        if login is None or login[2]:
            params["error"] = "access_denied"
        else:
            params["code"] = self.authorize(
                login[0],
                hd=login[1],
                scopes=q.get("scope", "").split(),
                code_challenge=q.get("code_challenge"),
                code_challenge_method=q.get("code_challenge_method", "plain"),
                redirect_uri=redirect,
                nonce=q.get("nonce"),
            )
            params["scope"] = q.get("scope", "")
        if "state" in q:
            params["state"] = q["state"]
        sep = "&" if "?" in redirect else "?"
        return Response(302, b"", {"Location": redirect + sep + urlencode(params)})

    def _token(self, headers: dict[str, str], body: bytes) -> Response:
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8")).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
        if client_id != self.client_id or client_secret != self.client_secret:
            return Response.json(401, {"error": "invalid_client", "error_description": "Unauthorized"})
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            with self.lock:
                grant = self._codes.get(form.get("code", ""))
                if grant is None or grant.used:
                    return Response.json(400, {"error": "invalid_grant", "error_description": "Bad Request"})
                grant.used = True
            if grant.client_id != client_id:
                return Response.json(400, {"error": "invalid_grant", "error_description": "Bad Request"})
            if grant.redirect_uri is not None and form.get("redirect_uri") != grant.redirect_uri:
                return Response.json(
                    400, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"}
                )
            if grant.code_challenge is not None:
                verifier = form.get("code_verifier")
                if not verifier:
                    return Response.json(
                        400,
                        {
                            "error": "invalid_request",
                            "error_description": "code_verifier or verifier is not specified.",
                        },
                    )
                if grant.code_challenge_method == "S256":
                    computed = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
                else:
                    computed = verifier
                if computed != grant.code_challenge:
                    return Response.json(
                        400, {"error": "invalid_grant", "error_description": "Invalid code verifier."}
                    )
            return Response.json(
                200, self._tokens_for(grant, with_refresh=True), {"Cache-Control": "no-store"}
            )
        if grant_type == "refresh_token":
            token = form.get("refresh_token", "")
            with self.lock:
                grant = self._refresh.get(token)
                forced = self._refresh_errors.get(grant.email.lower()) if grant else None
            if forced is not None:
                return Response.json(forced[0], {"error": forced[1], "error_description": forced[2]})
            if grant is None:
                return Response.json(
                    400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
                )
            return Response.json(
                200,
                self._tokens_for(grant, with_refresh=False, refresh_token=token),
                {"Cache-Control": "no-store"},
            )
        return Response.json(
            400, {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: "}
        )

    # -- Gmail API
    def _authenticate(self, headers: dict[str, str]) -> Mailbox:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        with self.lock:
            found = self._access.get(token)
        if found is None or found[2] < time.time():
            raise _HttpError(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie "
                "or other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project.",
                "authError",
                {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'},
            )
        return self.mailbox(found[0])

    def _api(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        url = urlsplit(target)
        path, query = url.path, parse_qs(url.query, keep_blank_values=True)
        with self.lock:
            self.log.append((method, target))
        fault = self._fault_for(path)
        if fault:
            return self._fault_response(fault)
        box = self._authenticate(headers)
        parts = path[len("/gmail/v1/users/") :].split("/")
        user_id, rest = parts[0], parts[1:]
        if user_id != "me" and user_id.lower() != box.email.lower():
            raise _HttpError(403, f"Delegation denied for {box.email}", "forbidden")
        endpoint, handler = self._route(method, rest)
        self.requests[endpoint] += 1
        with self.lock:
            self.quota[box.email.lower()] += QUOTA_UNITS.get(endpoint, 1)  # failed calls count too
            label_fault = self._label_fault(box, endpoint, query, body)
            if label_fault is not None:
                return self._fault_response(label_fault)
            resp: Response = handler(box, rest, query, body)
        return resp

    def _route(self, method: str, rest: list[str]) -> tuple[str, Any]:
        n = len(rest)
        if method == "GET" and rest == ["profile"]:
            return "profile", self._profile
        if rest == ["labels"]:
            if method == "GET":
                return "labels.list", self._labels_list
            if method == "POST":
                return "labels.create", self._labels_create
        if method == "GET" and rest == ["messages"]:
            return "messages.list", self._messages_list
        if method == "POST" and rest == ["messages", "send"]:
            return "messages.send", self._messages_send
        if method == "GET" and n == 2 and rest[0] == "messages":
            return "messages.get", self._messages_get
        if (
            method == "POST"
            and n == 3
            and rest[0] == "messages"
            and rest[2] in ("modify", "trash", "untrash")
        ):
            return "messages." + rest[2], getattr(self, "_messages_" + rest[2])
        if method == "GET" and rest == ["history"]:
            return "history.list", self._history_list
        if method == "POST" and rest == ["watch"]:
            return "watch", self._watch
        if method == "POST" and rest == ["stop"]:
            return "stop", self._stop
        raise _HttpError(404, "Not Found", "notFound")

    @staticmethod
    def _json_body(body: bytes) -> dict[str, Any]:
        return base.json_object(body, lambda: _HttpError(400, "Invalid JSON payload received.", "parseError"))

    @staticmethod
    def _int_param(query: dict[str, list[str]], name: str, default: int, maximum: int) -> int:
        raw = (query.get(name) or [""])[-1]
        if raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _HttpError(400, f"Invalid value for {name}", "invalid") from None
        return max(1, min(value, maximum))

    def _profile(self, box: Mailbox, rest: list[str], query: Any, body: bytes) -> Response:
        return Response.json(
            200,
            {
                "emailAddress": box.email,
                "messagesTotal": len(box.messages),
                "threadsTotal": len({m.thread_id for m in box.messages.values()}),
                "historyId": str(box.history_id),
            },
        )

    def _labels_list(self, box: Mailbox, rest: list[str], query: Any, body: bytes) -> Response:
        return Response.json(200, {"labels": [dict(lab) for lab in box.labels.values()]})

    def _labels_create(self, box: Mailbox, rest: list[str], query: Any, body: bytes) -> Response:
        name = str(self._json_body(body).get("name") or "")
        if not name:
            raise _HttpError(400, "Invalid label name", "invalidArgument")
        try:
            lid = self.create_label(box.email, name)
        except ValueError:
            raise _HttpError(409, "Label name exists or conflicts", "duplicate") from None
        return Response.json(200, dict(box.labels[lid]))

    # messages.list
    @staticmethod
    def _query_matches(msg: FakeMessage, q: str) -> bool:
        """Gmail search syntax, the subset mailsync sends: ``after:``/``before:`` (epoch seconds
        or ``YYYY/MM/DD``), ``in:``/``label:``, plain words; a leading ``-`` negates a term."""
        for token in q.split():
            negate = token.startswith("-") and len(token) > 1
            if FakeGoogle._term_matches(msg, token[1:] if negate else token) == negate:
                return False
        return True

    @staticmethod
    def _term_matches(msg: FakeMessage, token: str) -> bool:
        key, sep, value = token.partition(":")
        key = key.lower()
        if sep and key in ("after", "before"):
            if value.isdigit():
                bound = int(value) * 1000
            else:
                try:
                    bound = int(datetime.strptime(value, "%Y/%m/%d").replace(tzinfo=UTC).timestamp() * 1000)
                except ValueError:
                    return False
            return msg.internal_date >= bound if key == "after" else msg.internal_date < bound
        if sep and key in ("in", "label"):
            wanted = value.upper() if value.upper() in SYSTEM_LABELS else value
            if wanted.upper() == "DRAFTS":
                wanted = "DRAFT"  # in:drafts and in:draft both name the DRAFT label
            return wanted in msg.label_ids
        return token.lower() in msg.raw.decode("utf-8", "replace").lower()

    def _messages_list(
        self, box: Mailbox, rest: list[str], query: dict[str, list[str]], body: bytes
    ) -> Response:
        labels = _parse_labels(query.get("labelIds", []))
        q = " ".join(query.get("q", []))
        include_spam_trash = (query.get("includeSpamTrash") or ["false"])[-1].lower() == "true"
        max_results = self._int_param(query, "maxResults", 100, 500)
        matches = [
            m
            for m in box.messages.values()
            if all(lab in m.label_ids for lab in labels)
            and (
                include_spam_trash
                or not ({"TRASH", "SPAM"} & set(m.label_ids))
                or {"TRASH", "SPAM"} & set(labels)
            )
            and self._query_matches(m, q)
        ]
        matches.sort(key=lambda m: (m.internal_date, m.id), reverse=True)
        token = (query.get("pageToken") or [""])[-1]
        if token:
            try:
                after_date, _, after_id = _b64url_decode(token).decode().partition(":")
                key = (int(after_date), after_id)
            except ValueError:
                raise _HttpError(400, "Invalid pageToken", "invalid") from None
            matches = [m for m in matches if (m.internal_date, m.id) < key]
        page = matches[:max_results]
        out: dict[str, Any] = {"resultSizeEstimate": len(matches)}
        if page:
            out["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if len(matches) > max_results:
            last = page[-1]
            out["nextPageToken"] = _b64url(f"{last.internal_date}:{last.id}".encode())
        return Response.json(200, out)

    def _message_resource(self, msg: FakeMessage, fmt: str, metadata_headers: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {"id": msg.id, "threadId": msg.thread_id, "labelIds": list(msg.label_ids)}
        if fmt == "minimal":
            out.update(
                historyId=str(msg.history_id), internalDate=str(msg.internal_date), sizeEstimate=len(msg.raw)
            )
            return out
        parsed = email.message_from_bytes(msg.raw, policy=email.policy.default)
        out.update(
            snippet=_snippet(parsed),
            historyId=str(msg.history_id),
            internalDate=str(msg.internal_date),
            sizeEstimate=len(msg.raw),
        )
        if fmt == "raw":
            out["raw"] = _b64url(msg.raw, pad=True)
            return out
        headers = [{"name": k, "value": str(v)} for k, v in parsed.items()]
        if fmt == "metadata" and metadata_headers:
            wanted = {h.lower() for h in metadata_headers}
            headers = [h for h in headers if h["name"].lower() in wanted]
        payload: dict[str, Any] = {"partId": "", "mimeType": parsed.get_content_type(), "headers": headers}
        if fmt == "full":
            payload["filename"] = ""
            payload["body"] = {"size": len(msg.raw)}
        out["payload"] = payload
        return out

    def _messages_get(
        self, box: Mailbox, rest: list[str], query: dict[str, list[str]], body: bytes
    ) -> Response:
        fmt = (query.get("format") or ["full"])[-1]
        if fmt not in ("full", "metadata", "minimal", "raw"):
            raise _HttpError(400, f"Invalid value at 'format' ({fmt})", "invalidArgument")
        msg = self._message(box, rest[1])
        return Response.json(200, self._message_resource(msg, fmt, query.get("metadataHeaders", [])))

    def _messages_send(self, box: Mailbox, rest: list[str], query: Any, body: bytes) -> Response:
        data = self._json_body(body)
        if not data.get("raw"):
            raise _HttpError(400, "Recipient address required", "invalidArgument")
        try:
            raw = _b64url_decode(str(data["raw"]))
        except ValueError:
            raise _HttpError(400, "Invalid value for ByteString", "invalidArgument") from None
        parsed = email.message_from_bytes(raw)
        if not any(parsed.get(h) for h in ("To", "Cc", "Bcc")):
            raise _HttpError(400, "Recipient address required", "invalidArgument")
        if not parsed["Message-ID"]:
            gen_id = f"<CA{secrets.token_hex(16)}@mail.gmail.com>"
            raw = f"Message-ID: {gen_id}\r\n".encode() + raw
            parsed = email.message_from_bytes(raw)
        thread = data.get("threadId")
        mid = self._new_id()
        msg = FakeMessage(
            id=mid,
            thread_id=self._thread_for(box, parsed, str(thread) if thread else None) or mid,
            raw=raw,
            label_ids=["SENT"],
            internal_date=int(time.time() * 1000),
            history_id=0,
            message_id=str(parsed["Message-ID"]).strip(),
        )
        box.messages[mid] = msg
        self._record(box, msg, messagesAdded=None)
        return Response.json(200, msg.minimal())

    def _messages_modify(self, box: Mailbox, rest: list[str], query: Any, body: bytes) -> Response:
        data = self._json_body(body)
        msg = self._message(box, rest[1])
        self._modify(box, msg, data.get("addLabelIds") or [], data.get("removeLabelIds") or [])
        return Response.json(200, msg.minimal())

    def _messages_trash(self, box: Mailbox, rest: list[str], query: Any, body: bytes) -> Response:
        msg = self._message(box, rest[1])
        self._modify(box, msg, ("TRASH",), ("SPAM",))
        return Response.json(200, msg.minimal())

    def _messages_untrash(self, box: Mailbox, rest: list[str], query: Any, body: bytes) -> Response:
        msg = self._message(box, rest[1])
        self._modify(box, msg, (), ("TRASH",))
        return Response.json(200, msg.minimal())

    # history.list
    def _history_list(
        self, box: Mailbox, rest: list[str], query: dict[str, list[str]], body: bytes
    ) -> Response:
        start_raw = (query.get("startHistoryId") or [""])[-1]
        if not start_raw:
            raise _HttpError(400, "Required parameter: startHistoryId", "required")
        try:
            start = int(start_raw)
        except ValueError:
            raise _HttpError(400, f"Invalid value for startHistoryId: {start_raw}", "invalid") from None
        if start < box.min_history_id:
            raise _HttpError(404, "Requested entity was not found.", "notFound")
        types = [t for t in query.get("historyTypes", []) for t in t.split(",") if t]
        for t in types:
            if t not in HISTORY_TYPES:
                raise _HttpError(400, f"Invalid value for historyTypes: {t}", "invalidArgument")
        keys = [_HISTORY_KEYS[t] for t in types] if types else list(_HISTORY_KEYS.values())
        label = (query.get("labelId") or [""])[-1]
        max_results = self._int_param(query, "maxResults", 100, 500)
        token = (query.get("pageToken") or [""])[-1]
        after = start
        if token:
            try:
                after = int(_b64url_decode(token).decode())
            except ValueError:
                raise _HttpError(400, "Invalid pageToken", "invalid") from None
        selected: list[dict[str, Any]] = []
        more = False
        for rec in box.history:
            if int(rec["id"]) <= after:
                continue
            kept = {k: rec[k] for k in keys if k in rec}
            if not kept:
                continue
            if label and not self._record_has_label(kept, label):
                continue
            if len(selected) == max_results:
                more = True
                break
            selected.append({"id": rec["id"], "messages": rec["messages"], **json.loads(json.dumps(kept))})
        out: dict[str, Any] = {"historyId": str(box.history_id)}
        if selected:
            out["history"] = selected
        if more:
            out["nextPageToken"] = _b64url(selected[-1]["id"].encode())
        return Response.json(200, out)

    @staticmethod
    def _record_has_label(kept: dict[str, Any], label: str) -> bool:
        for entries in kept.values():
            for e in entries:
                if label in e["message"].get("labelIds", []) or label in e.get("labelIds", []):
                    return True
        return False

    def _watch(self, box: Mailbox, rest: list[str], query: Any, body: bytes) -> Response:
        data = self._json_body(body)
        topic = str(data.get("topicName") or "")
        if not re.fullmatch(r"projects/[^/]+/topics/[^/]+", topic):
            raise _HttpError(400, "Invalid topicName", "invalidArgument")
        expiration = int((time.time() + 7 * 86400) * 1000)
        box.watch = {
            "topicName": topic,
            "labelIds": list(data.get("labelIds") or []),
            "labelFilterBehavior": data.get("labelFilterBehavior") or data.get("labelFilterAction"),
            "expiration": expiration,
        }
        return Response.json(200, {"historyId": str(box.history_id), "expiration": str(expiration)})

    def _stop(self, box: Mailbox, rest: list[str], query: Any, body: bytes) -> Response:
        box.watch = None
        return Response(204)

    # -- batch
    def _batch(self, headers: dict[str, str], body: bytes) -> Response:
        m = re.search(r'boundary="?([^";]+)"?', headers.get("content-type", ""))
        if not headers.get("content-type", "").startswith("multipart/mixed") or not m:
            raise _HttpError(400, "Failed to parse batch request", "badRequest")
        parts = list(_split_multipart(body, m.group(1).encode()))
        if len(parts) > MAX_BATCH:
            raise _HttpError(
                400, f"Too many requests in batch: {len(parts)} > {MAX_BATCH}", "batchSizeTooLarge"
            )
        with self.lock:
            self.batch_sizes.append(len(parts))
        outer_auth = headers.get("authorization")
        boundary = "batch_" + uuid.uuid4().hex
        out: list[bytes] = []
        for part in parts:
            part_headers, inner = _split_headers(part)
            content_id = part_headers.get("content-id", "").strip()
            req_line, inner_headers, inner_body = _parse_http(inner)
            try:
                method, target = req_line.split()[:2]
            except ValueError:
                resp = Response.json(400, google_error(400, "Bad Request", "badRequest"))
            else:
                if outer_auth and "authorization" not in inner_headers:
                    inner_headers["authorization"] = outer_auth
                if target.startswith("/gmail/v1/users/"):
                    try:
                        resp = self._api(method, target, inner_headers, inner_body)
                    except _HttpError as e:
                        resp = Response.json(e.code, google_error(e.code, e.message, e.reason), e.headers)
                else:
                    resp = Response.json(404, google_error(404, "Not Found", "notFound"))
            head = [f"--{boundary}", "Content-Type: application/http"]
            if content_id:
                cid = content_id[1:-1] if content_id.startswith("<") else content_id
                head.append(f"Content-ID: <response-{cid}>")
            status_line = f"HTTP/1.1 {resp.status} {_STATUS_TEXT.get(resp.status, '')}".rstrip()
            inner_lines = [status_line] + [f"{k}: {v}" for k, v in resp.headers.items()]
            inner_lines.append(f"Content-Length: {len(resp.body)}")
            out.append(
                ("\r\n".join(head) + "\r\n\r\n" + "\r\n".join(inner_lines) + "\r\n\r\n").encode()
                + resp.body
                + b"\r\n"
            )
        out.append(f"--{boundary}--\r\n".encode())
        return Response(200, b"".join(out), {"Content-Type": f"multipart/mixed; boundary={boundary}"})


def _split_multipart(body: bytes, boundary: bytes) -> Iterator[bytes]:
    delim = b"--" + boundary
    for chunk in body.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        yield chunk.lstrip(b"\r\n").removesuffix(b"\r\n").removesuffix(b"\n")


def _split_headers(data: bytes) -> tuple[dict[str, str], bytes]:
    m = re.search(rb"\r?\n\r?\n", data)
    if m is None:
        head, rest = data, b""
    else:
        head, rest = data[: m.start()], data[m.end() :]
    headers: dict[str, str] = {}
    for line in head.decode("utf-8", "replace").splitlines():
        k, sep, v = line.partition(":")
        if sep:
            headers[k.strip().lower()] = v.strip()
    return headers, rest


def _parse_http(data: bytes) -> tuple[str, dict[str, str], bytes]:
    data = data.lstrip(b"\r\n")
    first, _, rest = data.partition(b"\n")
    if re.match(rb"\r?\n", rest):  # no headers: request line, blank line, body
        headers: dict[str, str] = {}
        body = re.sub(rb"^\r?\n", b"", rest)
    else:
        headers, body = _split_headers(rest)
    return first.decode("utf-8", "replace").strip(), headers, body.strip(b"\r\n")
