"""Server scaffolding shared by the provider fakes (tests/fakes/gmail.py, tests/fakes/graph.py).

A :class:`FakeServer` is a real HTTP server on 127.0.0.1 (an ephemeral port, one thread per
connection) that hands every request to the fake's :meth:`FakeServer.handle` as ``(method,
target, lower-cased headers, body)`` and writes back the :class:`Response` it returns. Only
this plumbing is shared: what a fake answers (paths, payloads, errors, paging) stays in the
fake, written from its provider's published reference.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    json_content_type: ClassVar[str] = "application/json"  # each fake: its provider's

    @classmethod
    def json(cls, status: int, obj: Any, headers: dict[str, str] | None = None) -> Self:
        h = {"Content-Type": cls.json_content_type, **(headers or {})}
        return cls(status, json.dumps(obj).encode(), h)


def json_object(body: bytes, invalid: Callable[[], Exception]) -> dict[str, Any]:
    """A request's JSON object (``{}`` for an empty body); ``invalid()`` is raised for anything else."""
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        raise invalid() from None
    if not isinstance(data, dict):
        raise invalid()
    return data


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        resp = self.server.fake.handle(self.command, self.path, headers, body)
        self.send_response(resp.status)  # the standard reason phrase
        for k, v in resp.headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeServer) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that refuses our TLS certificate (a test of exactly that) is no server error.
        if isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionResetError):
            return
        super().handle_error(request, client_address)


class FakeServer:
    """Start with :meth:`start` or use as a context manager; subclasses implement :meth:`handle`."""

    scheme = "http"

    def __init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def handle(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Response:
        """Answer one HTTP request (``headers`` lower-cased)."""
        raise NotImplementedError

    def _prepare(self, server: ThreadingHTTPServer) -> None:
        """Called before the server starts serving (e.g. to wrap its socket in TLS)."""

    def start(self) -> Self:
        server = _Server(self)
        self._prepare(server)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host!s}:{port}"
