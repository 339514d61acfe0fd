"""Send one message over SMTP submission.

Protocol references:

* RFC 5321 (SMTP): ``EHLO``, ``MAIL FROM``, one ``RCPT TO`` per recipient,
  ``DATA``; reply codes 2xx success, 4xx transient, 5xx permanent.
* RFC 3207 (STARTTLS): with ``security="starttls"`` the session is upgraded to
  TLS before anything else is sent; a server that does not offer STARTTLS is
  refused with :class:`SmtpTlsFailed` (never fall back to plain text, that would leak the
  password); so is a certificate that is not trusted or names another host (the default
  context verifies both, trusting the system store or ``SSL_CERT_FILE``).
* RFC 4954 (AUTH): with ``ssl``/``starttls`` we always authenticate; with
  ``none`` (local relays) only when the server advertises AUTH.
* RFC 6152 (8BITMIME) / RFC 1870 (SIZE) are used when the server offers them.

Errors are typed subclasses of :mod:`mailsync.domain.ports` errors:
:class:`SmtpAuthFailed`, :class:`SmtpConnectionFailed` (:class:`SmtpTlsFailed` for TLS) and
:class:`SmtpRejected` (the server refused the sender, the content or every
recipient). When only some recipients are refused the message is sent to the
others and :func:`send` reports the refused ones in its result.

The password is never logged or put into an exception message.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from typing import Any

from mailsync.domain.ports import AuthFailed, ConnectionFailed, ProviderError, TlsFailed

__all__ = ["SECURITY", "SmtpAuthFailed", "SmtpConnectionFailed", "SmtpRejected", "SmtpTlsFailed", "send"]

log = logging.getLogger(__name__)

SECURITY = ("ssl", "starttls", "none")


class SmtpAuthFailed(AuthFailed):
    """The server rejected the credentials (RFC 4954 535 and friends)."""


class SmtpConnectionFailed(ConnectionFailed):
    """DNS, TCP, TLS, timeout, or the server dropped/refused the session. Transient."""


class SmtpTlsFailed(SmtpConnectionFailed, TlsFailed):
    """The TLS handshake or certificate check failed, or STARTTLS is not offered (kind ``tls_error``)."""


class SmtpRejected(ProviderError):
    """The server refused the sender, the data, or all recipients.

    ``code`` is the SMTP reply code (4xx transient, 5xx permanent), ``reply`` the
    server's text and ``recipients`` the per-recipient result (see :func:`send`).
    """

    #: The provider error code (the instance's ``code`` is the SMTP reply code).
    error_code = "smtp_rejected"

    def __init__(self, code: int, reply: str, recipients: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__(f"SMTP {code} {reply}".strip())
        # Unlike other ProviderErrors, ``code`` is the SMTP reply code here.
        self.code = code  # type: ignore[assignment]
        self.reply = reply
        self.recipients: dict[str, dict[str, Any]] = recipients or {}


def _text(reply: bytes | str) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace").strip()
    return str(reply).strip()


def _rejected(code: int, reply: str) -> dict[str, Any]:
    return {"status": "rejected", "code": code, "reply": reply}


def _connect(
    host: str, port: int, security: str, timeout: float, ssl_context: ssl.SSLContext | None
) -> smtplib.SMTP:
    if security == "ssl":
        ctx = ssl_context or ssl.create_default_context()
        return smtplib.SMTP_SSL(host, port, timeout=timeout, context=ctx)
    smtp = smtplib.SMTP(host, port, timeout=timeout)
    try:
        smtp.ehlo_or_helo_if_needed()
        if security == "starttls":
            if not smtp.has_extn("starttls"):
                raise SmtpTlsFailed(f"{host}:{port} does not offer STARTTLS; refusing to send in plain text")
            smtp.starttls(context=ssl_context or ssl.create_default_context())
            smtp.ehlo()
    except BaseException:
        smtp.close()
        raise
    return smtp


def _login(smtp: smtplib.SMTP, security: str, username: str, password: str) -> None:
    smtp.ehlo_or_helo_if_needed()
    if not smtp.has_extn("auth"):
        if security == "none":
            return
        raise ProviderError("the server does not offer AUTH")
    try:
        smtp.login(username, password)
    except smtplib.SMTPAuthenticationError as e:
        reply = _text(e.smtp_error)
        if 400 <= e.smtp_code < 500:  # e.g. 454 4.7.0 temporary authentication failure
            raise SmtpConnectionFailed(f"temporary authentication failure: {e.smtp_code} {reply}") from None
        raise SmtpAuthFailed(f"authentication failed: {e.smtp_code} {reply}") from None
    except smtplib.SMTPNotSupportedError:
        raise ProviderError("the server does not offer AUTH") from None
    except smtplib.SMTPException as e:
        if isinstance(e, smtplib.SMTPServerDisconnected | smtplib.SMTPResponseException):
            raise
        # "No suitable authentication method found."
        raise ProviderError(f"authentication not possible: {e}") from None


def _rset(smtp: smtplib.SMTP) -> None:
    try:
        smtp.rset()
    except (smtplib.SMTPException, OSError):
        pass  # the rejection is what the caller needs; quit() cleans up


def _transaction(
    smtp: smtplib.SMTP, sender: str, recipients: list[str], data: bytes
) -> dict[str, dict[str, Any]]:
    ascii_only = sender.isascii() and all(r.isascii() for r in recipients)
    mail_opts: list[str] = []
    if smtp.has_extn("size"):
        mail_opts.append(f"SIZE={len(data)}")
    if not data.isascii() and smtp.has_extn("8bitmime"):
        mail_opts.append("BODY=8BITMIME")
    if not ascii_only:
        if not smtp.has_extn("smtputf8"):
            raise ProviderError("the server does not support non-ASCII addresses (SMTPUTF8)")
        mail_opts.append("SMTPUTF8")

    code, resp = smtp.mail(sender, mail_opts)
    if code != 250:
        reply = _text(resp)
        _rset(smtp)
        raise SmtpRejected(code, reply, {r: _rejected(code, reply) for r in recipients})

    results: dict[str, dict[str, Any]] = {}
    for rcpt in recipients:
        code, resp = smtp.rcpt(rcpt)
        if code in (250, 251):
            results[rcpt] = {"status": "accepted"}
        else:
            results[rcpt] = _rejected(code, _text(resp))
    accepted = [r for r, res in results.items() if res["status"] == "accepted"]
    if not accepted:
        _rset(smtp)
        first = next(iter(results.values()))
        raise SmtpRejected(first["code"], first["reply"], results)

    code, resp = smtp.data(data)
    if code != 250:
        reply = _text(resp)
        _rset(smtp)
        for r in accepted:
            results[r] = _rejected(code, reply)
        raise SmtpRejected(code, reply, results)
    return results


def send(
    *,
    host: str,
    port: int,
    security: str,
    username: str,
    password: str,
    sender: str,
    recipients: list[str],
    data: bytes,
    timeout: float = 30.0,
    ssl_context: ssl.SSLContext | None = None,
) -> dict[str, dict[str, Any]]:
    """Send ``data`` from ``sender`` (envelope ``MAIL FROM``) to ``recipients``.

    Returns ``{recipient: {"status": "accepted"}}`` or
    ``{recipient: {"status": "rejected", "code": 550, "reply": "..."}}`` for each
    recipient. Raises :class:`SmtpRejected` when nothing was sent because the
    server refused the sender, the data or every recipient,
    :class:`SmtpAuthFailed`, :class:`SmtpConnectionFailed`, or
    :class:`~mailsync.domain.ports.ProviderError` (no STARTTLS/AUTH offered,
    other protocol errors).
    """
    if security not in SECURITY:
        raise ValueError(f"security must be one of {SECURITY}, not {security!r}")
    if not recipients:
        raise ValueError("at least one recipient is required")
    recipients = list(dict.fromkeys(recipients))
    log.info("smtp send via %s:%s (%s) to %d recipient(s)", host, port, security, len(recipients))

    smtp: smtplib.SMTP | None = None
    try:
        smtp = _connect(host, port, security, timeout, ssl_context)
        _login(smtp, security, username, password)
        results = _transaction(smtp, sender, recipients, data)
    except ProviderError:
        raise
    except smtplib.SMTPServerDisconnected as e:
        raise SmtpConnectionFailed(f"{host}:{port}: server disconnected: {e}") from None
    except smtplib.SMTPConnectError as e:
        raise SmtpConnectionFailed(f"{host}:{port}: {e.smtp_code} {_text(e.smtp_error)}") from None
    except smtplib.SMTPResponseException as e:
        # An unexpected reply (e.g. to STARTTLS, EHLO or DATA itself).
        raise SmtpRejected(
            e.smtp_code,
            _text(e.smtp_error),
            {r: _rejected(e.smtp_code, _text(e.smtp_error)) for r in recipients},
        ) from None
    except smtplib.SMTPException as e:
        raise ProviderError(f"{host}:{port}: SMTP error: {e}") from None
    except TimeoutError as e:
        raise SmtpConnectionFailed(f"{host}:{port}: timed out: {e}") from None
    except ssl.SSLError as e:
        raise SmtpTlsFailed(f"{host}:{port}: TLS failed: {e}") from None
    except OSError as e:  # DNS (gaierror), refused, reset, unreachable
        raise SmtpConnectionFailed(f"{host}:{port}: {e}") from None
    finally:
        if smtp is not None:
            try:
                smtp.quit()
            except Exception:  # noqa: BLE001 - the connection may already be gone
                smtp.close()

    rejected = sum(1 for r in results.values() if r["status"] != "accepted")
    log.info("smtp send accepted %d, rejected %d", len(results) - rejected, rejected)
    return results
