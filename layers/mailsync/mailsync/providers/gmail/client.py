"""The Gmail REST client: session, quota units, error mapping, and batch requests.

References (https://developers.google.com/gmail/api): batch requests (``POST
/batch/gmail/v1``, ``multipart/mixed`` of ``application/http`` parts, at most 100 calls, 50
recommended; each call counts against the quota), "Usage limits" (15,000 quota units per user
per minute; messages.get/list/modify/trash 5, history.list 2, send 100, getProfile/labels.list
1) and "Handle errors" (429 / 403 ``rateLimitExceeded``/``userRateLimitExceeded``: exponential
backoff, ``Retry-After``).

Rate limits
-----------
Every call first spends its quota units in a per-user :class:`QuotaBudget` (default 12,000
units per sliding minute, below Gmail's 15,000), which sleeps when the budget is used up.
429 and 403 ``rateLimitExceeded``/``userRateLimitExceeded`` (and 500/502/503/504) are
retried with exponential backoff and jitter, never shorter than ``Retry-After``; after
``max_retries`` a :class:`ProviderError` is raised: nothing was yielded for the failing
step, so the engine keeps the last stored cursor. 401 asks the token getter once more
(calling its ``invalidate()`` if it has one) and then raises :class:`AuthFailed`, as does
an ``invalid_grant`` from the token endpoint.

The retry loop is :class:`~mailsync.providers.http.RestProvider`'s; this module adds Google's
error body (:func:`_error_info`), the 403 rate reasons, and the batch endpoint, whose parts
are retried the same way (a part's 401 refreshes the token once, rate-limited parts are sent
again after the backoff, other part errors are returned to the caller).

Error kinds (:func:`gmail_kind`; "Resolve errors" guide, developers.google.com/gmail/api/guides/handle-errors)
------------------------------------------------------------------------------------------------------------
* 429 and 403 ``rateLimitExceeded``/``userRateLimitExceeded``: retried, then ``rate_limited``
  with the last ``Retry-After``.
* 403 ``dailyLimitExceeded`` (the project's daily quota): ``rate_limited``, not retried. It
  concerns every folder and heals by itself when the day's quota resets, so it must stop the
  session and back off like a rate limit (``quota_exceeded`` is a per-folder, user-must-act
  kind in the worker's table), hence this choice.
* 403 ``quotaExceeded``: ``quota_exceeded``. Any other 403 (``insufficientPermissions``,
  ``forbidden``, ``domainPolicy``): ``permission_denied``.
* 5xx after the retries: ``provider_error``; 401/``authError``/``invalid_grant``: :class:`AuthFailed`.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

from mailsync.domain.ports import AuthFailed, ConnectionFailed, ProviderError, TlsFailed
from mailsync.providers import http
from mailsync.providers.http import DEFAULT_UNITS_PER_MINUTE, RETRY_STATUSES, QuotaBudget, Reply, RestProvider
from mailsync.providers.http import retry_after as _retry_after

__all__ = ["DEFAULT_API_BASE", "FETCH_BATCH", "LIST_PAGE", "UNITS", "GmailClient", "budget_for", "gmail_kind"]

DEFAULT_API_BASE = "https://gmail.googleapis.com"
FETCH_BATCH = 50  # calls per batch request (Gmail recommends at most 50, allows 100)
LIST_PAGE = 500  # messages.list / history.list maxResults (the maximum)
UNITS = {
    "profile": 1,
    "labels.list": 1,
    "messages.list": 5,
    "messages.get": 5,
    "messages.modify": 5,
    "messages.trash": 5,
    "messages.send": 100,
    "history.list": 2,
    "watch": 100,
    "stop": 50,
}

RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})  # retried
QUOTA_REASONS = frozenset({"quotaExceeded"})
DAILY_REASONS = frozenset({"dailyLimitExceeded"})  # rate_limited, not retried (see the docstring)


_BUDGETS: dict[str, QuotaBudget] = {}


def budget_for(user: str, units_per_minute: int = DEFAULT_UNITS_PER_MINUTE) -> QuotaBudget:
    """The process-wide budget of ``user`` (shared by every provider of that mailbox)."""
    return http.per_mailbox(_BUDGETS, user, lambda: QuotaBudget(units_per_minute))


def _error_info(body: Any, status: int) -> tuple[str, str]:
    """(reason, message) of a Google error body."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        errors = err.get("errors") or [{}]
        reason = str(errors[0].get("reason") or err.get("status") or "")
        return reason, str(err.get("message") or f"HTTP {status}")
    if isinstance(err, str):  # OAuth style {"error": "invalid_grant", ...}
        return err, str(body.get("error_description") or err)
    return "", f"HTTP {status}"


