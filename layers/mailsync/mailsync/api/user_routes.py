"""Tenant-level routes for users and the tenant itself: deleting a user purges their mail,
deleting the tenant purges everything (both answer 202 and purge in the background).

These routes act for the tenant, on the user named in the path: they need the tenant's
key and no ``X-User-Id``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Header

from mailsync.api import schemas
from mailsync.api.params import (
    TENANT_SECURITY,
    Id,
    error_response,
    error_responses,
    json_response,
    tenant_caller,
)
from mailsync.api.router import ApiRouter
from mailsync.lazy import lazy_module

if TYPE_CHECKING:
    from mailsync.usecases import lifecycle, tenant
else:  # loaded by the first request that needs it (cold starts)
    lifecycle = lazy_module("mailsync.usecases.lifecycle")
    tenant = lazy_module("mailsync.usecases.tenant")

router = ApiRouter()


@router.delete(
    "/v1/users/<user_id>",
    tags=["users"],
    security=TENANT_SECURITY,
    summary="Delete (deactivate) a user: purge every account, mail, link and assignment of theirs",
    description="Answers at once: the user's accounts leave every list and colleagues' views "
    "drop their mails before the answer. The purge itself runs in the background; "
    "`GET /v1/users/{user_id}` shows it. Repeating the call is harmless (and restarts a stalled purge). "
    "Tenant key only: no `X-User-Id`.",
    responses={
        202: {"description": "Purge started", "content": {"application/json": {"model": schemas.UserState}}},
        **error_responses(401, 422),
    },
)
def delete_user(user_id: Id) -> Response[dict[str, Any]]:
    return json_response(202, lifecycle.delete_user(tenant_caller(router).tenant_id, user_id))


@router.get(
    "/v1/users/<user_id>",
    tags=["users"],
    security=TENANT_SECURITY,
    summary="A user's state: active (has accounts) or purging",
    description="Tenant key only: no `X-User-Id`.",
    responses={
        200: {"description": "OK"},
        **error_responses(401, 422),
        404: error_response("`user_not_found`: the user has no accounts and no purge runs"),
    },
)
def get_user(user_id: Id) -> schemas.UserState:
    return schemas.UserState.model_validate(lifecycle.get_user(tenant_caller(router).tenant_id, user_id))


@router.delete(
    "/v1/tenant",
    tags=["tenant"],
    security=TENANT_SECURITY,
    summary="Delete the tenant: revoke every key at once, then purge all of its data",
    description="Needs `X-Confirm-Delete: <tenant_id>` (else 400 `confirmation_required`). Every key "
    "of the tenant answers 401 from the moment this call answers 202. Tenant key only: no `X-User-Id`.",
    responses={
        202: {
            "description": "Purge started",
            "content": {"application/json": {"model": schemas.TenantDeletion}},
        },
        **error_responses(401),
        400: error_response("`confirmation_required`: `X-Confirm-Delete` must name the tenant's id"),
    },
)
def delete_tenant(
    x_confirm_delete: Annotated[
        str | None, Header(alias="X-Confirm-Delete", description="The tenant's id, to confirm")
    ] = None,
) -> Response[dict[str, Any]]:
    return json_response(202, lifecycle.delete_tenant(tenant_caller(router).tenant_id, x_confirm_delete))


@router.get(
    "/v1/tenant/settings",
    tags=["tenant"],
    security=TENANT_SECURITY,
    summary="The tenant's settings",
    responses=error_responses(401),
)
def get_tenant_settings() -> schemas.TenantSettingsOut:
    return schemas.TenantSettingsOut.model_validate(tenant.get_settings(tenant_caller(router).tenant_id))


@router.patch(
    "/v1/tenant/settings",
    tags=["tenant"],
    security=TENANT_SECURITY,
    summary="Change the tenant's settings (assign_bulk: bulk mail in contact histories; allowed_origins: CORS)",
    responses={
        **error_responses(401),
        422: error_response(
            "Invalid body (`invalid_request`), or `invalid_origin`: an entry is not an https origin "
            "(scheme://host[:port], http on loopback only), or more than 20"
        ),
    },
)
def update_tenant_settings(body: schemas.TenantSettingsIn) -> schemas.TenantSettingsOut:
    found = tenant.update_settings(
        tenant_caller(router).tenant_id, assign_bulk=body.assign_bulk, allowed_origins=body.allowed_origins
    )
    return schemas.TenantSettingsOut.model_validate(found)
