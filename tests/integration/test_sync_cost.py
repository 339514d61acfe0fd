"""A sync of an unchanged account costs O(1) IMAP commands and bytes per folder,
whatever the mailbox size (CONDSTORE/QRESYNC, RFC 7162)."""

from __future__ import annotations

import pytest

from mailsync.usecases.sync_account import sync_account
from tests.support.accounts import RecordingProviders, connect, mirror
from tests.support.dovecot import make_mail

pytestmark = pytest.mark.integration


def noop_cost(dovecot, n):
    user = dovecot.new_user(f"size{n}")
    acc = connect(dovecot, user)
    dovecot.append_many(user[0], "INBOX", [make_mail(f"m{i}") for i in range(n)])
    rec = RecordingProviders()
    sync_account("t1", acc["id"], provider_factory=rec)
    assert len(mirror(acc)) == n
    dovecot.wait_for_logouts(user[0], 3)  # connect, append_many, first sync
    sessions = dovecot.logged_out_sessions(user[0])
    before = dovecot.session_bytes(user[0])
    sync_account("t1", acc["id"], provider_factory=rec)
    dovecot.wait_for_logouts(user[0], sessions + 1)
    return rec.providers[-1].commands, dovecot.session_bytes(user[0]) - before


def test_unchanged_account_sync_is_constant_cost(tenant, dovecot):
    small_cmds, small_bytes = noop_cost(dovecot, 20)
    big_cmds, big_bytes = noop_cost(dovecot, 400)
    assert small_cmds == big_cmds
    # LOGIN, ENABLE, LIST, then one STATUS per synced folder (INBOX, Sent, Archive).
    assert big_cmds.count("STATUS") == 3 and "FETCH" not in " ".join(big_cmds)
    assert len(big_cmds) <= 8
    assert big_bytes < 2048 and abs(big_bytes - small_bytes) < 64
