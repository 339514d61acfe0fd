"""Helpers of the REST provider tests (tests/integration/test_gmail_provider.py,
test_graph_provider.py): draining a folder's change stream, what it yielded, and the real
engine's DynamoDB/S3 mirror of one test account."""

from __future__ import annotations

import email
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pytest

from mailsync.domain.ports import ChangeBatch, MailProvider, Upsert
from mailsync.domain.sync import AccountContext

if TYPE_CHECKING:
    from mailsync.store.mirror import DynamoMirrorStore


def drain(
    p: MailProvider, folder: str, cursor: dict[str, Any] | None, batch_size: int = 100, *, since: datetime
) -> tuple[list[ChangeBatch], dict[str, Any] | None]:
    """Every batch of ``folder`` from ``cursor``, and the cursor after the last one."""
    batches = list(p.changes(folder, cursor, since, batch_size))
    return batches, (batches[-1].cursor if batches else cursor)


def changes(batches: list[ChangeBatch]) -> list[Any]:
    return [c for b in batches for c in b.changes]


def upserts(batches: list[ChangeBatch]) -> dict[str, Upsert]:
    return {c.ref: c for c in changes(batches) if isinstance(c, Upsert)}


def subjects(batches: list[ChangeBatch]) -> set[str]:
    return {str(email.message_from_bytes(u.raw)["Subject"]) for u in upserts(batches).values()}


def store_account(tenant_id: str, account_id: str, owner: str, address: str) -> None:
    """An account item (IMAP, active) under a chosen id, as the connect use case stores it."""
    from mailsync.config import get_settings
    from mailsync.domain.account import new_account
    from mailsync.store.accounts import save_account

    acc = new_account(tenant_id, owner, address, "imap").with_(account_id=account_id)
    save_account(acc, get_settings().due_shards)


def engine_mirror(account_id: str, address: str, since: datetime) -> tuple[DynamoMirrorStore, AccountContext]:
    """The mirror store and account context of a private test account of alice in tenant t1
    (needs the ``aws`` fixture). The account item is stored too: the mirror refuses writers
    for an account that does not exist (a purge may have removed it)."""
    from mailsync.store.mirror import DynamoMirrorStore

    store_account("t1", account_id, "alice", address)

    ctx = AccountContext(
        tenant_id="t1",
        account_id=account_id,
        owner="alice",
        email=address,
        visibility="private",
        sync_start=since,
    )
    return DynamoMirrorStore("t1", account_id), ctx


def mirror_by_subject(account_id: str) -> dict[str, dict[str, Any]]:
    """The account's visible messages by subject."""
    from tests.support.accounts import mirror

    return {m["subject"]: m for m in mirror({"id": account_id})}


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The REST providers' backoff sleeps are recorded instead of slept (their ``sleep`` is
    injectable; how often and how long they back off stays theirs: the recorded delays are
    what a Lambda would sleep)."""
    from mailsync.providers import gmail, graph

    slept: list[float] = []

    class Gmail(gmail.GmailProvider):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **{**kw, "sleep": slept.append})

    class Graph(graph.GraphProvider):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **{**kw, "sleep": slept.append})

    monkeypatch.setattr(gmail, "GmailProvider", Gmail)
    monkeypatch.setattr(graph, "GraphProvider", Graph)
    return slept
