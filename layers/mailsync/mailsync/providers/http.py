"""HTTP plumbing shared by the REST providers (:mod:`mailsync.providers.gmail`,
:mod:`mailsync.providers.graph`): session, access token, quota budget, and retries.

Invariants (each provider keeps its own error mapping and budget sizes):

* Every request first spends its units in a per-mailbox :class:`QuotaBudget` (a sliding
  window that sleeps when used up), so one process never outruns the provider's limits.
* 429 and 500/502/503/504 (:data:`RETRY_STATUSES`, plus what a provider adds, e.g. Gmail's
  403 ``rateLimitExceeded``) and connection failures are retried with exponential backoff
  and "equal jitter" (a step of ``backoff_base * 2**attempt`` capped at ``backoff_cap``, half
  of it fixed, half random), never shorter than ``Retry-After`` (delta-seconds or HTTP-date,
  RFC 9110 section 10.2.3). After ``max_retries`` retries the provider's error is raised:
  nothing was yielded for the failing step, so the engine keeps the last stored cursor.
* A 401 asks the token source once more (calling its ``invalidate()`` if it has one), then
  raises :class:`AuthFailed`; so does a refused refresh token (``invalid_grant`` ...).
* Any other answer >= 400 raises :class:`ApiError` (:func:`api_error`), which keeps the HTTP
  ``status`` and the provider's error ``code`` for the callers that branch on them (an expired
  cursor, a folder that is gone). What differs per provider is only how its error body reads:
  each passes a small parser, :attr:`RestProvider.error_info` (Gmail: ``error.errors[].reason``;
  Graph: ``error.code``), and the code type of a body it cannot read (:func:`json_body`).
* Every error has the typed ``kind`` of the sync-health contract (:func:`api_error`,
  :func:`transport_error`): 429 (and the provider's rate codes) ``rate_limited`` with the last
  answer's ``Retry-After`` in ``retry_after`` once the retries are used up; 403
  ``permission_denied``; 507 and the provider's quota codes ``quota_exceeded``; 5xx after the
  retries ``provider_error``; ``requests``' ``SSLError`` ``tls_error`` (never retried: a bad
  certificate does not heal in seconds), ``Timeout`` ``timeout``, any other connection failure
  ``connection_failed``. An :class:`ApiError` of a kind is also an instance of that kind's port
  class (:class:`~mailsync.domain.ports.RateLimited`, ...), so callers may catch either.
* No error message carries a token or secret: messages are built from the provider's error
  text and our own words only.

References: Gmail "Usage limits" and "Handle errors" (developers.google.com/gmail/api/reference/quota,
.../gmail/api/guides/handle-errors: exponential backoff), Microsoft Graph "Throttling" and
"Throttling limits" (learn.microsoft.com/graph/throttling, .../graph/throttling-limits:
honour ``Retry-After`` on 429, 503 and 504).
"""

from __future__ import annotations

import contextlib
import email.utils
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

import requests

from mailsync.domain.ports import (
    AuthFailed,
    ConnectionFailed,
    FolderGone,
    PermissionDenied,
    ProviderError,
    QuotaExceeded,
    RateLimited,
    TimedOut,
    TlsFailed,
)
from mailsync.observability import trace_http

trace_http()  # every call to Google or Microsoft goes through code that imports this module

__all__ = [
    "DEFAULT_UNITS_PER_MINUTE",
    "MAX_INLINE_WAIT",
    "ApiError",
    "RETRY_STATUSES",
    "QuotaBudget",
    "Reply",
    "RestProvider",
    "Retry",
    "api_error",
    "api_error_class",
    "json_body",
    "later_retry_after",
    "per_mailbox",
    "retry_after",
    "status_kind",
    "transport_error",
]

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_UNITS_PER_MINUTE = 12_000  # Gmail allows 15,000 per user per minute


# --------------------------------------------------------------------------------------------
# Quota budget


