"""The event feed: ``GET /v1/events`` (tenant route: the key alone, no ``X-User-Id``).

A consumer that pages with ``next_cursor`` and later resumes from its last cursor sees
every event of the last 30 days at least once, oldest first, never skipping one
(``store/events.py`` says how).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query

from mailsync.api import event_schemas
from mailsync.api.params import TENANT_SECURITY, error_response, error_responses, tenant_caller
from mailsync.api.router import ApiRouter
from mailsync.lazy import lazy_module

if TYPE_CHECKING:
    from mailsync.usecases import events
else:
    events = lazy_module("mailsync.usecases.events")

router = ApiRouter()

Types = Annotated[
    str | None,
    Query(
        max_length=1024,
        description="Comma-separated event types to return (default: all); an unknown one is 422 "
        "`unknown_event_type`. Filtered-out events are passed over: the cursor moves past them.",
    ),
]
After = Annotated[
    str | None,
    Query(max_length=2048, description="`next_cursor` of the previous page (absent: the oldest event kept)"),
]
FeedLimit = Annotated[int, Query(ge=1, le=500, description="Events per page (default 100, max 500)")]


@router.get(
    "/v1/events",
    tags=["events"],
    security=TENANT_SECURITY,
    summary="The tenant's events after a cursor, oldest first (the last 30 days)",
    description="Catch up after an outage without depending on webhook retries: start without "
    "`after` (the oldest event kept), follow `next_cursor` while `has_more`, store the last "
    "`next_cursor` and resume from it. Events are delivered at least once: deduplicate by `id`. "
    "An event appears here a moment after its change (the stream is read within seconds). "
    "Tenant key only: no `X-User-Id`.",
    responses={
        200: {
            "description": "A page of events",
            "content": {"application/json": {"model": event_schemas.EventPage}},
        },
        400: error_response("`invalid_cursor`: `after` is not a cursor of this feed"),
        422: error_response(
            "`unknown_event_type`: `types` names a type that does not exist; `invalid_request`: "
            "a parameter is out of range"
        ),
        **error_responses(401),
    },
)
def list_events(
    after: After = None,
    types: Types = None,
    limit: FeedLimit = 100,
) -> event_schemas.EventPage:
    who = tenant_caller(router)
    wanted = [t.strip() for t in (types or "").split(",") if t.strip()]
    page = events.feed(who.tenant_id, after, wanted, limit)
    return event_schemas.EventPage.model_validate(
        {
            "items": [e.as_dict() for e in page.items],
            "next_cursor": page.next_cursor,
            "has_more": page.has_more,
        }
    )
