"""Connect a Dovecot user as an account through the real use case, and inspect the mirror."""

from __future__ import annotations

from typing import Any

from mailsync.store import keys
from mailsync.store.models import LocationItem, MessageItem, ThreadItem
from mailsync.usecases import accounts
from mailsync.usecases.sync_account import sync_account


def connect(
    dovecot: Any, imap_user: tuple[str, str], tenant_id: str = "t1", owner: str = "alice", **extra: Any
) -> dict[str, Any]:
    user, pw = imap_user
    server = {
        "host": dovecot.host,
        "port": dovecot.port,
        "security": "none",
        "username": user,
        "password": pw,
    }
    body = {"email": f"{user}@example.test", "imap": server, "smtp": dict(server), **extra}
    return accounts.create_account(tenant_id, owner, body)


def sync(acc: dict[str, Any], tenant_id: str = "t1", **kw: Any) -> dict[str, Any]:
    """One worker sync of the account (``kw``: ``sync_account``'s, e.g. ``now``, ``provider_factory``)."""
    return sync_account(tenant_id, acc["id"], **kw)


class RecordingProviders:
    """A ``provider_factory`` that opens the real provider and keeps each one, so a test can
    read the IMAP commands a sync sent (``providers[-1].commands``)."""

    def __init__(self) -> None:
        self.providers: list[Any] = []

    def __call__(self, account: Any, secrets: Any) -> Any:
        from mailsync.connectors import open_provider

        p = open_provider(account, secrets)
        self.providers.append(p)
        return p


def mirror(acc: dict[str, Any], tenant_id: str = "t1") -> list[dict[str, Any]]:
    """Visible messages of an account (as the API lists them), oldest first."""
    items = MessageItem.by_account.query(keys.account_messages(tenant_id, acc["id"]))
    return sorted(
        (
            {
                "id": m.mid,
                "subject": m.subject,
                "folder": m.folder,
                "unread": m.unread,
                "thread_id": m.thread_id,
                "message_id": m.header_message_id,
                "raw_key": m.raw_key,
            }
            for m in items
        ),
        key=lambda m: (m["subject"], m["folder"]),
    )


def thread(tenant_id: str, thread_id: str) -> ThreadItem | None:
    try:
        return ThreadItem.get(keys.thread(tenant_id, thread_id), "TH")
    except ThreadItem.DoesNotExist:
        return None


def remove_from_store(account_id: str, mid: str, tenant_id: str = "t1", *, item: bool = True) -> None:
    """A mail lost behind the engine's back: its locations (and, with ``item``, its message
    item) deleted directly in the store, as a store fault or a bad manual edit would."""
    if item:
        MessageItem.get(keys.message(tenant_id, mid), "M").delete()
    for loc in LocationItem.query(keys.account(tenant_id, account_id), LocationItem.sk.startswith("L#")):
        if loc.mid == mid:
            loc.delete()
