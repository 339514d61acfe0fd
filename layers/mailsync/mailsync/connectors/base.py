"""The connector registry: ``account.provider`` → its connector, in one table.

Connector modules load on first use, so a cold IMAP request never imports the Google or
Microsoft clients. Tests may :func:`register` a connector of their own.
"""

from __future__ import annotations

import importlib
from typing import Any

from mailsync.domain.account import Account
from mailsync.domain.ports import Connector, MailProvider

# provider name → module:attribute of its connector
REGISTRY: dict[str, str] = {
    "imap": "mailsync.connectors.imap:CONNECTOR",
    "google": "mailsync.connectors.google:CONNECTOR",
    "microsoft": "mailsync.connectors.microsoft:CONNECTOR",
}
_loaded: dict[str, Connector] = {}


class BaseConnector:
    """No-op hooks: a connector overrides what its provider needs."""

    provider = ""
    # Signs in with a password the user can replace (PUT /v1/accounts/{id}/credentials);
    # OAuth accounts reconnect through their authorize route instead.
    password_credentials = False

    def before_sync(self, account: Account, provider: Any, known: Any) -> None:
        return None

    def after_session(self, account: Account, provider: Any) -> None:
        return None

    def watch(self, account: Account, provider: Any) -> None:
        return None

    def forget(self, account: Account) -> None:
        return None


def register(provider: str, connector: Connector) -> None:
    _loaded[provider] = connector


def for_provider(provider: str) -> Connector:
    if provider not in _loaded:
        if provider not in REGISTRY:
            raise ValueError(f"unsupported provider {provider!r}")
        module, _, attr = REGISTRY[provider].partition(":")
        _loaded[provider] = getattr(importlib.import_module(module), attr)
    return _loaded[provider]


def for_account(account: Account) -> Connector:
    return for_provider(account.provider)


def open_provider(account: Account, secrets: dict[str, Any]) -> MailProvider:
    """The default provider factory: the account's connector opens its session."""
    return for_account(account).open(account, secrets)
