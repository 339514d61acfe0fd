"""OpenAPI models of the event feed (``GET /v1/events``) and of the events themselves."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from mailsync.api.schemas import AccountError, AccountState, Action, Address, Link, RecipientResult

EventType = Literal[
    "message.created",
    "message.updated",
    "message.deleted",
    "thread.linked",
    "thread.unlinked",
    "account.connected",
    "account.deleted",
    "account.initial_sync_completed",
    "account.state_changed",
    "send.succeeded",
    "send.failed",
    "user.purged",
    "ping",
]

DATA_DOC = (
    "By type: `message.created`: the message summary (`id`, `account_id`, `owner`, `thread_id`, "
    "`folder`, `subject`, `from`, `to`, `cc`, `date`, `snippet`, `unread`, `links`, `visibility`); "
    "`message.updated`: the summary plus `changes` (a subset of `unread`, `folder`, `links`); "
    "`message.deleted`: `id`, `account_id`, `thread_id`, `reason` (`deleted_at_provider` | "
    "`moved_to_unsynced_folder` | `folder_unsynced` | `deleted_by_user` | `excluded`); `thread.linked`, "
    "`thread.unlinked`: `thread_id`, `contact_id`, `message_ids`, `source`; `account.connected`, "
    "`account.deleted`, `account.initial_sync_completed`: `account_id`, `owner`, `email`, `provider`; "
    "`account.state_changed`: `account_id`, `owner`, `from`, `to`, `error`, `action`; "
    "`send.succeeded`, `send.failed`: `account_id`, `owner`, `message_id`, `recipients`, `error`; "
    "`user.purged`: `user_id`, `accounts`; `ping`: `{}`. Never a body, an attachment or a credential."
)


class MessageEventData(BaseModel):
    """``message.created`` (and, with ``changes``, ``message.updated``)."""

    id: str
    account_id: str
    owner: str
    thread_id: str
    folder: str
    subject: str
    from_: list[Address] = Field(alias="from")
    to: list[Address]
    cc: list[Address]
    date: str
    snippet: str
    unread: bool
    links: list[Link]
    visibility: str
    changes: list[Literal["unread", "folder", "links"]] | None = Field(
        None, description="`message.updated` only: what changed"
    )


class MessageDeletedData(BaseModel):
    id: str
    account_id: str
    thread_id: str
    reason: Literal[
        "deleted_at_provider", "moved_to_unsynced_folder", "folder_unsynced", "deleted_by_user", "excluded"
    ]


class ThreadLinkData(BaseModel):
    thread_id: str
    contact_id: str
    message_ids: list[str] = Field(description="The messages this hand-made link covers (its snapshot)")
    source: Literal["manual"]
    follow: bool | None = Field(None, description="`thread.linked`: later messages of the thread join too")


class AccountEventData(BaseModel):
    """``account.connected``, ``account.deleted``, ``account.initial_sync_completed``."""

    account_id: str
    owner: str
    email: str
    provider: Literal["imap", "google", "microsoft"]


class AccountStateData(BaseModel):
    account_id: str
    owner: str
    from_: AccountState = Field(alias="from")
    to: AccountState
    error: AccountError | None
    action: Action | None


class SendError(BaseModel):
    code: str
    message: str


class SendEventData(BaseModel):
    account_id: str
    owner: str
    message_id: str | None = Field(description="The sent mail's Message-ID header")
    recipients: list[RecipientResult]
    error: SendError | None = Field(description="`send.failed`: the error the send answered")


class UserPurgedData(BaseModel):
    user_id: str
    accounts: list[str] = Field(description="The ids of the accounts that were purged")


class PingData(BaseModel):
    pass


EventData = (
    MessageEventData
    | MessageDeletedData
    | ThreadLinkData
    | AccountStateData
    | AccountEventData
    | SendEventData
    | UserPurgedData
    | PingData
)


class EventOut(BaseModel):
    id: str = Field(description="Stable: the same change always has the same id (deduplicate by it)")
    type: EventType
    created_at: str = Field(description="When the change was committed (ISO 8601, UTC)")
    data: EventData = Field(description=DATA_DOC)


class EventPage(BaseModel):
    items: list[EventOut] = Field(description="Oldest first")
    next_cursor: str = Field(
        description="Always set: pass it as `after` to continue; keep the last one to resume later"
    )
    has_more: bool = Field(description="More events can be read now (else poll again later)")
