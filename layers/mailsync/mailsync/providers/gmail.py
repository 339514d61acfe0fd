"""Gmail adapter: :class:`GmailProvider` implements :class:`~mailsync.domain.ports.MailProvider`
and :class:`~mailsync.domain.ports.MailClient` over the Gmail REST API v1 with plain ``requests``.

References (https://developers.google.com/gmail/api/reference/rest and guides):

* ``users.getProfile`` (``historyId``), ``users.labels.list``;
* ``users.messages.list`` (``labelIds``, ``q=after:<epoch>``, ``maxResults``, ``pageToken``),
  ``users.messages.get`` (``format=raw``: base64url RFC 5322, ``labelIds``, ``internalDate`` ms),
  ``users.messages.modify`` (``addLabelIds``/``removeLabelIds``), ``users.messages.trash``,
  ``users.messages.send`` (``raw``, ``threadId``);
* ``users.history.list`` (``startHistoryId``, ``historyTypes``, ``pageToken``; records
  ``messagesAdded``/``messagesDeleted``/``labelsAdded``/``labelsRemoved``; HTTP 404 when the
  start id is outside the retained window, "Synchronizing clients" guide: full sync then);
* ``users.watch`` / ``users.stop`` (push to Cloud Pub/Sub);
* batch requests (``POST /batch/gmail/v1``, ``multipart/mixed`` of ``application/http``
  parts, at most 100 calls, 50 recommended; each call counts against the quota);
* usage limits (15,000 quota units per user per minute; messages.get/list/modify/trash 5,
  history.list 2, send 100, getProfile/labels.list 1) and error handling (429 / 403
  ``rateLimitExceeded``/``userRateLimitExceeded``: exponential backoff, ``Retry-After``).

Folders
-------
Labels are folders. :meth:`GmailProvider.list_folders` returns every label except TRASH, SPAM,
DRAFT, UNREAD, STARRED, IMPORTANT, CHAT and the CATEGORY_* labels; the folder *name* is the
label's display name (system labels: their id, e.g. ``INBOX``), roles ``inbox``/``sent`` for
INBOX/SENT; names are mapped to label ids internally. A location is ``(label name, message
id)``: Gmail ids are stable, so a label change between synced labels keeps every ref, and the
engine's Message-ID identity keeps the mirrored id, thread and links. A mail carrying TRASH or
SPAM is in no folder (archiving = removing INBOX; trashing removes it everywhere).

Sync model and cursor (JSON, ``v`` = 1)
---------------------------------------
``historyId`` is account-wide; the engine asks per folder. Every folder keeps its own cursor

* ``{"v": 1, "phase": "delta", "historyId": "<id>"}`` once loaded, or
* ``{"v": 1, "phase": "initial", "historyId": "<id>", "page": <pageToken|None>, "skip": n,
  "done": n, "total": n}`` during an initial load (``historyId`` from ``getProfile`` taken
  *before* listing, so the delta after the load catches everything that changed meanwhile;
  ``page``/``skip`` resume a load cut by the time budget; an unusable page token restarts
  the listing, which is idempotent).

Initial load: ``messages.list?labelIds=<label>&q=after:<since-1>`` paged, bodies with
``format=raw`` through the batch endpoint (:data:`FETCH_BATCH` per batch), exact filter
``internalDate >= since``. Delta: ``history.list`` from the stored id over every page with
the four history types. The walk is account-wide and cached for the provider session, so
all folders of one sync share one walk (a folder whose cursor is inside the cached range
reuses it). Per folder and per message the net effect of the records is computed
(added to / removed from the label, TRASH/SPAM added or removed, deleted, UNREAD changed);
added messages are fetched (their *current* labels decide: Upsert, or Remove when the label
is gone again, or skipped when older than ``since``), removals become :class:`Remove`, UNREAD
changes :class:`SetFlags`. Batches end on history record boundaries, so every batch's cursor
is that record's id and a cut run resumes exactly there. An unchanged mailbox costs one
``history.list`` per session (2 units) and yields nothing; a mailbox whose changes do not
touch a folder yields one empty batch that advances its cursor. An expired ``historyId``
(404) yields :class:`Reset` followed by a full reload of the window (the engine rebuilds the
locations; ids derive from Message-ID, so no duplicates and no lost links).

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
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import requests

from mailsync.domain.clock import as_utc
from mailsync.domain.ports import (
    AuthFailed,
    Change,
    ChangeBatch,
    ConnectionFailed,
    FolderGone,
    FolderInfo,
    ProviderError,
    Remove,
    Reset,
    SetFlags,
    Upsert,
)
from mailsync.providers import http
from mailsync.providers.http import DEFAULT_UNITS_PER_MINUTE, RETRY_STATUSES, QuotaBudget, Reply, RestProvider
from mailsync.providers.http import retry_after as _retry_after

__all__ = [
    "DEFAULT_API_BASE",
    "DEFAULT_TOKEN_URI",
    "CredentialsTokenSource",
    "GmailProvider",
    "QuotaBudget",
    "budget_for",
]

DEFAULT_API_BASE = "https://gmail.googleapis.com"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
GMAIL_SCOPES = ("openid", "email", "https://www.googleapis.com/auth/gmail.modify")
CURSOR_VERSION = 1
FETCH_BATCH = 50  # calls per batch request (Gmail recommends at most 50, allows 100)
LIST_PAGE = 500  # messages.list / history.list maxResults (the maximum)
HISTORY_TYPES = ("messageAdded", "messageDeleted", "labelAdded", "labelRemoved")

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

HIDDEN_LABELS = frozenset({"TRASH", "SPAM", "DRAFT", "UNREAD", "STARRED", "IMPORTANT", "CHAT"})
NOT_IN_FOLDERS = frozenset({"TRASH", "SPAM", "DRAFT"})  # a mail with one of these is in no folder
ROLES = {"INBOX": "inbox", "SENT": "sent"}
RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})


# --------------------------------------------------------------------------------------------
# Quota budget (QuotaBudget: mailsync.providers.http)


_BUDGETS: dict[str, QuotaBudget] = {}


def budget_for(user: str, units_per_minute: int = DEFAULT_UNITS_PER_MINUTE) -> QuotaBudget:
    """The process-wide budget of ``user`` (shared by every provider of that mailbox)."""
    return http.per_mailbox(_BUDGETS, user, lambda: QuotaBudget(units_per_minute))


# --------------------------------------------------------------------------------------------
# Access tokens


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

                    self._request = Request()
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


# --------------------------------------------------------------------------------------------
# Helpers


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _ms_to_dt(ms: str | int) -> datetime:
    return datetime.fromtimestamp(int(ms) / 1000, UTC)


def _error_info(status: int, body: Any) -> tuple[str, str]:
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


def _in_folder(labels: Iterable[str], label_id: str) -> bool:
    ls = set(labels)
    return label_id in ls and not (ls & NOT_IN_FOLDERS)


class _Expired(Exception):
    """history.list answered 404: the start historyId is outside the retained window."""


@dataclass
class _HistoryWalk:
    start: int
    end: int
    records: list[dict[str, Any]]


# --------------------------------------------------------------------------------------------
# Provider


class GmailProvider(RestProvider):
    """A session to one Gmail mailbox (see the module docstring).

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
        self._walk: _HistoryWalk | None = None
        self._expired_upto: int | None = None

    def close(self) -> None:
        super().close()
        self._walk = None

    # -- HTTP (errors the Gmail way; the retry loop is RestProvider's) --------------------------

    def _error_info_of(self, r: requests.Response) -> tuple[str, str]:
        return _error_info(r.status_code, _json(r))

    def _should_retry(self, status: int, code: str) -> bool:
        return _retryable(status, code)

    def _refused(self, code: str, message: str) -> ProviderError:
        return AuthFailed(f"Gmail refused the access token: {message}")

    def _persisted(self, attempts: int, status: int, code: str, message: str) -> ProviderError:
        return ProviderError(f"Gmail rate limit persisted after {attempts} retries: {message}")

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
        return _json(r)

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
                except ConnectionFailed:
                    if not retry.backoff():
                        raise
                    continue
                again: list[int] = []
                wait: float | None = None
                if r.status_code >= 400:  # the whole batch failed
                    reason, message = self._error_info_of(r)
                    if r.status_code == 401:
                        if not retry.refresh_token():
                            raise self._refused(reason, message)
                        continue
                    if not _retryable(r.status_code, reason):
                        raise _api_error(r.status_code, reason, message)
                    again, wait = idxs, _retry_after(r.headers.get("Retry-After"))
                else:
                    parts = _parse_batch_response(r)
                    unauthorized = False
                    for i in idxs:
                        part = parts.get(i)
                        if part is None:
                            again.append(i)
                            continue
                        reason, _ = _error_info(part.status, part.body)
                        if part.status == 401:
                            unauthorized = True
                            again.append(i)
                        elif _retryable(part.status, reason):
                            again.append(i)
                            wait = http.later_retry_after(wait, part.headers.get("retry-after"))
                        else:
                            results[i] = part
                    if unauthorized:
                        if not retry.refresh_token():
                            raise AuthFailed("Gmail refused the access token")
                        idxs = again
                        continue
                if again and not retry.backoff(wait):
                    raise ProviderError(f"Gmail rate limit persisted after {retry.attempt} retries")
                idxs = again
        out = [r for r in results if r is not None]
        assert len(out) == len(calls)
        return out

    # -- reads ---------------------------------------------------------------------------------

    def profile(self) -> dict[str, Any]:
        """``users.getProfile``: emailAddress, messagesTotal, threadsTotal, historyId."""
        return dict(self._call("profile", "GET", "profile"))

    def labels(self) -> list[dict[str, Any]]:
        data = self._call("labels.list", "GET", "labels")
        self._label_list = list(data.get("labels") or [])
        self._labels = {str(lab["name"]): str(lab["id"]) for lab in self._label_list}
        return self._label_list

    def list_folders(self) -> list[FolderInfo]:
        out = []
        for lab in self.labels():
            lid = str(lab["id"])
            if lid in HIDDEN_LABELS or lid.startswith("CATEGORY_"):
                continue
            out.append(FolderInfo(name=str(lab["name"]), role=ROLES.get(lid)))
        return sorted(out, key=lambda f: (f.role != "inbox", f.name))

    def label_id(self, folder: str) -> str:
        """The label id of a folder name; :class:`FolderGone` when no such label exists."""
        if self._labels is None or folder not in self._labels:
            self.labels()
        assert self._labels is not None
        lid = self._labels.get(folder)
        if lid is None or lid in HIDDEN_LABELS or lid.startswith("CATEGORY_"):
            raise FolderGone(f"label {folder!r} does not exist")
        return lid

    def _fetch_raw(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """``messages.get?format=raw`` of ``ids`` through the batch endpoint; missing ids are absent."""
        replies = self._batch("messages.get", [("GET", f"messages/{i}?format=raw", None) for i in ids])
        out: dict[str, dict[str, Any]] = {}
        for rep in replies:
            if rep.status == 200 and isinstance(rep.body, dict) and rep.body.get("id"):
                out[str(rep.body["id"])] = rep.body
            elif rep.status != 404:
                reason, message = _error_info(rep.status, rep.body)
                raise _api_error(rep.status, reason, message)
        return out

    def _upsert(self, folder: str, label: str, msg: dict[str, Any], since: datetime) -> Upsert | None:
        labels = msg.get("labelIds") or []
        if not _in_folder(labels, label) or "raw" not in msg:
            return None
        when = _ms_to_dt(msg.get("internalDate") or 0)
        if when < since:
            return None
        return Upsert(
            folder,
            str(msg["id"]),
            _b64url_decode(str(msg["raw"])),
            "UNREAD" in labels,
            when,
            thread_hint=str(msg["threadId"]) if msg.get("threadId") else None,
        )

    # -- sync ----------------------------------------------------------------------------------

    def changes(
        self, folder: str, cursor: dict[str, Any] | None, since: datetime, batch_size: int = 100
    ) -> Iterator[ChangeBatch]:
        label = self.label_id(folder)
        since = as_utc(since)
        batch_size = max(1, batch_size)
        if not cursor or cursor.get("v") != CURSOR_VERSION or "historyId" not in cursor:
            yield from self._initial(folder, label, since, batch_size, None, reset=bool(cursor))
        elif cursor.get("phase") == "initial":
            yield from self._initial(folder, label, since, batch_size, cursor, reset=False)
        else:
            yield from self._delta(folder, label, int(cursor["historyId"]), since, batch_size)

    def _initial(
        self,
        folder: str,
        label: str,
        since: datetime,
        batch_size: int,
        resume: dict[str, Any] | None,
        reset: bool,
    ) -> Iterator[ChangeBatch]:
        if resume:
            hid = str(resume["historyId"])
            page_token: str | None = resume.get("page")
            skip = int(resume.get("skip") or 0)
            done = int(resume.get("done") or 0)
            total = int(resume.get("total") or 0)
        else:
            hid = str(self.profile()["historyId"])
            page_token, skip, done, total = None, 0, 0, 0
        pending_reset = reset
        query = f"after:{max(int(since.timestamp()) - 1, 0)}"

        def initial_cursor(page: str | None, skip_n: int) -> dict[str, Any]:
            return {
                "v": CURSOR_VERSION,
                "phase": "initial",
                "historyId": hid,
                "page": page,
                "skip": skip_n,
                "done": done,
                "total": total,
            }

        final = {"v": CURSOR_VERSION, "phase": "delta", "historyId": hid}
        while True:
            params: dict[str, Any] = {"labelIds": label, "q": query, "maxResults": self.page_size}
            if page_token:
                params["pageToken"] = page_token
            try:
                page = self._call("messages.list", "GET", "messages", params=params)
            except ProviderError as e:
                if page_token and getattr(e, "status", None) == 400:
                    page_token, skip = None, 0  # the token expired: list again (idempotent)
                    continue
                raise
            ids = [str(m["id"]) for m in page.get("messages") or []]
            next_token = page.get("nextPageToken")
            if not total:
                total = int(page.get("resultSizeEstimate") or 0)
            todo = ids[skip:]
            if not todo:
                if next_token:
                    page_token, skip = next_token, 0
                    continue
                yield ChangeBatch(
                    folder, [Reset(folder)] if pending_reset else [], dict(final), initial=True, done=True
                )
                return
            for i in range(0, len(todo), batch_size):
                chunk = todo[i : i + batch_size]
                fetched = self._fetch_raw(chunk)
                changes: list[Change] = [Reset(folder)] if pending_reset else []
                pending_reset = False
                for mid in chunk:
                    msg = fetched.get(mid)
                    up = self._upsert(folder, label, msg, since) if msg else None
                    if up is not None:
                        changes.append(up)
                done += len(chunk)
                consumed = skip + i + len(chunk)
                last_of_page = consumed >= len(ids)
                if last_of_page and not next_token:
                    cur, is_done = dict(final), True
                elif last_of_page:
                    cur, is_done = initial_cursor(next_token, 0), False
                else:
                    cur, is_done = initial_cursor(page_token, consumed), False
                yield ChangeBatch(
                    folder, changes, cur, initial=True, done=is_done, progress=(done, max(total, done))
                )
            if not next_token:
                return
            page_token, skip = next_token, 0

    def _history(self, start: int) -> _HistoryWalk:
        """Every history record after ``start`` (cached for the session); raises :class:`_Expired`."""
        walk = self._walk
        if walk is not None and walk.start <= start <= walk.end:
            return _HistoryWalk(start, walk.end, [r for r in walk.records if int(r["id"]) > start])
        if self._expired_upto is not None and start <= self._expired_upto:
            raise _Expired()
        records: list[dict[str, Any]] = []
        end = start
        token: str | None = None
        while True:
            params: list[tuple[str, Any]] = [("startHistoryId", str(start)), ("maxResults", self.page_size)]
            params += [("historyTypes", t) for t in HISTORY_TYPES]
            if token:
                params.append(("pageToken", token))
            try:
                data = self._call("history.list", "GET", "history", params=params)
            except ProviderError as e:
                if getattr(e, "status", None) == 404:
                    self._expired_upto = max(self._expired_upto or 0, start)
                    raise _Expired() from e
                raise
            end = max(end, int(data.get("historyId") or 0))
            records.extend(data.get("history") or [])
            token = data.get("nextPageToken")
            if not token:
                break
        records.sort(key=lambda r: int(r["id"]))
        if records:
            end = max(end, int(records[-1]["id"]))
        walk = _HistoryWalk(start, end, records)
        if self._walk is None or start <= self._walk.start:
            self._walk = walk
        return walk

    def _delta(
        self, folder: str, label: str, hid: int, since: datetime, batch_size: int
    ) -> Iterator[ChangeBatch]:
        try:
            walk = self._history(hid)
        except _Expired:
            yield from self._initial(folder, label, since, batch_size, None, reset=True)
            return
        if not walk.records and walk.end <= hid:
            return  # unchanged
        state: dict[str, str] = {}  # message id -> "add" | "remove" (net, in record order)
        flags: dict[str, bool] = {}
        for n, rec in enumerate(walk.records):
            _apply_record(rec, label, state, flags)
            adds = sum(1 for v in state.values() if v == "add")
            if adds >= batch_size and n < len(walk.records) - 1:
                cur = {"v": CURSOR_VERSION, "phase": "delta", "historyId": str(rec["id"])}
                yield ChangeBatch(folder, self._resolve(folder, label, state, flags, since), cur, done=False)
                state, flags = {}, {}
        final = {"v": CURSOR_VERSION, "phase": "delta", "historyId": str(walk.end)}
        yield ChangeBatch(folder, self._resolve(folder, label, state, flags, since), final, done=True)

    def _resolve(
        self, folder: str, label: str, state: dict[str, str], flags: dict[str, bool], since: datetime
    ) -> list[Change]:
        adds = [mid for mid, v in state.items() if v == "add"]
        fetched = self._fetch_raw(adds) if adds else {}
        changes: list[Change] = []
        current: set[str] = set()
        for mid, v in state.items():
            if v == "add":
                msg = fetched.get(mid)
                if msg is not None and _in_folder(msg.get("labelIds") or [], label):
                    current.add(mid)  # its fetched labels are newer than any flag record
                    up = self._upsert(folder, label, msg, since)
                    if up is not None:
                        changes.append(up)
                    continue
            changes.append(Remove(folder, mid))
        for mid, unread in flags.items():
            if mid not in current and state.get(mid) != "remove":
                changes.append(SetFlags(folder, mid, unread))
        return changes

    # -- write-through (mail client) -----------------------------------------------------------

    def _modify_each(self, ids: list[str], add: list[str], remove: list[str]) -> list[str]:
        body = {"addLabelIds": add, "removeLabelIds": remove}
        replies = self._batch("messages.modify", [("POST", f"messages/{i}/modify", body) for i in ids])
        return self._check_writes(ids, replies)

    def _check_writes(self, ids: list[str], replies: list[Reply]) -> list[str]:
        ok: list[str] = []
        for mid, rep in zip(ids, replies, strict=True):
            if rep.status == 200:
                ok.append(mid)
            elif rep.status != 404:  # a mail deleted meanwhile is no error
                reason, message = _error_info(rep.status, rep.body)
                raise _api_error(rep.status, reason, message)
        return ok

    def set_seen(self, folder: str, refs: Iterable[str], seen: bool) -> None:
        """``messages.modify`` of the UNREAD label."""
        ids = list(dict.fromkeys(str(r) for r in refs))
        if ids:
            self._modify_each(ids, [] if seen else ["UNREAD"], ["UNREAD"] if seen else [])

    def move(self, folder: str, refs: Iterable[str], dest: str) -> dict[str, str]:
        """A label change: add ``dest``'s label, remove ``folder``'s. Ids stay: ``{ref: ref}``."""
        ids = list(dict.fromkeys(str(r) for r in refs))
        if not ids:
            return {}
        src, dst = self.label_id(folder), self.label_id(dest)
        if src == dst:
            return {i: i for i in ids}
        return {i: i for i in self._modify_each(ids, [dst], [src])}

    def delete(self, folder: str, refs: Iterable[str]) -> None:
        """``messages.trash`` (Gmail empties Trash itself after 30 days)."""
        ids = list(dict.fromkeys(str(r) for r in refs))
        if ids:
            replies = self._batch("messages.trash", [("POST", f"messages/{i}/trash", None) for i in ids])
            self._check_writes(ids, replies)

    def append(
        self, folder: str, raw: bytes, flags: Iterable[str] = (), date: datetime | None = None
    ) -> None:
        """Not needed: Gmail files sent mail itself (SENT label), so no copy is stored."""
        return None

    def send(self, raw: bytes, thread_id: str | None = None) -> dict[str, Any]:
        """``messages.send`` of an RFC 5322 message; ``thread_id`` for replies.
        Returns ``{"id", "threadId", "labelIds"}``."""
        body: dict[str, Any] = {"raw": base64.urlsafe_b64encode(raw).decode("ascii")}
        if thread_id:
            body["threadId"] = thread_id
        return dict(self._call("messages.send", "POST", "messages/send", body=body))

    def watch(
        self, topic: str, label_ids: Iterable[str] | None = None, label_filter_behavior: str = "include"
    ) -> dict[str, Any]:
        """``users.watch``: push notifications to the Pub/Sub ``topic``; ``{historyId, expiration}``."""
        body: dict[str, Any] = {"topicName": topic}
        if label_ids:
            body["labelIds"] = list(label_ids)
            body["labelFilterBehavior"] = label_filter_behavior
        return dict(self._call("watch", "POST", "watch", body=body))

    def stop(self) -> None:
        """``users.stop``: no more push notifications."""
        self._call("stop", "POST", "stop")


# --------------------------------------------------------------------------------------------
# History records -> net changes of one label


def _apply_record(rec: dict[str, Any], label: str, state: dict[str, str], flags: dict[str, bool]) -> None:
    for e in rec.get("messagesAdded") or []:
        m = e.get("message") or {}
        if _in_folder(m.get("labelIds") or [], label):
            state[str(m["id"])] = "add"
    for e in rec.get("messagesDeleted") or []:
        mid = str((e.get("message") or {})["id"])
        state[mid] = "remove"
        flags.pop(mid, None)
    for e in rec.get("labelsAdded") or []:
        m = e.get("message") or {}
        mid, labels, added = str(m["id"]), set(m.get("labelIds") or []), set(e.get("labelIds") or [])
        if added & NOT_IN_FOLDERS:
            state[mid] = "remove"
        elif label in added and _in_folder(labels, label):
            state[mid] = "add"
        if "UNREAD" in added and label in labels:
            flags[mid] = True
    for e in rec.get("labelsRemoved") or []:
        m = e.get("message") or {}
        mid, labels, removed = str(m["id"]), set(m.get("labelIds") or []), set(e.get("labelIds") or [])
        if label in removed:
            state[mid] = "remove"
        elif removed & NOT_IN_FOLDERS and _in_folder(labels, label):
            state[mid] = "add"
        if "UNREAD" in removed and label in labels:
            flags[mid] = False


# --------------------------------------------------------------------------------------------
# Wire helpers


class _ApiError(ProviderError):
    def __init__(self, message: str, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def _api_error(status: int, reason: str, message: str) -> ProviderError:
    if status == 401 or reason in ("invalid_grant", "authError"):
        return AuthFailed(f"Gmail: {message}")
    return _ApiError(f"Gmail API {status} {reason}: {message}".replace("  ", " "), status, reason)


def _json(r: requests.Response) -> Any:
    return http.json_body(r)  # an unreadable body: Google's error shape, a numeric "code"


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
