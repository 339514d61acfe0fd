"""A fake Microsoft identity platform and Microsoft Graph for tests (a real HTTPS server on 127.0.0.1).

msal 1.39 accepts only ``https`` authorities with a host (``msal/authority.py``), so the fake
serves TLS with a certificate made here: a throw-away CA signs a server certificate for
``127.0.0.1``/``localhost``; :attr:`FakeGraph.ca_bundle` is the CA's PEM file (set
``REQUESTS_CA_BUNDLE`` to it, or give msal and the provider a ``requests.Session`` with
``verify=fake.ca_bundle``, see :meth:`FakeGraph.session`).

Written from the published references, for the subset mailsync uses:

* Microsoft identity platform, OAuth 2.0 authorization code flow
  (https://learn.microsoft.com/entra/identity-platform/v2-oauth2-auth-code-flow):
  ``GET /{tenant}/v2.0/.well-known/openid-configuration``, ``GET /common/discovery/instance``
  (instance discovery as msal calls it, when the client does not turn it off with
  ``instance_discovery=False``/``validate_authority=False``), ``GET /{tenant}/discovery/v2.0/keys``,
  ``GET /{tenant}/oauth2/v2.0/authorize`` (auto-consent for a pre-announced login, see
  :meth:`FakeGraph.next_login`; PKCE ``S256`` checked at the token endpoint) and
  ``POST /{tenant}/oauth2/v2.0/token`` (``authorization_code`` and ``refresh_token`` grants;
  ``access_token``, ``refresh_token`` (only with ``offline_access``), an RS256 ``id_token``
  with ``tid``/``oid``/``preferred_username``/``nonce``, and ``client_info`` as base64url JSON
  ``{"uid", "utid"}`` as msal expects; errors ``{"error", "error_description", "error_codes",
  "suberror"}``: ``invalid_grant`` and ``interaction_required`` on demand).
* Microsoft Graph v1.0 under ``/v1.0`` (https://learn.microsoft.com/graph/api/overview):
  ``GET /me``; mailFolders (list with ``$top``/``$skip`` paging and ``@odata.nextLink``,
  ``includeHiddenFolders``, get by id or well-known name: ``msgfolderroot``, ``inbox``,
  ``sentitems``, ``deleteditems``, ``drafts``, ``junkemail``, ``archive``, ``outbox``;
  ``childFolders``; create); ``GET /me/mailFolders/{id}/messages`` (``$top`` 1..1000/``$skip``,
  ``$select``, ``$filter=internetMessageId eq '<id>'`` or ``receivedDateTime ge|gt <instant>``); ``GET /me/mailFolders/{id}/messages/delta`` (``$select``,
  ``$filter=receivedDateTime ge|gt <instant>`` on the first call only, ``Prefer:
  odata.maxpagesize=N`` (default 10), ``@odata.nextLink`` pages then ``@odata.deltaLink``;
  a round from a delta token reports new and changed messages and ``{"id", "@removed":
  {"reason": "deleted"|"changed"}}`` for messages that left the folder: ``deleted`` when
  the message is gone from the mailbox, ``changed`` when it moved elsewhere; an expired
  token answers 410 ``SyncStateNotFound``); messages get, ``$value`` (MIME), update
  (``isRead``), delete, ``move`` (``destinationId``: id or well-known name; answers 201
  with the moved message), ``createReply`` (JSON or base64 MIME as ``text/plain``) and
  ``send``; ``POST /me/sendMail`` (JSON ``{message, saveToSentItems}`` or base64 MIME);
  ``POST /$batch`` (JSON batching, at most 20 requests, answered as ``{"responses":
  [{id, status, headers, body}]}``; a non-JSON body such as ``$value`` comes back
  base64-encoded, as Graph does); ``users/{id|upn}/...`` is accepted for the signed-in user.
* ``Prefer: IdType="ImmutableId"`` (https://learn.microsoft.com/graph/outlook-immutable-id):
  with it every id rendered is the message's immutable id, which survives moves; without
  it ids are "REST" ids that change on every move. Both forms are accepted on input (an old
  REST id of a moved message answers 404, as Exchange does).
* Subscriptions (https://learn.microsoft.com/graph/api/resources/subscription,
  https://learn.microsoft.com/graph/change-notifications-delivery-webhooks):
  ``POST/GET/PATCH/DELETE /subscriptions[/{id}]`` with ``resource``, ``changeType``
  (created, updated, deleted), ``notificationUrl``, ``lifecycleNotificationUrl``,
  ``expirationDateTime`` (at most :data:`MAX_MESSAGE_SUBSCRIPTION_MINUTES` ahead for
  messages), ``clientState`` (at most 128 characters). On create (and on a changed URL) the
  fake performs the validation call ``POST <url>?validationToken=<token>`` and requires a
  200 ``text/plain`` echo of the decoded token within 10 s (``validator=`` replaces the
  HTTP call, e.g. for unit tests). :meth:`FakeGraph.notify` and :meth:`FakeGraph.lifecycle`
  POST change notifications (``{"value": [{subscriptionId, subscriptionExpirationDateTime,
  changeType, resource, resourceData, clientState, tenantId}]}``) and lifecycle events
  (``lifecycleEvent``: ``reauthorizationRequired``, ``subscriptionRemoved``, ``missed``).
* Throttling (https://learn.microsoft.com/graph/throttling-limits#outlook-service-limits):
  10,000 requests per 10 minutes and 4 concurrent requests per app and mailbox; 429 with
  ``Retry-After``. :meth:`FakeGraph.fail_next` injects 429/503 (or any) answers,
  :meth:`FakeGraph.fail_folder` makes every request for one folder fail until cleared,
  :meth:`FakeGraph.fail_refresh` makes the token endpoint refuse a user's refresh token,
  :meth:`FakeGraph.clear_faults` drops them all; :attr:`requests`
  counts calls per endpoint (``$batch`` parts included); :attr:`max_concurrent` is a gauge of
  the most requests in flight per mailbox (``latency=`` widens the window;
  ``concurrency_limit=`` makes the fake answer 429 ``MailboxConcurrency`` beyond it).
* Errors use Graph's body ``{"error": {"code", "message", "innerError": {"date",
  "request-id", "client-request-id"}}}``.

Tests act as the user through :meth:`deliver`, :meth:`move`, :meth:`delete`, :meth:`mark_read`,
:meth:`create_folder`, :meth:`expire_delta`, with lookups :meth:`folder_id`, :meth:`message`,
:meth:`messages_in`.

Usage::

    with FakeGraph() as g:
        tokens = g.issue_tokens("alice@contoso.test")
        g.deliver("alice@contoso.test", raw)
        g.session().get(g.api_base + "/me/mailFolders",
                        headers={"Authorization": "Bearer " + tokens["access_token"]})
"""

from __future__ import annotations

import base64
import email
import email.policy
import email.utils
import hashlib
import ipaddress
import itertools
import json
import os
import re
import secrets
import shutil
import ssl
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage, Message
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.fakes import base
from tests.support import secrets as leakscan  # every token handed out is scanned for

DEFAULT_CLIENT_ID = "8f1b6f1e-3c1d-4c5e-9a55-3d3f3c1a0b01"
DEFAULT_CLIENT_SECRET = "fake~graph~client~secret"
DEFAULT_TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
GRAPH_SCOPES = ("Mail.ReadWrite", "Mail.Send", "User.Read")
MAX_BATCH = 20
MAX_LIST_TOP = 1000  # largest $top of a message list
MAX_MESSAGE_SUBSCRIPTION_MINUTES = 4230
DEFAULT_DELTA_PAGE = 10
VALIDATION_TIMEOUT = 10.0
WELL_KNOWN = ("inbox", "drafts", "sentitems", "deleteditems", "junkemail", "archive", "outbox")
_DISPLAY = {
    "inbox": "Inbox",
    "drafts": "Drafts",
    "sentitems": "Sent Items",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
    "archive": "Archive",
    "outbox": "Outbox",
}
MESSAGE_FIELDS = (
    "id",
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(text: str) -> datetime:
    text = text.strip().strip("'\"")
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", text)
    if m:  # Graph writes 7 fractional digits; Python takes at most 6
        text = f"{m.group(1)}.{m.group(2)[:6]}{m.group(3)}"
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def graph_error(code: str, message: str) -> dict[str, Any]:
    """Graph's JSON error body."""
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": _iso(datetime.now(UTC)),
                "request-id": str(uuid.uuid4()),
                "client-request-id": str(uuid.uuid4()),
            },
        }
    }


class _HttpError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


class Response(base.Response):
    json_content_type = "application/json; odata.metadata=minimal; charset=utf-8"

    @classmethod
    def error(cls, e: _HttpError) -> Response:
        return cls.json(e.status, graph_error(e.code, e.message), e.headers)


@dataclass
class Folder:
    id: str
    display_name: str
    parent_id: str | None  # None only for the root (msgfolderroot)
    well_known: str | None = None
    hidden: bool = False


@dataclass
class FakeMessage:
    key: int  # internal, never shown
    immutable_id: str
    rest_id: str  # changes on every move
    folder_id: str
    raw: bytes
    received: datetime
    is_read: bool
    conversation_id: str
    internet_message_id: str
    is_draft: bool = False
    change: int = 1
    created: datetime = field(default_factory=lambda: datetime.now(UTC))
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class Mailbox:
    email: str
    oid: str
    tid: str
    display_name: str
    folders: dict[str, Folder] = field(default_factory=dict)
    messages: dict[int, FakeMessage] = field(default_factory=dict)
    root_id: str = ""


@dataclass
class _DeltaState:
    user: str
    folder_id: str
    select: list[str] | None
    filter_ge: datetime | None
    filter_strict: bool
    snapshot: dict[int, tuple[int, str, str]]  # message key -> (change, REST id, immutable id) then


@dataclass
class _Round:
    state: _DeltaState  # the state the round's deltaLink stands for (the new snapshot)
    items: list[
        tuple[int, str | None, tuple[str, str]]
    ]  # (key, removed reason or None, (REST, immutable) ids)
    token: str  # the deltatoken issued at the end


