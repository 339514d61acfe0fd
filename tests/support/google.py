"""Google Workspace test wiring: the fake Google (tests/fakes/gmail.py) as our configured
endpoints, and the hosted OAuth flow driven through the real API routes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fakes.gmail import FakeGoogle
from tests.support.api import ApiClient

REDIRECT = "http://127.0.0.1:8999/crm/oauth-done"
PUSH_AUDIENCE = "https://mailsync.test/v1/webhooks/google"
PUSH_SA = "gmail-push@mailsync-test.iam.gserviceaccount.com"


@pytest.fixture
def google(aws: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogle]:
    from mailsync.config import get_settings
    from mailsync.store import tenants

    with FakeGoogle(client_id="cid-123.apps.googleusercontent.com", client_secret="csecret") as fake:
        fake.push_service_account = PUSH_SA
        env = {
            "GOOGLE_CLIENT_ID": fake.client_id,
            "GOOGLE_CLIENT_SECRET": fake.client_secret,
            "MAILSYNC_GOOGLE_AUTH_URI": fake.auth_uri,
            "MAILSYNC_GOOGLE_TOKEN_URI": fake.token_uri,
            "MAILSYNC_GOOGLE_CERTS_URI": fake.certs_uri,
            "MAILSYNC_GMAIL_API_BASE": fake.api_base,
            "MAILSYNC_GOOGLE_PUBSUB_TOPIC": "projects/mailsync-test/topics/gmail",
            "MAILSYNC_GOOGLE_PUSH_AUDIENCE": PUSH_AUDIENCE,
            "MAILSYNC_GOOGLE_PUSH_SERVICE_ACCOUNT": PUSH_SA,
            "MAILSYNC_STATE_SECRET": "test-state-secret",
        }
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        get_settings.cache_clear()
        for t in ("t1", "t2"):
            try:
                tenants.allow_redirects(t, ["http://127.0.0.1:*"])
            except Exception:  # the tenant fixture may not be in use
                pass
        yield fake
        get_settings.cache_clear()


def start_flow(api: ApiClient, redirect: str = REDIRECT) -> dict[str, str]:
    r = api.get("/v1/oauth/google/authorize", redirect_uri=redirect)
    assert r.status == 200, r.body
    q = {k: v[0] for k, v in parse_qs(urlsplit(r.body["url"]).query).items()}
    return q


def finish_flow(api: ApiClient, params: dict[str, str]) -> tuple[int, dict[str, str]]:
    """Call our callback like Google's redirect would; returns (status, query of Location)."""
    from urllib.parse import urlencode

    anon = api.as_user(None, api_key="")
    anon.api_key = None
    r = anon.call("GET", "/v1/oauth/google/callback?" + urlencode(params))
    loc = r.headers.get("Location", "")
    return r.status, ({k: v[0] for k, v in parse_qs(urlsplit(loc).query).items()} | {"_location": loc})


def connect_google(
    api: ApiClient, fake: FakeGoogle, email: str, **authorize_kw: Any
) -> tuple[int, dict[str, str]]:
    q = start_flow(api)
    code = fake.authorize(
        email,
        code_challenge=q["code_challenge"],
        redirect_uri=q["redirect_uri"],
        nonce=q["nonce"],
        **authorize_kw,
    )
    return finish_flow(api, {"code": code, "state": q["state"]})
