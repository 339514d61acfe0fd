"""HTTP API: the resolver, the one place where domain errors become HTTP responses,
and the OpenAPI document. Routes live in one router module per area.

Conventions (the public contract):

* Every ``/v1`` route needs ``Authorization: Bearer <tenant api key>`` (401
  ``unauthorized``) and, but for the tenant routes (``/v1/api-keys``, …),
  ``X-User-Id`` (400 ``missing_user``), checked before the request body is validated
  (:mod:`mailsync.api.auth`). ``/v1/openapi.json`` is public: the spec holds no data.
* Errors are ``{"code", "message"}`` with a 4xx status; a 500 is a bug and is
  logged with its stack, never shown.
* Lists are ``{"items", "next_cursor"}`` with ``limit`` (1..200, default 50) and
  ``cursor``; path ids are at most 128 characters (:mod:`mailsync.api.params`).

Built with Powertools ``APIGatewayHttpResolver`` with validation on, so the
OpenAPI spec is generated from the same types that validate requests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailsync.api import auth
from mailsync.errors import MailsyncError
from mailsync.observability import logger


def _body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return body


def _error(status: int, code: str, message: str, details: Any = None) -> Response:
    return Response(
        status_code=status, content_type=content_types.APPLICATION_JSON, body=_body(code, message, details)
    )


class Resolver(APIGatewayHttpResolver):
    """Authenticates every request before the resolver's pipeline (and its request
    validation) runs, using only Powertools' public ``resolve`` and ``append_context``."""

    def resolve(self, event: Mapping[str, Any], context: LambdaContext) -> dict[str, Any]:
        try:
            who = auth.check_request(event)
        except MailsyncError as e:
            # An HTTP API (payload 2.0) response, as the resolver itself would build it.
            return {
                "statusCode": e.status,
                "headers": {"Content-Type": content_types.APPLICATION_JSON},
                "cookies": [],
                "body": json.dumps(_body(e.code, e.message, e.details), separators=(",", ":")),
                "isBase64Encoded": False,
            }
        if who is not None:  # cleared by resolve() when the request is done
            self.append_context(caller=who)
        return super().resolve(event, context)

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        """Powertools' document, with ``security: []`` on the public paths (the OAuth
        callbacks and webhooks authenticate otherwise); a route cannot say so itself, since
        Powertools drops an empty ``security`` list."""
        schema = super().get_openapi_schema(*args, **kwargs)
        for path, item in (schema.paths or {}).items():
            if path in auth.PUBLIC_PATHS:
                for method in ("get", "post", "put", "patch", "delete"):
                    op = getattr(item, method, None)
                    if op is not None:
                        op.security = []
        return schema


app = Resolver(enable_validation=True)


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
def openapi_options() -> dict[str, Any]:
    """What the spec says beyond the routes: title, description and the security schemes
    (every route needs key and user; tenant routes declare the key alone)."""
    # The OpenAPI models are ~100 ms of imports that only the spec needs.
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn, HTTPBearer

    return {
        "title": "mailsync API",
        "version": "1.0.0",
        "description": "Mailbox mirror for CRMs. Authenticate with `Authorization: Bearer <api key>` and "
        "`X-User-Id: <user>` (tenant routes such as `/v1/api-keys`: the key alone). "
        "Errors are `{code, message}`.",
        "security_schemes": {
            "apiKey": HTTPBearer(description="The tenant's API key"),
            "user": APIKey(
                name="X-User-Id", description="The tenant's acting user", **{"in": APIKeyIn.header}
            ),
        },
        "security": [{"apiKey": [], "user": []}],
    }


@app.get("/v1/openapi.json", include_in_schema=False)
def openapi_spec():  # noqa: ANN201 - a bare Response has no schema
    return Response(
        status_code=200,
        content_type=content_types.APPLICATION_JSON,
        body=app.get_openapi_json_schema(**openapi_options()),
    )


# -------------------------------------------------------------- routes
from mailsync.api.account_routes import router as account_router  # noqa: E402
from mailsync.api.client_routes import router as client_router  # noqa: E402
from mailsync.api.contact_routes import router as contact_router  # noqa: E402
from mailsync.api.health_routes import router as health_router  # noqa: E402
from mailsync.api.key_routes import router as key_router  # noqa: E402
from mailsync.api.mail_routes import router as mail_router  # noqa: E402
from mailsync.api.oauth_routes import router as oauth_router  # noqa: E402
from mailsync.api.user_routes import router as user_router  # noqa: E402

app.include_router(account_router)
app.include_router(health_router)
app.include_router(mail_router)
app.include_router(client_router)
app.include_router(contact_router)
app.include_router(oauth_router)
app.include_router(user_router)
app.include_router(key_router)