def _retryable(status: int, reason: str) -> bool:
    return status in RETRY_STATUSES or (status == 403 and reason in RATE_REASONS)


def gmail_kind(status: int, reason: str) -> str:
    """The error kind of a Gmail answer (see the module docstring)."""
    if reason in RATE_REASONS or reason in DAILY_REASONS:
        return "rate_limited"
    if reason in QUOTA_REASONS:
        return "quota_exceeded"
    return http.status_kind(status)


def _api_error(status: int, reason: str, message: str, retry_after: float | None = None) -> ProviderError:
    return http.api_error(
        "Gmail",
        status,
        reason,
        message,
        auth=lambda _code, text: AuthFailed(f"Gmail: {text}"),
        auth_codes=frozenset({"invalid_grant", "authError"}),
        kind=gmail_kind(status, reason),
        retry_after=retry_after,
    )


class GmailClient(RestProvider):
    """The HTTP side of a session to one Gmail mailbox (see the module docstring).

    ``access_token`` returns a valid OAuth access token (for example a
    :class:`CredentialsTokenSource`); when it has an ``invalidate()`` method it is called
    after a 401 before the one retry. ``user`` keys the shared quota budget (the address).
    ``calls`` names the API methods called, e.g. "history.list" (batch parts included).
    """

    api_name = "Gmail API"
    token_issuer = "Google"
    token_errors = frozenset({"invalid_grant"})

    def __init__(
        self,
        access_token: Callable[[], str],
        *,
        user: str = "me",
        api_base: str = DEFAULT_API_BASE,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        budget: QuotaBudget | None = None,
        max_retries: int = 6,
        backoff_base: float = 1.0,
        backoff_cap: float = 64.0,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        fetch_batch: int = FETCH_BATCH,
        page_size: int = LIST_PAGE,
    ) -> None:
        if not 1 <= fetch_batch <= 100:
            raise ValueError("fetch_batch must be within 1..100")
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
        self.fetch_batch = fetch_batch
        self.page_size = page_size
        self._labels: dict[str, str] | None = None  # name -> id
        self._label_list: list[dict[str, Any]] = []

    # -- HTTP (errors the Gmail way; the retry loop is RestProvider's) --------------------------

    error_info = staticmethod(_error_info)

    def _should_retry(self, status: int, code: str) -> bool:
        return _retryable(status, code)

    def _refused(self, code: str, message: str) -> ProviderError:
        return AuthFailed(f"Gmail refused the access token: {message}")

    def _persisted(
        self, attempts: int, status: int, code: str, message: str, retry_after: float | None
    ) -> ProviderError:
        return _api_error(status, code, f"persisted after {attempts} retries: {message}", retry_after)

    def _error(self, status: int, code: str, message: str) -> ProviderError:
        return _api_error(status, code, message)

    def _call(
        self,
        name: str,
        method: str,
        path: str,
        *,
        params: Any = None,
        body: Any = None,
    ) -> Any:
        """One API call with budget, auth retry and rate-limit backoff; returns the JSON body.

        A non-retryable error raises :class:`ProviderError` carrying ``status`` and ``reason``.
        """
        r = self._request_with_retries(
            method,
            f"{self.api_base}/gmail/v1/users/me/{path}",
            units=UNITS.get(name, 5),
            call=name,
            headers={"Accept": "application/json"},
            params=params,
            json=body,
        )
        return self._json(r)

    def _batch(self, name: str, calls: list[tuple[str, str, Any]]) -> list[Reply]:
        """Run ``(method, path below users/me/, json body)`` calls through the batch endpoint,
        ``fetch_batch`` per request; rate-limited parts are retried with backoff. Returns the
        replies in order (non-retryable errors are returned, not raised)."""
        results: list[Reply | None] = [None] * len(calls)
        for start in range(0, len(calls), self.fetch_batch):
            idxs = list(range(start, min(start + self.fetch_batch, len(calls))))
            retry = http.Retry(self)
            while idxs:
                self.budget.spend(UNITS.get(name, 5) * len(idxs))
                self.calls.extend([name] * len(idxs))
                token = self._get_token()
                boundary = "batch_" + uuid.uuid4().hex
                payload = _batch_body(boundary, [(i, *calls[i]) for i in idxs])
                try:
                    r = self._send(
                        "POST",
                        f"{self.api_base}/batch/gmail/v1",
                        data=payload,
                        headers={
                            "Authorization": f"Bearer {token}",
                            "Content-Type": f"multipart/mixed; boundary={boundary}",
                        },
                    )
                except TlsFailed:
                    raise
                except ConnectionFailed:
                    if not retry.backoff():
                        raise
                    continue
                again: list[int] = []
                wait: float | None = None
                last: tuple[int, str] = (0, "")  # status and reason of the last retryable answer
                if r.status_code >= 400:  # the whole batch failed
                    reason, message = self._error_info_of(r)
                    if r.status_code == 401:
                        if not retry.refresh_token():
                            raise self._refused(reason, message)
                        continue
                    if not _retryable(r.status_code, reason):
                        raise _api_error(r.status_code, reason, message)
                    again, wait = idxs, _retry_after(r.headers.get("Retry-After"))
                    last = (r.status_code, reason)
                else:
                    parts = _parse_batch_response(r)
                    unauthorized = False
                    for i in idxs:
                        part = parts.get(i)
                        if part is None:
                            again.append(i)
                            continue
                        reason, _ = _error_info(part.body, part.status)
                        if part.status == 401:
                            unauthorized = True
                            again.append(i)
                        elif _retryable(part.status, reason):
                            again.append(i)
                            wait = http.later_retry_after(wait, part.headers.get("retry-after"))
                            last = (part.status, reason)
                        else:
                            results[i] = part
                    if unauthorized:
                        if not retry.refresh_token():
                            raise AuthFailed("Gmail refused the access token")
                        idxs = again
                        continue
                if again and not retry.backoff(wait):
                    status, reason = last if last[0] else (502, "backendError")  # parts left unanswered
                    raise _api_error(status, reason, f"batch: persisted after {retry.attempt} retries", wait)
                idxs = again
        out = [r for r in results if r is not None]
        assert len(out) == len(calls)
        return out

    # -- reads ---------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Batch wire format


