"""Routes of the account side: provider detection, connect, settings, sync, pause, delete."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from mailsync.api import schemas
from mailsync.api.params import (
    LOGIN_CHECK_422,
    SYNCABLE_409,
    Cursor,
    Id,
    Limit,
    caller,
    error_response,
    json_response,
)
from mailsync.api.router import ApiRouter
from mailsync.errors import MailsyncError
from mailsync.lazy import lazy_module

if TYPE_CHECKING:
    from mailsync.domain import detect as detect_mod
    from mailsync.usecases import accounts
else:  # loaded by the first request that needs them (cold starts)
    detect_mod = lazy_module("mailsync.domain.detect")
    accounts = lazy_module("mailsync.usecases.accounts")

router = ApiRouter()


@router.get("/v1/providers/detect", tags=["accounts"], summary="Fill in IMAP/SMTP settings for an address")
def detect_provider(email: Annotated[str, Query(min_length=3, max_length=320)]) -> schemas.Detection:
    try:
        return schemas.Detection.model_validate(detect_mod.detect(email))
    except ValueError as e:
        raise MailsyncError(str(e), code="invalid_address") from e


@router.post(
    "/v1/accounts",
    tags=["accounts"],
    summary="Connect an IMAP/SMTP account (logs in first)",
    responses={
        201: {"description": "Created", "content": {"application/json": {"model": schemas.Account}}},
        409: error_response(
            "`account_exists`: this address is already connected in this tenant; `user_purging`: "
            "this user's mail is being purged, connect again when it is done"
        ),
        422: LOGIN_CHECK_422,
    },
)
def create_account(body: schemas.CreateAccountIn) -> Response[dict[str, Any]]:
    t, u = caller(router)
    acc = accounts.create_account(t, u, body.model_dump(exclude_none=True))
    return json_response(201, acc)


@router.get("/v1/accounts", tags=["accounts"], summary="The caller's accounts")
def list_accounts(limit: Limit = 50, cursor: Cursor = None) -> schemas.AccountList:
    t, u = caller(router)
    return schemas.AccountList.model_validate(accounts.list_accounts(t, u, limit=limit, cursor=cursor))


@router.get("/v1/accounts/<account_id>", tags=["accounts"], summary="One account with its sync progress")
def get_account(account_id: Id) -> schemas.Account:
    t, u = caller(router)
    return schemas.Account.model_validate(accounts.get_account(t, u, account_id))


@router.get(
    "/v1/accounts/<account_id>/folders", tags=["accounts"], summary="Folders and whether they are synced"
)
def list_folders(account_id: Id) -> schemas.FolderList:
    t, u = caller(router)
    return schemas.FolderList.model_validate({"items": accounts.list_folders(t, u, account_id)})


@router.patch(
    "/v1/accounts/<account_id>/settings",
    tags=["accounts"],
    summary="Change folders, sharing level, signature, exclusion rules, …",
    description=(
        "Fields left out keep their value. A new `visibility` applies to mails stored from now on. "
        "New `exclude` rules remove the matching mails already mirrored (in the background, even "
        "while the account is paused); mails of a removed rule come back on the next resync."
    ),
    responses={
        422: error_response(
            "Invalid body (`invalid_request`), `unknown_folder`: a selected folder does not exist "
            "at the provider, `invalid_address` / `invalid_domain`: an exclusion entry is not an "
            "address / a domain, `too_many_entries`: more than 500 exclusion entries in all"
        )
    },
)
def update_settings(account_id: Id, body: schemas.SettingsIn) -> schemas.Account:
    t, u = caller(router)
    return schemas.Account.model_validate(
        accounts.update_settings(t, u, account_id, body.model_dump(exclude_unset=True))
    )


@router.post(
    "/v1/accounts/<account_id>/sync",
    tags=["accounts"],
    summary="Sync now",
    responses={
        202: {"description": "Queued", "content": {"application/json": {"model": schemas.SyncQueued}}},
        409: SYNCABLE_409,
    },
)
def sync_now(account_id: Id) -> Response[dict[str, Any]]:
    t, u = caller(router)
    return json_response(202, accounts.request_sync(t, u, account_id))


@router.post("/v1/accounts/<account_id>/pause", tags=["accounts"], summary="Stop syncing")
def pause(account_id: Id) -> schemas.Account:
    t, u = caller(router)
    return schemas.Account.model_validate(accounts.pause(t, u, account_id))


@router.post("/v1/accounts/<account_id>/resume", tags=["accounts"], summary="Sync again")
def resume(account_id: Id) -> schemas.Account:
    t, u = caller(router)
    return schemas.Account.model_validate(accounts.resume(t, u, account_id))


@router.delete(
    "/v1/accounts/<account_id>", tags=["accounts"], summary="Disconnect and purge everything", status_code=204
)
def delete_account(account_id: Id):  # noqa: ANN201 - 204, no body
    t, u = caller(router)
    accounts.delete_account(t, u, account_id)
    return Response(status_code=204, body=None)
