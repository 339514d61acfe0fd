"""Routes of the tenant's API keys: create, list, delete (rotation without downtime).

Tenant routes: they act for the tenant, so they need the key but no ``X-User-Id``
(:data:`mailsync.api.auth.TENANT_PATHS`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response

from mailsync.api import schemas
from mailsync.api.params import TENANT_SECURITY, Id, error_response, json_response, tenant_caller
from mailsync.api.router import ApiRouter
from mailsync.lazy import lazy_module

if TYPE_CHECKING:
    from mailsync.usecases import keys
else:
    keys = lazy_module("mailsync.usecases.keys")

router = ApiRouter()

UNAUTHORIZED = error_response("`unauthorized`: no API key, or an unknown or deleted one")
INVALID = error_response("`invalid_request`: the body or the id does not match the schema")


@router.post(
    "/v1/api-keys",
    tags=["api keys"],
    summary="Create an API key (the key is shown only in this answer)",
    security=TENANT_SECURITY,
    responses={
        201: {"description": "Created", "content": {"application/json": {"model": schemas.ApiKeyCreated}}},
        401: UNAUTHORIZED,
        415: error_response("`unsupported_media_type`: the body is not application/json"),
        422: INVALID,
    },
)
def create_api_key(body: schemas.ApiKeyIn) -> Response[dict[str, Any]]:
    who = tenant_caller(router)
    return json_response(201, keys.create_key(who.tenant_id, body.name))


@router.get(
    "/v1/api-keys",
    tags=["api keys"],
    summary="The tenant's API keys (never the keys themselves); last_used_at lags up to 5 minutes",
    security=TENANT_SECURITY,
    responses={
        200: {"description": "The keys", "content": {"application/json": {"model": schemas.ApiKeyList}}},
        401: UNAUTHORIZED,
        422: INVALID,
    },
)
def list_api_keys() -> schemas.ApiKeyList:
    who = tenant_caller(router)
    return schemas.ApiKeyList.model_validate({"items": keys.list_keys(who.tenant_id)})


@router.delete(
    "/v1/api-keys/<key_id>",
    tags=["api keys"],
    summary="Delete an API key: its next request gets 401",
    security=TENANT_SECURITY,
    responses={
        204: {"description": "Deleted"},
        401: UNAUTHORIZED,
        404: error_response("`key_not_found`: the tenant has no key with this id"),
        409: error_response("`last_key`: the tenant's last key; create another one first"),
        422: INVALID,
    },
)
def delete_api_key(key_id: Id):  # noqa: ANN201 - 204, no body
    who = tenant_caller(router)
    keys.delete_key(who.tenant_id, key_id, who.key_id)
    return Response(status_code=204, body=None)
