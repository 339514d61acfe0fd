"""Webhook endpoints and deliveries: the records, the rules and the ports of outbound delivery.

Invariants:

* A delivery's id is derived from its endpoint and its event (:func:`delivery_id`), so a
  redelivered stream batch (or a second ``fan_out`` of the same events) names the same
  delivery, and a recorded one is not sent again.
* The first attempt writes nothing before its POST: its job carries the event, and the answer
  becomes the delivery's first record (a conditional put). Two copies of one first job in
  flight at the same moment may both POST (at least once, the same ``webhook-id``); one
  record results. Attempt ``n > 0`` is performed by the job that carries ``attempt = n``,
  after a conditional claim (``attempts == n`` → ``n + 1``), so a duplicated retry job never
  sends twice.
* After a failed attempt ``k`` (1-based) the next one waits ``schedule[k - 1]``; after
  ``len(schedule) + 1`` attempts (or the delivery's own ``max_attempts``, one more than its
  attempts for a manual retry) it is ``failed``.
* An endpoint that had only failures for :data:`DISABLE_AFTER` is disabled
  (``disabled_reason`` ``failing``); ``failing_since`` is the first failure after its last
  success (None while it succeeds).
* Secrets are ``whsec_`` + base64 of :data:`SECRET_BYTES` random bytes (Standard Webhooks);
  the previous secret still signs for :data:`ROTATION_OVERLAP` after a rotation.
"""

from __future__ import annotations

import base64
import hashlib
import secrets as _secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol
from urllib.parse import urlsplit

PENDING, SUCCEEDED, FAILED = "pending", "succeeded", "failed"
STATUSES = (PENDING, SUCCEEDED, FAILED)
DISABLED_FAILING = "failing"

MAX_ENDPOINTS = 20  # per tenant (409 endpoint_limit)
URL_MAX = 2048
DESCRIPTION_MAX = 500
MAX_BODY_BYTES = 256 * 1024  # a bigger event is refused (failed at once), never truncated
TIMEOUT_SECONDS = 10.0
DISABLE_AFTER = timedelta(days=5)
ROTATION_OVERLAP = timedelta(hours=24)
RETENTION = timedelta(days=30)  # deliveries expire (DynamoDB TTL)
SQS_MAX_DELAY = 900  # seconds: a longer wait goes through the due index
SECRET_BYTES = 32
SECRET_PREFIX = "whsec_"
ERROR_MAX = 300  # characters of a delivery's last_error


class InvalidUrl(ValueError):
    """The endpoint URL is not an absolute ``https`` URL we may call (422 ``invalid_url``)."""


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(SECRET_BYTES)).decode()


def new_endpoint_id() -> str:
    return "we_" + _secrets.token_hex(12)


def delivery_id(endpoint_id: str, event_id: str, created_at: str) -> str:
    """``dlv_`` + the event's time (17 digits, to the millisecond) + 20 hex digits of SHA-256
    over the endpoint and the event. Stable (the same change names the same delivery), and
    sorted by time, so an endpoint's deliveries are listed newest first by their key alone."""
    digits = "".join(ch for ch in created_at if ch.isdigit())
    stamp = (digits + "0" * 17)[:17]  # second precision (a ping, a test) is padded to ms
    return f"dlv_{stamp}" + hashlib.sha256(f"{endpoint_id}#{event_id}".encode()).hexdigest()[:20]


def error_text(text: str) -> str:
    """``last_error`` as stored: at most :data:`ERROR_MAX` characters (keeps the record small)."""
    return text if len(text) <= ERROR_MAX else text[: ERROR_MAX - 1] + "…"


