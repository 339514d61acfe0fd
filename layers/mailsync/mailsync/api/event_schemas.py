"""OpenAPI models of the event feed (``GET /v1/events``) and of the events themselves."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

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
    "`moved_to_unsynced_folder` | `folder_unsynced` | `deleted_by_user`); `thread.linked`, "
    "`thread.unlinked`: `thread_id`, `contact_id`, `message_ids`, `source`; `account.connected`, "
    "`account.deleted`, `account.initial_sync_completed`: `account_id`, `owner`, `email`, `provider`; "
    "`account.state_changed`: `account_id`, `owner`, `from`, `to`, `error`, `action`; "
    "`send.succeeded`, `send.failed`: `account_id`, `owner`, `message_id`, `recipients`, `error`; "
    "`user.purged`: `user_id`, `accounts`; `ping`: `{}`. Never a body, an attachment or a credential."
)


class EventOut(BaseModel):
    id: str = Field(description="Stable: the same change always has the same id (deduplicate by it)")
    type: EventType
    created_at: str = Field(description="When the change was committed (ISO 8601, UTC)")
    data: dict[str, Any] = Field(description=DATA_DOC)


class EventPage(BaseModel):
    items: list[EventOut] = Field(description="Oldest first")
    next_cursor: str = Field(
        description="Always set: pass it as `after` to continue; keep the last one to resume later"
    )
    has_more: bool = Field(description="More events can be read now (else poll again later)")
