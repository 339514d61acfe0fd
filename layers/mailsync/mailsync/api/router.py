"""The router every route module uses: what the OpenAPI document says of each operation by
default, so that no route can leave it out.

Tenants generate clients from the spec, so every operation gets:

* a clean ``operationId``: the handler's name in camelCase (``list_accounts`` →
  ``listAccounts``), instead of Powertools' ``list_accounts_v1_accounts_get``;
* its security: none on the public paths (the OAuth callbacks and the webhooks, which
  authenticate otherwise, ``security: []``), the key alone on tenant routes, key and user
  elsewhere;
* the error answers every route of its kind can give, each with the ``{code, message}``
  body: 401 and (user routes) 400 ``missing_user`` before any route runs, 422 for invalid
  parameters, 404 where the path names a resource or the query an ``account_id``, 415
  where a body is read. A route lists its other answers (409, 502, 503, …) itself;
  explicit entries win;
* no body on a 204 (RFC 9110 §15.3.5): Powertools would fill in the return model as
  ``application/json``, so a 204 entry gets an empty ``content``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from mailsync.api.auth import TENANT_PATHS, is_public_path
from mailsync.api.params import TENANT_SECURITY, error_response

_TEXT = {
    400: "The X-User-Id header is missing (`missing_user`)",
    401: "Missing, unknown or revoked API key or user token (`unauthorized`), or an expired user "
    "token (`token_expired`)",
    404: "No such resource, or not visible to the caller (`not_found`)",
    415: "The body is not application/json (`unsupported_media_type`)",
    422: "Invalid parameters or body (`invalid_request`)",
    503: "`account_busy`: a sync has held this account's mirror for over 30 s; nothing changed, retry",
}

_TENANT_403 = "`tenant_key_required`: a user token cannot reach tenant routes; use the tenant's API key"
_USER_403 = "`user_mismatch`: a user token acts for its own user; leave `X-User-Id` out or name that user"

# Writes that change mirrored mail (client, links, contacts' retroactive links, credentials)
# take the account's mirror lock, and may answer 503 ``account_busy``.
_MIRROR_WRITERS = ("/v1/accounts/", "/v1/messages/", "/v1/threads/", "/v1/contacts")


def camel_operation_id(name: str) -> str:
    """``list_accounts`` → ``listAccounts``."""
    head, *rest = name.strip("_").split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def default_responses(
    rule: str, methods: tuple[str, ...], query_account: bool = False
) -> dict[int, OpenAPIResponse]:
    statuses = [422]
    tenant_route = rule.startswith(TENANT_PATHS)
    if not is_public_path(rule):
        statuses += [401, 403]
        if not tenant_route:
            statuses.append(400)
    if re.search(r"<\w+>", rule) or query_account:  # an unknown account_id filter is a 404
        statuses.append(404)
    writes = {"POST", "PUT", "PATCH", "DELETE"} & {m.upper() for m in methods}
    if writes - {"DELETE"}:
        statuses.append(415)
    if writes and rule.startswith(_MIRROR_WRITERS):
        statuses.append(503)
    text = {**_TEXT, 403: _TENANT_403 if tenant_route else _USER_403}
    return {s: error_response(text[s]) for s in sorted(statuses)}


def default_security(rule: str) -> list[dict[str, list[str]]] | None:
    # Public paths: ``security: []`` is set on the finished document (``Resolver`` in
    # api/app.py), since Powertools drops an empty list here.
    if rule.startswith(TENANT_PATHS):
        return TENANT_SECURITY
    return None  # the document's default: key and user


class ApiRouter(APIGatewayHttpRouter):
    """:class:`APIGatewayHttpRouter` with the defaults of the module docstring."""

    def route(  # type: ignore[override]  # same parameters, defaults filled in
        self,
        rule: str,
        method: str | list[str] | tuple[str],
        cors: bool | None = None,
        compress: bool = False,
        cache_control: str | None = None,
        summary: str | None = None,
        description: str | None = None,
        responses: dict[int, OpenAPIResponse] | None = None,
        response_description: str | None = "Successful Response",
        tags: list[str] | None = None,
        operation_id: str | None = None,
        include_in_schema: bool = True,
        security: list[dict[str, list[str]]] | None = None,
        openapi_extensions: dict[str, Any] | None = None,
        deprecated: bool = False,
        enable_validation: bool | None = None,
        custom_response_validation_http_code: int | HTTPStatus | None = None,
        status_code: int = 200,
        middlewares: list[Callable[..., Any]] | None = None,
    ) -> Callable[[Any], Any]:
        methods = (method,) if isinstance(method, str) else tuple(method)

        def register(func: Any) -> Any:
            query_account = "account_id" in inspect.signature(func).parameters and "<account_id>" not in rule
            merged: dict[int, OpenAPIResponse] = {
                **default_responses(rule, methods, query_account),
                **(responses or {}),
            }
            if not any(200 <= code < 400 for code in merged):
                # Powertools adds the success answer (with the return model) only when a route
                # lists no responses at all; without content, it fills in the return model.
                merged[status_code] = {"description": response_description or "Successful Response"}
            if 204 in merged:  # no content: an empty map, which Powertools leaves alone
                merged[204] = {**merged[204], "content": {}}
            return super(ApiRouter, self).route(
                rule,
                method,
                cors,
                compress,
                cache_control,
                summary,
                description,
                merged,
                response_description,
                tags,
                operation_id or camel_operation_id(func.__name__),
                include_in_schema,
                security if security is not None else default_security(rule),
                openapi_extensions,
                deprecated,
                enable_validation,
                custom_response_validation_http_code,
                status_code,
                middlewares,
            )(func)

        return register
