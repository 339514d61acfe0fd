"""e2e: drive the real local runner (``mailsync run``) over HTTP, as a tenant would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from tests.e2e.mailboxes import GoogleMailbox, ImapMailbox, Mailbox, MicrosoftMailbox
from tests.fakes.gmail import FakeGoogle
from tests.fakes.graph import FakeGraph
from tests.support import secrets as leakscan
from tests.support.dovecot import free_port
from tests.support.google import PUSH_AUDIENCE, PUSH_SA

if TYPE_CHECKING:
    from tests.support.dovecot import Dovecot
    from tests.support.smtp import SmtpServer

ROOT = Path(__file__).resolve().parents[2]


class Service:
    def __init__(self, url: str, api_key: str, moto: str) -> None:
        self.url, self.api_key, self.moto = url, api_key, moto

    def session(self, user: str | None = "alice", api_key: str | None = None) -> requests.Session:
        s = requests.Session()
        if api_key or self.api_key:
            s.headers["Authorization"] = f"Bearer {api_key or self.api_key}"
        if user:
            s.headers["X-User-Id"] = user
        return s

    def admin(self, *args: str) -> Any:
        """``mailsync admin ARGS`` against the runner's moto; its JSON answer."""
        env = {
            **os.environ,
            "AWS_ENDPOINT_URL": self.moto,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "eu-central-1",
        }
        exe = Path(sys.executable).parent / "mailsync"
        out = subprocess.run([str(exe), "admin", *args], env=env, capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    def wait_for(self, probe: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = probe()
            if last:
                return last
            time.sleep(0.3)
        raise AssertionError(f"timed out waiting for {what}; last={last!r}")


@pytest.fixture(scope="session")
def fake_google() -> Iterator[FakeGoogle]:
    """One fake Google (OAuth + Gmail API) for the session; the runner points at it."""
    with FakeGoogle(push_service_account=PUSH_SA) as fake:
        yield fake


def google_env(fake: FakeGoogle) -> dict[str, str]:
    """Our Google settings pointing at ``fake`` (as tests/support/google.py does in-process)."""
    return {
        "GOOGLE_CLIENT_ID": fake.client_id,
        "GOOGLE_CLIENT_SECRET": fake.client_secret,
        "MAILSYNC_GOOGLE_AUTH_URI": fake.auth_uri,
        "MAILSYNC_GOOGLE_TOKEN_URI": fake.token_uri,
        "MAILSYNC_GOOGLE_CERTS_URI": fake.certs_uri,
        "MAILSYNC_GMAIL_API_BASE": fake.api_base,
        "MAILSYNC_GOOGLE_PUBSUB_TOPIC": "projects/mailsync-test/topics/gmail",
        "MAILSYNC_GOOGLE_PUSH_AUDIENCE": PUSH_AUDIENCE,
        "MAILSYNC_GOOGLE_PUSH_SERVICE_ACCOUNT": PUSH_SA,
    }


@pytest.fixture(scope="session")
def fake_graph() -> Iterator[FakeGraph]:
    """One fake Microsoft identity platform + Graph (HTTPS, test CA) for the session. Its
    subscription validation calls reach the runner's webhook over HTTP: the runner derives
    its public URL (``http://127.0.0.1:<port>``) from the request host, as it does for Google."""
    with FakeGraph() as fake:
        yield fake


def microsoft_env(fake: FakeGraph) -> dict[str, str]:
    """Our Microsoft settings pointing at ``fake`` (as tests/support/microsoft.py does
    in-process). msal and the Graph provider use ``requests``, which trusts the fake's CA
    through ``REQUESTS_CA_BUNDLE`` (the runner reaches nothing else over TLS)."""
    return {
        "MICROSOFT_CLIENT_ID": fake.client_id,
        "MICROSOFT_CLIENT_SECRET": fake.client_secret,
        "MAILSYNC_MICROSOFT_AUTHORITY": fake.authority,
        "MAILSYNC_GRAPH_API_BASE": fake.api_base,
        "REQUESTS_CA_BUNDLE": fake.ca_bundle,
    }


@pytest.fixture(scope="session")
def service(
    tmp_path_factory: pytest.TempPathFactory, fake_google: FakeGoogle, fake_graph: FakeGraph
) -> Iterator[Service]:
    port, moto_port = free_port(), free_port()
    exe = shutil.which("mailsync", path=str(Path(sys.executable).parent)) or "mailsync"
    env = {
        **os.environ,
        "PORT": str(port),
        "MAILSYNC_MOTO_PORT": str(moto_port),
        "MAILSYNC_POLL_SECONDS": "2",
        "MAILSYNC_DEV_API_KEY": "e2e-key",
        "MAILSYNC_ALLOW_PRIVATE_HOSTS": "1",
        **google_env(fake_google),
        **microsoft_env(fake_graph),
    }
    env.pop("AWS_ENDPOINT_URL", None)
    env.pop("CURL_CA_BUNDLE", None)
    log = tmp_path_factory.mktemp("runner") / "runner.log"
    leakscan.watch_file(log, "the log of mailsync run")
    with open(log, "wb") as out:
        proc = subprocess.Popen([exe, "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(url + "/v1/openapi.json", timeout=5).status_code == 200:
                break
        except requests.RequestException:  # not listening yet, or its first answer (imports) is slow
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"mailsync run did not start:\n{log.read_text()[-4000:]}")
        time.sleep(0.3)
    try:
        yield Service(url, "e2e-key", f"http://127.0.0.1:{moto_port}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if os.environ.get("MAILSYNC_E2E_SHOW_LOG"):
            print(log.read_text()[-8000:])


@pytest.fixture(params=["imap", "google", "microsoft"])
def mailbox(request: pytest.FixtureRequest, service: Service) -> Mailbox:
    """A fresh mailbox at the provider, with its driver (tests/e2e/mailboxes.py)."""
    if request.param == "imap":
        dovecot: Dovecot = request.getfixturevalue("dovecot")
        smtp: SmtpServer = request.getfixturevalue("smtp_server")
        return ImapMailbox(service, dovecot, smtp, dovecot.new_user())
    if request.param == "microsoft":
        return MicrosoftMailbox(service, request.getfixturevalue("fake_graph"))
    return GoogleMailbox(service, request.getfixturevalue("fake_google"))
