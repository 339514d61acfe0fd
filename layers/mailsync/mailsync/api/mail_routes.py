"""Routes of the mail side (read): message and thread lists, one message, one thread."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from aws_lambda_powertools.event_handler.openapi.params import Query

from mailsync.api import schemas, suggestion_schemas
from mailsync.api.params import Cursor, Id, Limit, caller, error_response, public_base_url
from mailsync.api.router import ApiRouter
from mailsync.errors import MailsyncError, Unprocessable
from mailsync.lazy import lazy_module

if TYPE_CHECKING:
    from mailsync.usecases import reading, suggestions
else:  # loaded by the first request that needs them (cold starts)
    reading = lazy_module("mailsync.usecases.reading")
    suggestions = lazy_module("mailsync.usecases.suggestions")

#: A page with suggestions holds at most this many mails (each costs index reads).
SUGGESTED_PAGE = 50

router = ApiRouter()


@router.get(
    "/v1/messages",
    tags=["mail"],
    summary="Message summaries, newest first",
    responses={
        422: error_response(
            "Invalid parameters (`invalid_request`), or `suggestions_need_unassigned`: "
            "`with_suggestions=true` is answered only together with `unassigned=true`"
        )
    },
)
def list_messages(
    account_id: Annotated[str | None, Query(max_length=64)] = None,
    folder: Annotated[str | None, Query(max_length=1024)] = None,
    thread_id: Annotated[str | None, Query(max_length=64)] = None,
    unassigned: Annotated[
        bool, Query(description="Only the caller's mails without any contact link")
    ] = False,
    with_suggestions: Annotated[
        bool,
        Query(
            description="With `unassigned=true` only (else 422 `suggestions_need_unassigned`): each "
            "item gets `suggestion`, the best contact to assign it to or null, so a UI can offer "
            f'"assign to X?" in one click. Such a page holds at most {SUGGESTED_PAGE} mails '
            "(`next_cursor` goes on)"
        ),
    ] = False,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> schemas.MessageList:
    t, u = caller(router)
    if folder and not account_id:
        raise MailsyncError("folder needs account_id", code="invalid_request")
    if unassigned and (account_id or folder or thread_id):
        raise MailsyncError("unassigned cannot be combined with other filters", code="invalid_request")
    if with_suggestions and not unassigned:
        raise Unprocessable(
            "with_suggestions needs unassigned=true: only unassigned mail gets suggestions",
            code="suggestions_need_unassigned",
        )
    page = reading.list_messages(
        t,
        u,
        account_id=account_id,
        folder=folder,
        thread_id=thread_id,
        unassigned=unassigned,
        limit=min(limit, SUGGESTED_PAGE) if with_suggestions else limit,
        cursor=cursor,
        suggest=suggestions.top_suggestions if with_suggestions else None,
    )
    return schemas.MessageList.model_validate(page)


@router.get(
    "/v1/messages/<message_id>/suggestions",
    tags=["mail"],
    summary="Contacts the caller's message probably belongs to (at most 5, best first)",
    description="For assigning a mail by hand: each contact the caller may see with a `score` and "
    "its `reasons`. Only the mail's owner asks (anyone else: 404). Contacts the mail is linked to "
    "already are left out.",
)
def message_suggestions(message_id: Id) -> suggestion_schemas.SuggestionList:
    t, u = caller(router)
    items = suggestions.suggestions_for(t, u, message_id)
    return suggestion_schemas.SuggestionList.model_validate({"items": items})


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
