"""Call the API function's handler with API Gateway HTTP API events (in-process)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from mailsync_local.runner import LambdaContext, load_handler, to_event


@dataclass
class Resp:
    status: int
    body: Any
    headers: dict[str, str]


class ApiClient:
    def __init__(self, api_key: str | None, user: str | None, timeout_ms: int = 900_000) -> None:
        self.api_key = api_key
        self.user = user
        self.timeout_ms = timeout_ms  # the invocation's time limit (the Lambda context's deadline)
        self.handler = load_handler("api")

    def as_user(self, user: str | None, api_key: str | None = None) -> ApiClient:
        c = ApiClient.__new__(ApiClient)
        c.api_key, c.user, c.handler = api_key or self.api_key, user, self.handler
        c.timeout_ms = self.timeout_ms
        return c

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Resp:
        h = {"Content-Type": "application/json", **(headers or {})}
        if self.api_key is not None:
            h["Authorization"] = f"Bearer {self.api_key}"
        if self.user is not None:
            h["X-User-Id"] = self.user
        if params:
            path += "?" + urlencode({k: v for k, v in params.items() if v is not None})
        raw = json.dumps(body).encode() if body is not None else b""
        context = LambdaContext("api", timeout_ms=self.timeout_ms)
        out = self.handler(to_event(method, path, h, raw, "127.0.0.1"), context)
        text = out.get("body") or ""
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = text
        return Resp(int(out["statusCode"]), parsed, out.get("headers") or {})

    def raw(
        self, method: str, path: str, headers: dict[str, str] | None = None, *, auth: bool = True
    ) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and decoded body bytes (for binary responses); ``auth=False`` sends
        only ``headers``, as a browser loading an ``<img>`` does."""
        import base64

        h = {"Authorization": f"Bearer {self.api_key}", "X-User-Id": self.user or ""} if auth else {}
        h.update(headers or {})
        out = self.handler(to_event(method, path, h, b"", "127.0.0.1"), LambdaContext("api"))
        body = out.get("body") or ""
        data = base64.b64decode(body) if out.get("isBase64Encoded") else body.encode()
        return int(out["statusCode"]), out.get("headers") or {}, data

    def get(self, path: str, **params: Any) -> Resp:
        return self.call("GET", path, params=params)

    def post(self, path: str, body: Any = None, **kw: Any) -> Resp:
        return self.call("POST", path, body, **kw)

    def patch(self, path: str, body: Any) -> Resp:
        return self.call("PATCH", path, body)

    def put(self, path: str, body: Any) -> Resp:
        return self.call("PUT", path, body)

    def delete(self, path: str) -> Resp:
        return self.call("DELETE", path)