class QuotaBudget:
    """A sliding-minute budget of quota units for one user; :meth:`spend` sleeps when it is used up.

    Thread-safe. ``clock``/``sleep`` are injectable for tests (a fake sleep must advance the clock).
    """

    def __init__(
        self,
        units_per_minute: int = DEFAULT_UNITS_PER_MINUTE,
        *,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if units_per_minute < 1:
            raise ValueError("units_per_minute must be positive")
        self.limit = units_per_minute
        self.window = window
        self.clock = clock
        self.sleep = sleep
        self.total = 0  # units spent since creation
        self.waited = 0.0  # seconds slept for the budget
        self._spent: deque[tuple[float, int]] = deque()
        self._used = 0
        self._lock = threading.Lock()

    def _prune(self, now: float) -> None:
        while self._spent and self._spent[0][0] <= now - self.window:
            self._used -= self._spent.popleft()[1]

    @property
    def used(self) -> int:
        """Units spent within the current window."""
        with self._lock:
            self._prune(self.clock())
            return self._used

    def spend(self, units: int) -> None:
        units = min(max(int(units), 0), self.limit)
        if not units:
            return
        with self._lock:
            now = self.clock()
            self._prune(now)
            while self._used + units > self.limit and self._spent:
                wait = max(self._spent[0][0] + self.window - now, 0.001)
                self.waited += wait
                self.sleep(wait)
                now = self.clock()
                self._prune(now)
            self._spent.append((now, units))
            self._used += units
            self.total += units


_REGISTRY_LOCK = threading.Lock()


def per_mailbox[T](registry: dict[str, T], user: str, make: Callable[[], T]) -> T:
    """The process-wide ``registry`` entry of ``user`` (case-insensitive), made on first use."""
    key = user.lower()
    with _REGISTRY_LOCK:
        item = registry.get(key)
        if item is None:
            item = registry[key] = make()
        return item


# --------------------------------------------------------------------------------------------
# Wire helpers


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


def retry_after(value: str | None) -> float | None:
    """Seconds of a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def later_retry_after(current: float | None, value: str | None) -> float | None:
    """The longer of ``current`` and the ``Retry-After`` ``value`` (of one more batch part)."""
    seconds = retry_after(value)
    return current if seconds is None else max(current or 0.0, seconds)


def json_body(r: requests.Response, error_code: Callable[[int], Any] = int) -> Any:
    """The JSON body of ``r`` (``{}`` when empty); an unreadable one becomes an error body
    ``{"error": {"code": error_code(status), "message": <text>}}`` in the provider's shape."""
    if not r.content:
        return {}
    try:
        return r.json()
    except ValueError:
        return {"error": {"code": error_code(r.status_code), "message": r.text[:200]}}


class ApiError(ProviderError):
    """An error answer (status >= 400) of a REST API; ``status`` and the provider's error
    ``code`` (Gmail: the ``reason``; Graph: ``error.code``) stay on the exception, ``kind`` is
    the typed error code (:func:`status_kind` unless the provider knows better)."""

    def __init__(
        self,
        message: str,
        status: int,
        code: str,
        *,
        kind: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, kind=kind, retry_after=retry_after)
        self.status = status
        self.code = code


class ApiRateLimited(ApiError, RateLimited):
    """A REST answer of kind ``rate_limited``."""


class ApiPermissionDenied(ApiError, PermissionDenied):
    """A REST answer of kind ``permission_denied``."""


class ApiQuotaExceeded(ApiError, QuotaExceeded):
    """A REST answer of kind ``quota_exceeded``."""


class ApiFolderGone(ApiError, FolderGone):
    """A REST answer of kind ``mailbox_gone`` (a folder or label that is gone)."""


_API_ERRORS: dict[str, type[ApiError]] = {
    "rate_limited": ApiRateLimited,
    "permission_denied": ApiPermissionDenied,
    "quota_exceeded": ApiQuotaExceeded,
    "mailbox_gone": ApiFolderGone,
}


def api_error_class(kind: str) -> type[ApiError]:
    """The :class:`ApiError` class of ``kind`` (also an instance of that kind's port class)."""
    return _API_ERRORS.get(kind, ApiError)


def status_kind(status: int) -> str:
    """The error kind an HTTP status means by itself (RFC 9110 section 15; Graph "errors":
    507 Insufficient Storage is the mailbox quota). 404 is ``provider_error`` here: only the
    caller knows whether a folder (``mailbox_gone``) or a message was not found."""
    if status == 429:
        return "rate_limited"
    if status == 403:
        return "permission_denied"
    if status == 507:
        return "quota_exceeded"
    return "provider_error"


def api_error(
    api: str,
    status: int,
    code: str,
    message: str,
    *,
    auth: Callable[[str, str], ProviderError],
    auth_codes: frozenset[str] = frozenset(),
    kind: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """The error of an answer >= 400: ``auth(code, message)`` (an :class:`AuthFailed`) for a 401
    or one of the provider's ``auth_codes``, else an :class:`ApiError` ``"<api> API <status>
    <code>: ..."`` of ``kind`` (default :func:`status_kind`)."""
    if status == 401 or code in auth_codes:
        return auth(code, message)
    kind = kind or status_kind(status)
    text = f"{api} API {status} {code}: {message}".replace("  ", " ")
    return api_error_class(kind)(text, status, code, kind=kind, retry_after=retry_after)


def transport_error(api: str, e: requests.RequestException) -> ProviderError:
    """The typed error of a request that got no answer: :class:`TlsFailed` for a TLS handshake
    or certificate failure, :class:`TimedOut` for a connect or read timeout, :class:`ConnectionFailed`
    for any other connection failure, else :class:`ProviderError`. (``SSLError`` and
    ``ConnectTimeout`` are ``ConnectionError`` subclasses in requests, hence the order.)"""
    if isinstance(e, requests.exceptions.SSLError):
        return TlsFailed(f"{api}: TLS failed: {type(e).__name__}: {e}")
    if isinstance(e, requests.Timeout):
        return TimedOut(f"{api} timed out: {type(e).__name__}: {e}")
    if isinstance(e, requests.ConnectionError):
        return ConnectionFailed(f"{api} unreachable: {type(e).__name__}: {e}")
    return ProviderError(f"{api} request failed: {e}")


# --------------------------------------------------------------------------------------------
# Provider base


MAX_INLINE_WAIT = 30.0
"""Seconds of ``Retry-After`` a request still waits for in place; a longer one ends the run."""


class Retry:
    """The retry state of one request: backoff attempts and the single token refresh after a 401."""

    def __init__(self, client: RestProvider) -> None:
        self.client = client
        self.attempt = 0
        self.refreshed = False

    def backoff(self, wait: float | None = None) -> bool:
        """Sleep before the next attempt (at least ``wait`` seconds, a ``Retry-After``);
        False, without sleeping, when ``max_retries`` are used up or the provider asks for a
        wait longer than :data:`MAX_INLINE_WAIT`: a Lambda must not sleep through minutes of
        throttling, so the error carries ``retry_after`` and the scheduler waits instead."""
        if self.attempt >= self.client.max_retries:
            return False
        if wait is not None and wait > MAX_INLINE_WAIT:
            return False
        self.client._backoff(self.attempt, wait)
        self.attempt += 1
        return True

    def refresh_token(self) -> bool:
        """Ask the token source again after a 401; False when that was done already."""
        if self.refreshed:
            return False
        self.refreshed = True
        self.client._get_token(refresh=True)
        return True


class RestProvider:
    """Session, access token, budget and retry plumbing of a REST mail provider.

    Subclasses set :attr:`api_name`, :attr:`token_issuer`, :attr:`token_errors`, their error
    body parser :attr:`error_info` and :attr:`error_code`, and map error answers with
    :meth:`_refused`, :meth:`_persisted` and :meth:`_error` (and :meth:`_should_retry` when
    more than :data:`RETRY_STATUSES` is retried).
    ``access_token`` returns a valid OAuth access token; when it has an ``invalidate()``
    method it is called after a 401 before the one retry.
    """

    api_name = "API"  # in transport error messages ("Gmail API unreachable: ...")
    token_issuer = "The identity provider"  # in "... refused the refresh token"
    token_errors: frozenset[str] = frozenset({"invalid_grant"})  # token source errors meaning AuthFailed
    error_code: Callable[[int], Any] = int  # the type of "code" in the provider's error bodies

    def __init__(
        self,
        access_token: Callable[[], str],
        *,
        user: str,
        api_base: str,
        session: requests.Session | None,
        timeout: float,
        budget: QuotaBudget,
        max_retries: int,
        backoff_base: float,
        backoff_cap: float,
        sleep: Callable[[float], None],
        rng: random.Random | None,
    ) -> None:
        self._access_token = access_token
        self.user = user
        self.api_base = api_base.rstrip("/")
        self.timeout = timeout
        self.budget = budget
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.sleep = sleep
        self.rng = rng or random.Random()  # noqa: S311 - jitter, not security
        self._own_session = session is None
        self._session = session
        self._token: str | None = None
        self._token_lock = threading.Lock()
        self.calls: list[str] = []  # the calls made (batch parts included), named by the provider
        self.sleeps: list[float] = []  # backoff sleeps requested

    # -- session -------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        if self._session is None:
            self._session = requests.Session()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own_session and self._session is not None:
            self._session.close()
            self._session = None

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = requests.Session()
        return self._session

    # -- provider specifics --------------------------------------------------------------------

    @staticmethod
    def error_info(body: Any, status: int) -> tuple[str, str]:
        """(code or reason, message) of an error body: the provider's parser."""
        raise NotImplementedError

    def _json(self, r: requests.Response) -> Any:
        """The JSON body of ``r``; an unreadable one in the provider's error shape."""
        return json_body(r, self.error_code)

    def _error_info_of(self, r: requests.Response) -> tuple[str, str]:
        """(code or reason, message) of an error answer."""
        return self.error_info(self._json(r), r.status_code)

    def _reply_error(self, reply: Reply) -> ProviderError:
        """The error of one reply >= 400 (a batch part, say), parsed the provider's way."""
        code, message = self.error_info(reply.body, reply.status)
        return self._error(reply.status, code, message)

    def _should_retry(self, status: int, code: str) -> bool:
        return status in RETRY_STATUSES

    def _refused(self, code: str, message: str) -> ProviderError:
        """The error of a second 401 in a row."""
        raise NotImplementedError

    def _persisted(
        self, attempts: int, status: int, code: str, message: str, retry_after: float | None
    ) -> ProviderError:
        """The error of a retryable answer after ``max_retries`` retries (``retry_after``: the
        last answer's ``Retry-After`` in seconds)."""
        raise NotImplementedError

    def _error(self, status: int, code: str, message: str) -> ProviderError:
        """The error of any other answer >= 400."""
        raise NotImplementedError

    def _gate(self) -> contextlib.AbstractContextManager[Any]:
        """Held while a request is in flight (a concurrency limit); none by default."""
        return contextlib.nullcontext()

    # -- HTTP ----------------------------------------------------------------------------------

    def _get_token(self, refresh: bool = False) -> str:
        with self._token_lock:
            if refresh:
                invalidate = getattr(self._access_token, "invalidate", None)
                if callable(invalidate):
                    invalidate()
                self._token = None
            if self._token is None:
                try:
                    token = self._access_token()
                except ProviderError:
                    raise
                except Exception as e:
                    if any(err in str(e) for err in self.token_errors):
                        raise AuthFailed(f"{self.token_issuer} refused the refresh token: {e}") from e
                    raise ConnectionFailed(f"could not get an access token: {type(e).__name__}: {e}") from e
                if not token:
                    raise AuthFailed("no access token")
                self._token = token
            return self._token

    def _backoff(self, attempt: int, retry_after: float | None) -> None:
        step = min(self.backoff_cap, self.backoff_base * (2**attempt))
        delay = step / 2 + self.rng.uniform(0, step / 2)  # "equal jitter"
        if retry_after is not None:
            delay = max(delay, retry_after)
        self.sleeps.append(delay)
        self.sleep(delay)

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One HTTP exchange; transport failures raise typed errors (:func:`transport_error`)."""
        try:
            with self._gate():
                return self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as e:
            raise transport_error(self.api_name, e) from e

    def _request_with_retries(
        self, method: str, url: str, *, units: int, call: str, headers: dict[str, str], **kwargs: Any
    ) -> requests.Response:
        """One API call with the budget, auth retry and backoff (see the module docstring).

        Returns the answer when its status is below 400, raises the provider's error otherwise.
        """
        retry = Retry(self)
        while True:
            self.budget.spend(units)
            self.calls.append(call)
            h = {"Authorization": f"Bearer {self._get_token()}", **headers}
            try:
                r = self._send(method, url, headers=h, **kwargs)
            except TlsFailed:
                raise  # a certificate does not heal within a backoff
            except ConnectionFailed:
                if not retry.backoff():
                    raise
                continue
            if r.status_code < 400:
                return r
            code, message = self._error_info_of(r)
            if r.status_code == 401:
                if not retry.refresh_token():
                    raise self._refused(code, message)
                continue
            if self._should_retry(r.status_code, code):
                wait = retry_after(r.headers.get("Retry-After"))
                if not retry.backoff(wait):
                    raise self._persisted(retry.attempt, r.status_code, code, message, wait)
                continue
            raise self._error(r.status_code, code, message)
