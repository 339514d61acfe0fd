"""Token endpoints that accept a connection and never answer (issue 14): the refresh ends
with the provider's typed connection error after our timeout, instead of holding a worker
for google-auth's 120 s default or msal's unbounded wait."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from mailsync.domain.ports import ConnectionFailed
from mailsync.providers.gmail import tokens as gmail_tokens
from mailsync.providers.graph.tokens import MsalTokenSource

pytestmark = pytest.mark.integration


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A TCP server that accepts and then says nothing (no HTTP answer, no TLS handshake)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join(2)
    for c in held:
        c.close()
    srv.close()


def test_google_refresh_gives_up_after_our_timeout(silent_port, monkeypatch):
    monkeypatch.setattr(gmail_tokens, "REFRESH_TIMEOUT_SECONDS", 0.5)
    source = gmail_tokens.CredentialsTokenSource.from_refresh_token(
        "refresh-token", "client-id", "client-secret", token_uri=f"http://127.0.0.1:{silent_port}/token"
    )
    started = time.monotonic()
    with pytest.raises(ConnectionFailed):
        source()
    assert time.monotonic() - started < 10  # bounded by our 0.5 s (google-auth's own default: 120 s)


def test_msal_gives_up_after_our_timeout(silent_port):
    source = MsalTokenSource(
        "client-id", "client-secret", f"https://127.0.0.1:{silent_port}/organizations", None, timeout=0.5
    )
    started = time.monotonic()
    with pytest.raises(ConnectionFailed):
        source()
    assert time.monotonic() - started < 10
