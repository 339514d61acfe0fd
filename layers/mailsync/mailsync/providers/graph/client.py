"""The Microsoft Graph REST client: session, throttling, error mapping, and JSON batching.

References (https://learn.microsoft.com/graph/...): ``throttling`` and ``throttling-limits``
(Outlook: 10,000 requests per 10 minutes and 4 concurrent requests per app and mailbox; 429
with ``Retry-After``; 503/504 also honour it), ``json-batching`` (``POST /$batch``, at most 20
requests, answers matched by ``id``), ``outlook-immutable-id`` (``Prefer:
IdType="ImmutableId"``, sent on every call: ids survive moves between folders), and
``errors`` (the error body ``{"error": {"code", "message"}}``).

Throttling
----------
Every request takes a slot of a per-mailbox semaphore (:data:`MAX_CONCURRENT` = 4, process-wide,
shared by every provider of that mailbox) and one unit of a per-mailbox rolling budget
(:data:`DEFAULT_REQUESTS_PER_10_MIN` per 600 s, below Outlook's 10,000, leaving room for
other processes); ``$batch`` spends one unit per part. 429, 503 and 504 (and 500/502, and
connection errors) are retried with exponential backoff and jitter, never shorter than
``Retry-After``; after ``max_retries`` a :class:`ProviderError` is raised before the batch
is yielded, so the engine keeps the last stored cursor. A 401 asks the token source once
more (calling its ``invalidate()``) and then raises :class:`AuthFailed`.

Invariants: every request carries ``Prefer: IdType="ImmutableId"``; the token is only ever sent
to ``api_base``'s origin (a link elsewhere is refused); the retry loop is
:class:`~mailsync.providers.http.RestProvider`'s, this module adds Graph's error body
(:func:`_error_info`), the concurrency gate and ``$batch``, whose throttled parts are retried
the same way (other part errors are returned to the caller).

Error kinds (:func:`graph_kind`): ``ErrorAccessDenied`` (and any 403) ``permission_denied``,
``ErrorQuotaExceeded`` and 507 ``quota_exceeded``, 429 and 503/504 with ``Retry-After`` after the
retries ``rate_limited`` (with that ``retry_after``), other 5xx ``provider_error``; a folder's
404 is :class:`~mailsync.domain.ports.FolderGone` where the caller knows it asked for a folder.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import requests

from mailsync.domain.ports import AuthFailed, ProviderError
from mailsync.providers import http
from mailsync.providers.graph.tokens import AUTH_ERRORS
from mailsync.providers.http import RETRY_STATUSES, QuotaBudget, Reply, RestProvider

__all__ = [
    "DEFAULT_API_BASE",
    "MAX_BATCH",
    "MAX_CONCURRENT",
    "GraphClient",
    "budget_for",
    "graph_kind",
    "semaphore_for",
]

DEFAULT_API_BASE = "https://graph.microsoft.com/v1.0"
MAX_CONCURRENT = 4  # Outlook: 4 concurrent requests per app and mailbox
DEFAULT_REQUESTS_PER_10_MIN = 9_000  # Outlook allows 10,000 per 10 minutes per app and mailbox
BUDGET_WINDOW = 600.0
MAX_BATCH = 20  # JSON batching limit


# --------------------------------------------------------------------------------------------
# Per-mailbox limits (process-wide)

_BUDGETS: dict[str, QuotaBudget] = {}
_SEMAPHORES: dict[str, threading.BoundedSemaphore] = {}


def budget_for(user: str, requests_per_window: int = DEFAULT_REQUESTS_PER_10_MIN) -> QuotaBudget:
    """The rolling 10-minute request budget of ``user`` (shared by every provider of that mailbox)."""
    return http.per_mailbox(_BUDGETS, user, lambda: QuotaBudget(requests_per_window, window=BUDGET_WINDOW))


def semaphore_for(user: str, limit: int = MAX_CONCURRENT) -> threading.BoundedSemaphore:
    """The concurrency gate of ``user``: at most ``limit`` Graph requests in flight."""
    return http.per_mailbox(_SEMAPHORES, user, lambda: threading.BoundedSemaphore(limit))


def _error_info(body: Any, status: int = 0) -> tuple[str, str]:
    """(code, message) of a Graph error body (``status`` is not needed: Graph always says)."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("code") or ""), str(err.get("message") or "")
    return "", str(body)[:200] if body else ""


