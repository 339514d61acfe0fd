"""Microsoft 365 test wiring: the fake identity platform + Graph (tests/fakes/graph.py, HTTPS
with a test CA) as our configured endpoints, and the hosted OAuth flow driven through the real
API routes. Graph's webhook calls (validation handshake, notifications, lifecycle events) are
delivered in-process: the validation through the use case (it runs while our callback is
still being handled), the rest through the API handler."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.fakes.graph import FakeGraph
from tests.support.api import ApiClient, Resp

REDIRECT = "http://127.0.0.1:8999/crm/oauth-done"
PUBLIC_URL = "https://mailsync.test"
WEBHOOK = "/v1/webhooks/microsoft"


def _validate(url: str, token: str) -> bool:
    """Graph's reachability check of a subscription's URL, answered by our webhook code."""
    from mailsync.usecases import microsoft

    if urlsplit(url).path != WEBHOOK:
        return False
    status, text = microsoft.handle_notification({"validationToken": token}, "")
    return status == 200 and text == token


@pytest.fixture
def microsoft(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGraph]:
    from mailsync.config import get_settings
    from mailsync.store import tenants

    with FakeGraph(validator=_validate) as fake:
        env = {
            "MICROSOFT_CLIENT_ID": fake.client_id,
            "MICROSOFT_CLIENT_SECRET": fake.client_secret,
            "MAILSYNC_MICROSOFT_AUTHORITY": fake.authority,
            "MAILSYNC_GRAPH_API_BASE": fake.api_base,
            "MAILSYNC_PUBLIC_URL": PUBLIC_URL,
            "MAILSYNC_STATE_SECRET": "test-state-secret",
            # msal's and the provider's own requests sessions trust the fake's CA.
            "REQUESTS_CA_BUNDLE": fake.ca_bundle,
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        get_settings.cache_clear()
        for t in ("t1", "t2"):
            try:
                tenants.allow_redirects(t, ["http://127.0.0.1:*"])
            except Exception:  # the tenant fixture may not be in use
                pass
        yield fake
        get_settings.cache_clear()


def start_flow(api: ApiClient, redirect: str = REDIRECT, **params: Any) -> str:
    r = api.get("/v1/oauth/microsoft/authorize", redirect_uri=redirect, **params)
    assert r.status == 200, r.body
    return str(r.body["url"])


def finish_flow(api: ApiClient, params: dict[str, str]) -> tuple[int, dict[str, str]]:
    """Call our callback like Microsoft's redirect would; returns (status, query of Location)."""
    anon = api.as_user(None, api_key="")
    anon.api_key = None
    r = anon.call("GET", "/v1/oauth/microsoft/callback?" + urlencode(params))
    loc = r.headers.get("Location", "")
    return r.status, ({k: v[0] for k, v in parse_qs(urlsplit(loc).query).items()} | {"_location": loc})


def connect_microsoft(
    api: ApiClient, fake: FakeGraph, email: str, *, deny: bool = False, **authorize: Any
) -> tuple[int, dict[str, str]]:
    url = start_flow(api, **authorize)
    return finish_flow(api, fake.login(url, email, deny=deny))


def post_webhook(payload: Any, query: str = "") -> Resp:
    return ApiClient(None, None).call("POST", WEBHOOK + query, payload)
