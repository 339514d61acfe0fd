"""Request and response schemas of the public HTTP API (they generate the OpenAPI spec).

Field names, routes, status codes and error codes here are the public contract.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from mailsync.api.suggestion_schemas import SuggestedMixin
from mailsync.domain.records import CONTACT_ID_PATTERN


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerIn(_In):
    host: str = Field(min_length=1, max_length=253)
    port: int = Field(ge=1, le=65535)
    security: Literal["ssl", "starttls", "none"]
    username: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024, repr=False)  # repr: never in a (debug) log


Visibility = Literal["private", "metadata", "subject", "public"]
VISIBILITY_TEXT = (
    "Who else sees the account's mails, through a contact they may see: `private` (no one; the "
    "default), `metadata` (from, to, cc, date, folder, thread, attachment count), `subject` (also "
    "subject and snippet), `public` (everything). Applies to mails stored from now on"
)


EXCLUDE_TEXT = (
    "Mail that is never synced: a mail whose sender or any recipient matches is not mirrored at "
    "all, and adding a rule removes the matching mails already mirrored (the provider's copy is "
    "untouched); removing one brings them back on the next resync. Addresses match exactly "
    "(case-insensitive), a domain also covers its subdomains. At most 500 entries in all; a bad "
    "entry is refused with 422 `invalid_address` / `invalid_domain`, too many with "
    "`too_many_entries`"
)


class ExcludeIn(_In):
    addresses: list[Annotated[str, Field(max_length=320)]] | None = Field(
        None, max_length=500, description="Replaces the address rules when given"
    )
    domains: list[Annotated[str, Field(max_length=253)]] | None = Field(
        None, max_length=500, description="Replaces the domain rules when given"
    )


class ExcludeRules(BaseModel):
    addresses: list[str] = Field(description="Normalised (lower case)")
    domains: list[str] = Field(description="Normalised (lower case, IDNA as xn--)")


class SettingsIn(_In):
    folder_mode: Literal["all", "selected"] | None = None
    folders: list[str] | None = Field(None, max_length=500)
    visibility: Visibility | None = Field(None, description=VISIBILITY_TEXT)
    # Strict: JSON's true/false only; pydantic would take 0, 1 or "yes" (the spec says boolean).
    auto_assign: StrictBool | None = None
    signature: str | None = Field(None, max_length=20_000)
    exclude: ExcludeIn | None = Field(None, description=EXCLUDE_TEXT)


class CreateAccountIn(_In):
    email: str | None = Field(None, max_length=320, description="The mailbox address")
    password: str | None = Field(
        None, max_length=1024, description="With a known provider's email", repr=False
    )
    imap: ServerIn | None = None
    smtp: ServerIn | None = None
    backfill_days: int = Field(
        0, ge=0, le=30, description="Also load mails of this many days before the start"
    )
    settings: SettingsIn | None = None


class Address(BaseModel):
    name: str | None
    email: str


ErrorCode = Literal[
    "auth_failed", "connection_failed", "tls_error", "timeout", "rate_limited",
    "mailbox_gone", "permission_denied", "provider_error", "quota_exceeded",
]  # fmt: skip
AccountState = Literal["initial_sync", "active", "degraded", "paused", "auth_error", "error", "deleting"]
Action = Literal["reauthenticate", "check_server_settings", "grant_permissions"]


class AccountError(BaseModel):
    """A typed sync error (README: "Sync health"); ``message`` is the provider's, scrubbed."""

    code: ErrorCode
    message: str
    at: str | None = Field(None, description="When it happened (ISO 8601 UTC)")
    folder: str | None = Field(None, description="The folder it concerns; null: the whole account")


class FolderCheck(BaseModel):
    name: str
    provider_count: int = Field(ge=0, description="Mails in the folder at the provider since the sync start")
    mirror_count: int = Field(ge=0, description="Mails the mirror held for it before the check")
    missing: int = Field(ge=0, description="At the provider, not in the mirror (fetched)")
    extra: int = Field(ge=0, description="In the mirror, no longer at the provider (removed)")
    healed: int = Field(ge=0)


class Check(BaseModel):
    at: str
    folders: list[FolderCheck]


