"""Sync health: the typed error codes, the account's state machine and its back-off.

States (``Account.state``): ``initial_sync`` (the first load runs), ``active``, ``degraded``
(syncing, but some folders fail or the last completeness check had to heal), ``paused``,
``auth_error`` (the user must act), ``error`` (repeated non-auth failures, still retried),
``deleting``.

Invariants:

* Every failure is one of :data:`ERRORS`; each code maps to the ``action`` the user must take
  (``None``: nothing, we retry). A provider's message is kept with every credential scrubbed
  (:func:`scrub`).
* Transient failures back off exponentially with equal jitter from the poll interval,
  honour the provider's ``Retry-After``, and never wait more than :data:`MAX_BACKOFF_SECONDS`
  while the account is due. The account turns ``error`` only after
  :data:`FAILURES_BEFORE_ERROR` consecutive failures; the first success makes it healthy
  again with the counter reset.
* A folder whose UIDVALIDITY keeps changing (``domain.flaps``) is not reloaded again and
  turns the account ``error`` at once (``provider_error``, action ``check_server_settings``),
  every run, until the user resyncs or gives new credentials.
* ``auth_error`` is polled every :data:`AUTH_RETRY_SECONDS` (the password may be fixed at
  the provider) and left on the first login that works; after :data:`AUTH_GIVE_UP` in
  ``auth_error`` it is taken off the due index until the user acts.
* These functions are pure (time and randomness are passed in); the worker persists their
  result with a write conditional on the state it read (``store.accounts``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from mailsync.domain.account import Account
from mailsync.domain.clock import iso, parse_iso


@dataclass(frozen=True)
class ErrorCode:
    action: str | None  # what the user must do; None: we retry and it heals by itself
    meaning: str


ERRORS: dict[str, ErrorCode] = {
    "auth_failed": ErrorCode("reauthenticate", "The provider refused the password or token."),
    "connection_failed": ErrorCode("check_server_settings", "The server could not be reached."),
    "tls_error": ErrorCode("check_server_settings", "The TLS handshake or certificate check failed."),
    "timeout": ErrorCode(None, "The server stopped answering; retried with back-off."),
    "rate_limited": ErrorCode(None, "The provider throttles us; retried after its Retry-After."),
    "mailbox_gone": ErrorCode("check_server_settings", "A synced folder or the mailbox no longer exists."),
    "permission_denied": ErrorCode("grant_permissions", "The provider refuses access to a folder or the mailbox."),
    "provider_error": ErrorCode(None, "The provider failed (5xx or an unexpected answer); retried."),
    "quota_exceeded": ErrorCode(None, "A quota of the mailbox or the provider's API is used up; retried."),
}  # fmt: skip
ACTIONS = ("reauthenticate", "check_server_settings", "grant_permissions")

FAILURES_BEFORE_ERROR = 3
MAX_BACKOFF_SECONDS = 3600
AUTH_RETRY_SECONDS = 6 * 3600
AUTH_GIVE_UP = timedelta(days=14)
MESSAGE_LIMIT = 500
HEALTHY_STATES = ("initial_sync", "active", "degraded", "error")  # a success leaves these for active


@dataclass(frozen=True)
class HealthError:
    """``health.last_error`` (and the account's ``error``): a typed code, a scrubbed message,
    when, the folder it concerns (``None``: the whole account), and the ``action`` when it
    differs from its code's (a folder stopped for UIDVALIDITY flapping, ``domain.flaps``)."""

    code: str
    message: str
    at: str
    folder: str | None = None
    action: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["action"] is None:
            del d["action"]  # the code's own action: nothing to store
        return d

    def public(self) -> dict[str, Any]:
        """The ``AccountError`` of the contract (the sync history): without ``action``."""
        return {k: v for k, v in asdict(self).items() if k != "action"}


@dataclass(frozen=True)
class HealthMarks:
    """What the account item keeps for health beyond its state, ``error`` and ``failures``."""

    last_attempt_at: str | None = None  # of the last failed attempt; a success is sync.last_success_at
    auth_error_since: str | None = None
    initial_done_at: str | None = None  # the first load completed once (a resync is not one)
    check_at: str | None = None
    check_healed: int = 0  # differences the last completeness check healed

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> HealthMarks:
        d = d or {}
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def as_dict(self) -> dict[str, Any]:
        """Only the marks that are set: they ride on every poll's UpdateItem of the account."""
        return {k: v for k, v in asdict(self).items() if v is not None and v != 0}


@dataclass(frozen=True)
class FolderCheck:
    """One folder's line of ``health.check``: the provider's and the mirror's counts, the
    differences found, and how many of them were healed."""

    name: str
    provider_count: int
    mirror_count: int
    missing: int
    extra: int
    healed: int


@dataclass(frozen=True)
class CheckResult:
    at: str
    folders: list[FolderCheck] = field(default_factory=list)

    @property
    def healed(self) -> int:
        return sum(f.healed for f in self.folders)

    def as_dict(self) -> dict[str, Any]:
        return {"at": self.at, "folders": [asdict(f) for f in self.folders]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckResult:
        return cls(d["at"], [FolderCheck(**f) for f in d.get("folders") or []])


# ------------------------------------------------------------------ messages
_SECRET_PAIRS = re.compile(
    r"(?i)\b(password|passwd|pass|pwd|token|access_token|refresh_token|secret|client_secret|code)"
    r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s&,;]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
_LOGIN = re.compile(r"(?i)\b(LOGIN\s+\S+\s+)(\"[^\"]*\"|\S+)")


def scrub(message: str, secrets: Iterable[str] = ()) -> str:
    """``message`` without any credential: the account's own secrets wherever they appear,
    ``key=value`` pairs of secret-looking keys, ``Bearer``/``Basic`` tokens and the password of
    an echoed IMAP ``LOGIN``; cut to :data:`MESSAGE_LIMIT` characters."""
    text = str(message)
    for s in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(s, "***")
    text = _SECRET_PAIRS.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} ***", text)
    text = _LOGIN.sub(lambda m: f"{m.group(1)}***", text)
    return text[:MESSAGE_LIMIT]


def error_of(
    exc: BaseException, at: datetime, *, secrets: Iterable[str] = (), folder: str | None = None
) -> HealthError:
    """The typed error of a provider exception (``kind``, see ``domain.ports``)."""
    code = getattr(exc, "kind", "provider_error")
    if code not in ERRORS:
        code = "provider_error"
    action = getattr(exc, "action", None)
    return HealthError(code, scrub(str(exc) or code, secrets), iso(at), folder, action)


# --------------------------------------------------------------- transitions
def backoff_seconds(
    failures: int, poll_seconds: int, rng: random.Random, retry_after: float | None = None
) -> int:
    """The wait after ``failures`` consecutive failures: the poll interval doubled per
    failure, with equal jitter (half fixed, half random), at least the provider's
    ``Retry-After``, at most :data:`MAX_BACKOFF_SECONDS`."""
    step = min(MAX_BACKOFF_SECONDS, poll_seconds * 2 ** max(0, min(failures - 1, 16)))
    delay = step / 2 + rng.uniform(0, step / 2)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return int(min(MAX_BACKOFF_SECONDS, max(1.0, delay)))


def marks(acc: Account) -> HealthMarks:
    return HealthMarks.from_dict(acc.health)


def with_marks(acc: Account, **changes: Any) -> Account:
    return acc.with_(health=replace(marks(acc), **changes).as_dict())


def after_failure(
    acc: Account,
    err: HealthError,
    *,
    now: datetime,
    poll_seconds: int,
    rng: random.Random,
    retry_after: float | None = None,
    stop: bool = False,
) -> Account:
    """The account after a failed run (nothing was lost: cursors only move after stores).
    ``stop``: retrying cannot help (a folder stopped for UIDVALIDITY flapping): ``error`` at
    once instead of after :data:`FAILURES_BEFORE_ERROR` runs."""
    failures = acc.failures + 1
    m = marks(acc)
    if err.code == "auth_failed" or acc.state == "auth_error":
        # A transient failure while in auth_error proves nothing about the password.
        since = m.auth_error_since or iso(now)
        stop = now - parse_iso(since) >= AUTH_GIVE_UP
        next_due = None if stop else iso(now + timedelta(seconds=AUTH_RETRY_SECONDS))
        error = err if err.code == "auth_failed" or acc.error is None else _error_from(acc.error)
        return with_marks(
            acc.with_(state="auth_error", error=error.as_dict(), failures=failures, next_due=next_due),
            last_attempt_at=iso(now),
            auth_error_since=since,
        )
    state = "error" if stop or failures >= FAILURES_BEFORE_ERROR else acc.state
    if state not in HEALTHY_STATES:
        state = "error"
    wait = backoff_seconds(failures, poll_seconds, rng, retry_after)
    return with_marks(
        acc.with_(
            state=state, error=err.as_dict(), failures=failures, next_due=iso(now + timedelta(seconds=wait))
        ),
        last_attempt_at=iso(now),
    )


def after_success(
    acc: Account,
    *,
    now: datetime,
    poll_seconds: int,
    loaded: bool,
    folder_errors: list[HealthError],
    check: CheckResult | None = None,
) -> Account:
    """The account after a run that reached the provider. ``loaded``: every synced folder has
    completed its load; ``folder_errors``: folders that failed while the others synced;
    ``check``: the completeness check of this run, if one ran."""
    m = marks(acc)
    initial_done_at = m.initial_done_at or (iso(now) if loaded else None)
    if (
        acc.state in ("active", "degraded", "error")
        and m.initial_done_at is None
        and acc.sync.last_success_at
    ):
        initial_done_at = acc.sync.last_success_at  # an account from before these marks
    check_at, check_healed = (check.at, check.healed) if check else (m.check_at, m.check_healed)
    error: HealthError | None = folder_errors[0] if folder_errors else None
    if error or check_healed:
        state = "degraded"
    elif initial_done_at is None:
        state = "initial_sync"
    else:
        state = "active"
    return with_marks(
        acc.with_(
            state=state,
            error=error.as_dict() if error else None,
            failures=0,
            next_due=iso(now + timedelta(seconds=poll_seconds)),
        ),
        last_attempt_at=None,  # this attempt succeeded: it is sync.last_success_at (one date less per poll)
        auth_error_since=None,
        initial_done_at=initial_done_at,
        check_at=check_at,
        check_healed=check_healed,
    )


def recovered(acc: Account, *, now: datetime) -> Account:
    """The account once the user gave new credentials that work (``PUT credentials``, an
    OAuth reconnect): healthy at once and due now; a paused account stays paused."""
    m = marks(acc)
    state = acc.state if acc.state == "paused" else ("active" if m.initial_done_at else "initial_sync")
    return with_marks(
        acc.with_(state=state, error=None, failures=0, next_due=None if state == "paused" else iso(now)),
        auth_error_since=None,
    )


def action_for(state: str, error: dict[str, Any] | None) -> str | None:
    """What the user must do: ``reauthenticate`` in ``auth_error``; in ``error`` or
    ``degraded`` the action of the last error's code; otherwise nothing."""
    if state == "auth_error":
        return "reauthenticate"
    if state in ("error", "degraded") and error:
        return error.get("action") or ERRORS[_code(error)].action
    return None


def check_due(acc: Account, now: datetime, every: timedelta = timedelta(days=1)) -> bool:
    """A completeness check is due a day after the last one (the first: a day after the first
    load completed)."""
    m = marks(acc)
    last = m.check_at or m.initial_done_at
    return last is not None and now - parse_iso(last) >= every


def health_view(acc: Account, check: CheckResult | None) -> dict[str, Any]:
    """The account's public ``health`` block."""
    m = marks(acc)
    return {
        "last_success_at": acc.sync.last_success_at,
        "last_attempt_at": max(filter(None, (m.last_attempt_at, acc.sync.last_success_at)), default=None),
        "next_attempt_at": acc.next_due,
        "consecutive_failures": acc.failures,
        "last_error": _public_error(acc.error),
        "action": action_for(acc.state, acc.error),
        "check": check.as_dict() if check else None,
    }


def _code(error: dict[str, Any]) -> str:
    """The error's code of the contract (an error stored before the codes were typed maps to
    its nearest one)."""
    code = str(error.get("code") or "")
    if code == "folder_gone":
        return "mailbox_gone"
    return code if code in ERRORS else "provider_error"


def _public_error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    if not error:
        return None
    return {
        "code": _code(error),
        "message": error.get("message") or "",
        "at": error.get("at"),
        "folder": error.get("folder"),
    }


def _error_from(d: dict[str, Any]) -> HealthError:
    return HealthError(
        str(d.get("code") or "provider_error"),
        str(d.get("message") or ""),
        str(d.get("at") or ""),
        d.get("folder"),
        d.get("action"),
    )
