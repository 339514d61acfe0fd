"""A real SMTP submission server for tests and the demo, delivering into a :class:`Dovecot`.

:class:`SmtpServer` runs :mod:`aiosmtpd` on ``127.0.0.1`` (a free port; without ``tls``
no STARTTLS is offered) with AUTH PLAIN/LOGIN allowed in plain text and
checked against the Dovecot users' passwords. Behaviour, so that every SMTP
outcome can be tested:

* ``RCPT TO:<user@example.test>`` is accepted when ``user`` is a Dovecot user,
  anything else gets ``550 5.1.1 no such user``;
* a ``MAIL FROM`` address containing ``blocked`` gets ``550 5.7.1 sender blocked``;
* a message with the header ``X-Test-Reject: yes`` gets ``554 5.6.0 content rejected``;
* ``tls=(cert_pem, key_pem)`` offers STARTTLS (RFC 3207), with ``implicit_tls=True``
  the port speaks TLS from the first byte instead (RFC 8314);
* every accepted message is APPENDed to each recipient's Dovecot ``INBOX`` and
  recorded in :attr:`SmtpServer.received` as ``(mail_from, rcpt_tos, data)``.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import warnings
from email import policy
from email.parser import BytesParser
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mailsync_local.dovecot import Dovecot, free_port

DOMAIN = "example.test"


class _Handler:
    def __init__(self, server: SmtpServer) -> None:
        self.server = server

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if "blocked" in address.lower():
            return "550 5.7.1 sender blocked"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if self.server.user_for(address) is None:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.content
        assert isinstance(data, bytes)
        headers = BytesParser(policy=policy.default).parsebytes(data, headersonly=True)
        if str(headers.get("X-Test-Reject", "")).strip().lower() == "yes":
            return "554 5.6.0 content rejected"
        users = [self.server.user_for(rcpt) for rcpt in envelope.rcpt_tos]
        loop = asyncio.get_running_loop()
        try:
            for user in users:
                assert user is not None
                await loop.run_in_executor(None, self.server.dovecot.append, user, "INBOX", data)
        except Exception as e:  # noqa: BLE001 - any delivery failure is a 451 to the client
            return f"451 4.3.0 delivery failed: {type(e).__name__}"
        with self.server.lock:
            self.server.received.append((envelope.mail_from or "", list(envelope.rcpt_tos), data))
        return "250 2.0.0 OK delivered"


class _Controller(Controller):
    def factory(self) -> SMTP:
        # AUTH without TLS is what these tests want (loopback only).
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Requiring AUTH while not requiring TLS", UserWarning)
            return super().factory()


class SmtpServer:
    """``SmtpServer(dovecot).start()``; ``host``/``port`` once started; ``stop()``.

    ``auth_required=True`` (the default) refuses ``MAIL`` before a successful AUTH.
    """

    host = "127.0.0.1"

    def __init__(
        self,
        dovecot: Dovecot,
        *,
        auth_required: bool = True,
        tls: tuple[str, str] | None = None,
        implicit_tls: bool = False,
    ) -> None:
        self.dovecot = dovecot
        self.auth_required = auth_required
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.port = 0
        self.received: list[tuple[str, list[str], bytes]] = []
        self.auth_attempts: list[tuple[str, bool]] = []  # (login, success)
        self.lock = threading.Lock()
        self._controller: _Controller | None = None

    # -- mapping to Dovecot users --------------------------------------------------

    def _passwords(self) -> dict[str, str]:
        # Dovecot keeps its users in a private dict (user -> password), updated by
        # add_user/new_user, so users created after start() work at once.
        users: dict[str, str] = self.dovecot._users
        return users

    def user_for(self, address: str) -> str | None:
        """The Dovecot user for ``<user>@example.test`` (case-insensitive domain), else None."""
        local, at, domain = address.strip().strip("<>").rpartition("@")
        if not at or domain.lower() != DOMAIN or local not in self._passwords():
            return None
        return local

    @staticmethod
    def address(user: str) -> str:
        return f"{user}@{DOMAIN}"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if not isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        user = login if "@" not in login else (self.user_for(login) or login)
        ok = user in self._passwords() and self._passwords()[user] == password
        with self.lock:
            self.auth_attempts.append((login, ok))
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> SmtpServer:
        self.port = free_port()
        tls: dict[str, Any] = {}
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            tls = {"ssl_context": ctx} if self.implicit_tls else {"tls_context": ctx}
        self._controller = _Controller(
            _Handler(self),
            hostname=self.host,
            port=self.port,
            server_hostname="smtp.example.test",
            authenticator=self._authenticate,
            auth_require_tls=False,
            auth_required=self.auth_required,
            ready_timeout=10.0,
            **tls,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def received_by(self, user: str) -> list[bytes]:
        """The data of every message delivered to ``user``."""
        addr = self.address(user).lower()
        with self.lock:
            return [data for _, rcpts, data in self.received if addr in (r.lower() for r in rcpts)]