class Health(BaseModel):
    last_success_at: str | None
    last_attempt_at: str | None
    next_attempt_at: str | None = Field(description="When the next sync is due; null: not polled")
    consecutive_failures: int = Field(ge=0)
    last_error: AccountError | None
    action: Action | None = Field(description="What the user must do; null: nothing")
    check: Check | None = Field(description="The last completeness check")


class SyncProgress(BaseModel):
    started_at: str
    last_success_at: str | None
    messages: int
    folders_total: int
    folders_done: int


class AccountSettings(BaseModel):
    folder_mode: Literal["all", "selected"]
    folders: list[str]
    visibility: Visibility = Field(description=VISIBILITY_TEXT)
    auto_assign: bool
    signature: str
    exclude: ExcludeRules = Field(description=EXCLUDE_TEXT)


class ServerOut(BaseModel):
    host: str
    port: int
    security: str
    username: str


class Account(BaseModel):
    id: str
    email: str
    provider: str
    owner: str
    state: AccountState
    error: AccountError | None = Field(description="The same as `health.last_error`")
    settings: AccountSettings
    servers: dict[str, ServerOut]
    backfill_days: int
    sync: SyncProgress
    health: Health
    created_at: str


class AccountList(BaseModel):
    items: list[Account]
    next_cursor: str | None = None


class Folder(BaseModel):
    name: str
    role: str | None
    synced: bool
    messages: int


class FolderList(BaseModel):
    items: list[Folder]
    next_cursor: str | None = None


class SyncQueued(BaseModel):
    account_id: str
    queued: bool


class ResyncQueued(SyncQueued):
    folders: int = Field(ge=0, description="Synced folders whose cursors were dropped")


class PasswordIn(_In):
    password: str = Field(min_length=1, max_length=1024, repr=False)


class CredentialsIn(_In):
    """Either ``{"password"}`` (IMAP and SMTP share it) or ``{"imap": {"password"}, "smtp":
    {"password"}}`` (either or both)."""

    password: str | None = Field(None, min_length=1, max_length=1024, repr=False)
    imap: PasswordIn | None = None
    smtp: PasswordIn | None = None

    @model_validator(mode="after")
    def _one_form(self) -> CredentialsIn:
        if self.password is None and self.imap is None and self.smtp is None:
            raise ValueError("give a password, or imap and/or smtp passwords")
        if self.password is not None and (self.imap is not None or self.smtp is not None):
            raise ValueError("give either password or imap/smtp passwords, not both")
        return self


class SyncRun(BaseModel):
    started_at: str
    finished_at: str
    trigger: Literal["schedule", "push", "manual", "continuation", "check"]
    outcome: Literal["ok", "partial", "error"]
    new: int = Field(ge=0)
    updated: int = Field(ge=0)
    removed: int = Field(ge=0)
    error: AccountError | None


class SyncRunList(BaseModel):
    items: list[SyncRun] = Field(max_length=50, description="The last runs, newest first")


class Attachment(BaseModel):
    id: str
    filename: str | None
    content_type: str
    size: int


class Headers(BaseModel):
    message_id: str | None
    in_reply_to: str | None
    references: list[str]


class Link(BaseModel):
    contact_id: str
    kind: Literal["customer", "intermediary"]
    source: Literal["auto", "manual"]


class MessageSummary(SuggestedMixin):  # api/suggestion_schemas.py: listMessages' `suggestion`
    id: str
    account_id: str
    thread_id: str
    folder: str = Field(description="The folder the mail is shown in")
    folders: list[str] = Field(
        default_factory=list, description="Every synced folder holding a copy (one message per Message-ID)"
    )
    subject: str | None = Field(description="null when withheld from the caller (`redacted`)")
    from_: list[Address] = Field(alias="from")
    to: list[Address]
    cc: list[Address]
    date: str
    received_at: str
    snippet: str | None = Field(description="null when withheld from the caller (`redacted`)")
    unread: bool
    has_attachments: bool
    attachment_count: int = Field(0, ge=0)
    bulk: bool = Field(
        False,
        description="A newsletter, list, automatic mail, auto-reply or bounce: not auto-assigned "
        "unless the tenant's `assign_bulk` is true (a manual link still works)",
    )
    visibility: Visibility = Field(description="The mail's sharing level (its account's when it was stored)")
    redacted: list[Literal["subject", "snippet", "body", "attachments"]] = Field(
        default_factory=list,
        description="What the mail's level withholds from the caller (a colleague); empty for the owner",
    )
    links: list[Link] = Field(default_factory=list)
    quarantined: bool = Field(
        False,
        description="The mail is beyond the parser's limits or unreadable: its header fields are "
        "kept, its body and attachments are not parsed (the raw mail is kept as received)",
    )
    quarantine_reason: (
        Literal["header_too_long", "too_deep", "too_many_parts", "unparsable", "unreadable_body"] | None
    ) = Field(None, description="Why the mail is quarantined; null when it is not")

    model_config = ConfigDict(populate_by_name=True)


