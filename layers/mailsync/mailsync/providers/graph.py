"""Microsoft 365 / Outlook adapter: :class:`GraphProvider` implements
:class:`~mailsync.domain.ports.MailProvider` and :class:`~mailsync.domain.ports.MailClient`
over Microsoft Graph v1.0 with plain ``requests`` (no msgraph SDK).

References followed (https://learn.microsoft.com/graph/...):

* ``api/resources/message`` and ``api/message-delta`` (``GET /me/mailFolders/{id}/messages/delta``:
  ``$select``; ``$filter`` only on ``receivedDateTime ge|gt``, first call only; ``Prefer:
  odata.maxpagesize``; ``@odata.nextLink`` pages, then ``@odata.deltaLink``; ``@removed``
  rows with ``reason`` ``changed``/``deleted``), ``delta-query-messages`` and
  ``delta-query-overview`` (an expired token answers 410 Gone / ``syncStateNotFound``: full
  resync), ``api/message-get`` (``/$value`` for the MIME), ``api/message-update``
  (``isRead``), ``api/message-move`` (``destinationId``: id or well-known name; 201 and the
  moved message), ``api/message-delete``;
* ``api/resources/mailfolder``, ``api/user-list-mailfolders``, ``api/mailfolder-list-childfolders``,
  well-known folder names (``inbox``, ``sentitems``, ``deleteditems``, ``drafts``,
  ``junkemail``, ``archive``, ``outbox``);
* ``outlook-immutable-id`` (``Prefer: IdType="ImmutableId"``, sent on every call: ids survive
  moves between folders);
* ``api/user-sendmail`` (JSON ``{message, saveToSentItems}`` or base64 MIME as ``text/plain``),
  ``api/message-createreply`` (a draft, JSON or MIME) and ``api/message-send``;
* ``json-batching`` (``POST /$batch``, at most 20 requests, answers matched by ``id``);
* ``api/resources/subscription``, ``api/subscription-post-subscriptions``,
  ``api/subscription-update``, ``api/subscription-delete``, ``change-notifications-overview``,
  ``change-notifications-delivery-webhooks`` (validation handshake) and
  ``change-notifications-lifecycle-events``;
* ``throttling`` and ``throttling-limits`` (Outlook: 10,000 requests per 10 minutes and 4
  concurrent requests per app and mailbox; 429 with ``Retry-After``; 503/504 also honour it).

Folders
-------
:meth:`GraphProvider.list_folders` lists every mail folder (``/me/mailFolders`` and, recursively,
``childFolders``, all pages). A folder's *name* is its display path ("Inbox",
"Archive/2024"); the id is mapped internally. Roles come from one ``$batch`` of well-known
name look-ups (``inbox``→inbox, ``sentitems``→sent, ``deleteditems``→trash,
``junkemail``→junk, ``drafts``→drafts, ``archive``→archive); the Outbox is listed as not
selectable. (v1.0 has no ``wellKnownName`` property; the look-ups are the documented way.)

Sync model and cursor (JSON, ``v`` = 1)
---------------------------------------
One delta per folder. A folder's cursor is

* ``{"v": 1, "phase": "delta", "deltaLink": "<url>"}`` once caught up, or
* ``{"v": 1, "phase": "initial"|"delta", "nextLink": "<url>", "skip": n, "done": n}`` in the
  middle of a round (``skip``: rows of that page already stored; ``done``: rows so far).

The first call (no cursor, or after an expiry) is ``.../messages/delta?$select=<fields>&
$filter=receivedDateTime ge <since>`` with ``Prefer: odata.maxpagesize=<batch size>``, so that
one page is one :class:`ChangeBatch`; every batch carries the link of the *next* request
and is stored by the engine only after its changes. Links are followed verbatim (they must
stay on ``api_base``'s origin, else the cursor is treated as invalid and the folder reloads).

Rows become changes: ``@removed`` → :class:`Remove`. Any other row is a message present in
the folder: when a ``known(folder, refs)`` callback is given (the lead wires the mirror's
location lookup) and the row's id is already mirrored at that folder during a delta round,
it becomes :class:`SetFlags` from ``isRead`` (Outlook message content is immutable once
received; only flags change); otherwise its MIME is fetched with ``GET
/me/messages/{id}/$value`` and it becomes an :class:`Upsert` (``thread_hint`` =
``conversationId``, ``internal_date`` = ``receivedDateTime``; rows older than ``since`` are
skipped). Without ``known`` every row is fetched and upserted (correct, the engine treats
the upsert of a known location as a flag update, just dearer).

MIME is fetched per message, up to :data:`MAX_CONCURRENT` in parallel: ``$batch`` would not
save Graph requests (every part counts against the mailbox limits) and answers a non-JSON
body as a base64 string, which is only community-documented. ``$batch`` is used where it
saves round trips with documented JSON answers: the well-known folder look-ups and the
mail-client writes (``PATCH isRead``/``move`` for several messages, 20 per batch).

Moves: with immutable ids a move between synced folders shows as ``@removed`` in one
folder's delta and as a new row in the other, with the same id; the engine identifies the
mail by its Message-ID and keeps its id, thread and links. A move to an unsynced folder, or
a delete, leaves only the ``@removed`` (the engine orphans, then purges it).

An expired token (410 Gone, or ``syncStateNotFound``/``resyncRequired``/``syncStateInvalid``)
yields :class:`Reset` in the first batch of a reload from ``since``; the engine rebuilds the
locations under a new generation, so no duplicates appear. A folder that vanished answers
404 and raises :class:`FolderGone`.

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

Tokens
------
The provider takes any ``() -> access token`` callable. :class:`MsalTokenSource` is the one
for production: msal ``ConfidentialClientApplication`` with a ``SerializableTokenCache``
loaded from the stored JSON, ``acquire_token_silent_with_error`` (the error-reporting variant of
``acquire_token_silent``); ``invalid_grant`` / ``interaction_required`` (and a cache without a
usable account) raise :class:`AuthFailed`. When msal rotated the refresh token,
:attr:`MsalTokenSource.changed` is true and :meth:`MsalTokenSource.serialize` gives the JSON
to store (encrypted) again.
"""

