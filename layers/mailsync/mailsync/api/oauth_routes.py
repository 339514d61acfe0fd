"""Hosted OAuth (Google Workspace, Microsoft 365) and the provider webhooks (Gmail push via
Pub/Sub, Graph change notifications). The callbacks and webhooks are public paths: the
signed state, or the provider's token / clientState, authenticates them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel

from mailsync.api.params import caller, error_response, public_base_url
from mailsync.api.router import ApiRouter
from mailsync.lazy import lazy_module

if TYPE_CHECKING:
    from mailsync.usecases import google, microsoft
else:
    google = lazy_module("mailsync.usecases.google")
    microsoft = lazy_module("mailsync.usecases.microsoft")

router = ApiRouter()

_AUTHORIZE = {
    422: error_response(
        "Bad redirect_uri (`invalid_request`), or not on the allowlist (`redirect_not_allowed`)"
    ),
    503: error_response("The provider's OAuth client is not configured (`not_configured`)"),
}
_CALLBACK: dict[int, OpenAPIResponse] = {
    302: {
        "description": "To the tenant's redirect_uri with `account_id`, or `error` (workspace_required, "
        "exchange_failed, invalid_token, state_expired, invalid_state, access_denied, …)",
        "content": {},
    },
    400: error_response("A state we cannot trust (`invalid_state`): no redirect"),
    503: error_response("The provider's OAuth client is not configured (`not_configured`)"),
}


class AuthorizeUrl(BaseModel):
    url: str


def _resolver():  # noqa: ANN202
    assert router.api_resolver is not None
    return router.api_resolver


def _base_url() -> str:
    return public_base_url(router)


def _callback_url(provider: str = "google") -> str:
    return f"{_base_url()}/v1/oauth/{provider}/callback"


@router.get(
    "/v1/oauth/google/authorize",
    tags=["oauth"],
    summary="The Google authorization URL (PKCE, state)",
    responses=_AUTHORIZE,
)
def google_authorize(
    redirect_uri: Annotated[str, Query(min_length=8, max_length=2048)],
    backfill_days: Annotated[int, Query(ge=0, le=30, description="Also load this many days before now")] = 0,
) -> AuthorizeUrl:
    t, u = caller(router)
    return AuthorizeUrl.model_validate(google.authorize(t, u, redirect_uri, _callback_url(), backfill_days))


@router.get(
    "/v1/oauth/google/callback",
    tags=["oauth"],
    summary="Google redirects here; we redirect to the tenant's redirect_uri with account_id or error",
    responses=_CALLBACK,
)
def google_callback():  # noqa: ANN201 - a 302
    params = dict(_resolver().current_event.query_string_parameters or {})
    location = google.callback(params)
    return Response(status_code=302, headers={"Location": location}, body=None)


@router.post(
    "/v1/webhooks/google",
    tags=["webhooks"],
    summary="Gmail Pub/Sub push (OIDC-authenticated)",
    responses={
        204: {
            "description": "Taken (a sync of the mailbox is queued, or the push was for nobody)",
            "content": {},
        },
        401: error_response("Missing or invalid Pub/Sub OIDC token, audience or sender (`unauthorized`)"),
    },
)
def google_webhook():  # noqa: ANN201 - 204
    event = _resolver().current_event
    google.handle_push(event.headers.get("authorization") or "", event.decoded_body)
    return Response(status_code=204, body=None)


@router.get(
    "/v1/oauth/microsoft/authorize",
    tags=["oauth"],
    summary="The Microsoft 365 authorization URL (msal auth code flow, PKCE, state)",
    responses=_AUTHORIZE,
)
def microsoft_authorize(
    redirect_uri: Annotated[str, Query(min_length=8, max_length=2048)],
    backfill_days: Annotated[int, Query(ge=0, le=30, description="Also load this many days before now")] = 0,
) -> AuthorizeUrl:
    t, u = caller(router)
    return AuthorizeUrl.model_validate(
        microsoft.authorize(t, u, redirect_uri, _callback_url("microsoft"), backfill_days)
    )


@router.get(
    "/v1/oauth/microsoft/callback",
    tags=["oauth"],
    summary="Microsoft redirects here; we redirect to the tenant's redirect_uri with account_id or error",
    responses=_CALLBACK,
)
def microsoft_callback():  # noqa: ANN201 - a 302
    params = dict(_resolver().current_event.query_string_parameters or {})
    location = microsoft.callback(params, notification_url=_base_url() + microsoft.WEBHOOK_PATH)
    return Response(status_code=302, headers={"Location": location}, body=None)


@router.post(
    "/v1/webhooks/microsoft",
    tags=["webhooks"],
    summary="Graph change notifications and lifecycle events (validation handshake, clientState)",
    responses={
        200: {
            "description": "The validation handshake: the validationToken echoed",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        202: {"description": "Taken (notifications with a wrong clientState are dropped)", "content": {}},
    },
)
def microsoft_webhook():  # noqa: ANN201 - 200 text/plain (handshake) or 202
    event = _resolver().current_event
    status, text = microsoft.handle_notification(
        dict(event.query_string_parameters or {}), event.decoded_body
    )
    return Response(status_code=status, content_type="text/plain", body=text)