class MessageDetail(MessageSummary):
    bcc: list[Address]
    reply_to: list[Address]
    text: str | None
    html: str | None = Field(
        description="Sanitized HTML. Inline `cid:` images link to `GET /v1/images/{token}`; "
        "remote images are links, or with `images=load` proxied images"
    )
    remote_images: int = Field(
        0, ge=0, description="Remote images in the html (blocked unless `images=load`): offer to load them"
    )
    attachments: list[Attachment]
    headers: Headers


class MessageList(BaseModel):
    items: list[MessageSummary]
    next_cursor: str | None


class Thread(BaseModel):
    id: str
    account_id: str
    subject: str | None = Field(description="null when every message a colleague sees withholds it")
    participants: list[Address]
    message_count: int
    last_date: str
    unread: bool
    unread_count: int
    snippet: str | None = Field(description="null when the newest message a colleague sees withholds it")


class ThreadList(BaseModel):
    items: list[Thread]
    next_cursor: str | None


class ThreadDetail(Thread):
    messages: list[MessageSummary]


class DetectedServer(BaseModel):
    """Settings to prefill; the user adds the password (``ServerIn``)."""

    host: str
    port: int = Field(ge=1, le=65535)
    security: Literal["ssl", "starttls", "none"]
    username: str


DetectionSource = Literal["known_provider", "mx", "guess"]


class DetectionSources(BaseModel):
    imap: DetectionSource
    smtp: DetectionSource


class Detection(BaseModel):
    email: str
    domain: str
    provider: str | None
    name: str | None = None
    imap: DetectedServer
    smtp: DetectedServer
    source: DetectionSources = Field(description="Where each setting came from")
    saves_sent: bool
    oauth: str | None


class Problem(BaseModel):
    """One invalid parameter or body field of a 422 ``invalid_request``."""

    loc: list[str] = Field(description='Where: e.g. ["body", "contacts", "3", "kind"]')
    msg: str
    type: str


class Error(BaseModel):
    code: str
    message: str
    details: list[Problem] | dict[str, Any] | None = Field(
        None,
        description="422 invalid_request: each problem; a refused send: the server's answer "
        "(smtp_code, reply, recipients)",
    )


class MessagePatchIn(_In):
    unread: StrictBool | None = Field(None, description="Mark read (false) or unread (true) at the provider")
    visibility: Visibility | None = Field(
        None, description="Share or hide this one mail (owner only); colleagues' views follow at once"
    )
    folder: str | None = Field(None, min_length=1, max_length=1024, description="Move into this folder")


class MessageChanged(MessageSummary):
    mirrored: bool = Field(description="False when the mail left the mirror (moved to an unsynced folder)")


class MessageChangedList(BaseModel):
    items: list[MessageChanged]
    next_cursor: str | None = None


class AddressIn(_In):
    name: str | None = Field(None, max_length=320)
    email: str = Field(max_length=320)


class AttachmentIn(_In):
    filename: str = Field(min_length=1, max_length=255)
    content_type: str = Field("application/octet-stream", max_length=255)
    content_base64: str


class SendIn(_In):
    to: list[str | AddressIn] = Field(default_factory=list, max_length=500)
    cc: list[str | AddressIn] = Field(default_factory=list, max_length=500)
    bcc: list[str | AddressIn] = Field(default_factory=list, max_length=500)
    subject: str = Field("", max_length=2000)
    text: str | None = None
    html: str | None = None
    reply_to: str | None = Field(None, max_length=64, description="Id of the message this answers")
    attachments: list[AttachmentIn] = Field(default_factory=list, max_length=100)


