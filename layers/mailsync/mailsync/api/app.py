"""HTTP API: routes and the one place where domain errors become HTTP responses.

Conventions (the public contract):

* Every ``/v1`` route needs ``Authorization: Bearer <tenant api key>`` (401
  ``unauthorized``) and ``X-User-Id`` (400 ``missing_user``), checked before the
  request body is validated. ``/v1/openapi.json`` is public: the spec holds no data.
* Errors are ``{"code", "message"}`` with a 4xx status; a 500 is a bug and is
  logged with its stack, never shown.
* Lists are ``{"items", "next_cursor"}`` with ``limit`` (1..200, default 50) and ``cursor``.

Built with Powertools ``APIGatewayHttpResolver`` with validation on, so the
OpenAPI spec is generated from the same types that validate requests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from mailsync.api import schemas
from mailsync.errors import InvalidRequest, MailsyncError, MissingUser, Unauthorized, UnsupportedMediaType
from mailsync.lazy import lazy_module
from mailsync.observability import logger
from mailsync.store import repo

if TYPE_CHECKING:
    from mailsync.domain import detect as detect_mod
    from mailsync.usecases import accounts, reading
else:  # loaded by the first request that needs them (cold starts)
    detect_mod = lazy_module("mailsync.domain.detect")
    accounts = lazy_module("mailsync.usecases.accounts")
    reading = lazy_module("mailsync.usecases.reading")

app = APIGatewayHttpResolver(enable_validation=True)

Limit = Annotated[int, Query(ge=1, le=200, description="Page size (default 50, max 200)")]
Cursor = Annotated[str | None, Query(max_length=2048, description="next_cursor of the previous page")]
# Ids become parts of DynamoDB keys (at most 2048 bytes): an overlong id is bad input, not a 500.
Id = Annotated[str, Path(min_length=1, max_length=128)]
# Routes that authenticate otherwise: the spec holds no data; the OAuth callback is
# bound to its tenant by the signed state; webhooks verify the provider's token.
PUBLIC_PATHS = {
    "/v1/openapi.json",
    "/v1/oauth/google/callback",
    "/v1/webhooks/google",
    "/v1/oauth/microsoft/callback",
    "/v1/webhooks/microsoft",
}


def _error(status: int, code: str, message: str, details: Any = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=body)


# ---------------------------------------------------------------- auth
def authenticate(resolver: APIGatewayHttpResolver) -> None:
    """Resolve the tenant from the API key and the acting user; store both in the context."""
    event = resolver.current_event
    if event.path in PUBLIC_PATHS or not event.path.startswith("/v1"):
        return
    auth = event.headers.get("authorization") or ""
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("missing bearer API key")
    tenant_id = repo.tenant_for_key(token.strip())
    if tenant_id is None:
        raise Unauthorized("unknown API key")
    user = (event.headers.get("x-user-id") or "").strip()
    if not user:
        raise MissingUser("the X-User-Id header names the tenant's acting user")
    if len(user) > 256 or "#" in user:
        raise MissingUser("X-User-Id must be at most 256 characters and must not contain '#'")
    resolver.append_context(tenant_id=tenant_id, user_id=user)


def check_body(resolver: APIGatewayHttpResolver) -> None:
    """The API speaks JSON only: refuse other media types and bodies that are not UTF-8."""
    event = resolver.current_event
    if not event.body:
        return
    content_type = (event.headers.get("content-type") or "").strip().lower()
    if content_type and not content_type.startswith("application/json"):
        raise UnsupportedMediaType("request bodies must be application/json")
    try:
        event.decoded_body  # noqa: B018 - decodes (base64 + UTF-8) or raises
    except ValueError as e:  # UnicodeDecodeError, binascii.Error
        raise InvalidRequest("the request body is not valid UTF-8 JSON") from e


def _auth_before_validation() -> None:
    # Powertools runs request validation before global middlewares; wrap the validation
    # middleware so that an unauthenticated caller gets 401, never a schema error.
    validate = getattr(app, "_request_validation_middleware", None)

    def auth_then_validate(resolver: APIGatewayHttpResolver, next_middleware: Any) -> Any:
        authenticate(resolver)
        check_body(resolver)
        return validate(resolver, next_middleware) if validate else next_middleware(resolver)

    app._request_validation_middleware = auth_then_validate  # type: ignore[assignment]


_auth_before_validation()


def ctx() -> tuple[str, str]:
    return app.context["tenant_id"], app.context["user_id"]


# -------------------------------------------------------------- errors
@app.exception_handler(MailsyncError)
def handle_domain_error(e: MailsyncError) -> Response:
    return _error(e.status, e.code, e.message, e.details)


@app.exception_handler(RequestValidationError)
def handle_validation_error(e: RequestValidationError) -> Response:
    errors = [
        {"loc": [str(x) for x in err.get("loc", ())], "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in e.errors()
    ]
    loc = [str(x) for x in errors[0]["loc"]] if errors else []
    msg = str(errors[0]["msg"]) if errors else "invalid request"
    where = ".".join(x for x in loc if x not in ("body", "query", "path"))
    return _error(422, "invalid_request", f"{where}: {msg}" if where else msg, errors)


@app.exception_handler(RequestUnsupportedContentType)
def handle_unsupported_content_type(_: RequestUnsupportedContentType) -> Response:
    return _error(415, "unsupported_media_type", "request bodies must be application/json")


@app.not_found
def handle_not_found(_: NotFoundError) -> Response:
    return _error(404, "not_found", "no such route")


@app.exception_handler(Exception)
def handle_unexpected(e: Exception) -> Response:
    logger.exception("unhandled error")
    return _error(500, "internal_error", "internal error")


# ------------------------------------------------------------ openapi
@app.get("/v1/openapi.json", include_in_schema=False)
def openapi_spec():  # noqa: ANN201 - a bare Response has no schema
    # The OpenAPI models are ~100 ms of imports that only this route needs.
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer

    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=app.get_openapi_json_schema(
            title="mailsync API",
            version="1.0.0",
            description="Mailbox mirror for CRMs. Authenticate with `Authorization: Bearer <api key>` and "
            "`X-User-Id: <user>`. Errors are `{code, message}`.",
            security_schemes={
                "apiKey": HTTPBearer(description="The tenant's API key"),
                "user": APIKey(
                    name="X-User-Id", description="The tenant's acting user", **{"in": APIKeyIn.header}
                ),
            },
            security=[{"apiKey": [], "user": []}],
        ),
    )


# -------------------------------------------------------------- routes
@app.get("/v1/providers/detect", tags=["accounts"], summary="Fill in IMAP/SMTP settings for an address")
def detect_provider(email: Annotated[str, Query(min_length=3, max_length=320)]) -> schemas.Detection:
    try:
        return schemas.Detection.model_validate(detect_mod.detect(email))
    except ValueError as e:
        raise MailsyncError(str(e), code="invalid_address") from e


@app.post(
    "/v1/accounts",
    tags=["accounts"],
    summary="Connect an IMAP/SMTP account (logs in first)",
    responses={201: {"description": "Created", "content": {"application/json": {"model": schemas.Account}}}},
)
def create_account(body: schemas.CreateAccountIn) -> Response[dict[str, Any]]:
    t, u = ctx()
    acc = accounts.create_account(t, u, body.model_dump(exclude_none=True))
    return Response(status_code=201, content_type=content_types.APPLICATION_JSON, body=acc)


@app.get("/v1/accounts", tags=["accounts"], summary="The caller's accounts")
def list_accounts(limit: Limit = 50, cursor: Cursor = None) -> schemas.AccountList:
    t, u = ctx()
    return schemas.AccountList.model_validate(accounts.list_accounts(t, u, limit=limit, cursor=cursor))


@app.get("/v1/accounts/<account_id>", tags=["accounts"], summary="One account with its sync progress")
def get_account(account_id: Id) -> schemas.Account:
    t, u = ctx()
    return schemas.Account.model_validate(accounts.get_account(t, u, account_id))


@app.get(
    "/v1/accounts/<account_id>/folders", tags=["accounts"], summary="Folders and whether they are synced"
)
def list_folders(account_id: Id) -> schemas.FolderList:
    t, u = ctx()
    return schemas.FolderList.model_validate({"items": accounts.list_folders(t, u, account_id)})


@app.patch("/v1/accounts/<account_id>/settings", tags=["accounts"], summary="Change folders, visibility, …")
def update_settings(account_id: Id, body: schemas.SettingsIn) -> schemas.Account:
    t, u = ctx()
    return schemas.Account.model_validate(
        accounts.update_settings(t, u, account_id, body.model_dump(exclude_unset=True))
    )


@app.post(
    "/v1/accounts/<account_id>/sync",
    tags=["accounts"],
    summary="Sync now",
    responses={
        202: {"description": "Queued", "content": {"application/json": {"model": schemas.SyncQueued}}}
    },
)
def sync_now(account_id: Id) -> Response[dict[str, Any]]:
    t, u = ctx()
    return Response(
        status_code=202,
        content_type=content_types.APPLICATION_JSON,
        body=accounts.request_sync(t, u, account_id),
    )


@app.post("/v1/accounts/<account_id>/pause", tags=["accounts"], summary="Stop syncing")
def pause(account_id: Id) -> schemas.Account:
    t, u = ctx()
    return schemas.Account.model_validate(accounts.pause(t, u, account_id))


@app.post("/v1/accounts/<account_id>/resume", tags=["accounts"], summary="Sync again")
def resume(account_id: Id) -> schemas.Account:
    t, u = ctx()
    return schemas.Account.model_validate(accounts.resume(t, u, account_id))


@app.delete("/v1/accounts/<account_id>", tags=["accounts"], summary="Disconnect and purge everything")
def delete_account(account_id: Id):  # noqa: ANN201 - 204, no body
    t, u = ctx()
    accounts.delete_account(t, u, account_id)
    return Response(status_code=204, body=None)


@app.get("/v1/messages", tags=["mail"], summary="Message summaries, newest first")
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
    t, u = ctx()
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


@app.get("/v1/messages/<message_id>", tags=["mail"], summary="One message with its body")
def get_message(message_id: Id) -> schemas.MessageDetail:
    t, u = ctx()
    return schemas.MessageDetail.model_validate(reading.get_message(t, u, message_id))


@app.get("/v1/threads", tags=["mail"], summary="Threads, most recent first")
def list_threads(limit: Limit = 50, cursor: Cursor = None) -> schemas.ThreadList:
    t, u = ctx()
    return schemas.ThreadList.model_validate(reading.list_threads(t, u, limit=limit, cursor=cursor))


@app.get("/v1/threads/<thread_id>", tags=["mail"], summary="A thread and its messages, oldest first")
def get_thread(thread_id: Id) -> schemas.ThreadDetail:
    t, u = ctx()
    return schemas.ThreadDetail.model_validate(reading.get_thread(t, u, thread_id))


# The mail client's routes (write-through) live in their own module.
from mailsync.api.client_routes import router as client_router  # noqa: E402
from mailsync.api.contact_routes import router as contact_router  # noqa: E402
from mailsync.api.oauth_routes import router as oauth_router  # noqa: E402

app.include_router(client_router)
app.include_router(contact_router)
app.include_router(oauth_router)
