"""Routes of sync health: new credentials, resync, completeness check, sync history.

The account's state and ``health`` block come with ``GET /v1/accounts/{id}``; the README's
"Sync health" table lists the states, error codes and actions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.event_handler import Response

from mailsync.api import schemas
from mailsync.api.params import (
    LOGIN_CHECK_422,
    SYNCABLE_409,
    Id,
    caller,
    error_response,
    error_responses,
    json_response,
)
from mailsync.api.router import ApiRouter
from mailsync.lazy import lazy_module

if TYPE_CHECKING:
    from mailsync.usecases import recovery
else:  # loaded by the first request that needs it (cold starts)
    recovery = lazy_module("mailsync.usecases.recovery")

router = ApiRouter()


@router.put(
    "/v1/accounts/<account_id>/credentials",
    tags=["accounts"],
    summary="Give an IMAP account new passwords (logs in first; mails, ids, links and cursors kept)",
    description='`{"password"}` sets the IMAP and the SMTP password (known providers share one); '
    '`{"imap": {"password"}, "smtp": {"password"}}` sets either or both. The IMAP login is '
    "tried first: 422 `auth_failed` (or `connection_failed`) leaves everything as it was. On "
    "success the account is `active` at once (`initial_sync` before its first load; a paused "
    "account stays paused) and a sync is queued. Google and Microsoft accounts reconnect "
    "through their OAuth authorize routes instead (409 `oauth_account`). The SMTP password is "
    "checked by the next send.",
    responses={
        200: {
            "description": "Accepted and stored",
            "content": {"application/json": {"model": schemas.Account}},
        },
        **error_responses(400, 401, 404),
        409: error_response("`oauth_account`: a Google or Microsoft account reconnects through OAuth"),
        422: LOGIN_CHECK_422,
    },
)
def put_credentials(account_id: Id, body: schemas.CredentialsIn) -> schemas.Account:
    t, u = caller(router)
    return schemas.Account.model_validate(
        recovery.update_credentials(t, u, account_id, body.model_dump(exclude_none=True))
    )


@router.post(
    "/v1/accounts/<account_id>/resync",
    tags=["accounts"],
    summary="Reload every synced folder from the provider (ids, threads and links survive)",
    description="Drops the folder cursors, as a UIDVALIDITY change would, and queues a sync that "
    "reloads each synced folder; mails no longer at the provider leave the mirror when the "
    "reload completes. 409 `account_paused` or `auth_error` when the account cannot sync.",
    responses={
        202: {"description": "Queued", "content": {"application/json": {"model": schemas.ResyncQueued}}},
        **error_responses(400, 401, 404, 422),
        409: SYNCABLE_409,
    },
)
def resync(account_id: Id) -> Response[dict[str, Any]]:
    t, u = caller(router)
    return json_response(202, recovery.resync(t, u, account_id))


@router.post(
    "/v1/accounts/<account_id>/check",
    tags=["accounts"],
    summary="Compare the mirror with the mailbox now, and heal any difference",
    description="Queues a sync followed by the completeness check (ids only); the result "
    "appears in `health.check` and the sync history (trigger `check`). It also runs daily.",
    responses={
        202: {"description": "Queued", "content": {"application/json": {"model": schemas.SyncQueued}}},
        **error_responses(400, 401, 404, 422),
        409: SYNCABLE_409,
    },
)
def check(account_id: Id) -> Response[dict[str, Any]]:
    t, u = caller(router)
    return json_response(202, recovery.request_check(t, u, account_id))


@router.get(
    "/v1/accounts/<account_id>/syncs",
    tags=["accounts"],
    summary="The last 50 recorded sync runs, newest first",
    description="Runs that changed something, failed, or were asked for (manual, check) are "
    "recorded and kept 30 days; a poll that found nothing new adds no entry (the account's "
    "`health.last_success_at` moves instead).",
    responses=error_responses(400, 401, 404, 422),
)
def list_syncs(account_id: Id) -> schemas.SyncRunList:
    t, u = caller(router)
    return schemas.SyncRunList.model_validate(recovery.list_syncs(t, u, account_id))