class RecipientResult(BaseModel):
    email: str
    status: Literal["accepted", "rejected"]
    code: int | None = None
    reply: str | None = None


class SentMessage(MessageSummary):
    """The summary of a sent mail; thread and folder are null when Sent is not mirrored."""

    thread_id: str | None  # type: ignore[assignment]
    folder: str | None = Field(None, description="Sent, or null when that folder is not synced")  # type: ignore[assignment]
    message_id: str
    mirrored: bool
    recipients: list[RecipientResult]


class ContactIn(_In):
    kind: Literal["customer", "intermediary"]
    name: str = Field("", max_length=500)
    emails: list[str] = Field(default_factory=list, max_length=100)
    visible_to: list[str] = Field(default_factory=list, max_length=1000, description='["*"] or user ids')


class ContactBatchItem(ContactIn):
    id: str = Field(min_length=1, max_length=128, pattern=CONTACT_ID_PATTERN)


class ContactBatchIn(_In):
    contacts: list[ContactBatchItem] = Field(max_length=500)


class Contact(BaseModel):
    id: str
    kind: Literal["customer", "intermediary"]
    name: str
    emails: list[str]
    visible_to: list[str]
    created_at: str
    updated_at: str


class ContactMatch(BaseModel):
    id: str
    kind: Literal["customer", "intermediary"]
    name: str
    emails: list[str]


class ContactSearchOut(BaseModel):
    items: list[ContactMatch] = Field(
        description="Matches, those whose name starts with `q` first, then by name"
    )
    has_more: bool = Field(description="More contacts match: a longer `q` narrows the list")


class ContactBatchResult(BaseModel):
    id: str
    status: Literal["created", "replaced"]


class ContactBatchOut(BaseModel):
    items: list[ContactBatchResult]


class ThreadLinkIn(_In):
    contact_id: str = Field(min_length=1, max_length=128, pattern=CONTACT_ID_PATTERN)
    follow: StrictBool = Field(False, description="Also link messages that join the thread later")


class ThreadLinkOut(BaseModel):
    thread_id: str
    contact_id: str
    follow: bool
    linked: list[str]


# ------------------------------------------------------------ users and tenants
class UserState(BaseModel):
    user_id: str
    state: Literal["active", "purging"] = Field(
        description="`purging` from the DELETE until every account of the user is purged"
    )
    accounts: int = Field(ge=0, description="The user's accounts (still being purged, while `purging`)")


class TenantDeletion(BaseModel):
    tenant_id: str
    state: Literal["purging"]


# ------------------------------------------------------------------ API keys
class ApiKeyIn(_In):
    name: str = Field(min_length=1, max_length=100, description="What the key is for, e.g. 'CRM production'")


class ApiKey(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="The key's first 12 characters, to recognise it")
    created_at: str
    last_used_at: str | None = Field(description="May lag by up to 5 minutes; null until first used")


class ApiKeyCreated(BaseModel):
    id: str
    name: str
    key: str = Field(description="The API key: shown only in this answer, store it now")
    prefix: str
    created_at: str


class ApiKeyList(BaseModel):
    items: list[ApiKey]


ORIGINS_TEXT = (
    "Browser origins (`https://crm.example`; `http` only on loopback) whose pages may call the API "
    "with user tokens (CORS); at most 20. Normalised as browsers send `Origin`"
)


class TenantSettingsOut(BaseModel):
    assign_bulk: bool = Field(
        description="Auto-assign bulk mail (newsletters, lists, automatic mail, auto-replies) to "
        "contacts; false (the default) keeps it out of contact histories"
    )
    allowed_origins: list[str] = Field(description=ORIGINS_TEXT)


class TenantSettingsIn(_In):
    assign_bulk: StrictBool | None = None
    allowed_origins: list[Annotated[str, Field(max_length=300)]] | None = Field(
        None, max_length=20, description=ORIGINS_TEXT + "; replaces the list when given"
    )
