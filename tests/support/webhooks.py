"""Webhook test helpers: a real HTTP(S) receiver on 127.0.0.1, the consumer that feeds the
webhook handler from the moto queue as Lambda would, an in-memory queue (a fake of the
``WebhookQueue`` port, for runs driven by an injected clock), and event builders."""

from __future__ import annotations

import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from mailsync.domain.clock import iso
from mailsync.domain.events import Event, event_id
from mailsync.domain.webhooks import Job
from tests.support import secrets as leakscan
from tests.support.api import ApiClient, Resp


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when the request arrived


class Receiver:
    """An HTTP(S) server that records every request and answers ``status`` (after ``delay``
    seconds; with ``location`` as a redirect target). ``tls``: (cert, key) PEM paths."""

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        self.requests: list[Received] = []
        self.status = 200
        self.delay = 0.0
        self.location: str | None = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.requests.append(Received(self.path, headers, body, time.monotonic()))
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a refused TLS handshake is what some tests want

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class MemoryQueue:
    """The ``WebhookQueue`` port in memory: jobs in the order sent (``accept=False`` refuses)."""

    def __init__(self, accept: bool = True) -> None:
        self.jobs: list[Job] = []
        self.accept = accept

    def send(self, jobs: list[Job]) -> list[int]:
        if not self.accept:
            return []
        self.jobs.extend(jobs)
        return list(range(len(jobs)))

    def pop(self) -> Job:
        return self.jobs.pop(0)


def event(
    n: int = 1, tenant_id: str = "t1", type_: str = "message.created", data: dict[str, Any] | None = None
) -> Event:
    """An event as the lead's derivation would make it (its own tests cover that)."""
    return Event(
        id=event_id(f"test-source-{tenant_id}-{type_}-{n}"),
        type=type_,
        created_at=iso(datetime(2026, 3, 1, 12, 0, n % 60, tzinfo=UTC)),
        tenant_id=tenant_id,
        data=data if data is not None else {"id": f"msg-{n}", "account_id": "acc-1", "subject": f"Hallo {n}"},
    )


@dataclass
class Hooks:
    """The tenant routes of one tenant's key."""

    api: ApiClient
    created: list[dict[str, Any]] = field(default_factory=list)

    def create(self, url: str, events: list[str] | None = None, description: str = "CRM") -> dict[str, Any]:
        r = self.api.post(
            "/v1/webhook-endpoints", {"url": url, "events": events or ["*"], "description": description}
        )
        assert r.status == 201, r.body
        leakscan.register("webhook signing secret", r.body["secret"])
        self.created.append(r.body)
        return r.body

    def rotate(self, endpoint_id: str) -> str:
        r = self.api.post(f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret")
        assert r.status == 200, r.body
        leakscan.register("webhook signing secret", r.body["secret"])
        return str(r.body["secret"])

    def deliveries(self, endpoint_id: str, status: str | None = None) -> list[dict[str, Any]]:
        r = self.api.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries", status=status)
        assert r.status == 200, r.body
        return list(r.body["items"])

    def get(self, endpoint_id: str) -> Resp:
        return self.api.get(f"/v1/webhook-endpoints/{endpoint_id}")


_DYNAMODB = threading.Lock()


def atomic_dynamodb(monkeypatch: Any) -> None:
    """Serve moto's in-process DynamoDB requests one at a time, as DynamoDB makes every request
    atomic (a conditional update is checked and applied at once) and moto does not: the
    webhook handler sends a batch's records on threads, and two claims of one attempt must not
    both pass. The runner does the same in server mode (``AtomicDynamoMoto``)."""
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request

    def serialised(self: Any, request: Any) -> Any:
        target = request.headers.get("X-Amz-Target") or b""
        if (target if isinstance(target, bytes) else target.encode()).startswith(b"DynamoDB_"):
            with _DYNAMODB:
                return original(self, request)
        return original(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", serialised)


def drain(max_batches: int = 50) -> int:
    """Run the webhook handler on the moto queue's visible jobs until none is left; the jobs run."""
    from mailsync.config import get_settings
    from mailsync_local.runner import load_handler
    from mailsync_local.webhooks import consume_once

    handler = load_handler("webhooks")
    ran = 0
    for _ in range(max_batches):
        n = consume_once(handler, get_settings().webhook_queue_url, wait_seconds=0)
        if not n:
            return ran
        ran += n
    raise AssertionError("the webhook queue did not run dry")
