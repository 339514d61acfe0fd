"""Typed domain exceptions; ``api.app`` maps them to HTTP once (``@app.exception_handler``).

Each carries the machine-readable ``code`` of the public contract and its HTTP status.
"""

from __future__ import annotations

from typing import Any


class MailsyncError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str = "", *, code: str | None = None, details: Any = None) -> None:
        super().__init__(message or self.code)
        self.message = message or self.code
        if code:
            self.code = code
        self.details = details


class Unauthorized(MailsyncError):
    status, code = 401, "unauthorized"


class TokenExpired(Unauthorized):
    """A user token past its ``expires_at``: mint a new one."""

    code = "token_expired"


class TenantKeyRequired(MailsyncError):
    """A user token on a tenant-level route (keys, users, tenant, webhooks, events, tokens)."""

    status, code = 403, "tenant_key_required"


class UserMismatch(MailsyncError):
    """A user token with an ``X-User-Id`` naming someone else: a token acts for its user alone."""

    status, code = 403, "user_mismatch"


class MissingUser(MailsyncError):
    status, code = 400, "missing_user"


class InvalidRequest(MailsyncError):
    status, code = 422, "invalid_request"


class InvalidCursor(MailsyncError):
    status, code = 400, "invalid_cursor"


class UnsupportedMediaType(MailsyncError):
    status, code = 415, "unsupported_media_type"


class NotFound(MailsyncError):
    status, code = 404, "not_found"


class Conflict(MailsyncError):
    status, code = 409, "conflict"


class AccountExists(Conflict):
    code = "account_exists"


class UserPurging(Conflict):
    """The user's mail is being purged: no new connection until it is done."""

    code = "user_purging"


class UserNotFound(NotFound):
    code = "user_not_found"


class ConfirmationRequired(MailsyncError):
    """A destructive tenant-wide call needs ``X-Confirm-Delete: <tenant_id>``."""

    status, code = 400, "confirmation_required"


class KeyNotFound(NotFound):
    """No API key of the caller's tenant has this id."""

    code = "key_not_found"


class LastKey(Conflict):
    """Deleting this API key would leave the tenant without one."""

    code = "last_key"


class Unprocessable(MailsyncError):
    """422 with a specific code: auth_failed, connection_failed, host_not_allowed, unknown_folder…"""

    status, code = 422, "unprocessable"


class BadGateway(MailsyncError):
    status, code = 502, "provider_error"


class NotConfigured(MailsyncError):
    status, code = 503, "not_configured"


class AccountGone(NotFound):
    """The account is being deleted (or is gone): a writer must stop and store nothing."""

    def __init__(self, message: str = "account not found", **kw: Any) -> None:
        super().__init__(message, **kw)


class AccountBusy(MailsyncError):
    """Another writer held the account's mirror for longer than we wait; retry shortly."""

    status, code = 503, "account_busy"


class EndpointLimit(Conflict):
    """The tenant has as many webhook endpoints as allowed (``MAX_ENDPOINTS``)."""

    code = "endpoint_limit"


class EndpointDisabled(Conflict):
    """The webhook endpoint is disabled: enable it (PATCH ``enabled: true``) first."""

    code = "endpoint_disabled"


class DeliveryPending(Conflict):
    """The delivery is still pending (its next attempt is scheduled): nothing to retry."""

    code = "delivery_pending"


class LinkExpired(MailsyncError):
    """A signed link (an image link) past its expiry: the reader reloads the message."""

    status, code = 410, "link_expired"
