"""The one interface every mail provider adapter implements.

The sync engine (``mailsync.domain.sync``) only speaks this interface, so IMAP,
Gmail (account-wide ``historyId``) and Microsoft Graph (per-folder ``deltaLink``)
fit without changing it:

* A provider exposes *folders* (IMAP mailboxes, Gmail labels, Graph mail folders).
* It streams changes for one folder as :class:`ChangeBatch` objects. Every batch
  carries the opaque ``cursor`` that is valid **after** the batch's changes are
  stored. The engine persists the cursor only after storing the changes, so a
  crash at any point replays the batch on the next run (every change is
  idempotent: upserts by deterministic id, removals by location).
* A change names a *location* ``(folder, ref)``: ``ref`` is the provider's id of
  the message inside that folder (IMAP UID as a decimal string, Gmail message id,
  Graph immutable id). The same mail may sit at several locations; the engine
  identifies mails across locations by their RFC 5322 Message-ID, which is why a
  move between synced folders keeps the message id, thread and links.
* ``Reset`` drops every location of a folder (IMAP UIDVALIDITY change, expired
  Gmail historyId or Graph deltaLink) before the provider re-lists the folder.

Errors are typed (:class:`AuthFailed`, :class:`ConnectionFailed`,
:class:`FolderGone`, :class:`ProviderError`) so the worker can decide between
``auth_error``, back-off and skipping a folder.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from mailsync.domain.account import Account


class ProviderError(Exception):
    """The provider refused an operation (its message is kept for the user).

    ``kind`` is the typed error code of the sync-health contract (``domain.health.ERRORS``:
    ``auth_failed``, ``connection_failed``, ``tls_error``, ``timeout``, ``rate_limited``,
    ``mailbox_gone``, ``permission_denied``, ``provider_error``, ``quota_exceeded``); an adapter
    may set it per instance. ``retry_after`` is the provider's ``Retry-After`` in seconds,
    when it sent one.
    """

    code = "provider_error"
    kind = "provider_error"

    def __init__(self, *args: object, kind: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(*args)
        if kind is not None:
            self.kind = kind
        self.retry_after = retry_after


class AuthFailed(ProviderError):
    """Credentials were rejected: the account must go to ``auth_error``."""

    code = kind = "auth_failed"


class ConnectionFailed(ProviderError):
    """The server could not be reached (DNS, TCP, TLS, timeout). Transient."""

    code = kind = "connection_failed"


class TlsFailed(ConnectionFailed):
    """The TLS handshake or the certificate check failed (RFC 8314: never downgraded)."""

    kind = "tls_error"


class TimedOut(ConnectionFailed):
    """The server stopped answering within the timeout."""

    kind = "timeout"


class RateLimited(ProviderError):
    """The provider throttles us (HTTP 429, Gmail ``rateLimitExceeded``, IMAP ``[LIMIT]``)."""

    kind = "rate_limited"


class PermissionDenied(ProviderError):
    """The mailbox or folder refuses us access (HTTP 403, IMAP ``[NOPERM]``, RFC 5530)."""

    kind = "permission_denied"


class QuotaExceeded(ProviderError):
    """A quota of the mailbox is used up (IMAP ``[OVERQUOTA]``, Graph ``ErrorQuotaExceeded``)."""

    kind = "quota_exceeded"


class FolderGone(ProviderError):
    """The folder was renamed or deleted at the provider."""

    code = "folder_gone"
    kind = "mailbox_gone"


# Kinds that concern the whole session: the run stops. Any other error raised while one folder
# is synced concerns that folder only: the engine records it and goes on with the others.
SESSION_KINDS = frozenset({"auth_failed", "connection_failed", "tls_error", "timeout", "rate_limited"})


@dataclass(frozen=True)
class Inventory:
    """The refs a folder holds at the provider for the completeness check, ids only.

    ``refs``: the locations of mails received at or after ``since`` that the folder's
    ``cursor`` covers (IMAP: UIDs below the cursor's UIDNEXT), so a mail that arrived after the
    last sync is not taken for a missing one. ``requests``: provider requests it cost.
    """

    refs: frozenset[str]
    requests: int = 0


@dataclass(frozen=True)
class FolderInfo:
    name: str  # the provider's full name, e.g. "INBOX" or "Archive/2024"
    role: str | None = None  # one of ROLES or None
    messages: int | None = None  # message count if the listing returned it (LIST-STATUS)
    selectable: bool = True


@dataclass(frozen=True)
class Upsert:
    """A message is present at ``(folder, ref)``; ``raw`` is its full RFC 5322 source."""

    folder: str
    ref: str
    raw: bytes
    unread: bool
    internal_date: datetime  # timezone-aware, UTC
    # The provider's own conversation id (Gmail threadId, Graph conversationId): when
    # given it is authoritative for threading, instead of References/subject.
    thread_hint: str | None = None


@dataclass(frozen=True)
class SetFlags:
    """The message at ``(folder, ref)`` changed its read state."""

    folder: str
    ref: str
    unread: bool


@dataclass(frozen=True)
class Remove:
    """The message at ``(folder, ref)`` is gone from that folder (expunged or moved away).

    ``reason`` is what the mail's ``message.deleted`` event says if this was its last
    location (``domain/events.py``): a provider that tells a move out of the folder from a
    deletion (Graph ``@removed.reason``, Gmail's labels) says so; IMAP cannot (a MOVE is an
    expunge in the source folder, RFC 6851 §3.3), so it stays ``deleted_at_provider``."""

    folder: str
    ref: str
    reason: str = field(default="deleted_at_provider", compare=False)


@dataclass(frozen=True)
class Reset:
    """Every known location in ``folder`` is invalid (UIDVALIDITY changed, cursor expired).

    ``cause`` is ``"uidvalidity"`` when the folder's UIDVALIDITY changed (counted as a flap,
    ``domain.flaps``), else ``"expired"``; it does not take part in equality."""

    folder: str
    cause: str = field(default="expired", compare=False)


Change = Upsert | SetFlags | Remove | Reset


@dataclass
class ChangeBatch:
    folder: str
    changes: list[Change] = field(default_factory=list)
    # Opaque, JSON-serialisable; valid once this batch's changes are stored.
    cursor: dict[str, Any] = field(default_factory=dict)
    # True for the batches of an initial load (or of a reload after a Reset).
    initial: bool = False
    # False while the initial load has more batches to come; True once the folder
    # is caught up after this batch (the engine then reconciles a pending Reset).
    done: bool = True
    # Progress of an initial load: (done, total) messages, when known.
    progress: tuple[int, int] | None = None


class MailProvider(Protocol):
    """A connected session to one mailbox. Use as a context manager."""

    def __enter__(self) -> MailProvider: ...

    def __exit__(self, *exc: object) -> None: ...

    def list_folders(self) -> list[FolderInfo]:
        """All selectable folders with their roles."""
        ...

    def changes(
        self, folder: str, cursor: dict[str, Any] | None, since: datetime, batch_size: int = 100
    ) -> Iterator[ChangeBatch]:
        """Stream the changes of ``folder`` after ``cursor``.

        ``cursor=None`` starts an initial load of the mails whose internal date is
        at or after ``since``. An unchanged folder yields nothing (or one empty batch)
        at O(1) protocol cost. Raises :class:`FolderGone` when the folder vanished.
        """
        ...

    def inventory(self, folder: str, cursor: dict[str, Any] | None, since: datetime) -> Inventory:
        """The refs of ``folder`` at the provider (ids only, never bodies) that ``cursor``
        covers, for the completeness check; a few requests per 1,000 mails."""
        ...

    def fetch(self, folder: str, refs: list[str], since: datetime) -> list[Upsert]:
        """The mails at ``refs`` of ``folder`` as :class:`Upsert` (a missing mail healed by the
        check); refs gone meanwhile or older than ``since`` are left out."""
        ...


class MailClient(Protocol):
    """Write-through operations of the built-in mail client (refs as in :class:`Upsert`)."""

    def set_seen(self, folder: str, refs: list[str], seen: bool) -> None: ...

    def move(self, folder: str, refs: list[str], dest: str) -> dict[Any, Any]:
        """Move; returns ``{old_ref: new_ref}`` when the provider reports the new refs."""
        ...

    def delete(self, folder: str, refs: list[str]) -> None:
        """Remove permanently (used for mails already in Trash)."""
        ...

    def append(self, folder: str, raw: bytes, flags: Iterable[str] = (), date: datetime | None = None) -> Any:
        """Store ``raw`` in ``folder``; returns its new ref when the provider reports it."""
        ...


# A ref prefix: the provider filed the copy (Graph ``sendMail``) but has not named it yet.
# ``pending-<Message-ID>``; the provider's write-through methods look such refs up.
PENDING = "pending-"


class JobQueue(Protocol):
    """The queue of sync jobs: one job names an account and why it should sync.

    Jobs of one account are delivered in order, one at a time (the SQS FIFO message group
    is the account); a job with a ``dedup_id`` seen recently is dropped.
    """

    def enqueue(self, tenant_id: str, account_id: str, reason: str, dedup_id: str | None = None) -> None: ...

    def enqueue_many(self, jobs: list[tuple[str, str, str, str]]) -> list[int]:
        """Enqueue ``(tenant, account, reason, dedup id)`` jobs; the indexes of the accepted ones."""
        ...

    def enqueue_purge(self, kind: str, tenant_id: str, user_id: str | None = None) -> None:
        """Enqueue a step of a user's (``purge_user``) or a tenant's (``purge_tenant``) purge."""
        ...


@dataclass(frozen=True)
class Outgoing:
    """A composed mail to deliver: the MIME, the SMTP envelope, the message replied to
    (``parent``: its stored document, or empty) and the session/SMTP functions to use."""

    raw: bytes
    sender: str
    recipients: list[str]
    parent: dict[str, Any]
    open_provider: Any  # (account, secrets) -> MailProvider
    smtp_send: Any


@dataclass(frozen=True)
class Sent:
    """What a connector's send reports: per-recipient results, and where the provider filed
    the Sent copy itself (its ref and thread), when it says so."""

    recipients: dict[str, dict[str, Any]]
    sent_ref: str | None = None
    thread_hint: str | None = None


class Connector(Protocol):
    """What differs between providers (imap, google, microsoft), behind one interface.

    ``account`` is the stored account record. A use case asks the registry
    (``mailsync.connectors.for_account``) for an account's connector and never compares
    provider names.
    """

    provider: str
    password_credentials: bool  # PUT credentials replaces its password (else: OAuth reconnect)

    def open(self, account: Account, secrets: dict[str, str]) -> MailProvider:
        """A provider session for ``account`` with its decrypted ``secrets``."""
        ...

    def poll_seconds(self, settings: Any) -> int:
        """How often the account is polled (push providers only back push up)."""
        ...

    def before_sync(self, account: Account, provider: Any, known: Any) -> None:
        """Inside an open session, before the folders are listed: push-channel upkeep asked for
        by lifecycle events; ``known(folder, refs)`` answers which refs the mirror holds."""
        ...

    def after_session(self, account: Account, provider: Any) -> None:
        """After a session (also a failed one; ``provider`` None if it never opened):
        store refreshed tokens."""
        ...

    def watch(self, account: Account, provider: Any) -> None:
        """Start (or restart) the account's push channel, on connect."""
        ...

    def forget(self, account: Account) -> None:
        """Undo at the provider what the account set up there (it is being deleted)."""
        ...

    def send(self, account: Account, mail: Outgoing) -> Sent:
        """Deliver ``mail``; raises :class:`mailsync.errors.BadGateway` when refused."""
        ...