def _refused(code: str, message: str) -> ProviderError:
    return AuthFailed(f"Graph refused the access token: {code} {message}".strip())


# Graph/Exchange error codes with a kind of their own ("errors" page; Outlook's throttling
# codes); any other answer's kind follows its status (:func:`~mailsync.providers.http.status_kind`).
CODE_KINDS = {
    "erroraccessdenied": "permission_denied",
    "accessdenied": "permission_denied",
    "errorquotaexceeded": "quota_exceeded",
    "quotaexceeded": "quota_exceeded",
    "toomanyrequests": "rate_limited",
    "applicationthrottled": "rate_limited",
    "errortoomanyobjectsopened": "rate_limited",
}


def graph_kind(status: int, code: str) -> str:
    """The error kind of a Graph answer: by its ``error.code`` when that says more than its status."""
    return CODE_KINDS.get(code.lower()) or http.status_kind(status)


def _api_error(status: int, code: str, message: str, retry_after: float | None = None) -> ProviderError:
    return http.api_error(
        "Graph", status, code, message, auth=_refused, kind=graph_kind(status, code), retry_after=retry_after
    )


class GraphClient(RestProvider):
    """A session to one Microsoft 365 mailbox (use as a context manager).

    ``calls`` holds "METHOD path" of every request (batch parts included)."""

    api_name = "Graph"
    token_issuer = "Microsoft"
    token_errors = AUTH_ERRORS

    def __init__(
        self,
        access_token: Callable[[], str],
        *,
        user: str,
        api_base: str = DEFAULT_API_BASE,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        budget: QuotaBudget | None = None,
        semaphore: threading.BoundedSemaphore | None = None,
        max_concurrency: int = MAX_CONCURRENT,
        known: Callable[[str, list[str]], Iterable[str]] | None = None,
        page_size: int = 100,
    ) -> None:
        super().__init__(
            access_token,
            user=user,
            api_base=api_base,
            session=session,
            timeout=timeout,
            budget=budget or budget_for(user),
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            sleep=sleep,
            rng=rng,
        )
        self.max_concurrency = max(1, min(max_concurrency, MAX_CONCURRENT))
        self.semaphore = semaphore or semaphore_for(user)
        self.known = known
        self.page_size = page_size
        self._folders: dict[str, dict[str, Any]] | None = None  # display path -> folder resource
        self._roles: dict[str, str] = {}  # folder id -> well-known name

    # -- HTTP (errors the Graph way; the retry loop is RestProvider's) --------------------------

    def _gate(self) -> contextlib.AbstractContextManager[Any]:
        return self.semaphore

    error_info = staticmethod(_error_info)
    error_code = str  # an unreadable body becomes {"error": {"code": "<status>", ...}}

    def _refused(self, code: str, message: str) -> ProviderError:
        return _refused(code, message)

    def _persisted(
        self, attempts: int, status: int, code: str, message: str, retry_after: float | None
    ) -> ProviderError:
        """429 (and 503/504 ``ServiceNotAvailable`` with a ``Retry-After``, Graph's throttling
        answers) after the retries: ``rate_limited``; any other 5xx: ``provider_error``."""
        kind = "rate_limited" if status == 429 or (status in (503, 504) and retry_after is not None) else None
        text = f"Graph throttling persisted after {attempts} retries: {status} {code} {message}"
        kind = kind or graph_kind(status, code)
        return http.api_error_class(kind)(text, status, code, kind=kind, retry_after=retry_after)

    def _error(self, status: int, code: str, message: str) -> ProviderError:
        return _api_error(status, code, message)

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("https://", "http://")):
            return path_or_url
        return f"{self.api_base}/{path_or_url.lstrip('/')}"

    def _same_origin(self, url: str) -> bool:
        a, b = urlsplit(url), urlsplit(self.api_base)
        return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())

    def _request(
        self,
        method: str,
        path_or_url: str,
        *,
        params: Any = None,
        json_body: Any = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        units: int = 1,
        raw: bool = False,
    ) -> Reply:
        """One Graph call with the budget, the concurrency gate, auth retry and backoff.

        Returns the reply for statuses < 400; raises typed errors otherwise (the error keeps
        ``status`` and ``code``)."""
        url = self._url(path_or_url)
        if not self._same_origin(url):
            raise ProviderError(f"refusing to send the token to {urlsplit(url).netloc}")
        h = {"Accept": "application/json", "Prefer": 'IdType="ImmutableId"'}
        if headers:
            for k, v in headers.items():
                h[k] = f"{h['Prefer']}, {v}" if k == "Prefer" else v
        r = self._request_with_retries(
            method,
            url,
            units=units,
            call=f"{method} {urlsplit(url).path}",
            headers=h,
            params=params,
            json=json_body,
            data=data,
        )
        body: Any = r.content if raw else self._json(r)
        return Reply(r.status_code, dict(r.headers), body)

    def _get(self, path: str, **kw: Any) -> Any:
        return self._request("GET", path, **kw).body

    def _batch(self, calls: list[dict[str, Any]]) -> list[Reply]:
        """Run ``{"method", "url", ["body"]}`` calls through ``$batch``, 20 per request; throttled
        parts are retried with backoff. Returns the replies in order (errors returned, not raised)."""
        results: list[Reply | None] = [None] * len(calls)
        for start in range(0, len(calls), MAX_BATCH):
            idxs = list(range(start, min(start + MAX_BATCH, len(calls))))
            retry = http.Retry(self)
            while idxs:
                reqs = []
                for i in idxs:
                    c = calls[i]
                    req: dict[str, Any] = {
                        "id": str(i),
                        "method": c["method"],
                        "url": "/" + c["url"].lstrip("/"),
                        "headers": {"Prefer": 'IdType="ImmutableId"'},
                    }
                    if c.get("body") is not None:
                        req["body"] = c["body"]
                        req["headers"]["Content-Type"] = "application/json"
                    reqs.append(req)
                reply = self._request("POST", "$batch", json_body={"requests": reqs}, units=len(reqs))
                by_id = {
                    str(x.get("id")): x
                    for x in (reply.body or {}).get("responses") or []
                    if isinstance(x, dict)
                }
                again: list[int] = []
                wait: float | None = None
                last: tuple[int, str] = (0, "")  # status and code of the last throttled part
                for i in idxs:
                    part = by_id.get(str(i))
                    if part is None:
                        again.append(i)
                        continue
                    status = int(part.get("status") or 500)
                    headers = {str(k).lower(): str(v) for k, v in (part.get("headers") or {}).items()}
                    if status in RETRY_STATUSES:
                        again.append(i)
                        wait = http.later_retry_after(wait, headers.get("retry-after"))
                        last = (status, _error_info(part.get("body"))[0])
                    elif status == 401:
                        raise AuthFailed("Graph refused the access token (batch part)")
                    else:
                        results[i] = Reply(status, headers, part.get("body"))
                if again and not retry.backoff(wait):
                    status, code = last if last[0] else (502, "")  # parts left unanswered
                    raise self._persisted(retry.attempt, status, code, "($batch)", wait)
                idxs = again
        out = [r for r in results if r is not None]
        assert len(out) == len(calls)
        return out

    def _pages(self, path: str, params: Any = None) -> Iterator[dict[str, Any]]:
        data = self._get(path, params=params)
        while True:
            yield from data.get("value") or []
            nxt = data.get("@odata.nextLink")
            if not nxt:
                return
            data = self._get(str(nxt))

    # -- the signed-in user ---------------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """``GET /me``: ``id``, ``mail``, ``userPrincipalName``, ``displayName``."""
        return dict(self._get("me"))

    def mailbox_address(self) -> str:
        me = self.me()
        return str(me.get("mail") or me.get("userPrincipalName") or "")
