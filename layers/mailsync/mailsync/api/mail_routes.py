"""Routes of the mail side (read): message and thread lists, one message, one thread."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from aws_lambda_powertools.event_handler.openapi.params import Query

from mailsync.api import schemas
from mailsync.api.params import Cursor, Id, Limit, caller, public_base_url
from mailsync.api.router import ApiRouter
from mailsync.errors import MailsyncError
from mailsync.lazy import lazy_module

if TYPE_CHECKING:
    from mailsync.usecases import reading
else:  # loaded by the first request that needs them (cold starts)
    reading = lazy_module("mailsync.usecases.reading")

router = ApiRouter()


@router.get("/v1/messages", tags=["mail"], summary="Message summaries, newest first")
def list_messages(
    account_id: Annotated[str | None, Query(max_length=64)] = None,
    folder: Annotated[str | None, Query(max_length=1024)] = None,
    thread_id: Annotated[str | None, Query(max_length=64)] = None,
    unassigned: Annotated[
        bool, Query(description="Only the caller's mails without any contact link")
    ] = False,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> schemas.MessageList:
    t, u = caller(router)
    if folder and not account_id:
        raise MailsyncError("folder needs account_id", code="invalid_request")
    if unassigned and (account_id or folder or thread_id):
        raise MailsyncError("unassigned cannot be combined with other filters", code="invalid_request")
    page = reading.list_messages(
        t,
        u,
        account_id=account_id,
        folder=folder,
        thread_id=thread_id,
        unassigned=unassigned,
        limit=limit,
        cursor=cursor,
    )
    return schemas.MessageList.model_validate(page)


@router.get("/v1/messages/<message_id>", tags=["mail"], summary="One message with its body")
def get_message(
    message_id: Id,
    images: Annotated[
        Literal["block", "load"],
        Query(
            description="`block` (default): remote images stay links, so no tracking pixel "
            "fires when a mail is read. `load`: they load through `GET /v1/images/{token}`, our "
            "proxy, so the sender never sees the reader's IP, browser or cookies. Inline "
            "`cid:` images always load, from the mail's own parts."
        ),
    ] = "block",
) -> schemas.MessageDetail:
    t, u = caller(router)
    found = reading.get_message(
        t, u, message_id, base_url=public_base_url(router), load_images=images == "load"
    )
    return schemas.MessageDetail.model_validate(found)


@router.get("/v1/threads", tags=["mail"], summary="Threads, most recent first")
def list_threads(limit: Limit = 50, cursor: Cursor = None) -> schemas.ThreadList:
    t, u = caller(router)
    return schemas.ThreadList.model_validate(reading.list_threads(t, u, limit=limit, cursor=cursor))


@router.get("/v1/threads/<thread_id>", tags=["mail"], summary="A thread and its messages, oldest first")
def get_thread(thread_id: Id) -> schemas.ThreadDetail:
    t, u = caller(router)
    return schemas.ThreadDetail.model_validate(reading.get_thread(t, u, thread_id))