def _batch_body(boundary: str, calls: list[tuple[int, str, str, Any]]) -> bytes:
    out: list[bytes] = []
    for idx, method, path, body in calls:
        lines = [
            f"--{boundary}",
            "Content-Type: application/http",
            "Content-Transfer-Encoding: binary",
            f"Content-ID: <item-{idx}>",
            "",
            f"{method} /gmail/v1/users/me/{path} HTTP/1.1",
        ]
        if body is not None:
            data = json.dumps(body)
            lines += [
                "Content-Type: application/json; charset=UTF-8",
                f"Content-Length: {len(data)}",
                "",
                data,
            ]
        else:
            lines += [""]
        out.append(("\r\n".join(lines) + "\r\n").encode())
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out)


_CID_RE = re.compile(r"<?response-item-(\d+)>?", re.IGNORECASE)


def _parse_batch_response(r: requests.Response) -> dict[int, Reply]:
    """``{call index: reply}`` of a ``multipart/mixed`` batch answer (parts paired by Content-ID)."""
    m = re.search(r'boundary="?([^";]+)"?', r.headers.get("Content-Type", ""))
    if not m:
        raise ProviderError("Gmail batch answer without a multipart boundary")
    delim = b"--" + m.group(1).encode()
    out: dict[int, Reply] = {}
    for chunk in r.content.split(delim)[1:]:
        if chunk.startswith(b"--"):
            break
        outer_headers, inner = _split_head(chunk.lstrip(b"\r\n"))
        cid = _CID_RE.search(outer_headers.get("content-id", ""))
        if not cid:
            continue
        status_line, _, rest = inner.lstrip(b"\r\n").partition(b"\n")
        parts = status_line.decode("latin-1").split()
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 500
        headers, body = _split_head(rest)
        body = body.strip()
        try:
            parsed: Any = json.loads(body) if body else {}
        except ValueError:
            parsed = {"error": {"code": status, "message": body[:200].decode("utf-8", "replace")}}
        out[int(cid.group(1))] = Reply(status, headers, parsed)
    return out


def _split_head(data: bytes) -> tuple[dict[str, str], bytes]:
    m = re.search(rb"\r?\n\r?\n", data)
    head, rest = (data, b"") if m is None else (data[: m.start()], data[m.end() :])
    headers: dict[str, str] = {}
    for line in head.decode("latin-1").splitlines():
        k, sep, v = line.partition(":")
        if sep:
            headers[k.strip().lower()] = v.strip()
    return headers, rest
