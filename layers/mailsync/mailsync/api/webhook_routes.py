"""Routes of the tenant's webhook endpoints: register, list, change, delete, rotate the
secret, send a test ping, list and retry deliveries.

Tenant routes (:data:`mailsync.api.auth.TENANT_PATHS`): the key alone, no ``X-User-Id``.
Signing, retries and delivery records: README "Webhooks", ``usecases/webhooks.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse

from mailsync.api import webhook_schemas as ws
from mailsync.api.params import (
    TENANT_SECURITY,
    Cursor,
    Id,
    Limit,
    error_response,
    json_response,
    tenant_caller,
)
from mailsync.api.router import ApiRouter
from mailsync.lazy import lazy_module

if TYPE_CHECKING:
    from mailsync.usecases import webhook_endpoints as endpoints
else:
    endpoints = lazy_module("mailsync.usecases.webhook_endpoints")

router = ApiRouter()
TAGS = ["webhooks"]
BASE = "/v1/webhook-endpoints"

UNAUTHORIZED = error_response("`unauthorized`: no API key, or an unknown or deleted one")
NOT_FOUND = error_response("`not_found`: the tenant has no webhook endpoint (or delivery) with this id")
MEDIA = error_response("`unsupported_media_type`: the body is not application/json")
URL_422 = error_response(
    "`invalid_request` (body or id), `unknown_event_type` (an event type that does not exist), "
    "`invalid_url` (not https, user info, a fragment, over 2048 characters), `host_not_allowed` "
    "(the host resolves to a private, loopback, link-local or metadata address), "
    "`host_unresolvable`"
)
INVALID = error_response("`invalid_request`: a parameter or the id does not match the schema")
DISABLED = error_response("`endpoint_disabled`: the endpoint is disabled; PATCH `enabled: true` first")
Status = Annotated[
    Literal["pending", "succeeded", "failed"] | None, Query(description="Only the deliveries in this status")
]


def _ok(model: type[Any], text: str = "OK") -> OpenAPIResponse:
    return {"description": text, "content": {"application/json": {"model": model}}}


@router.post(
    BASE,
    tags=TAGS,
    summary="Register a webhook endpoint (its signing secret is shown only in this answer)",
    security=TENANT_SECURITY,
    responses={
        201: _ok(ws.WebhookEndpointCreated, "Created"),
        401: UNAUTHORIZED,
        409: error_response("`endpoint_limit`: the tenant has 20 endpoints already"),
        415: MEDIA,
        422: URL_422,
    },
)
def create_webhook_endpoint(body: ws.WebhookEndpointIn) -> Response[dict[str, Any]]:
    who = tenant_caller(router)
    return json_response(
        201, endpoints.create_endpoint(who.tenant_id, body.url, body.events, body.description)
    )


@router.get(
    BASE,
    tags=TAGS,
    summary="The tenant's webhook endpoints (never their secrets)",
    security=TENANT_SECURITY,
    responses={200: _ok(ws.WebhookEndpointList), 401: UNAUTHORIZED, 422: INVALID},
)
def list_webhook_endpoints() -> ws.WebhookEndpointList:
    who = tenant_caller(router)
    return ws.WebhookEndpointList.model_validate({"items": endpoints.list_endpoints(who.tenant_id)})


@router.get(
    f"{BASE}/<endpoint_id>",
    tags=TAGS,
    summary="One webhook endpoint",
    security=TENANT_SECURITY,
    responses={200: _ok(ws.WebhookEndpoint), 401: UNAUTHORIZED, 404: NOT_FOUND, 422: INVALID},
)
def get_webhook_endpoint(endpoint_id: Id) -> ws.WebhookEndpoint:
    who = tenant_caller(router)
    return ws.WebhookEndpoint.model_validate(endpoints.get_endpoint(who.tenant_id, endpoint_id))


@router.patch(
    f"{BASE}/<endpoint_id>",
    tags=TAGS,
    summary="Change url, events, description or enabled (true turns a disabled endpoint back on)",
    security=TENANT_SECURITY,
    responses={200: _ok(ws.WebhookEndpoint), 401: UNAUTHORIZED, 404: NOT_FOUND, 415: MEDIA, 422: URL_422},
)
def update_webhook_endpoint(endpoint_id: Id, body: ws.WebhookEndpointPatchIn) -> ws.WebhookEndpoint:
    who = tenant_caller(router)
    changed = endpoints.update_endpoint(who.tenant_id, endpoint_id, body.model_dump(exclude_unset=True))
    return ws.WebhookEndpoint.model_validate(changed)


@router.delete(
    f"{BASE}/<endpoint_id>",
    tags=TAGS,
    summary="Delete a webhook endpoint and its delivery records",
    security=TENANT_SECURITY,
    responses={204: {"description": "Deleted"}, 401: UNAUTHORIZED, 404: NOT_FOUND, 422: INVALID},
)
def delete_webhook_endpoint(endpoint_id: Id):  # noqa: ANN201 - 204, no body
    who = tenant_caller(router)
    endpoints.delete_endpoint(who.tenant_id, endpoint_id)
    return Response(status_code=204, body=None)


@router.post(
    f"{BASE}/<endpoint_id>/rotate-secret",
    tags=TAGS,
    summary="A new signing secret; for 24 hours deliveries are signed with the old and the new one",
    security=TENANT_SECURITY,
    responses={200: _ok(ws.WebhookSecret), 401: UNAUTHORIZED, 404: NOT_FOUND, 415: MEDIA, 422: INVALID},
)
def rotate_webhook_secret(endpoint_id: Id) -> ws.WebhookSecret:
    who = tenant_caller(router)
    return ws.WebhookSecret.model_validate(endpoints.rotate_secret(who.tenant_id, endpoint_id))


@router.post(
    f"{BASE}/<endpoint_id>/test",
    tags=TAGS,
    summary="Send a `ping` event (data `{}`) to this endpoint (a delivery like any other)",
    security=TENANT_SECURITY,
    responses={
        202: _ok(ws.WebhookQueued, "Queued"),
        401: UNAUTHORIZED,
        404: NOT_FOUND,
        409: DISABLED,
        415: MEDIA,
        422: INVALID,
    },
)
def send_webhook_test(endpoint_id: Id) -> Response[dict[str, Any]]:
    who = tenant_caller(router)
    return json_response(202, endpoints.send_test(who.tenant_id, endpoint_id))


@router.get(
    f"{BASE}/<endpoint_id>/deliveries",
    tags=TAGS,
    summary="The endpoint's deliveries, newest first (kept 30 days)",
    description="A delivery is listed from its first answer on (normally within a second of its event); "
    "a first attempt still waiting in the queue is not listed yet.",
    security=TENANT_SECURITY,
    responses={
        200: _ok(ws.WebhookDeliveryList),
        400: error_response("`invalid_cursor`: the cursor is not one of this list's"),
        401: UNAUTHORIZED,
        404: NOT_FOUND,
        422: INVALID,
    },
)
def list_webhook_deliveries(
    endpoint_id: Id, status: Status = None, limit: Limit = 50, cursor: Cursor = None
) -> ws.WebhookDeliveryList:
    who = tenant_caller(router)
    page = endpoints.list_deliveries(who.tenant_id, endpoint_id, status, limit, cursor)
    return ws.WebhookDeliveryList.model_validate(page)


@router.post(
    f"{BASE}/<endpoint_id>/deliveries/<delivery_id>/retry",
    tags=TAGS,
    summary="Send a finished delivery once more (one attempt; a failure ends it `failed` again)",
    security=TENANT_SECURITY,
    responses={
        202: _ok(ws.WebhookQueued, "Queued"),
        401: UNAUTHORIZED,
        404: NOT_FOUND,
        409: error_response(
            "`delivery_pending`: its next attempt is scheduled already; `endpoint_disabled`: enable it first"
        ),
        415: MEDIA,
        422: INVALID,
    },
)
def retry_webhook_delivery(endpoint_id: Id, delivery_id: Id) -> Response[dict[str, Any]]:
    who = tenant_caller(router)
    return json_response(202, endpoints.retry_delivery(who.tenant_id, endpoint_id, delivery_id))