@dataclass(frozen=True)
class Target:
    """Where a URL points: scheme, host (no brackets), port and the request target."""

    scheme: str
    host: str
    port: int
    target: str  # path + query, at least "/"

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_url(url: str, *, allow_http: bool) -> Target:
    """The :class:`Target` of an endpoint URL; raises :class:`InvalidUrl`. ``https`` only,
    ``http`` where ``allow_http`` (private hosts allowed: local runner, tests); no user info
    (credentials do not belong in a URL we store and show), no fragment."""
    if len(url) > URL_MAX:
        raise InvalidUrl(f"the url is longer than {URL_MAX} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InvalidUrl("the url is not valid") from e
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_http):
        raise InvalidUrl("the url must be https")
    if not parts.hostname:
        raise InvalidUrl("the url has no host")
    if parts.username is not None or parts.password is not None:
        raise InvalidUrl("the url must not carry user info")
    if parts.fragment:
        raise InvalidUrl("the url must not carry a fragment")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(scheme, parts.hostname, port or (443 if scheme == "https" else 80), target)


def next_wait(attempts: int, schedule: tuple[int, ...], max_attempts: int) -> int | None:
    """Seconds until the next attempt after attempt number ``attempts`` (1-based) failed, or
    None when it was the last one."""
    if attempts >= max_attempts or attempts - 1 >= len(schedule):
        return None
    return schedule[attempts - 1]


def should_disable(failing_since: datetime | None, now: datetime) -> bool:
    return failing_since is not None and now - failing_since >= DISABLE_AFTER


@dataclass(frozen=True)
class Endpoint:
    """A tenant's webhook endpoint. ``envelopes`` are the encrypted signing secrets (opaque
    here: the store decrypts them), the current one first; ``previous_until`` ends the
    previous secret's overlap."""

    tenant_id: str
    endpoint_id: str
    url: str
    events: list[str]
    description: str
    enabled: bool
    created_at: str
    updated_at: str
    disabled_reason: str | None = None
    failing_since: str | None = None
    previous_until: str | None = None
    envelopes: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Delivery:
    """One event for one endpoint, with its attempts. The body is not copied into the record:
    ``event_seq`` names the event's item in the tenant's feed (read again by a retry, which so
    sends the very same bytes); only an event outside the feed (a ``ping``) is kept inline in
    ``event``."""

    tenant_id: str
    endpoint_id: str
    delivery_id: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    max_attempts: int
    created_at: str
    event_seq: int | None = None
    event: dict[str, Any] | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    next_attempt_at: str | None = None
    last_attempt_at: str | None = None


@dataclass(frozen=True)
class Job:
    """Perform attempt ``attempt`` (0-based) of a delivery, ``delay`` seconds from now.

    A first attempt carries its event (``event``, and ``seq``, its number in the feed): it
    needs no record to exist, and writes the delivery's first record only once the POST has
    an answer. Later attempts carry only the names; the record and the feed hold the rest."""

    tenant_id: str
    endpoint_id: str
    delivery_id: str
    attempt: int
    delay: int = 0
    event: dict[str, Any] | None = None
    seq: int | None = None

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "t": self.tenant_id,
            "e": self.endpoint_id,
            "d": self.delivery_id,
            "n": self.attempt,
        }
        if self.event is not None:
            out["v"] = self.event
        if self.seq is not None:
            out["s"] = self.seq
        return out

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Job:
        event = body.get("v")
        seq = body.get("s")
        return cls(
            str(body["t"]),
            str(body["e"]),
            str(body["d"]),
            int(body["n"]),
            event=dict(event) if isinstance(event, dict) else None,
            seq=int(seq) if seq is not None else None,
        )


@dataclass(frozen=True)
class Response:
    """What one POST came to: a status code, or an error (no answer at all)."""

    status: int | None = None
    error: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender(Protocol):
    """POSTs a body to an endpoint URL (``providers/webhook_http.py``): no redirects, TLS
    verified, the host guard applied to the resolved addresses, bounded by a timeout."""

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Response: ...


class WebhookQueue(Protocol):
    """Delivery jobs on a queue (``store/webhook_queue.py``); ``delay`` at most 900 s."""

    def send(self, jobs: list[Job]) -> list[int]:
        """The indexes of the jobs the queue accepted."""
        ...
