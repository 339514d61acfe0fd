"""A settings change made while a sync runs applies to the mails stored after it."""

from __future__ import annotations

import pytest

from mailsync.connectors import open_provider as make_provider
from mailsync.usecases import accounts
from mailsync.usecases.sync_account import sync_account
from tests.support.accounts import connect
from tests.support.api import ApiClient
from tests.support.dovecot import make_mail

pytestmark = pytest.mark.integration


def test_visibility_changed_during_a_sync_applies_to_mails_stored_after(tenant, dovecot, imap_user):
    user, _ = imap_user
    acc = connect(dovecot, imap_user)  # private by default
    dovecot.append(user, "INBOX", make_mail("nach der Umstellung"))

    def factory(account, secrets):
        provider = make_provider(account, secrets)
        original = provider.changes

        def changes(folder, cursor, since, batch_size=100):
            # The user switches to public after the sync read the account, before it stores mail.
            accounts.update_settings("t1", "alice", acc["id"], {"visibility": "public"})
            yield from original(folder, cursor, since, batch_size)

        provider.changes = changes  # type: ignore[method-assign]
        return provider

    sync_account("t1", acc["id"], provider_factory=factory)
    (m,) = ApiClient("key-t1", "alice").get("/v1/messages").body["items"]
    assert m["visibility"] == "public"
