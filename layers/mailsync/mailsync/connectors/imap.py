"""IMAP/SMTP accounts (password): polled, sent over SMTP, the Sent copy APPENDed by us."""

from __future__ import annotations

from typing import Any

from mailsync.config import Settings, get_settings
from mailsync.connectors.base import BaseConnector
from mailsync.domain.account import Account
from mailsync.domain.ports import MailProvider, Outgoing, ProviderError, Sent, TlsFailed
from mailsync.errors import BadGateway


class ImapConnector(BaseConnector):
    provider = "imap"
    password_credentials = True

    def open(self, account: Account, secrets: dict[str, str]) -> MailProvider:
        from mailsync.providers.imap import ImapProvider

        imap = account.server("imap")
        return ImapProvider(
            host=imap.host,
            port=int(imap.port),
            security=imap.security,
            username=imap.username,
            password=secrets["imap_password"],
            timeout=get_settings().imap_timeout_seconds,
        )

    def poll_seconds(self, settings: Settings) -> int:
        return settings.poll_seconds

    def send(self, account: Account, mail: Outgoing) -> Sent:
        from mailsync.providers import smtp
        from mailsync.store.accounts import load_secrets

        server = account.server("smtp")
        try:
            results = mail.smtp_send(
                host=server.host,
                port=int(server.port),
                security=server.security,
                username=server.username,
                password=load_secrets(account)["smtp_password"],
                sender=mail.sender,
                recipients=mail.recipients,
                data=mail.raw,
                timeout=get_settings().imap_timeout_seconds,
            )
        except smtp.SmtpRejected as e:
            raise BadGateway(
                f"the SMTP server rejected the message: {e.code} {e.reply}",
                code="smtp_rejected",
                details={"smtp_code": e.code, "reply": e.reply, "recipients": recipient_list(e.recipients)},
            ) from e
        except smtp.SmtpAuthFailed as e:
            raise BadGateway(f"the SMTP server refused the login: {e}", code="smtp_rejected") from e
        except TlsFailed as e:  # untrusted certificate, wrong name, no STARTTLS: nothing sent
            raise BadGateway(f"could not deliver, TLS failed: {e}", code="tls_error") from e
        except ProviderError as e:
            raise BadGateway(f"could not deliver: {e}", code="provider_error") from e
        return Sent(results)


def recipient_list(results: dict[str, dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [{"email": email, **r} for email, r in (results or {}).items()]


CONNECTOR = ImapConnector()
