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
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from mailsync.api import auth, cors
from mailsync.domain.events import UnknownEventType
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
        answer = cors.preflight(event)
        if answer is not None:
            return answer
        origin = cors.request_origin(event)
        try:
            who = auth.check_request(event)
        except MailsyncError as e:
            # An HTTP API (payload 2.0) response, as the resolver itself would build it. A
            # browser must be able to read a 401 (e.g. token_expired) to mint a new token.
            refused = {
                "statusCode": e.status,
                "headers": {"Content-Type": content_types.APPLICATION_JSON},
                "cookies": [],
                "body": json.dumps(_body(e.code, e.message, e.details), separators=(",", ":")),
                "isBase64Encoded": False,
            }
            return cors.decorate(refused, origin, cors.listed(origin))
        if who is not None:  # cleared by resolve() when the request is done
            self.append_context(caller=who)
        response = super().resolve(event, context)
        return cors.decorate(response, origin, who.allowed_origins if who is not None else ())

    def _convert_matches_into_route_keys(self, match: Any) -> dict[str, str]:
        """Path ids decoded (RFC 3986 §2.1) before they are validated and used: Powertools
        matches the raw path and hands over ``%40``, so a 43-character non-ASCII id (129
        bytes of ``%XX``) was refused as longer than 128 characters, and a percent-encoded
        ``a@b`` was another contact than ``a@b``."""
        return {k: unquote(v) for k, v in super()._convert_matches_into_route_keys(match).items()}

    def allowed_methods(self, path: str) -> list[str]:
        """The methods routed for ``path`` (empty if no route matches it under any method)."""
        routes = self._static_routes + self._dynamic_routes  # Powertools' route table
        return sorted({r.method for r in routes if r.rule.match(path)})

    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        """Powertools' document, with ``security: []`` on the public paths (the OAuth
        callbacks and webhooks authenticate otherwise); a route cannot say so itself, since
        Powertools drops an empty ``security`` list."""
        schema = super().get_openapi_schema(*args, **kwargs)
        for path, item in (schema.paths or {}).items():
            if auth.is_public_path(path):
                for method in ("get", "post", "put", "patch", "delete"):
                    op = getattr(item, method, None)
                    if op is not None:
                        op.security = []
        _add_links(schema)
        return schema


#: OpenAPI links (3.1 §4.8.20) for clients and stateful testing: what a created resource's
#: id feeds. (operationId of the source, its status) → {link name: (target, parameter, value)}.
LINKS: dict[tuple[str, str], dict[str, tuple[str, str, str]]] = {
    ("createAccount", "201"): {
        "GetAccount": ("getAccount", "account_id", "$response.body#/id"),
        "UpdateSettings": ("updateSettings", "account_id", "$response.body#/id"),
        "ListFolders": ("listFolders", "account_id", "$response.body#/id"),
        "ListSyncs": ("listSyncs", "account_id", "$response.body#/id"),
        "DeleteAccount": ("deleteAccount", "account_id", "$response.body#/id"),
    },
    ("putContact", "201"): {
        "GetContact": ("getContact", "contact_id", "$request.path.contact_id"),
        "DeleteContact": ("deleteContact", "contact_id", "$request.path.contact_id"),
    },
    ("putContact", "200"): {
        "GetContact": ("getContact", "contact_id", "$request.path.contact_id"),
        "DeleteContact": ("deleteContact", "contact_id", "$request.path.contact_id"),
    },
    ("createApiKey", "201"): {"DeleteApiKey": ("deleteApiKey", "key_id", "$response.body#/id")},
}


def _add_links(schema: Any) -> None:
    from aws_lambda_powertools.event_handler.openapi.models import Link

    ops = {
        op.operationId: op
        for item in (schema.paths or {}).values()
        for op in (getattr(item, m, None) for m in ("get", "post", "put", "patch", "delete"))
        if op is not None
    }
    for (source, status), links in LINKS.items():
        op = ops.get(source)
        responses = (op.responses if op is not None else None) or {}
        key = next((k for k in responses if str(k) == status), None)
        if key is None:
            raise AssertionError(f"link source {source} {status} is not in the spec")
        response = responses[key]
        for name, (target, param, value) in links.items():
            if target not in ops:
                raise AssertionError(f"link target {target} is not in the spec")
            link = Link(operationId=target, parameters={param: value})
            if isinstance(response, dict):
                response.setdefault("links", {})[name] = link
            else:
                response.links = {**(response.links or {}), name: link}


app = Resolver(enable_validation=True)


# -------------------------------------------------------------- errors
@app.exception_handler(MailsyncError)
def handle_domain_error(e: MailsyncError) -> Response:
    return _error(e.status, e.code, e.message, e.details)


@app.exception_handler(UnknownEventType)
def handle_unknown_event_type(e: UnknownEventType) -> Response:
    return _error(422, "unknown_event_type", str(e), {"unknown": e.names})


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
    """404 for an unknown path; 405 ``method_not_allowed`` with ``Allow`` (RFC 9110 §15.5.6)
    for a known path under a method it has no route for. The deployed HTTP API routes
    ``ANY /v1/{proxy+}`` to this function, so it answers every method, as the runner does."""
    allowed = app.allowed_methods(app.current_event.path)
    if allowed:
        response = _error(405, "method_not_allowed", f"{app.current_event.http_method} is not allowed here")
        response.headers["Allow"] = ", ".join(allowed)
        return response
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
from mailsync.api.event_routes import router as event_router  # noqa: E402
from mailsync.api.health_routes import router as health_router  # noqa: E402
from mailsync.api.image_routes import router as image_router  # noqa: E402
from mailsync.api.key_routes import router as key_router  # noqa: E402
from mailsync.api.mail_routes import router as mail_router  # noqa: E402
from mailsync.api.oauth_routes import router as oauth_router  # noqa: E402
from mailsync.api.token_routes import router as token_router  # noqa: E402
from mailsync.api.user_routes import router as user_router  # noqa: E402
from mailsync.api.webhook_routes import router as webhook_router  # noqa: E402

app.include_router(account_router)
app.include_router(health_router)
app.include_router(mail_router)
app.include_router(image_router)
app.include_router(client_router)
app.include_router(contact_router)
app.include_router(oauth_router)
app.include_router(user_router)
app.include_router(key_router)
app.include_router(token_router)
app.include_router(event_router)
app.include_router(webhook_router)