from __future__ import annotations

import base64
import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import requests

from mailsync.domain.clock import as_utc, iso
from mailsync.domain.ports import (
    PENDING,
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
from mailsync.providers.http import RETRY_STATUSES, QuotaBudget, Reply, RestProvider
from mailsync.providers.http import retry_after as _retry_after  # noqa: F401 - importable from here too

__all__ = [
    "DEFAULT_API_BASE",
    "DEFAULT_AUTHORITY",
    "GRAPH_SCOPES",
    "GraphProvider",
    "MsalTokenSource",
    "budget_for",
    "semaphore_for",
]

DEFAULT_API_BASE = "https://graph.microsoft.com/v1.0"
DEFAULT_AUTHORITY = "https://login.microsoftonline.com/organizations"
# msal adds offline_access, openid and profile itself (and refuses them in this list).
GRAPH_SCOPES = ("Mail.ReadWrite", "Mail.Send", "User.Read")
CURSOR_VERSION = 1
MAX_CONCURRENT = 4  # Outlook: 4 concurrent requests per app and mailbox
DEFAULT_REQUESTS_PER_10_MIN = 9_000  # Outlook allows 10,000 per 10 minutes per app and mailbox
BUDGET_WINDOW = 600.0
MAX_BATCH = 20  # JSON batching limit
MAX_SUBSCRIPTION_MINUTES = 4230  # messages
DELTA_SELECT = (
    "id",
    "internetMessageId",
    "conversationId",
    "subject",
    "from",
    "receivedDateTime",
    "isRead",
    "isDraft",
    "parentFolderId",
    "hasAttachments",
)
ROLE_BY_WELL_KNOWN = {
    "inbox": "inbox",
    "sentitems": "sent",
    "deleteditems": "trash",
    "junkemail": "junk",
    "drafts": "drafts",
    "archive": "archive",
    "outbox": None,  # listed, never synced (transient)
}
EXPIRED_CODES = frozenset({"syncstatenotfound", "syncstateinvalid", "resyncrequired"})
AUTH_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required", "login_required"})


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


# --------------------------------------------------------------------------------------------
# Access tokens


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
    ) -> None:
        import msal

        self.client_id = client_id
        self.client_secret = client_secret
        self.authority = authority.rstrip("/")
        self.http_client = http_client
        self.scopes = list(scopes)
        self.home_account_id = home_account_id
        self.username = username
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