@dataclass
class Subscription:
    id: str
    user: str
    resource: str
    change_type: str
    notification_url: str
    lifecycle_url: str | None
    expiration: datetime
    client_state: str | None
    immutable_ids: bool
    application_id: str

    def resource_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": self.change_type,
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": _iso(self.expiration),
            "creatorId": None,
            "includeResourceData": False,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationQueryOptions": None,
            "notificationUrlAppId": None,
        }


@dataclass
class _Fault:
    remaining: int
    status: int
    code: str
    retry_after: str | None
    path: str | None
    method: str | None


@dataclass
class _Grant:
    email: str
    scopes: tuple[str, ...]
    client_id: str
    code_challenge: str | None = None
    code_challenge_method: str = "plain"
    redirect_uri: str | None = None
    nonce: str | None = None
    used: bool = False


@dataclass
class Call:
    method: str
    target: str
    prefer: str
    user: str | None = None
    in_batch: bool = False


@dataclass
class Delivery:
    """What the fake POSTed to a subscriber: the answer and how long it took."""

    url: str
    status: int
    body: str
    content_type: str
    elapsed: float
    payload: Any = None


# ------------------------------------------------------------------------------------- TLS


class _Tls:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost, as PEM files."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="fake-graph-tls-")
        now = datetime.now(UTC)
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mailsync test CA (fake graph)")])
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        self.ca_bundle = os.path.join(self.dir, "ca.pem")
        self.cert_file = os.path.join(self.dir, "server.pem")
        self.key_file = os.path.join(self.dir, "server.key")
        with open(self.ca_bundle, "wb") as f:
            f.write(ca.public_bytes(serialization.Encoding.PEM))
        with open(self.cert_file, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(self.key_file, "wb") as f:
            f.write(
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
            )

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        return ctx

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------------------------- helpers


def _addresses(value: str | None) -> list[dict[str, Any]]:
    if not value:
        return []
    out = []
    for name, addr in email.utils.getaddresses([value]):
        if addr:
            out.append({"emailAddress": {"name": name or addr, "address": addr}})
    return out


def _preview(msg: Message) -> str:
    try:
        part = msg.get_body(preferencelist=("plain", "html"))  # type: ignore[attr-defined]
        text = part.get_content() if part is not None else ""
    except Exception:
        text = ""
    text = re.sub(r"<[^>]+>", " ", text)
    return " ".join(text.split())[:255]


def _body(msg: Message) -> dict[str, str]:
    try:
        part = msg.get_body(preferencelist=("html", "plain"))  # type: ignore[attr-defined]
        if part is None:
            return {"contentType": "text", "content": ""}
        kind = "html" if part.get_content_type() == "text/html" else "text"
        return {"contentType": kind, "content": part.get_content()}
    except Exception:
        return {"contentType": "text", "content": ""}


def _has_attachments(msg: Message) -> bool:
    return any(
        part.get_content_disposition() == "attachment" for part in msg.walk() if not part.is_multipart()
    )


def _mime_from_json(data: dict[str, Any], sender: Mailbox) -> bytes:
    """Build the MIME of a Graph message resource given as JSON (sendMail, createReply)."""
    msg = EmailMessage()
    msg["From"] = f"{sender.display_name} <{sender.email}>"

    def fmt(key: str) -> str:
        out = []
        for r in data.get(key) or []:
            ea = (r or {}).get("emailAddress") or {}
            addr = str(ea.get("address") or "")
            if addr:
                out.append(email.utils.formataddr((str(ea.get("name") or ""), addr)))
        return ", ".join(out)

    for key, header in (("toRecipients", "To"), ("ccRecipients", "Cc"), ("bccRecipients", "Bcc")):
        if fmt(key):
            msg[header] = fmt(key)
    msg["Subject"] = str(data.get("subject") or "")
    msg["Date"] = email.utils.format_datetime(datetime.now(UTC))
    for h in data.get("internetMessageHeaders") or []:
        msg[str(h.get("name"))] = str(h.get("value"))
    if data.get("internetMessageId"):
        msg["Message-ID"] = str(data["internetMessageId"])
    body = data.get("body") or {}
    content = str(body.get("content") or "")
    if str(body.get("contentType") or "text").lower() == "html":
        msg.set_content(content, subtype="html")
    else:
        msg.set_content(content)
    return bytes(msg)


# ---------------------------------------------------------------------------------- the fake


class FakeGraph(base.FakeServer):
    """Fake Microsoft identity platform + Graph over HTTPS. Use as a context manager or :meth:`start`."""

    scheme = "https"

    def __init__(
        self,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        *,
        tenant_id: str = DEFAULT_TENANT_ID,
        access_token_lifetime: int = 3599,
        latency: float = 0.0,
        concurrency_limit: int | None = None,
        validator: Callable[[str, str], bool] | None = None,
        validate_subscriptions: bool = True,
        expired_status: int = 410,
        max_subscription_minutes: int = MAX_MESSAGE_SUBSCRIPTION_MINUTES,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        leakscan.register("client secret", client_secret)
        self.tenant_id = tenant_id
        self.access_token_lifetime = access_token_lifetime
        self.latency = latency
        self.concurrency_limit = concurrency_limit
        self.validator = validator
        self.validate_subscriptions = validate_subscriptions
        self.expired_status = expired_status
        self.max_subscription_minutes = max_subscription_minutes
        self.lock = threading.RLock()
        self.users: dict[str, Mailbox] = {}
        self.requests: Counter[str] = Counter()  # endpoint -> calls ($batch parts included)
        self.user_requests: Counter[str] = Counter()  # mailbox -> Graph calls ($batch parts included)
        self.max_concurrent: Counter[str] = Counter()  # mailbox -> most requests in flight at once
        self.calls: list[Call] = []
        self.batch_sizes: list[int] = []
        self.validations: list[Delivery] = []
        self.deliveries: list[Delivery] = []
        self.subscriptions: dict[str, Subscription] = {}
        self._in_flight: Counter[str] = Counter()
        self._faults: list[_Fault] = []
        self._folder_faults: dict[tuple[str, str], _Fault] = {}  # (mailbox, folder id) -> answer
        self._codes: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}
        self._access: dict[str, tuple[str, tuple[str, ...], float]] = {}
        self._refresh_errors: dict[str, str] = {}  # mailbox -> error of its next refresh grants
        self._next_login: tuple[str, bool] | None = None
        self._states: dict[str, _DeltaState] = {}
        self._rounds: dict[str, _Round] = {}
        self._ids = itertools.count(1)
        self.kid = _b64url(secrets.token_bytes(15))
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._tls: _Tls | None = None
        super().__init__()

    # ------------------------------------------------------------------ server (base.FakeServer)
    def start(self) -> FakeGraph:
        self._tls = _Tls()
        return super().start()

    def _prepare(self, server: ThreadingHTTPServer) -> None:
        assert self._tls is not None
        # The handshake runs in the handler thread (first read), not in the accept loop.
        server.socket = self._tls.server_context().wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )

    def stop(self) -> None:
        super().stop()
        if self._tls is not None:
            self._tls.cleanup()
            self._tls = None

    @property
    def ca_bundle(self) -> str:
        """Path of the PEM file of the CA that signed the server certificate."""
        assert self._tls is not None, "not started"
        return self._tls.ca_bundle

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    @property
    def api_base(self) -> str:
        """What ``MAILSYNC_GRAPH_API_BASE`` should be."""
        return self.base_url + "/v1.0"

    def authority_for(self, tenant: str = "organizations") -> str:
        """What ``MAILSYNC_MICROSOFT_AUTHORITY`` should be (``organizations`` by default)."""
        return f"{self.base_url}/{tenant}"

    @property
    def authority(self) -> str:
        return self.authority_for("organizations")

    @property
    def instance_discovery_url(self) -> str:
        return self.base_url + "/common/discovery/instance"

    def session(self) -> requests.Session:
        """A ``requests.Session`` that trusts the fake's CA (msal's ``http_client``, the provider's).

        ``trust_env`` is off: requests lets an inherited ``REQUESTS_CA_BUNDLE`` override a
        session's ``verify`` (psf/requests#3829)."""
        s = requests.Session()
        s.trust_env = False
        s.verify = self.ca_bundle
        return s

    # ------------------------------------------------------------- keys, JWTs
    def jwks(self) -> dict[str, Any]:
        pub = self._key.public_key().public_numbers()
        n = pub.n.to_bytes((pub.n.bit_length() + 7) // 8, "big")
        e = pub.e.to_bytes((pub.e.bit_length() + 7) // 8, "big")
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "use": "sig",
                    "kid": self.kid,
                    "x5t": self.kid,
                    "n": _b64url(n),
                    "e": _b64url(e),
                    "issuer": f"{self.base_url}/{{tenantid}}/v2.0",
                }
            ]
        }

    def sign_jwt(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "kid": self.kid}
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        sig = self._key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(sig)

    def issuer_for(self, tid: str) -> str:
        return f"{self.base_url}/{tid}/v2.0"

    def id_token(self, user: str, *, audience: str | None = None, nonce: str | None = None) -> str:
        box = self.mailbox(user)
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience or self.client_id,
            "iss": self.issuer_for(box.tid),
            "iat": now,
            "nbf": now,
            "exp": now + 3600,
            "name": box.display_name,
            "oid": box.oid,
            "preferred_username": box.email,
            "rh": "0.fake",
            "sub": _b64url(hashlib.sha256(f"{box.oid}:{audience or self.client_id}".encode()).digest()),
            "tid": box.tid,
            "uti": _b64url(secrets.token_bytes(16)),
            "ver": "2.0",
        }
        if nonce:
            claims["nonce"] = nonce
        return self.sign_jwt(claims)

    @staticmethod
    def client_info(box: Mailbox) -> str:
        return _b64url(json.dumps({"uid": box.oid, "utid": box.tid}).encode())

    # ------------------------------------------------------------------ users
    def _new_graph_id(self, prefix: str) -> str:
        raw = prefix.encode() + secrets.token_bytes(24) + next(self._ids).to_bytes(6, "big")
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=").replace("_", "-") + "="

    def add_user(
        self, user: str, *, tenant_id: str | None = None, display_name: str | None = None
    ) -> Mailbox:
        """Create (or return) the mailbox of ``user`` with the default folders."""
        key = user.lower()
        with self.lock:
            box = self.users.get(key)
            if box is not None:
                return box
            box = Mailbox(
                email=user,
                oid=str(uuid.UUID(hashlib.sha256(key.encode()).hexdigest()[:32])),
                tid=tenant_id or self.tenant_id,
                display_name=display_name or user.split("@")[0].replace(".", " ").title(),
            )
            root = Folder(self._new_graph_id("AQMkR"), "Top of Information Store", None, "msgfolderroot")
            box.root_id = root.id
            box.folders[root.id] = root
            for wk in WELL_KNOWN:
                f = Folder(self._new_graph_id("AQMkF"), _DISPLAY[wk], root.id, wk)
                box.folders[f.id] = f
            self.users[key] = box
            return box

    def mailbox(self, user: str) -> Mailbox:
        with self.lock:
            box = self.users.get(user.lower())
            if box is None:
                raise KeyError(f"unknown user {user}")
            return box

    # ------------------------------------------------------------------ OAuth
    def authorize(
        self,
        user: str,
        *,
        scopes: Iterable[str] = ("offline_access", *GRAPH_SCOPES),
        code_challenge: str | None = None,
        code_challenge_method: str = "S256",
        redirect_uri: str | None = None,
        nonce: str | None = None,
        client_id: str | None = None,
    ) -> str:
        """Mint an authorization ``code`` as if ``user`` signed in and consented (no browser)."""
        self.add_user(user)
        code = "0.A" + _b64url(secrets.token_bytes(48))
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

    def next_login(self, user: str, *, deny: bool = False) -> None:
        """The next ``GET /{tenant}/oauth2/v2.0/authorize`` signs in as ``user`` (or ``access_denied``)."""
        self.add_user(user)
        self._next_login = (user, deny)

    def login(self, auth_uri: str, user: str, *, deny: bool = False) -> dict[str, str]:
        """Follow an authorization URL (e.g. msal's ``flow["auth_uri"]``) as ``user``; returns the
        query parameters of the redirect back (``code``, ``state``, ...), ready for msal's
        ``acquire_token_by_auth_code_flow``."""
        self.next_login(user, deny=deny)
        parts = urlsplit(auth_uri)
        resp = self.handle("GET", parts.path + "?" + parts.query, {}, b"")
        loc = resp.headers.get("Location", "")
        if resp.status != 302 or not loc:
            raise AssertionError(f"authorize answered {resp.status}: {resp.body[:200]!r}")
        return {k: v[-1] for k, v in parse_qs(urlsplit(loc).query).items()}

    def issue_tokens(
        self, user: str, *, scopes: Iterable[str] = ("offline_access", *GRAPH_SCOPES)
    ) -> dict[str, Any]:
        """Shortcut: authorize + code exchange; the token endpoint's JSON answer."""
        code = self.authorize(user, scopes=scopes)
        with self.lock:
            grant = self._codes.pop(code)
        return self._tokens_for(grant)

    def _tokens_for(self, grant: _Grant) -> dict[str, Any]:
        box = self.mailbox(grant.email)
        access = "EwB" + _b64url(secrets.token_bytes(48))
        granted = tuple(s for s in grant.scopes if s not in ("offline_access", "openid", "profile", "email"))
        with self.lock:
            self._access[access] = (box.email, granted, time.time() + self.access_token_lifetime)
        out: dict[str, Any] = {
            "token_type": "Bearer",
            "scope": " ".join([*granted, "openid", "profile", "email"]),
            "expires_in": self.access_token_lifetime,
            "ext_expires_in": self.access_token_lifetime,
            "access_token": leakscan.registered("access token", access),
            "id_token": self.id_token(box.email, audience=grant.client_id, nonce=grant.nonce),
            "client_info": self.client_info(box),
        }
        if "offline_access" in grant.scopes:
            refresh = "1.A" + _b64url(secrets.token_bytes(64))
            with self.lock:
                self._refresh[refresh] = _Grant(box.email, grant.scopes, grant.client_id)
            out["refresh_token"] = leakscan.registered("refresh token", refresh)
        return out

    def fail_refresh(self, user: str, error: str | None = "invalid_grant") -> None:
        """Refresh-token grants of ``user`` answer ``error`` (``invalid_grant``, ``interaction_required``)
        until called with ``None``."""
        with self.lock:
            if error is None:
                self._refresh_errors.pop(user.lower(), None)
            else:
                self._refresh_errors[user.lower()] = error

    def revoke_user(self, user: str) -> None:
        """The user (or an admin) revoked every session: refresh tokens answer ``invalid_grant``,
        access tokens 401."""
        with self.lock:
            for r, g in list(self._refresh.items()):
                if g.email.lower() == user.lower():
                    del self._refresh[r]
            for a, (e, *_rest) in list(self._access.items()):
                if e.lower() == user.lower():
                    del self._access[a]

    def expire_access_tokens(self) -> None:
        """Every access token issued so far answers 401 from now on."""
        with self.lock:
            for a, (e, s, _) in list(self._access.items()):
                self._access[a] = (e, s, 0.0)

    # ----------------------------------------------------------- fault injection
    def fail_next(
        self,
        n: int = 1,
        status: int = 429,
        *,
        path: str | None = None,
        method: str | None = None,
        retry_after: float | str | None = 1,
        code: str | None = None,
    ) -> None:
        """The next ``n`` Graph calls (``$batch`` parts included) whose path contains ``path``
        (and whose method is ``method``) answer ``status`` with ``code`` (default 429
        ``TooManyRequests``, 503 ``ServiceNotAvailable``, else ``UnknownError``; e.g. 403
        ``ErrorAccessDenied``, 507 ``ErrorQuotaExceeded``) and ``Retry-After`` (delta-seconds,
        or an HTTP-date given as a string; None sends none)."""
        code = code or {429: "TooManyRequests", 503: "ServiceNotAvailable"}.get(status, "UnknownError")
        ra = None if retry_after is None else str(retry_after)
        with self.lock:
            self._faults.append(_Fault(n, status, code, ra, path, method))

    def fail_folder(
        self,
        user: str,
        folder: str,
        status: int | None = 403,
        *,
        code: str | None = None,
        retry_after: float | str | None = None,
    ) -> None:
        """Every Graph request of ``user`` for ``folder`` (display path, well-known name or id)
        answers ``status`` with Graph's error body, until called with ``status=None`` (or
        :meth:`clear_faults`), ``$batch`` parts included. A request is for the folder when its
        path names it (``/me/mailFolders/{id}`` and below: get, ``messages``, ``messages/delta``,
        ``childFolders``) or names a message in it (``/me/messages/{id}`` and below, as Exchange
        refuses items of a folder it refuses). The folder stays in the folder list. ``code``
        defaults by status (403 ``ErrorAccessDenied``, 404 ``ErrorItemNotFound``, 507
        ``ErrorQuotaExceeded``, 429 ``TooManyRequests``, 503 ``ServiceNotAvailable``, else
        ``UnknownError``); ``Retry-After`` is sent when ``retry_after`` is given."""
        with self.lock:
            box = self.mailbox(user)
            key = (box.email.lower(), self._folder(box, folder).id)
            if status is None:
                self._folder_faults.pop(key, None)
                return
            code = code or {
                403: "ErrorAccessDenied",
                404: "ErrorItemNotFound",
                429: "TooManyRequests",
                503: "ServiceNotAvailable",
                507: "ErrorQuotaExceeded",
            }.get(status, "UnknownError")
            ra = None if retry_after is None else str(retry_after)
            self._folder_faults[key] = _Fault(1, status, code, ra, None, None)

    def clear_faults(self) -> None:
        """Drop every injected fault: :meth:`fail_next`, :meth:`fail_folder`, :meth:`fail_refresh`."""
        with self.lock:
            self._faults.clear()
            self._folder_faults.clear()
            self._refresh_errors.clear()

    def _folder_fault(self, box: Mailbox, low: list[str], parts: list[str]) -> _Fault | None:
        """The :meth:`fail_folder` fault of a request (``low``: its path parts, lower-cased)."""
        if not self._folder_faults or len(low) < 3 or low[0] != "me":
            return None
        fid: str | None = None
        try:
            if low[1] == "mailfolders":
                fid = self._folder(box, parts[2]).id
            elif low[1] == "messages":
                fid = self._msg(box, parts[2]).folder_id
        except _HttpError:
            return None  # unknown: the request answers 404 itself
        return self._folder_faults.get((box.email.lower(), fid)) if fid else None

    def _fault_for(self, method: str, path: str) -> _Fault | None:
        with self.lock:
            for f in self._faults:
                if (
                    f.remaining > 0
                    and (f.path is None or f.path in path)
                    and (f.method is None or f.method == method)
                ):
                    f.remaining -= 1
                    return f
            self._faults = [f for f in self._faults if f.remaining > 0]
        return None

    @staticmethod
    def _fault_response(f: _Fault) -> Response:
        headers = {"Retry-After": f.retry_after} if f.retry_after is not None else {}
        message = {
            "ErrorAccessDenied": "Access is denied. Check credentials and try again.",
            "ErrorItemNotFound": "The specified object was not found in the store.",
            "ErrorQuotaExceeded": "The mailbox has exceeded its quota.",
        }.get(f.code) or {
            429: "Application is over its MailboxConcurrency limit.",
            503: "The service is temporarily unavailable.",
        }.get(f.status, "Injected failure.")
        return Response.json(f.status, graph_error(f.code, message), headers)

    def reset_counters(self) -> None:
        with self.lock:
            self.requests.clear()
            self.user_requests.clear()
            self.max_concurrent.clear()
            self.calls.clear()
            self.batch_sizes.clear()

    # --------------------------------------------------------- user mailbox API
    def folder_id(self, user: str, name_or_wellknown: str) -> str:
        """Id of a folder by well-known name, display path ("Archive/2024") or id."""
        box = self.mailbox(user)
        with self.lock:
            return self._folder(box, name_or_wellknown).id

    def _folder(self, box: Mailbox, ref: str) -> Folder:
        if ref in box.folders:
            return box.folders[ref]
        low = ref.lower()
        for f in box.folders.values():
            if f.well_known == low:
                return f
        for f in box.folders.values():
            if self._path(box, f).lower() == low:
                return f
        raise _HttpError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    def _path(self, box: Mailbox, f: Folder) -> str:
        names = []
        cur: Folder | None = f
        while cur is not None and cur.parent_id is not None:
            names.append(cur.display_name)
            cur = box.folders.get(cur.parent_id)
        return "/".join(reversed(names))

    def create_folder(self, user: str, name: str, parent: str | None = None) -> str:
        """Create a mail folder (under ``parent``: id, well-known name or path; else top level)."""
        box = self.add_user(user)
        with self.lock:
            parent_id = self._folder(box, parent).id if parent else box.root_id
            for f in box.folders.values():
                if f.parent_id == parent_id and f.display_name.lower() == name.lower():
                    raise ValueError(f"folder exists: {name}")
            f = Folder(self._new_graph_id("AQMkF"), name, parent_id)
            box.folders[f.id] = f
            return f.id

    def delete_folder(self, user: str, folder: str) -> None:
        """Delete a folder with its messages and subfolders (delta on it then answers 404)."""
        box = self.mailbox(user)
        with self.lock:
            fid = self._folder(box, folder).id
            doomed = {fid}
            changed = True
            while changed:
                changed = False
                for f in box.folders.values():
                    if f.parent_id in doomed and f.id not in doomed:
                        doomed.add(f.id)
                        changed = True
            for k, m in list(box.messages.items()):
                if m.folder_id in doomed:
                    del box.messages[k]
            for d in doomed:
                del box.folders[d]

    def _conversation_for(self, box: Mailbox, parsed: Message) -> str | None:
        refs = " ".join(str(parsed.get(h, "")) for h in ("In-Reply-To", "References"))
        wanted = {r.strip().lower() for r in re.findall(r"<[^>]+>", refs)}
        for m in box.messages.values():
            if m.internet_message_id.lower() in wanted:
                return m.conversation_id
        return None

    def _store(
        self,
        box: Mailbox,
        raw: bytes,
        folder_id: str,
        *,
        received: datetime | None = None,
        is_read: bool = False,
        is_draft: bool = False,
        conversation_id: str | None = None,
    ) -> FakeMessage:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        mid = str(parsed["Message-ID"] or "").strip()
        if not mid:
            mid = f"<{secrets.token_hex(12).upper()}@{box.email.split('@')[-1].upper()}.PROD.OUTLOOK.COM>"
            raw = f"Message-ID: {mid}\r\n".encode() + raw
        key = next(self._ids)
        msg = FakeMessage(
            key=key,
            immutable_id=self._new_graph_id("AAkALg"),
            rest_id=self._new_graph_id("AAMkAG"),
            folder_id=folder_id,
            raw=raw,
            received=(received or datetime.now(UTC)).astimezone(UTC),
            is_read=is_read,
            conversation_id=conversation_id
            or self._conversation_for(box, parsed)
            or self._new_graph_id("AAQkAG"),
            internet_message_id=mid,
            is_draft=is_draft,
        )
        box.messages[key] = msg
        return msg

    def deliver(
        self,
        user: str,
        raw: bytes,
        folder: str = "inbox",
        received: datetime | None = None,
        *,
        read: bool = False,
    ) -> str:
        """A mail arrives in ``folder`` (id, well-known name or path); returns its immutable id."""
        box = self.add_user(user)
        with self.lock:
            return self._store(
                box, raw, self._folder(box, folder).id, received=received, is_read=read
            ).immutable_id

    def _msg(self, box: Mailbox, mid: str) -> FakeMessage:
        for m in box.messages.values():
            if mid in (m.immutable_id, m.rest_id):
                return m
        raise _HttpError(404, "ErrorItemNotFound", "The specified object was not found in the store.")

    def _touch(self, m: FakeMessage) -> None:
        m.change += 1
        m.modified = datetime.now(UTC)

    def _move(self, box: Mailbox, m: FakeMessage, folder_id: str) -> None:
        if m.folder_id == folder_id:
            return
        m.folder_id = folder_id
        m.rest_id = self._new_graph_id("AAMkAG")  # REST ids change with the folder
        self._touch(m)

    def move(self, user: str, mid: str, folder: str) -> str:
        """Move a message (the user drags it); returns its new REST id (the immutable id stays)."""
        box = self.mailbox(user)
        with self.lock:
            m = self._msg(box, mid)
            self._move(box, m, self._folder(box, folder).id)
            return m.rest_id

    def delete(self, user: str, mid: str) -> None:
        """Hard delete (the message leaves the mailbox: ``@removed`` reason ``deleted``)."""
        box = self.mailbox(user)
        with self.lock:
            m = self._msg(box, mid)
            del box.messages[m.key]

    def mark_read(self, user: str, mid: str, read: bool = True) -> None:
        box = self.mailbox(user)
        with self.lock:
            m = self._msg(box, mid)
            if m.is_read != read:
                m.is_read = read
                self._touch(m)

    def expire_delta(self, user: str, folder: str | None = None) -> None:
        """Every delta/skip token issued for ``folder`` (all folders by default) expires (410)."""
        box = self.mailbox(user)
        with self.lock:
            fid = self._folder(box, folder).id if folder else None
            for tok, st in list(self._states.items()):
                if st.user == box.email.lower() and (fid is None or st.folder_id == fid):
                    del self._states[tok]
            for tok, rnd in list(self._rounds.items()):
                if rnd.state.user == box.email.lower() and (fid is None or rnd.state.folder_id == fid):
                    del self._rounds[tok]

    def message(self, user: str, mid: str) -> FakeMessage:
        """A message by immutable or REST id; ``KeyError`` when there is none."""
        box = self.mailbox(user)
        with self.lock:
            try:
                return self._msg(box, mid)
            except _HttpError:
                raise KeyError(mid) from None

    def messages_in(self, user: str, folder: str) -> list[FakeMessage]:
        box = self.mailbox(user)
        with self.lock:
            fid = self._folder(box, folder).id
            return [m for m in box.messages.values() if m.folder_id == fid]

    def folder_of(self, user: str, mid: str) -> str:
        """The display path (or well-known name for the default folders) of a message's folder."""
        box = self.mailbox(user)
        with self.lock:
            f = box.folders[self._msg(box, mid).folder_id]
            return f.well_known or self._path(box, f)

    # ----------------------------------------------------------- notifications
    def _post_to(self, url: str, payload: Any, timeout: float = 30.0) -> Delivery:
        t0 = time.monotonic()
        try:
            r = requests.post(url, json=payload, timeout=timeout)
            d = Delivery(url, r.status_code, r.text, r.headers.get("Content-Type", ""), time.monotonic() - t0)
        except requests.RequestException as e:
            d = Delivery(url, 0, str(e), "", time.monotonic() - t0)
        d.payload = payload
        with self.lock:
            self.deliveries.append(d)
        return d

    def _validate(self, url: str) -> bool:
        token = "Validation: Testing client application reachability for subscription Request-Id: " + str(
            uuid.uuid4()
        )
        if self.validator is not None:
            return bool(self.validator(url, token))
        sep = "&" if "?" in url else "?"
        t0 = time.monotonic()
        try:
            r = requests.post(
                url + sep + "validationToken=" + quote(token, safe=""),
                data=b"",
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=VALIDATION_TIMEOUT,
            )
            d = Delivery(url, r.status_code, r.text, r.headers.get("Content-Type", ""), time.monotonic() - t0)
        except requests.RequestException as e:
            d = Delivery(url, 0, str(e), "", time.monotonic() - t0)
        with self.lock:
            self.validations.append(d)
        return (
            d.status == 200
            and d.content_type.split(";")[0].strip().lower() == "text/plain"
            and d.body == token
            and d.elapsed <= VALIDATION_TIMEOUT
        )

    def _resource_matches(self, sub: Subscription, m: FakeMessage) -> bool:
        box = self.mailbox(sub.user)
        match = re.search(r"mailfolders\('?([^'/)]+)'?\)|mailfolders/([^/]+)", sub.resource, re.IGNORECASE)
        if not match:
            return True
        try:
            return self._folder(box, match.group(1) or match.group(2)).id == m.folder_id
        except _HttpError:
            return False

    def notification(
        self, subscription_id: str, change_type: str = "created", message_id: str | None = None
    ) -> dict[str, Any]:
        """The body Graph POSTs for one change of ``message_id`` (a random id when None)."""
        sub = self.subscriptions[subscription_id]
        box = self.mailbox(sub.user)
        mid = message_id or self._new_graph_id("AAkALg")
        etag = 'W/"CQAAABYAAAA"'
        with self.lock:
            for m in box.messages.values():
                if mid in (m.immutable_id, m.rest_id):
                    mid = m.immutable_id if sub.immutable_ids else m.rest_id
                    etag = f'W/"CQAAAB{m.change:08d}"'
        resource = f"Users/{box.oid}/Messages/{mid}"
        return {
            "value": [
                {
                    "subscriptionId": sub.id,
                    "subscriptionExpirationDateTime": _iso(sub.expiration),
                    "changeType": change_type,
                    "resource": resource,
                    "resourceData": {
                        "@odata.type": "#Microsoft.Graph.Message",
                        "@odata.id": resource,
                        "@odata.etag": etag,
                        "id": mid,
                    },
                    "clientState": sub.client_state,
                    "tenantId": box.tid,
                }
            ]
        }

    def notify(
        self,
        subscription_id: str,
        change_type: str = "created",
        message_id: str | None = None,
        *,
        client_state: str | None | Any = ...,
    ) -> Delivery:
        """POST one change notification to the subscription's ``notificationUrl``
        (``client_state=`` overrides the stored one, e.g. to send a forged value)."""
        payload = self.notification(subscription_id, change_type, message_id)
        if client_state is not ...:
            payload["value"][0]["clientState"] = client_state
        return self._post_to(self.subscriptions[subscription_id].notification_url, payload)

    def notify_user(self, user: str, change_type: str, message_id: str) -> list[Delivery]:
        """Notify every subscription of ``user`` whose resource and change types cover the change."""
        box = self.mailbox(user)
        with self.lock:
            m = self._msg(box, message_id)
            subs = [
                s
                for s in self.subscriptions.values()
                if s.user == box.email.lower()
                and change_type in s.change_type.split(",")
                and self._resource_matches(s, m)
            ]
        return [self.notify(s.id, change_type, message_id) for s in subs]

    def lifecycle_event(self, subscription_id: str, event: str) -> dict[str, Any]:
        sub = self.subscriptions[subscription_id]
        box = self.mailbox(sub.user)
        return {
            "value": [
                {
                    "subscriptionId": sub.id,
                    "subscriptionExpirationDateTime": _iso(sub.expiration),
                    "tenantId": box.tid,
                    "clientState": sub.client_state,
                    "lifecycleEvent": event,
                }
            ]
        }

    def lifecycle(self, subscription_id: str, event: str) -> Delivery:
        """POST a lifecycle event (``reauthorizationRequired``, ``subscriptionRemoved``, ``missed``)
        to ``lifecycleNotificationUrl``; ``subscriptionRemoved`` also drops the subscription."""
        if event not in ("reauthorizationRequired", "subscriptionRemoved", "missed"):
            raise ValueError(event)
        sub = self.subscriptions[subscription_id]
        if not sub.lifecycle_url:
            raise ValueError("the subscription has no lifecycleNotificationUrl")
        payload = self.lifecycle_event(subscription_id, event)
        if event == "subscriptionRemoved":
            with self.lock:
                self.subscriptions.pop(subscription_id, None)
        return self._post_to(sub.lifecycle_url, payload)

    # --------------------------------------------------------------- dispatch
    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        """Answer one HTTP request (``headers`` lower-cased)."""
        url = urlsplit(target)
        path, query = url.path, parse_qs(url.query, keep_blank_values=True)
        try:
            if path.startswith("/v1.0/") or path == "/v1.0":
                return self._graph(method, target, headers, body)
            return self._identity(method, path, query, headers, body)
        except _HttpError as e:
            return Response.error(e)

    # -- identity platform
    def _known_tenant(self, tenant: str) -> bool:
        if tenant.lower() in ("common", "organizations", "consumers", self.tenant_id):
            return True
        with self.lock:
            return any(tenant.lower() in (b.tid, b.email.split("@")[-1].lower()) for b in self.users.values())

    def openid_configuration(self, tenant: str) -> dict[str, Any]:
        base = self.base_url
        return {
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/{{tenantid}}/v2.0"
            if tenant.lower() in ("common", "organizations", "consumers")
            else f"{base}/{tenant}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{self.api_base}/oidc/userinfo",
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "email",
            ],
            "kerberos_endpoint": f"{base}/{tenant}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": self.host,
            "rbac_url": "https://pas.windows.net",
        }

    def _identity(
        self, method: str, path: str, query: dict[str, list[str]], headers: dict[str, str], body: bytes
    ) -> Response:
        q = {k: v[-1] for k, v in query.items()}
        if method == "GET" and path == "/common/discovery/instance":
            self.requests["instance-discovery"] += 1
            auth_ep = q.get("authorization_endpoint", "")
            parts = urlsplit(auth_ep).path.split("/")
            tenant = parts[1] if len(parts) > 1 and parts[1] else "common"
            return Response.json(
                200,
                {
                    "tenant_discovery_endpoint": f"{self.base_url}/{tenant}/v2.0/.well-known/openid-configuration",
                    "api-version": q.get("api-version", "1.1"),
                    "metadata": [
                        {"preferred_network": self.host, "preferred_cache": self.host, "aliases": [self.host]}
                    ],
                },
            )
        m = re.fullmatch(r"/([^/]+)/v2\.0/\.well-known/openid-configuration", path)
        if m and method == "GET":
            self.requests["openid-configuration"] += 1
            if not self._known_tenant(m.group(1)):
                return Response.json(
                    400,
                    {
                        "error": "invalid_tenant",
                        "error_description": f"AADSTS90002: Tenant '{m.group(1)}' not found.",
                        "error_codes": [90002],
                    },
                )
            return Response.json(200, self.openid_configuration(m.group(1)))
        m = re.fullmatch(r"/([^/]+)/discovery/v2\.0/keys", path)
        if m and method == "GET":
            self.requests["keys"] += 1
            return Response.json(200, self.jwks())
        m = re.fullmatch(r"/([^/]+)/oauth2/v2\.0/authorize", path)
        if m and method == "GET":
            self.requests["authorize"] += 1
            return self._authorize_endpoint(q)
        m = re.fullmatch(r"/([^/]+)/oauth2/v2\.0/token", path)
        if m and method == "POST":
            self.requests["token"] += 1
            return self._token(m.group(1), headers, body)
        return Response.json(404, {"error": "not_found", "error_description": path})

    def _authorize_endpoint(self, q: dict[str, str]) -> Response:
        redirect = q.get("redirect_uri", "")
        if q.get("client_id") != self.client_id or not redirect:
            return Response(
                400,
                b"AADSTS700016: Application not found in the directory.",
                {"Content-Type": "text/html; charset=utf-8"},
            )
        login, self._next_login = self._next_login, None
        params: dict[str, str] = {}
        if login is None or login[1]:
            params["error"] = "access_denied"
            params["error_description"] = "AADSTS65004: User declined to consent to access the app."
        else:
            box = self.mailbox(login[0])
            params["code"] = self.authorize(
                login[0],
                scopes=q.get("scope", "").split(),
                code_challenge=q.get("code_challenge"),
                code_challenge_method=q.get("code_challenge_method", "plain"),
                redirect_uri=redirect,
                nonce=q.get("nonce"),
            )
            if q.get("client_info") == "1":
                params["client_info"] = self.client_info(box)
            params["session_state"] = str(uuid.uuid4())
        if "state" in q:
            params["state"] = q["state"]
        sep = "&" if "?" in redirect else "?"
        return Response(302, b"", {"Location": redirect + sep + urlencode(params)})

    @staticmethod
    def _oauth_error(error: str, code: int, description: str, suberror: str | None = None) -> Response:
        body: dict[str, Any] = {
            "error": error,
            "error_description": f"AADSTS{code}: {description}\r\nTrace ID: {uuid.uuid4()}\r\n"
            f"Correlation ID: {uuid.uuid4()}\r\nTimestamp: {datetime.now(UTC):%Y-%m-%d %H:%M:%SZ}",
            "error_codes": [code],
            "timestamp": f"{datetime.now(UTC):%Y-%m-%d %H:%M:%SZ}",
            "trace_id": str(uuid.uuid4()),
            "correlation_id": str(uuid.uuid4()),
        }
        if suberror:
            body["suberror"] = suberror
        return Response.json(400, body)

    def _token(self, tenant: str, headers: dict[str, str], body: bytes) -> Response:
        form = {k: v[-1] for k, v in parse_qs(body.decode("utf-8")).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = headers.get("authorization", "")
        if auth.lower().startswith("basic "):
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            client_id, client_secret = unquote(cid), unquote(secret)
        if client_id != self.client_id:
            return self._oauth_error(
                "unauthorized_client", 700016, f"Application with identifier '{client_id}' was not found."
            )
        if client_secret != self.client_secret:
            return Response.json(
                401,
                {
                    "error": "invalid_client",
                    "error_description": "AADSTS7000215: Invalid client secret provided.",
                    "error_codes": [7000215],
                },
            )
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            with self.lock:
                grant = self._codes.get(form.get("code", ""))
                if grant is None or grant.used:
                    return self._oauth_error(
                        "invalid_grant",
                        54005,
                        "OAuth2 Authorization code was already redeemed or is invalid.",
                    )
                grant.used = True
            if grant.redirect_uri is not None and form.get("redirect_uri") != grant.redirect_uri:
                return self._oauth_error(
                    "invalid_grant",
                    500112,
                    "The reply address does not match the reply address provided when requesting Authorization code.",
                )
            if grant.code_challenge is not None:
                verifier = form.get("code_verifier")
                if not verifier:
                    return self._oauth_error("invalid_request", 501481, "The Code_Verifier is missing.")
                if grant.code_challenge_method == "S256":
                    computed = _b64url(hashlib.sha256(verifier.encode("ascii")).digest())
                else:
                    computed = verifier
                if computed != grant.code_challenge:
                    return self._oauth_error(
                        "invalid_grant",
                        501481,
                        "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                    )
            requested = form.get("scope", "").split()
            if requested:
                grant = _Grant(
                    grant.email,
                    tuple(dict.fromkeys([*grant.scopes, *requested])),
                    grant.client_id,
                    nonce=grant.nonce,
                )
            return Response.json(200, self._tokens_for(grant), {"Cache-Control": "no-store, no-cache"})
        if grant_type == "refresh_token":
            token = form.get("refresh_token", "")
            with self.lock:
                grant = self._refresh.get(token)
                forced = self._refresh_errors.get(grant.email.lower()) if grant else None
            if grant is None:
                return self._oauth_error(
                    "invalid_grant",
                    70008,
                    "The provided authorization code or refresh token has expired due to inactivity.",
                )
            if forced == "interaction_required":
                return self._oauth_error(
                    "interaction_required",
                    50076,
                    "Due to a configuration change made by your administrator, or because you moved to a new "
                    "location, you must use multi-factor authentication to access the resource.",
                    suberror="basic_action",
                )
            if forced:
                return self._oauth_error(
                    forced, 50173, "The provided grant has expired due to it being revoked."
                )
            scopes = form.get("scope", "").split() or list(grant.scopes)
            new = _Grant(grant.email, tuple(dict.fromkeys(["offline_access", *scopes])), grant.client_id)
            return Response.json(200, self._tokens_for(new), {"Cache-Control": "no-store, no-cache"})
        return self._oauth_error(
            "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
        )

    # -- Graph
    def _authenticate(self, headers: dict[str, str]) -> Mailbox:
        auth = headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
        with self.lock:
            found = self._access.get(token)
        if not token:
            raise _HttpError(401, "InvalidAuthenticationToken", "Access token is empty.")
        if found is None or found[2] < time.time():
            raise _HttpError(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired."
                if found
                else "IDX14100: JWT is not well formed.",
                {
                    "WWW-Authenticate": 'Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="invalid_token"'
                },
            )
        return self.mailbox(found[0])

    @staticmethod
    def _immutable(headers: dict[str, str]) -> bool:
        return bool(re.search(r'IdType\s*=\s*"?ImmutableId"?', headers.get("prefer", ""), re.IGNORECASE))

    @staticmethod
    def _max_page(headers: dict[str, str]) -> int | None:
        m = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", headers.get("prefer", ""), re.IGNORECASE)
        return max(1, min(int(m.group(1)), 1000)) if m else None

    def _graph(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        path = urlsplit(target).path
        with self.lock:
            self.calls.append(Call(method, target, headers.get("prefer", "")))
        fault = self._fault_for(method, unquote(path))
        if fault:
            return self._fault_response(fault)
        box = self._authenticate(headers)
        user = box.email.lower()
        with self.lock:
            self.calls[-1].user = user
            self._in_flight[user] += 1
            current = self._in_flight[user]
            self.max_concurrent[user] = max(self.max_concurrent[user], current)
        try:
            if self.concurrency_limit is not None and current > self.concurrency_limit:
                return Response.json(
                    429,
                    graph_error("ApplicationThrottled", "Application is over its MailboxConcurrency limit."),
                    {"Retry-After": "1"},
                )
            if self.latency:
                time.sleep(self.latency)
            if path.rstrip("/") == "/v1.0/$batch" and method == "POST":
                self.requests["batch"] += 1
                return self._batch(box, headers, body)
            self.user_requests[user] += 1
            return self._api(box, method, target, headers, body)
        finally:
            with self.lock:
                self._in_flight[user] -= 1

    def _api(self, box: Mailbox, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        url = urlsplit(target)
        raw_path = url.path[len("/v1.0") :] if url.path.startswith("/v1.0") else url.path
        # OData key syntax: mailFolders('AAMk...') -> mailFolders/AAMk...
        raw_path = re.sub(r"\('([^']*)'\)", lambda mm: "/" + mm.group(1), unquote(raw_path))
        parts = [p for p in raw_path.split("/") if p]
        query = parse_qs(url.query, keep_blank_values=True)
        if parts and parts[0].lower() == "users" and len(parts) >= 2:
            who = parts[1].lower()
            if who not in (box.oid, box.email.lower()):
                raise _HttpError(
                    403, "ErrorAccessDenied", "Access is denied. Check credentials and try again."
                )
            parts = ["me", *parts[2:]]
        low = [p.lower() for p in parts]
        name, handler = self._route(method, low)
        self.requests[name] += 1
        with self.lock:
            folder_fault = self._folder_fault(box, low, parts)
            if folder_fault is not None:
                return self._fault_response(folder_fault)
            resp: Response = handler(box, parts, query, headers, body)
        return resp

    def _route(self, method: str, p: list[str]) -> tuple[str, Any]:
        n = len(p)
        if p == ["subscriptions"]:
            if method == "POST":
                return "subscriptions.create", self._sub_create
            if method == "GET":
                return "subscriptions.list", self._sub_list
        if n == 2 and p[0] == "subscriptions":
            if method == "GET":
                return "subscriptions.get", self._sub_get
            if method == "PATCH":
                return "subscriptions.update", self._sub_update
            if method == "DELETE":
                return "subscriptions.delete", self._sub_delete
        if not p or p[0] != "me":
            raise _HttpError(
                400, "BadRequest", "Resource not found for the segment '{}'.".format("/".join(p))
            )
        rest = p[1:]
        m = len(rest)
        if method == "GET" and m == 0:
            return "me", self._me
        if method == "POST" and rest == ["sendmail"]:
            return "sendMail", self._send_mail
        if rest[:1] == ["mailfolders"]:
            if m == 1 and method == "GET":
                return "mailFolders.list", self._folders_list
            if m == 1 and method == "POST":
                return "mailFolders.create", self._folders_create
            if m == 2 and method == "GET":
                return "mailFolders.get", self._folders_get
            if m == 3 and rest[2] == "childfolders" and method == "GET":
                return "childFolders.list", self._folders_list
            if m == 3 and rest[2] == "childfolders" and method == "POST":
                return "mailFolders.create", self._folders_create
            if (
                m == 4
                and rest[2] == "messages"
                and rest[3] in ("delta", "microsoft.graph.delta()", "delta()")
                and method == "GET"
            ):
                return "messages.delta", self._delta
            if m == 3 and rest[2] == "messages" and method == "GET":
                return "messages.list", self._messages_list
        if rest[:1] == ["messages"] and m >= 2:
            if m == 2 and method == "GET":
                return "messages.get", self._message_get
            if m == 2 and method == "PATCH":
                return "messages.update", self._message_update
            if m == 2 and method == "DELETE":
                return "messages.delete", self._message_delete
            if m == 3 and rest[2] == "$value" and method == "GET":
                return "messages.value", self._message_value
            if m == 3 and method == "POST" and rest[2] in ("move", "createreply", "send"):
                return {
                    "move": "messages.move",
                    "createreply": "messages.createReply",
                    "send": "messages.send",
                }[rest[2]], getattr(self, "_message_" + rest[2])
        raise _HttpError(400, "BadRequest", f"Resource not found for the segment '{'/'.join(p)}'.")

    @staticmethod
    def _json_body(body: bytes) -> dict[str, Any]:
        return base.json_object(
            body, lambda: _HttpError(400, "BadRequest", "Unable to read JSON request payload.")
        )

    # mailbox reads
    def _me(self, box: Mailbox, parts: list[str], query: Any, headers: Any, body: bytes) -> Response:
        given, _, surname = box.display_name.partition(" ")
        return Response.json(
            200,
            {
                "@odata.context": f"{self.api_base}/$metadata#users/$entity",
                "businessPhones": [],
                "displayName": box.display_name,
                "givenName": given,
                "jobTitle": None,
                "mail": box.email,
                "mobilePhone": None,
                "officeLocation": None,
                "preferredLanguage": "en-US",
                "surname": surname or None,
                "userPrincipalName": box.email,
                "id": box.oid,
            },
        )

    def _folder_json(self, box: Mailbox, f: Folder) -> dict[str, Any]:
        msgs = [m for m in box.messages.values() if m.folder_id == f.id]
        return {
            "id": f.id,
            "displayName": f.display_name,
            "parentFolderId": f.parent_id or box.root_id,
            "childFolderCount": sum(1 for c in box.folders.values() if c.parent_id == f.id),
            "unreadItemCount": sum(1 for m in msgs if not m.is_read),
            "totalItemCount": len(msgs),
            "sizeInBytes": sum(len(m.raw) for m in msgs),
            "isHidden": f.hidden,
        }

    def _folders_list(
        self, box: Mailbox, parts: list[str], query: dict[str, list[str]], headers: Any, body: bytes
    ) -> Response:
        parent = box.root_id if len(parts) == 2 else self._folder(box, parts[2]).id
        hidden = (query.get("includeHiddenFolders") or ["false"])[-1].lower() == "true"
        kids = [f for f in box.folders.values() if f.parent_id == parent and (hidden or not f.hidden)]
        top = int((query.get("$top") or ["10"])[-1])
        skip = int((query.get("$skip") or ["0"])[-1])
        page = kids[skip : skip + top]
        out: dict[str, Any] = {
            "@odata.context": f"{self.api_base}/$metadata#users('{box.oid}')/mailFolders",
            "value": [self._folder_json(box, f) for f in page],
        }
        if skip + top < len(kids):
            q = {k: v[-1] for k, v in query.items()}
            q.update({"$top": str(top), "$skip": str(skip + top)})
            base = f"{self.api_base}/me/mailFolders" + (f"/{parent}/childFolders" if len(parts) > 2 else "")
            out["@odata.nextLink"] = base + "?" + urlencode(q)
        return Response.json(200, out)

    def _folders_get(self, box: Mailbox, parts: list[str], query: Any, headers: Any, body: bytes) -> Response:
        return Response.json(200, self._folder_json(box, self._folder(box, parts[2])))

    def _folders_create(
        self, box: Mailbox, parts: list[str], query: Any, headers: Any, body: bytes
    ) -> Response:
        data = self._json_body(body)
        name = str(data.get("displayName") or "").strip()
        if not name:
            raise _HttpError(400, "ErrorInvalidRequest", "displayName is required.")
        parent = self._folder(box, parts[2]).id if len(parts) > 2 else None
        try:
            fid = self.create_folder(box.email, name, parent)
        except ValueError:
            raise _HttpError(
                409, "ErrorFolderExists", "A folder with the specified name already exists."
            ) from None
        return Response.json(201, self._folder_json(box, box.folders[fid]))

    def _render(
        self, box: Mailbox, m: FakeMessage, immutable: bool, select: list[str] | None
    ) -> dict[str, Any]:
        parsed = email.message_from_bytes(m.raw, policy=email.policy.default)
        frm = _addresses(str(parsed.get("From") or ""))
        sent = parsed.get("Date")
        try:
            sent_dt = email.utils.parsedate_to_datetime(str(sent)) if sent else m.received
        except (TypeError, ValueError):
            sent_dt = m.received
        full: dict[str, Any] = {
            "@odata.etag": f'W/"CQAAABYAAA{m.change:08d}"',
            "id": m.immutable_id if immutable else m.rest_id,
            "createdDateTime": _iso(m.created),
            "lastModifiedDateTime": _iso(m.modified),
            "changeKey": f"CQAAABYAAA{m.change:08d}",
            "categories": [],
            "receivedDateTime": _iso(m.received),
            "sentDateTime": _iso(sent_dt),
            "hasAttachments": _has_attachments(parsed),
            "internetMessageId": m.internet_message_id,
            "subject": str(parsed.get("Subject") or ""),
            "bodyPreview": _preview(parsed),
            "importance": "normal",
            "parentFolderId": m.folder_id,
            "conversationId": m.conversation_id,
            "isDeliveryReceiptRequested": False,
            "isReadReceiptRequested": False,
            "isRead": m.is_read,
            "isDraft": m.is_draft,
            "webLink": f"https://outlook.office365.com/owa/?ItemID={quote(m.rest_id, safe='')}&exvsurl=1&viewmodel=ReadMessageItem",
            "inferenceClassification": "focused",
            "body": _body(parsed),
            "sender": frm[0] if frm else None,
            "from": frm[0] if frm else None,
            "toRecipients": _addresses(str(parsed.get("To") or "")),
            "ccRecipients": _addresses(str(parsed.get("Cc") or "")),
            "bccRecipients": _addresses(str(parsed.get("Bcc") or "")),
            "replyTo": _addresses(str(parsed.get("Reply-To") or "")),
            "flag": {"flagStatus": "notFlagged"},
        }
        if select:
            wanted = {s.strip() for s in select} | {"id"}
            return {k: v for k, v in full.items() if k in wanted or k == "@odata.etag"}
        return full

    @staticmethod
    def _select(query: dict[str, list[str]]) -> list[str] | None:
        raw = (query.get("$select") or [""])[-1]
        return [s for s in raw.split(",") if s] or None

    def _messages_list(
        self,
        box: Mailbox,
        parts: list[str],
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> Response:
        fid = self._folder(box, parts[2]).id
        msgs = sorted(
            (m for m in box.messages.values() if m.folder_id == fid), key=lambda m: m.received, reverse=True
        )
        flt = (query.get("$filter") or [""])[-1].strip()
        if flt:
            # The filters mailsync lists with: eq on internetMessageId, ge/gt on receivedDateTime.
            fm = re.fullmatch(r"internetMessageId\s+eq\s+'((?:[^']|'')*)'", flt, re.IGNORECASE)
            rm = re.fullmatch(r"receivedDateTime\s+(ge|gt)\s+(\S+)", flt, re.IGNORECASE)
            if fm:
                wanted = fm.group(1).replace("''", "'")
                msgs = [m for m in msgs if m.internet_message_id == wanted]
            elif rm:
                try:
                    bound = _parse_iso(rm.group(2))
                except ValueError:
                    raise _HttpError(400, "BadRequest", f"Invalid filter clause: {flt}") from None
                strict = rm.group(1).lower() == "gt"
                msgs = [m for m in msgs if m.received > bound or (not strict and m.received == bound)]
            else:
                raise _HttpError(
                    400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes."
                )
        # user-list-messages: "$top ... within the range of 1 and 1000" (default 10). What Graph
        # answers beyond 1000 is not documented; the fake serves at most 1000.
        top = max(1, min(int((query.get("$top") or ["10"])[-1]), MAX_LIST_TOP))
        skip = int((query.get("$skip") or ["0"])[-1])
        imm = self._immutable(headers)
        out: dict[str, Any] = {
            "value": [self._render(box, m, imm, self._select(query)) for m in msgs[skip : skip + top]]
        }
        if skip + top < len(msgs):
            q = {k: v[-1] for k, v in query.items()}
            q.update({"$top": str(top), "$skip": str(skip + top)})
            out["@odata.nextLink"] = f"{self.api_base}/me/mailFolders/{fid}/messages?" + urlencode(q)
        return Response.json(200, out, self._applied(headers))

    @staticmethod
    def _applied(headers: dict[str, str], page: int | None = None) -> dict[str, str]:
        prefs = []
        if page is not None:
            prefs.append(f"odata.maxpagesize={page}")
        if FakeGraph._immutable(headers):
            prefs.append('IdType="ImmutableId"')
        return {"Preference-Applied": ", ".join(prefs)} if prefs else {}

    def _message_get(
        self, box: Mailbox, parts: list[str], query: Any, headers: dict[str, str], body: bytes
    ) -> Response:
        m = self._msg(box, parts[2])
        return Response.json(
            200, self._render(box, m, self._immutable(headers), self._select(query)), self._applied(headers)
        )

    def _message_value(
        self, box: Mailbox, parts: list[str], query: Any, headers: Any, body: bytes
    ) -> Response:
        m = self._msg(box, parts[2])
        return Response(200, m.raw, {"Content-Type": "text/plain"})

    def _message_update(
        self, box: Mailbox, parts: list[str], query: Any, headers: dict[str, str], body: bytes
    ) -> Response:
        m = self._msg(box, parts[2])
        data = self._json_body(body)
        changed = False
        if "isRead" in data:
            if not isinstance(data["isRead"], bool):
                raise _HttpError(400, "ErrorInvalidRequest", "Cannot convert the literal to 'Edm.Boolean'.")
            if m.is_read != data["isRead"]:
                m.is_read = data["isRead"]
                changed = True
        if changed:
            self._touch(m)
        return Response.json(
            200, self._render(box, m, self._immutable(headers), None), self._applied(headers)
        )

    def _message_delete(
        self, box: Mailbox, parts: list[str], query: Any, headers: Any, body: bytes
    ) -> Response:
        m = self._msg(box, parts[2])
        del box.messages[m.key]  # to Recoverable Items: out of every folder
        return Response(204)

    def _message_move(
        self, box: Mailbox, parts: list[str], query: Any, headers: dict[str, str], body: bytes
    ) -> Response:
        m = self._msg(box, parts[2])
        dest = str(self._json_body(body).get("destinationId") or "")
        if not dest:
            raise _HttpError(400, "ErrorInvalidIdMalformed", "Id is malformed.")
        self._move(box, m, self._folder(box, dest).id)
        return Response.json(
            201, self._render(box, m, self._immutable(headers), None), self._applied(headers)
        )

    def _mime_or_json(
        self, box: Mailbox, headers: dict[str, str], body: bytes
    ) -> tuple[bytes | None, dict[str, Any]]:
        """(MIME, JSON) of a request whose body is base64 MIME (``text/plain``) or JSON."""
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == "text/plain":
            try:
                raw = base64.b64decode(body.strip(), validate=True)
            except ValueError:
                raise _HttpError(
                    400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
                ) from None
            if not raw.strip():
                raise _HttpError(400, "ErrorMimeContentInvalid", "The MIME content is invalid.")
            return raw, {}
        return None, self._json_body(body)

    def _deliver_locally(self, raw: bytes) -> None:
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        # Only the headers present: Python 3.13's strict getaddresses drops the whole list
        # when one entry (an absent Cc as "") does not parse.
        rcpts = email.utils.getaddresses([str(v) for h in ("To", "Cc", "Bcc") if (v := parsed.get(h))])
        for _, addr in rcpts:
            other = self.users.get(addr.lower())
            if other is not None:
                self._store(other, raw, self._folder(other, "inbox").id)

    def _send_mail(
        self, box: Mailbox, parts: list[str], query: Any, headers: dict[str, str], body: bytes
    ) -> Response:
        raw, data = self._mime_or_json(box, headers, body)
        save = True
        if raw is None:
            message = data.get("message")
            if not isinstance(message, dict):
                raise _HttpError(
                    400, "ErrorInvalidParameter", "The value of the parameter 'Message' is empty."
                )
            if not (
                message.get("toRecipients") or message.get("ccRecipients") or message.get("bccRecipients")
            ):
                raise _HttpError(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
            save = data.get("saveToSentItems", True) is not False
            raw = _mime_from_json(message, box)
        parsed = email.message_from_bytes(raw)
        if not any(parsed.get(h) for h in ("To", "Cc", "Bcc")):
            raise _HttpError(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
        if save:
            msg = self._store(box, raw, self._folder(box, "sentitems").id, is_read=True)
            raw = msg.raw
        self._deliver_locally(raw)
        return Response(202)

    def _message_createreply(
        self, box: Mailbox, parts: list[str], query: Any, headers: dict[str, str], body: bytes
    ) -> Response:
        orig = self._msg(box, parts[2])
        raw, data = self._mime_or_json(box, headers, body)
        if raw is None:
            oparsed = email.message_from_bytes(orig.raw, policy=email.policy.default)
            msg_json = dict(data.get("message") or {})
            subj = str(oparsed.get("Subject") or "")
            msg_json.setdefault("subject", subj if subj.lower().startswith("re:") else f"RE: {subj}")
            msg_json.setdefault(
                "toRecipients", _addresses(str(oparsed.get("Reply-To") or oparsed.get("From") or ""))
            )
            comment = str(data.get("comment") or "")
            msg_json.setdefault("body", {"contentType": "text", "content": comment})
            refs = f"{str(oparsed.get('References') or '')} {orig.internet_message_id}".strip()
            msg_json["internetMessageHeaders"] = [
                {"name": "In-Reply-To", "value": orig.internet_message_id},
                {"name": "References", "value": refs},
            ]
            raw = _mime_from_json(msg_json, box)
        draft = self._store(
            box,
            raw,
            self._folder(box, "drafts").id,
            is_read=True,
            is_draft=True,
            conversation_id=orig.conversation_id,
        )
        return Response.json(
            201, self._render(box, draft, self._immutable(headers), None), self._applied(headers)
        )

    def _message_send(
        self, box: Mailbox, parts: list[str], query: Any, headers: Any, body: bytes
    ) -> Response:
        m = self._msg(box, parts[2])
        if not m.is_draft:
            raise _HttpError(400, "ErrorInvalidRequest", "Only drafts can be sent.")
        parsed = email.message_from_bytes(m.raw)
        if not any(parsed.get(h) for h in ("To", "Cc", "Bcc")):
            raise _HttpError(400, "ErrorInvalidRecipients", "At least one recipient isn't valid.")
        m.is_draft = False
        m.received = datetime.now(UTC)
        self._move(box, m, self._folder(box, "sentitems").id)
        self._deliver_locally(m.raw)
        return Response(202)

    # delta
    def _delta(
        self,
        box: Mailbox,
        parts: list[str],
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> Response:
        folder = self._folder(box, parts[2])
        imm = self._immutable(headers)
        page_size = self._max_page(headers) or DEFAULT_DELTA_PAGE
        skiptoken = (query.get("$skiptoken") or [""])[-1]
        deltatoken = (query.get("$deltatoken") or [""])[-1]
        gone = _HttpError(
            self.expired_status,
            "SyncStateNotFound",
            "The sync state generation is not found. The delta token is expired and data must be synchronized again.",
        )
        if skiptoken:
            round_id, _, offset_s = skiptoken.rpartition(".")
            rnd = self._rounds.get(round_id)
            if rnd is None or rnd.state.folder_id != folder.id or not offset_s.isdigit():
                raise gone
            offset = int(offset_s)
        else:
            if deltatoken:
                prev = self._states.get(deltatoken)
                if prev is None or prev.folder_id != folder.id:
                    raise gone
            else:
                select = self._select(query)
                flt = (query.get("$filter") or [""])[-1].strip()
                ge: datetime | None = None
                strict = False
                if flt:
                    fm = re.fullmatch(r"receivedDateTime\s+(ge|gt)\s+(\S+)", flt, re.IGNORECASE)
                    if not fm:
                        raise _HttpError(
                            400,
                            "ErrorInvalidUrlQueryFilter",
                            "The query filter contains one or more invalid nodes.",
                        )
                    try:
                        ge = _parse_iso(fm.group(2))
                    except ValueError:
                        raise _HttpError(400, "BadRequest", f"Invalid filter clause: {flt}") from None
                    strict = fm.group(1).lower() == "gt"
                prev = _DeltaState(box.email.lower(), folder.id, select, ge, strict, {})
            rnd = self._new_round(box, prev)
            offset = 0
        items = rnd.items[offset : offset + page_size]
        values = []
        for key, reason, (old_rest, old_imm) in items:
            m = box.messages.get(key)
            if reason is None and m is not None:
                values.append(
                    {"@odata.type": "#microsoft.graph.message", **self._render(box, m, imm, rnd.state.select)}
                )
            else:
                values.append(
                    {
                        "@odata.type": "#microsoft.graph.message",
                        "id": old_imm if imm else old_rest,
                        "@removed": {"reason": reason or "deleted"},
                    }
                )
        link_base = f"{self.api_base}/me/mailFolders('{folder.id}')/messages/delta"
        out: dict[str, Any] = {
            "@odata.context": f"{self.api_base}/$metadata#Collection(message)",
            "value": values,
        }
        if offset + page_size < len(rnd.items):
            out["@odata.nextLink"] = link_base + "?$skiptoken=" + quote(f"{rnd.token}.{offset + page_size}")
        else:
            self._states[rnd.token] = rnd.state
            out["@odata.deltaLink"] = link_base + "?$deltatoken=" + quote(rnd.token)
        return Response.json(200, out, self._applied(headers, page_size))

    def _new_round(self, box: Mailbox, prev: _DeltaState) -> _Round:
        current: dict[int, tuple[int, str, str]] = {}
        msgs = []
        for m in box.messages.values():
            if m.folder_id != prev.folder_id:
                continue
            if prev.filter_ge is not None and (
                m.received < prev.filter_ge or (prev.filter_strict and m.received == prev.filter_ge)
            ):
                continue
            current[m.key] = (m.change, m.rest_id, m.immutable_id)
            msgs.append(m)
        items: list[tuple[int, str | None, tuple[str, str]]] = []
        for key, (_change, rest, imm) in prev.snapshot.items():
            if key not in current:
                items.append((key, "changed" if key in box.messages else "deleted", (rest, imm)))
        msgs.sort(key=lambda m: m.received, reverse=True)
        for m in msgs:
            old = prev.snapshot.get(m.key)
            if old is None or old[0] != m.change:
                items.append((m.key, None, (m.rest_id, m.immutable_id)))
        state = _DeltaState(
            prev.user, prev.folder_id, prev.select, prev.filter_ge, prev.filter_strict, current
        )
        token = _b64url(secrets.token_bytes(24))
        rnd = _Round(state, items, token)
        self._rounds[token] = rnd
        return rnd

    # $batch
    def _batch(self, box: Mailbox, headers: dict[str, str], body: bytes) -> Response:
        data = self._json_body(body)
        reqs = data.get("requests")
        if not isinstance(reqs, list) or not reqs:
            return Response.error(_HttpError(400, "BadRequest", "Invalid batch payload format."))
        if len(reqs) > MAX_BATCH:
            return Response.error(
                _HttpError(400, "BadRequest", f"The number of requests in a batch is limited to {MAX_BATCH}.")
            )
        ids = [str(r.get("id", "")) for r in reqs]
        if len(set(ids)) != len(ids) or "" in ids:
            return Response.error(
                _HttpError(400, "BadRequest", "Batch request ids must be present and unique.")
            )
        with self.lock:
            self.batch_sizes.append(len(reqs))
        out = []
        for r in reqs:
            rid, method = str(r["id"]), str(r.get("method") or "GET").upper()
            rel = str(r.get("url") or "")
            target = "/v1.0" + (rel if rel.startswith("/") else "/" + rel)
            inner = {k.lower(): str(v) for k, v in (r.get("headers") or {}).items()}
            inner.setdefault("authorization", headers.get("authorization", ""))
            if "prefer" not in inner and headers.get("prefer"):
                inner["prefer"] = headers["prefer"]
            rbody = r.get("body")
            if isinstance(rbody, str) and inner.get("content-type", "").startswith("text/plain"):
                payload = rbody.encode()
            elif rbody is not None:
                payload = json.dumps(rbody).encode()
                inner.setdefault("content-type", "application/json")
            else:
                payload = b""
            with self.lock:
                self.calls.append(Call(method, target, inner.get("prefer", ""), box.email.lower(), True))
            fault = self._fault_for(method, unquote(urlsplit(target).path))
            if fault:
                resp = self._fault_response(fault)
            else:
                try:
                    self.user_requests[box.email.lower()] += 1
                    resp = self._api(box, method, target, inner, payload)
                except _HttpError as e:
                    resp = Response.error(e)
            rb: Any = None
            if resp.body:
                if resp.headers.get("Content-Type", "").startswith("application/json"):
                    rb = json.loads(resp.body)
                else:
                    rb = base64.b64encode(resp.body).decode("ascii")  # as Graph does for non-JSON bodies
            out.append({"id": rid, "status": resp.status, "headers": dict(resp.headers), "body": rb})
        return Response.json(200, {"responses": out})

    # subscriptions
    def _sub_create(
        self, box: Mailbox, parts: list[str], query: Any, headers: dict[str, str], body: bytes
    ) -> Response:
        data = self._json_body(body)
        for req in ("changeType", "notificationUrl", "resource", "expirationDateTime"):
            if not data.get(req):
                raise _HttpError(400, "InvalidRequest", f"Subscription property '{req}' is required.")
        change = str(data["changeType"])
        if not set(change.split(",")) <= {"created", "updated", "deleted"}:
            raise _HttpError(400, "InvalidRequest", f"Invalid changeType '{change}'.")
        resource = str(data["resource"])
        if not re.fullmatch(
            r"/?(me|users/[^/]+)(/mailFolders(\('[^']+'\)|/[^/]+))?/messages", resource, re.IGNORECASE
        ):
            raise _HttpError(400, "ExtensionError", f"Unsupported resource '{resource}'.")
        client_state = data.get("clientState")
        if client_state is not None and len(str(client_state)) > 128:
            raise _HttpError(400, "InvalidRequest", "clientState must be at most 128 characters.")
        exp = self._check_expiration(str(data["expirationDateTime"]))
        urls = [str(data["notificationUrl"])]
        if data.get("lifecycleNotificationUrl"):
            urls.append(str(data["lifecycleNotificationUrl"]))
        if self.validate_subscriptions:
            for u in urls:
                self.lock.release()  # the subscriber may call back into the fake meanwhile
                try:
                    ok = self._validate(u)
                finally:
                    self.lock.acquire()
                if not ok:
                    raise _HttpError(
                        400,
                        "ValidationError",
                        "Subscription validation request failed. Notification endpoint must respond with "
                        "200 OK to validation request.",
                    )
        sub = Subscription(
            id=str(uuid.uuid4()),
            user=box.email.lower(),
            resource=resource,
            change_type=change,
            notification_url=urls[0],
            lifecycle_url=urls[1] if len(urls) > 1 else None,
            expiration=exp,
            client_state=leakscan.registered("webhook clientState", str(client_state))
            if client_state is not None
            else None,
            immutable_ids=self._immutable(headers),
            application_id=self.client_id,
        )
        self.subscriptions[sub.id] = sub
        return Response.json(201, sub.resource_json())

    def _check_expiration(self, text: str) -> datetime:
        try:
            exp = _parse_iso(text)
        except ValueError:
            raise _HttpError(400, "InvalidRequest", "expirationDateTime is not a valid date.") from None
        now = datetime.now(UTC)
        if exp <= now:
            raise _HttpError(400, "InvalidRequest", "Subscription expiration can not be in the past.")
        if exp > now + timedelta(minutes=self.max_subscription_minutes, seconds=60):
            raise _HttpError(
                400,
                "InvalidRequest",
                f"Subscription expiration can only be {self.max_subscription_minutes} minutes in the future.",
            )
        return exp

    def _own_sub(self, box: Mailbox, sid: str) -> Subscription:
        sub = self.subscriptions.get(sid)
        if sub is None or sub.user != box.email.lower():
            raise _HttpError(404, "ResourceNotFound", f"The object was not found. Subscription '{sid}'.")
        return sub

    def _sub_list(self, box: Mailbox, parts: list[str], query: Any, headers: Any, body: bytes) -> Response:
        subs = [s.resource_json() for s in self.subscriptions.values() if s.user == box.email.lower()]
        return Response.json(200, {"value": subs})

    def _sub_get(self, box: Mailbox, parts: list[str], query: Any, headers: Any, body: bytes) -> Response:
        return Response.json(200, self._own_sub(box, parts[1]).resource_json())

    def _sub_update(self, box: Mailbox, parts: list[str], query: Any, headers: Any, body: bytes) -> Response:
        sub = self._own_sub(box, parts[1])
        data = self._json_body(body)
        if data.get("expirationDateTime"):
            sub.expiration = self._check_expiration(str(data["expirationDateTime"]))
        if data.get("notificationUrl") and data["notificationUrl"] != sub.notification_url:
            if self.validate_subscriptions:
                self.lock.release()
                try:
                    ok = self._validate(str(data["notificationUrl"]))
                finally:
                    self.lock.acquire()
                if not ok:
                    raise _HttpError(400, "ValidationError", "Subscription validation request failed.")
            sub.notification_url = str(data["notificationUrl"])
        return Response.json(200, sub.resource_json())

    def _sub_delete(self, box: Mailbox, parts: list[str], query: Any, headers: Any, body: bytes) -> Response:
        self._own_sub(box, parts[1])
        del self.subscriptions[parts[1]]
        return Response(204)
