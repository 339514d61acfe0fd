"""The web client in the local runner: ``/app`` through the deployed handler
(``functions/webapp/app.py``), plus a local sign-in that exists only here.

``POST /app/dev/token {"user_id"}`` mints a user token for a user of the ``dev`` tenant,
with the dev key's id (so deleting that key revokes it, as deployed), and
``GET /app/dev/config`` tells the sign-in page which user to prefill. No deployed function
answers these: in AWS a tenant's own backend mints tokens with its key (``POST
/v1/user-tokens``) and hands them to the page.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable
from typing import Any

from mailsync.domain.user_tokens import MAX_TTL_SECONDS

DEV_PREFIX = "/app/dev/"


def is_app_path(path: str) -> bool:
    p = path.split("?", 1)[0]
    return p == "/app" or p.startswith("/app/")


def _json(status: int, body: Any) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json", "Cache-Control": "no-store"},
        "body": json.dumps(body),
    }


class LocalWebApp:
    """Serves ``/app`` requests; ``lock`` is the runner's one-request-at-a-time lock (the
    token mint touches the same tables the API does)."""

    def __init__(self, handler: Callable[[dict[str, Any], Any], Any], api_key: str, lock: threading.Lock):
        self.handler, self.api_key, self.lock = handler, api_key, lock

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        path = event.get("rawPath") or ""
        if path.startswith(DEV_PREFIX):
            with self.lock:
                return self._dev(event, path[len(DEV_PREFIX) :])
        return dict(self.handler(event, context))

    def _dev(self, event: dict[str, Any], what: str) -> dict[str, Any]:
        method = event["requestContext"]["http"]["method"]
        if what == "config" and method == "GET":
            return _json(200, {"tenant_id": "dev", "user_id": os.environ.get("MAILSYNC_WEBAPP_USER", "demo")})
        if what != "token" or method != "POST":
            return _json(404, {"code": "not_found", "message": "no such local route"})
        raw = event.get("body") or ""
        if event.get("isBase64Encoded"):
            raw = base64.b64decode(raw).decode()
        try:
            user_id = str(json.loads(raw or "{}").get("user_id") or "").strip()
        except (ValueError, AttributeError):
            user_id = ""
        if not user_id or len(user_id) > 256 or "#" in user_id:
            return _json(422, {"code": "invalid_user", "message": "give a user id of the dev tenant"})
        from mailsync.store import tenants
        from mailsync.usecases import user_tokens

        owner = tenants.key_owner(self.api_key)
        if owner is None:
            return _json(500, {"code": "no_dev_key", "message": "the dev tenant's key is gone"})
        minted = user_tokens.mint(owner.tenant_id, owner.key_id, user_id, MAX_TTL_SECONDS)
        return _json(201, {**minted, "user_id": user_id, "ttl_seconds": MAX_TTL_SECONDS})
