"""Connect a Dovecot user as an account through the real use case, and inspect the mirror."""

from __future__ import annotations

from collections.abc import Iterable
from email import message_from_bytes
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


def stored_raw(m: dict[str, Any]) -> bytes:
    """The raw MIME the mirror holds for a message of :func:`mirror` (its S3 object)."""
    from mailsync.config import get_settings
    from mailsync.store import aws

    obj = aws.client("s3").get_object(Bucket=get_settings().bucket, Key=m["raw_key"])
    return bytes(obj["Body"].read())


def bare_id(message_id: str | None) -> str:
    """A Message-ID as both sides are compared: no angle brackets, lower case."""
    return (message_id or "").strip().strip("<>").lower()


def server_mailbox(dovecot: Any, user: str, folders: Iterable[str]) -> dict[str, dict[str, Any]]:
    """What the server holds in ``folders``, by Message-ID: ``{"folder", "unread", "raw",
    "size"}``, read in a session of its own as another mail client (``BODY.PEEK[]``: the bytes
    the server sends, ``RFC822.SIZE``: the size it states)."""
    out: dict[str, dict[str, Any]] = {}
    with dovecot.client(user) as c:
        for folder in folders:
            if not c.select_folder(folder, readonly=True).get(b"EXISTS"):
                continue
            for item in c.fetch(c.search("ALL"), ["BODY.PEEK[]", "FLAGS", "RFC822.SIZE"]).values():
                raw = bytes(item[b"BODY[]"])
                mid = bare_id(message_from_bytes(raw).get("Message-ID"))
                assert mid not in out, f"{mid} twice at the server"
                out[mid] = {
                    "folder": folder,
                    "unread": b"\\Seen" not in item[b"FLAGS"],
                    "raw": raw,
                    "size": int(item[b"RFC822.SIZE"]),
                }
    return out