# --------------------------------------------------------------------------------------------
# Wire helpers


class _ApiError(ProviderError):
    def __init__(self, message: str, status: int, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class _Expired(Exception):
    pass


def _error_info(body: Any) -> tuple[str, str]:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        return str(err.get("code") or ""), str(err.get("message") or "")
    return "", str(body)[:200] if body else ""


def _api_error(status: int, code: str, message: str) -> ProviderError:
    if status == 401:
        return AuthFailed(f"Graph refused the access token: {code} {message}".strip())
    return _ApiError(f"Graph API {status} {code}: {message}".replace("  ", " "), status, code)


def _is_expired(status: int, code: str) -> bool:
    return status == 410 or (status in (400, 404) and code.lower() in EXPIRED_CODES)


def _parse_dt(text: str | None) -> datetime | None:
    if not text:
        return None
    t = text.strip()
    if t.endswith("Z"):
        t = t[:-1] + "+00:00"
    if "." in t:  # Graph may write 7 fractional digits
        head, _, tail = t.partition(".")
        digits = "".join(c for c in tail if c.isdigit())
        rest = tail[len(digits) :]
        t = f"{head}.{digits[:6]}{rest}" if digits else head + rest
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _json(r: requests.Response) -> Any:
    return http.json_body(r, str)  # an unreadable body: Graph's error shape, a string "code"


# --------------------------------------------------------------------------------------------
# The provider


class GraphProvider(RestProvider):
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

    def _error_info_of(self, r: requests.Response) -> tuple[str, str]:
        return _error_info(_json(r))

    def _refused(self, code: str, message: str) -> ProviderError:
        return AuthFailed(f"Graph refused the access token: {code} {message}".strip())

    def _persisted(self, attempts: int, status: int, code: str, message: str) -> ProviderError:
        return _ApiError(
            f"Graph throttling persisted after {attempts} retries: {status} {code} {message}", status, code
        )

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
        body: Any = r.content if raw else _json(r)
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
                    elif status == 401:
                        raise AuthFailed("Graph refused the access token (batch part)")
                    else:
                        results[i] = Reply(status, headers, part.get("body"))
                if again and not retry.backoff(wait):
                    raise ProviderError(f"Graph throttling persisted after {retry.attempt} retries ($batch)")
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

    # -- reads ---------------------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """``GET /me``: ``id``, ``mail``, ``userPrincipalName``, ``displayName``."""
        return dict(self._get("me"))

    def mailbox_address(self) -> str:
        me = self.me()
        return str(me.get("mail") or me.get("userPrincipalName") or "")

    def _load_folders(self) -> dict[str, dict[str, Any]]:
        folders: dict[str, dict[str, Any]] = {}

        def walk(items: Iterable[dict[str, Any]], prefix: str) -> None:
            for f in items:
                name = f"{prefix}{f.get('displayName') or ''}"
                folders[name] = dict(f)
                if int(f.get("childFolderCount") or 0) > 0:
                    walk(
                        self._pages(
                            f"me/mailFolders/{quote(str(f['id']), safe='')}/childFolders",
                            {"$top": self.page_size},
                        ),
                        name + "/",
                    )

        walk(self._pages("me/mailFolders", {"$top": self.page_size}), "")
        if not self._roles:
            names = list(ROLE_BY_WELL_KNOWN)
            replies = self._batch(
                [{"method": "GET", "url": f"/me/mailFolders/{n}?$select=id"} for n in names]
            )
            for n, rep in zip(names, replies, strict=True):
                if rep.status == 200 and isinstance(rep.body, dict) and rep.body.get("id"):
                    self._roles[str(rep.body["id"])] = n
        self._folders = folders
        return folders

    def list_folders(self) -> list[FolderInfo]:
        out = []
        for name, f in self._load_folders().items():
            wk = self._roles.get(str(f["id"]))
            out.append(
                FolderInfo(
                    name=name,
                    role=ROLE_BY_WELL_KNOWN.get(wk) if wk else None,
                    messages=int(f["totalItemCount"]) if f.get("totalItemCount") is not None else None,
                    selectable=wk != "outbox",
                )
            )
        return sorted(out, key=lambda f: (f.role != "inbox", f.name.lower()))

    def folder(self, name: str) -> dict[str, Any]:
        """The folder resource of a display path; :class:`FolderGone` when there is none."""
        if self._folders is None or name not in self._folders:
            self._load_folders()
        assert self._folders is not None
        f = self._folders.get(name)
        if f is None:
            raise FolderGone(f"mail folder {name!r} does not exist")
        return f

    def folder_id(self, name: str) -> str:
        return str(self.folder(name)["id"])

    def _dest_id(self, dest: str) -> str:
        if dest.lower() in ROLE_BY_WELL_KNOWN:
            return dest.lower()
        return self.folder_id(dest)

    def fetch_mime(self, ids: list[str]) -> dict[str, bytes]:
        """``GET /me/messages/{id}/$value`` of ``ids`` (up to 4 in parallel); vanished ids are absent."""
        out: dict[str, bytes] = {}

        def one(mid: str) -> tuple[str, bytes | None]:
            try:
                rep = self._request("GET", f"me/messages/{quote(mid, safe='')}/$value", raw=True)
            except _ApiError as e:
                if e.status == 404:
                    return mid, None
                raise
            return mid, bytes(rep.body)

        if len(ids) <= 1 or self.max_concurrency == 1:
            results = [one(m) for m in ids]
        else:
            with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(ids))) as pool:
                results = list(pool.map(one, ids))
        for mid, raw in results:
            if raw is not None:
                out[mid] = raw
        return out

    # -- sync ----------------------------------------------------------------------------------

    def changes(
        self, folder: str, cursor: dict[str, Any] | None, since: datetime, batch_size: int = 100
    ) -> Iterator[ChangeBatch]:
        fid = self.folder_id(folder)
        since = as_utc(since)
        batch_size = max(1, min(batch_size, 1000))
        valid = (
            isinstance(cursor, dict)
            and cursor.get("v") == CURSOR_VERSION
            and any(
                isinstance(cursor.get(k), str) and self._same_origin(cursor[k])
                for k in ("deltaLink", "nextLink")
            )
        )
        if not cursor or not valid:
            yield from self._round(
                folder, fid, None, 0, 0, since, batch_size, initial=True, reset=bool(cursor)
            )
            return
        assert cursor is not None
        initial = cursor.get("phase") == "initial"
        link = str(cursor.get("nextLink") or cursor.get("deltaLink"))
        skip = int(cursor.get("skip") or 0) if cursor.get("nextLink") else 0
        done = int(cursor.get("done") or 0)
        yield from self._round(folder, fid, link, skip, done, since, batch_size, initial=initial, reset=False)

    def _first_url(self, fid: str, since: datetime) -> str:
        """The first delta request of a round, as a link (so a cursor can replay it)."""
        query = urlencode(
            {"$select": ",".join(DELTA_SELECT), "$filter": f"receivedDateTime ge {iso(since)}"},
            quote_via=quote,
            safe="$,:",
        )
        return f"{self.api_base}/me/mailFolders/{quote(fid, safe='')}/messages/delta?{query}"

    def _round(
        self,
        folder: str,
        fid: str,
        link: str | None,
        skip: int,
        done: int,
        since: datetime,
        batch_size: int,
        *,
        initial: bool,
        reset: bool,
    ) -> Iterator[ChangeBatch]:
        """Follow one delta round from ``link`` (a fresh initial round when None) to its deltaLink."""
        pending_reset = reset
        prefer = {"Prefer": f"odata.maxpagesize={batch_size}"}
        total = int((self._folders or {}).get(folder, {}).get("totalItemCount") or 0)
        phase = "initial" if initial else "delta"
        while True:
            url = link or self._first_url(fid, since)
            try:
                page = self._get(url, headers=prefer)
            except _ApiError as e:
                if _is_expired(e.status, e.code) and link is not None:
                    # The token expired: Reset, then reload the folder from ``since``.
                    link, skip, done, initial, phase, pending_reset = None, 0, 0, True, "initial", True
                    continue
                if e.status == 404:
                    self._folders = None
                    raise FolderGone(f"mail folder {folder!r} is gone: {e}") from e
                raise
            rows = [r for r in page.get("value") or [] if isinstance(r, dict)]
            next_link = page.get("@odata.nextLink")
            delta_link = page.get("@odata.deltaLink")
            if not next_link and not delta_link:
                raise ProviderError("Graph delta page without nextLink or deltaLink")
            todo = rows[skip:]
            chunks = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)] or [[]]
            consumed = skip
            for n, chunk in enumerate(chunks):
                changes: list[Change] = [Reset(folder)] if pending_reset else []
                pending_reset = False
                changes += self._resolve(folder, chunk, since, initial)
                done += len(chunk)
                consumed += len(chunk)
                finished = False
                if n < len(chunks) - 1:
                    # The server sent a bigger page than asked: resume inside it (a replayed
                    # first request restarts the page, which is idempotent).
                    cur: dict[str, Any] = {
                        "v": CURSOR_VERSION,
                        "phase": phase,
                        "nextLink": url,
                        "skip": consumed if link else 0,
                        "done": done,
                    }
                elif delta_link:
                    cur = {"v": CURSOR_VERSION, "phase": "delta", "deltaLink": str(delta_link)}
                    finished = True
                else:
                    cur = {
                        "v": CURSOR_VERSION,
                        "phase": phase,
                        "nextLink": str(next_link),
                        "skip": 0,
                        "done": done,
                    }
                progress = (done, max(total, done)) if initial else None
                yield ChangeBatch(folder, changes, cur, initial=initial, done=finished, progress=progress)
            if delta_link:
                return
            link, skip = str(next_link), 0

    def _resolve(
        self, folder: str, rows: list[dict[str, Any]], since: datetime, initial: bool
    ) -> list[Change]:
        removes: list[Change] = []
        present: list[dict[str, Any]] = []
        for r in rows:
            rid = str(r.get("id") or "")
            if not rid:
                continue
            if "@removed" in r:
                removes.append(Remove(folder, rid))
            else:
                present.append(r)
        known: set[str] = set()
        if present and self.known is not None and not initial:
            known = {str(x) for x in self.known(folder, [str(r["id"]) for r in present])}
        flags: list[Change] = []
        fetch: list[dict[str, Any]] = []
        for r in present:
            when = _parse_dt(r.get("receivedDateTime"))
            if when is not None and when < since:
                continue  # older than the sync window (e.g. an old mail moved in)
            if str(r["id"]) in known and "isRead" in r:
                flags.append(SetFlags(folder, str(r["id"]), not bool(r["isRead"])))
            else:
                fetch.append(r)
        mime = self.fetch_mime([str(r["id"]) for r in fetch]) if fetch else {}
        ups: list[Change] = []
        for r in fetch:
            raw = mime.get(str(r["id"]))
            if raw is None:
                continue  # deleted meanwhile: its @removed comes with a later round
            when = _parse_dt(r.get("receivedDateTime")) or datetime.now(UTC)
            ups.append(
                Upsert(
                    folder,
                    str(r["id"]),
                    raw,
                    not bool(r.get("isRead", False)),
                    when,
                    thread_hint=str(r["conversationId"]) if r.get("conversationId") else None,
                )
            )
        return removes + ups + flags

    # -- write-through (mail client) -----------------------------------------------------------

    def _each(self, calls: list[dict[str, Any]]) -> list[Reply]:
        """One call directly, several through ``$batch``; errors other than 404 raise."""
        if len(calls) == 1:
            c = calls[0]
            try:
                return [self._request(c["method"], c["url"], json_body=c.get("body"))]
            except _ApiError as e:
                if e.status == 404:
                    return [Reply(404, {}, None)]
                raise
        replies = self._batch(calls)
        for rep in replies:
            if rep.status >= 400 and rep.status != 404:  # a message deleted meanwhile is no error
                code, message = _error_info(rep.body)
                raise _api_error(rep.status, code, message)
        return replies

    def set_seen(self, folder: str, refs: Iterable[str], seen: bool) -> None:
        """``PATCH /me/messages/{id}`` ``{"isRead": seen}``."""
        ids = self._ids(folder, refs)
        if ids:
            self._each(
                [
                    {"method": "PATCH", "url": f"me/messages/{quote(i, safe='')}", "body": {"isRead": seen}}
                    for i in ids
                ]
            )

    def move(self, folder: str, refs: Iterable[str], dest: str) -> dict[str, str]:
        """``POST /me/messages/{id}/move``; returns ``{old id: new id}`` (equal with immutable ids)."""
        ids = self._ids(folder, refs)
        if not ids:
            return {}
        dest_id = self._dest_id(dest)
        replies = self._each(
            [
                {
                    "method": "POST",
                    "url": f"me/messages/{quote(i, safe='')}/move",
                    "body": {"destinationId": dest_id},
                }
                for i in ids
            ]
        )
        out: dict[str, str] = {}
        for mid, rep in zip(ids, replies, strict=True):
            if rep.status < 400 and isinstance(rep.body, dict) and rep.body.get("id"):
                out[mid] = str(rep.body["id"])
        return out

    def _ids(self, folder: str, refs: Iterable[str]) -> list[str]:
        """Graph ids of ``refs`` in ``folder``, without repeats. A ``pending-<Message-ID>`` ref (our
        mirror of a ``sendMail`` Sent copy the delta has not brought back yet) is looked up; a copy
        Graph has not filed yet is skipped (the sync brings it)."""
        out: list[str] = []
        for r in dict.fromkeys(str(r) for r in refs):
            out.extend(self.locate(folder, r[len(PENDING) :]) if r.startswith(PENDING) else [r])
        return list(dict.fromkeys(out))

    def locate(self, folder: str, message_id: str) -> list[str]:
        """The ids of the copies of ``message_id`` (bare, as stored) in ``folder``:
        ``GET /me/mailFolders/{id}/messages?$filter=internetMessageId eq '<...>'``. Finds the Sent
        copy Graph filed for a ``sendMail`` before the delta brought its id back."""
        try:
            fid = self.folder_id(folder)
        except FolderGone:
            return []
        literal = f"<{message_id}>".replace("'", "''")  # OData string literal
        body = self._get(
            f"me/mailFolders/{quote(fid, safe='')}/messages",
            params={"$filter": f"internetMessageId eq '{literal}'", "$select": "id", "$top": "10"},
        )
        return [str(v["id"]) for v in (body or {}).get("value", []) if v.get("id")]

    def delete(self, folder: str, refs: Iterable[str]) -> None:
        """A move to Deleted Items; from Deleted Items itself, ``DELETE`` (to Recoverable Items)."""
        ids = self._ids(folder, refs)
        if not ids:
            return
        in_trash = False
        try:
            in_trash = self._roles.get(self.folder_id(folder)) == "deleteditems"
        except FolderGone:
            pass
        if in_trash:
            self._each([{"method": "DELETE", "url": f"me/messages/{quote(i, safe='')}"} for i in ids])
        else:
            self.move(folder, ids, "deleteditems")

    def append(
        self, folder: str, raw: bytes, flags: Iterable[str] = (), date: datetime | None = None
    ) -> None:
        """Not needed: Graph files sent mail in Sent Items itself (``saveToSentItems``)."""
        return None

    def send(self, message: bytes | dict[str, Any], reply_to_id: str | None = None) -> dict[str, Any]:
        """Send RFC 5322 bytes (as base64 MIME) or a Graph message resource (JSON).

        New mail: ``POST /me/sendMail`` (saved to Sent Items). Replies: ``POST
        /me/messages/{reply_to_id}/createReply`` (the draft keeps the conversation) then ``POST
        /me/messages/{draft}/send``. Returns ``{"draft_id": ... | None}``; the Sent copy comes back
        through the delta and is matched by its ``internetMessageId`` (the MIME's Message-ID)."""
        mime = isinstance(message, bytes | bytearray)
        if reply_to_id is None:
            if mime:
                self._request(
                    "POST",
                    "me/sendMail",
                    data=base64.b64encode(bytes(message)),  # type: ignore[arg-type]
                    headers={"Content-Type": "text/plain"},
                )
            else:
                self._request("POST", "me/sendMail", json_body={"message": message, "saveToSentItems": True})
            return {"draft_id": None}
        path = f"me/messages/{quote(reply_to_id, safe='')}/createReply"
        if mime:
            draft = self._request(
                "POST",
                path,
                data=base64.b64encode(bytes(message)),  # type: ignore[arg-type]
                headers={"Content-Type": "text/plain"},
            ).body
        else:
            draft = self._request("POST", path, json_body={"message": message}).body
        draft_id = str(draft["id"])
        self._request("POST", f"me/messages/{quote(draft_id, safe='')}/send")
        return {"draft_id": draft_id, "conversationId": draft.get("conversationId")}

    # -- change notifications ------------------------------------------------------------------

    def subscribe(
        self,
        notification_url: str,
        *,
        client_state: str,
        lifecycle_url: str | None = None,
        resource: str = "me/messages",
        change_type: str = "created,updated,deleted",
        minutes: int = MAX_SUBSCRIPTION_MINUTES - 5,
    ) -> dict[str, Any]:
        """``POST /subscriptions`` (Graph validates ``notification_url`` before answering)."""
        body: dict[str, Any] = {
            "changeType": change_type,
            "notificationUrl": notification_url,
            "resource": resource,
            "expirationDateTime": iso(
                datetime.now(UTC) + timedelta(minutes=min(minutes, MAX_SUBSCRIPTION_MINUTES))
            ),
            "clientState": client_state,
        }
        if lifecycle_url:
            body["lifecycleNotificationUrl"] = lifecycle_url
        return dict(self._request("POST", "subscriptions", json_body=body).body)

    def renew(self, subscription_id: str, minutes: int = MAX_SUBSCRIPTION_MINUTES - 5) -> dict[str, Any]:
        """``PATCH /subscriptions/{id}`` with a new ``expirationDateTime``."""
        exp = iso(datetime.now(UTC) + timedelta(minutes=min(minutes, MAX_SUBSCRIPTION_MINUTES)))
        return dict(
            self._request(
                "PATCH",
                f"subscriptions/{quote(subscription_id, safe='')}",
                json_body={"expirationDateTime": exp},
            ).body
        )

    def unsubscribe(self, subscription_id: str) -> None:
        """``DELETE /subscriptions/{id}`` (an unknown one is no error)."""
        try:
            self._request("DELETE", f"subscriptions/{quote(subscription_id, safe='')}")
        except _ApiError as e:
            if e.status != 404:
                raise

    def subscriptions(self) -> list[dict[str, Any]]:
        return [dict(s) for s in self._pages("subscriptions")]
