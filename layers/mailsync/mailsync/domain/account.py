"""The account record: its defaults, how a new one starts, and its credential context.

Invariants:

* A new account starts in ``initial_sync`` and is due at once; its sync starts at its
  creation (``sync_start``), plus ``backfill_days`` of older mail.
* The credential envelope of an account is bound to ``{tenant_id, account_id}`` (the KMS
  encryption context): an envelope copied to another account does not decrypt.
"""

from __future__ import annotations

import secrets as pysecrets
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from mailsync.domain.clock import iso, utcnow
from mailsync.domain.exclusions import ExcludeRules

DEFAULT_SETTINGS: dict[str, Any] = {
    "folder_mode": "all",
    "folders": [],
    "visibility": "private",
    "auto_assign": True,
    "signature": "",
    "exclude": {"addresses": [], "domains": []},
}

# States in which the sync worker owns the account's state fields (the user owns the others).
SYNC_OWNED_STATES = ("initial_sync", "active", "degraded", "error", "auth_error")
# States that take the account off the due index (``auth_error`` stays on it, polled slowly,
# until it gives up: then its ``next_due`` is None; see ``domain.health``).
NOT_DUE_STATES = ("paused", "deleting")
STATES = ("initial_sync", "active", "degraded", "paused", "auth_error", "error", "deleting")


def credential_context(tenant_id: str, account_id: str) -> dict[str, str]:
    return {"tenant_id": tenant_id, "account_id": account_id}


@dataclass(frozen=True)
class Server:
    """An IMAP or SMTP server of a password account (the password lives in the credentials)."""

    host: str
    port: int
    security: str  # "ssl", "starttls" or "none"
    username: str


@dataclass(frozen=True)
class AccountSettings:
    folder_mode: str = "all"  # "all" or "selected"
    folders: tuple[str, ...] = ()
    visibility: str = "private"
    auto_assign: bool = True
    signature: str = ""
    exclude: ExcludeRules = ExcludeRules()  # mail never synced (domain.exclusions)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> AccountSettings:
        merged = {**DEFAULT_SETTINGS, **(d or {})}
        return cls(
            folder_mode=merged["folder_mode"],
            folders=tuple(merged["folders"] or ()),
            visibility=merged["visibility"],
            auto_assign=bool(merged["auto_assign"]),
            signature=merged["signature"] or "",
            exclude=ExcludeRules.from_dict(merged["exclude"]),
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "folders": list(self.folders), "exclude": self.exclude.as_dict()}


@dataclass(frozen=True)
class SyncProgress:
    """The account's ``sync`` block as the API shows it."""

    started_at: str | None = None
    last_success_at: str | None = None
    messages: int = 0
    folders_total: int = 0
    folders_done: int = 0

    @property
    def initial_done(self) -> bool:
        return self.folders_done == self.folders_total


@dataclass(frozen=True)
class Account:
    """An account. ``next_due`` None takes it off the due index; ``state`` is one of
    :data:`STATES`; ``health`` holds the marks of ``domain.health.HealthMarks``."""

    tenant_id: str
    account_id: str
    owner: str
    email: str
    provider: str  # "imap", "google", "microsoft": the key of its connector
    state: str
    settings: AccountSettings
    sync: SyncProgress
    sync_start: str
    created_at: str
    servers: dict[str, Server] = field(default_factory=dict)
    error: dict[str, str] | None = None
    backfill_days: int = 0
    failures: int = 0
    next_due: str | None = None
    saves_sent: bool = False  # the provider files sent mail itself
    health: dict[str, Any] | None = None
    # The digest of the exclusion rules the mirror was last cleaned for (domain.exclusions).
    exclude_applied: str | None = None

    def with_(self, **changes: Any) -> Account:
        return replace(self, **changes)

    def server(self, name: str) -> Server:
        return self.servers[name]


def new_account(
    tenant_id: str,
    owner: str,
    email: str,
    provider: str,
    *,
    settings: dict[str, Any] | None = None,
    servers: dict[str, Server] | None = None,
    backfill_days: int = 0,
    saves_sent: bool = False,
) -> Account:
    """A new account, in ``initial_sync`` and due now; the sync starts at its creation."""
    now = iso(utcnow())
    return Account(
        tenant_id=tenant_id,
        account_id="acc_" + pysecrets.token_hex(8),
        owner=owner,
        email=email,
        provider=provider,
        state="initial_sync",
        settings=AccountSettings.from_dict(settings),
        sync=SyncProgress(started_at=now),
        sync_start=now,
        created_at=now,
        servers=dict(servers or {}),
        backfill_days=backfill_days,
        next_due=now,
        saves_sent=saves_sent,
    )
