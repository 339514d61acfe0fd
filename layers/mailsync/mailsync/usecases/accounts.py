"""Account use cases: connect (IMAP/SMTP with a password), read, settings, pause, delete.

Invariants:

* An account is created only after a successful login (``auth_failed`` /
  ``connection_failed`` otherwise) and only for hosts on the public internet
  unless ``MAILSYNC_ALLOW_PRIVATE_HOSTS=1`` (``host_not_allowed``), so a tenant
  cannot make us probe our own network (SSRF).
* Passwords are envelope-encrypted before they reach DynamoDB and never leave
  this module in a response or a log.
* One mailbox is connected at most once per tenant (``account_exists``).
* Deleting an account purges messages, threads, S3 objects, cursors and
  credentials; it is resumable (state ``deleting``) if interrupted.
"""

from __future__ import annotations

import secrets as pysecrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from mailsync.config import Settings, get_settings
from mailsync.domain import detect as detect_mod
from mailsync.domain import hostguard
from mailsync.domain.clock import iso, parse_iso, utcnow
from mailsync.domain.ports import AuthFailed, ConnectionFailed, MailProvider, ProviderError
from mailsync.domain.sync import AccountContext
from mailsync.errors import Conflict, InvalidRequest, NotFound, Unprocessable
from mailsync.observability import logger
from mailsync.providers.factory import make_provider
from mailsync.store import blobs, crypto, keys, repo
from mailsync.store.models import (
    AccountItem,
    AddressMessageItem,
    EmailLockItem,
    FolderItem,
    LinkItem,
    LocationItem,
    MessageItem,
    ThreadItem,
)
from mailsync.usecases.jobs import enqueue_sync

ProviderFactory = Callable[[dict[str, Any], dict[str, Any]], MailProvider]

DEFAULT_SETTINGS = {
    "folder_mode": "all",
    "folders": [],
    "visibility": "private",
    "auto_assign": True,
    "signature": "",
}


def credential_context(tenant_id: str, account_id: str) -> dict[str, str]:
    return {"tenant_id": tenant_id, "account_id": account_id}


def new_account_doc(
    tenant_id: str,
    owner: str,
    email: str,
    provider: str,
    *,
    settings: dict[str, Any] | None = None,
    servers: dict[str, Any] | None = None,
    backfill_days: int = 0,
    saves_sent: bool = False,
) -> dict[str, Any]:
    """A new account, in ``initial_sync`` and due now; the sync starts at its creation."""
    now = iso(utcnow())
    return {
        "tenant_id": tenant_id,
        "account_id": "acc_" + pysecrets.token_hex(8),
        "owner": owner,
        "email": email,
        "provider": provider,
        "state": "initial_sync",
        "error": None,
        "settings": {**DEFAULT_SETTINGS, **(settings or {})},
        "servers": servers or {},
        "sync": {
            "started_at": now,
            "last_success_at": None,
            "messages": 0,
            "folders_total": 0,
            "folders_done": 0,
        },
        "sync_start": now,
        "backfill_days": backfill_days,
        "failures": 0,
        "created_at": now,
        "next_due": now,
        "saves_sent": saves_sent,
    }


def load_secrets(acc: dict[str, Any]) -> dict[str, crypto.Secret]:
    envelope = repo.get_credentials_envelope(acc["tenant_id"], acc["account_id"])
    return crypto.decrypt(envelope or {}, context=credential_context(acc["tenant_id"], acc["account_id"]))


def account_context(acc: dict[str, Any], s: Settings) -> AccountContext:
    return AccountContext(
        tenant_id=acc["tenant_id"],
        account_id=acc["account_id"],
        owner=acc["owner"],
        email=acc["email"],
        visibility=(acc.get("settings") or {}).get("visibility", "private"),
        sync_start=parse_iso(acc["sync_start"]),
        backfill_days=acc["backfill_days"],
        auto_assign=bool((acc.get("settings") or {}).get("auto_assign", True)),
    )


def public_view(acc: dict[str, Any]) -> dict[str, Any]:
    """The account as the API shows it: never any secret."""
    servers = acc.get("servers") or {}
    return {
        "id": acc["account_id"],
        "email": acc["email"],
        "provider": acc["provider"],
        "owner": acc["owner"],
        "state": acc["state"],
        "error": acc.get("error"),
        "settings": {**DEFAULT_SETTINGS, **(acc.get("settings") or {})},
        "servers": {k: {f: v for f, v in s.items() if f != "password"} for k, s in servers.items()},
        "backfill_days": acc.get("backfill_days", 0),
        "sync": acc["sync"],
        "created_at": acc["created_at"],
    }


def _owned(tenant_id: str, user_id: str, account_id: str) -> dict[str, Any]:
    acc = repo.get_account(tenant_id, account_id)
    if acc is None or acc["owner"] != user_id or acc["state"] == "deleting":
        raise NotFound("account not found")
    return acc


def get_account(tenant_id: str, user_id: str, account_id: str) -> dict[str, Any]:
    return public_view(_owned(tenant_id, user_id, account_id))


def list_accounts(
    tenant_id: str, user_id: str, *, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    from mailsync.usecases.reading import page_cursor

    pk = keys.owner_accounts(tenant_id, user_id)
    lek = page_cursor(tenant_id, cursor, "gsi1pk", pk)
    it = AccountItem.by_owner.query(pk, limit=limit, page_size=limit, last_evaluated_key=lek)
    items = [public_view(repo.account_doc(i)) for i in it if i.state != "deleting"]
    return {"items": items, "next_cursor": repo.encode_cursor(it.last_evaluated_key)}


# ------------------------------------------------------------------ connect
def resolve_servers(body: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Return (email, imap, smtp, detection) from either request form."""
    email = (body.get("email") or "").strip()
    if body.get("imap"):
        imap = dict(body["imap"])
        smtp = dict(body.get("smtp") or {})
        if not email:
            email = imap["username"] if "@" in imap["username"] else ""
        if not email or "@" not in email:
            raise InvalidRequest(
                "email is required (or an IMAP username that is an address)", code="invalid_address"
            )
        if not smtp:
            raise InvalidRequest("smtp settings are required with explicit imap settings")
        return email, imap, smtp, {"source": {"imap": "request", "smtp": "request"}}
    if not email or not body.get("password"):
        raise InvalidRequest("either {email, password} or explicit imap/smtp settings are required")
    try:
        found = detect_mod.detect(email)
    except ValueError as e:
        raise InvalidRequest(str(e), code="invalid_address") from e
    if found.get("oauth"):
        # Known OAuth providers can still be used over IMAP with an app password.
        logger.info("imap connect for an oauth-capable provider", extra={"provider": found.get("provider")})
    pw = body["password"]
    imap = {**found["imap"], "password": pw}
    smtp = {**found["smtp"], "password": pw}
    imap.setdefault("username", email)
    smtp.setdefault("username", email)
    return email, imap, smtp, found


def _guard(server: dict[str, Any], s: Settings) -> None:
    if server.get("security") == "none" and not s.allow_private_hosts:
        raise Unprocessable("plaintext connections are not allowed", code="insecure_connection")
    try:
        hostguard.check_host(server["host"], allow_private=s.allow_private_hosts)
    except hostguard.HostNotAllowed as e:
        raise Unprocessable(f"host {server['host']} is not allowed", code="host_not_allowed") from e
    except hostguard.HostUnresolvable as e:
        raise Unprocessable(f"host {server['host']} does not resolve", code="connection_failed") from e


def create_account(
    tenant_id: str,
    user_id: str,
    body: dict[str, Any],
    *,
    provider_factory: ProviderFactory = make_provider,
    settings: Settings | None = None,
) -> dict[str, Any]:
    s = settings or get_settings()
    email, imap, smtp, _found = resolve_servers(body)
    for server in (imap, smtp):
        _guard(server, s)
    if repo.account_by_email(tenant_id, email):
        raise Conflict(f"{email} is already connected in this tenant", code="account_exists")

    doc = new_account_doc(
        tenant_id,
        user_id,
        email,
        "imap",
        settings=body.get("settings"),
        servers={
            "imap": {k: imap[k] for k in ("host", "port", "security", "username")},
            "smtp": {k: smtp[k] for k in ("host", "port", "security", "username")},
        },
        backfill_days=int(body.get("backfill_days") or 0),
        saves_sent=bool(_found.get("saves_sent", False)),
    )
    account_id = doc["account_id"]
    secret_values = {"imap_password": imap["password"], "smtp_password": smtp["password"]}
    try:
        with provider_factory(doc, secret_values) as provider:
            folders = provider.list_folders()
    except AuthFailed as e:
        raise Unprocessable(f"login failed: {e}", code="auth_failed") from e
    except ConnectionFailed as e:
        raise Unprocessable(f"could not connect: {e}", code="connection_failed") from e
    except ProviderError as e:
        raise Unprocessable(f"the server refused: {e}", code="connection_failed") from e

    mode, selected = doc["settings"]["folder_mode"], doc["settings"]["folders"]
    names = {f.name for f in folders}
    unknown = [f for f in selected if f not in names]
    if mode == "selected" and unknown:
        raise Unprocessable(f"unknown folders: {', '.join(unknown)}", code="unknown_folder")
    envelope = crypto.encrypt(
        secret_values, key_id=s.kms_key_id, context=credential_context(tenant_id, account_id)
    )
    repo.insert_account(doc, envelope, s.due_shards)
    pk = keys.account(tenant_id, account_id)
    with FolderItem.batch_write() as b:
        for f in folders:
            b.save(FolderItem(pk, f"F#{f.name}", name=f.name, role=f.role, synced=False, present=True))
    enqueue_sync(tenant_id, account_id, "initial")
    logger.info("account connected", extra={"tenant_id": tenant_id, "account_id": account_id})
    return public_view(doc)


# ----------------------------------------------------------------- folders
def list_folders(tenant_id: str, user_id: str, account_id: str) -> list[dict[str, Any]]:
    _owned(tenant_id, user_id, account_id)
    return [
        {"name": f.name, "role": f.role, "synced": bool(f.synced), "messages": int(f.messages or 0)}
        for f in sorted(repo.list_folders(tenant_id, account_id), key=lambda f: (f.role != "inbox", f.name))
    ]


def update_settings(tenant_id: str, user_id: str, account_id: str, patch: dict[str, Any]) -> dict[str, Any]:
    acc = _owned(tenant_id, user_id, account_id)
    current = {**DEFAULT_SETTINGS, **(acc.get("settings") or {})}
    new = {**current, **{k: v for k, v in patch.items() if v is not None}}
    if "folders" in patch and patch["folders"] is not None and "folder_mode" not in patch:
        new["folder_mode"] = "selected"
    if new["folder_mode"] == "selected":
        known = {f.name for f in repo.list_folders(tenant_id, account_id)}
        unknown = [f for f in new["folders"] if f not in known]
        if unknown:
            raise Unprocessable(f"unknown folders: {', '.join(unknown)}", code="unknown_folder")
    acc["settings"] = new
    folders_changed = (new["folder_mode"], new["folders"]) != (current["folder_mode"], current["folders"])
    if folders_changed and acc["state"] not in ("paused", "auth_error"):
        acc["next_due"] = iso(utcnow())
    repo.save_account(acc, get_settings().due_shards)
    if folders_changed and acc["state"] not in ("paused", "auth_error"):
        enqueue_sync(tenant_id, account_id, "settings")
    return public_view(acc)


# ---------------------------------------------------------- state changes
def request_sync(tenant_id: str, user_id: str, account_id: str) -> dict[str, Any]:
    acc = _owned(tenant_id, user_id, account_id)
    if acc["state"] == "paused":
        raise Conflict("the account is paused; resume it first", code="account_paused")
    if acc["state"] == "auth_error":
        raise Conflict("the account needs new credentials", code="auth_error")
    enqueue_sync(tenant_id, account_id, "manual")
    return {"account_id": account_id, "queued": True}


def pause(tenant_id: str, user_id: str, account_id: str) -> dict[str, Any]:
    acc = _owned(tenant_id, user_id, account_id)
    acc["state"] = "paused"
    acc["next_due"] = None
    repo.save_account(acc, get_settings().due_shards)
    return public_view(acc)


def resume(tenant_id: str, user_id: str, account_id: str) -> dict[str, Any]:
    acc = _owned(tenant_id, user_id, account_id)
    if acc["state"] == "paused":
        done = acc["sync"].get("last_success_at") and acc["sync"].get("folders_done") == acc["sync"].get(
            "folders_total"
        )
        acc["state"] = "active" if done else "initial_sync"
        acc["next_due"] = iso(utcnow())
        acc["failures"] = 0
        repo.save_account(acc, get_settings().due_shards)
        enqueue_sync(tenant_id, account_id, "resume")
    return public_view(acc)


def delete_account(tenant_id: str, user_id: str, account_id: str) -> None:
    acc = repo.get_account(tenant_id, account_id)
    if acc is None or acc["owner"] != user_id:
        raise NotFound("account not found")
    acc["state"], acc["next_due"] = "deleting", None
    repo.save_account(acc, get_settings().due_shards)
    if acc["provider"] == "google":
        from mailsync.usecases.google import forget_account

        forget_account(tenant_id, account_id, acc["email"])
    elif acc["provider"] == "microsoft":
        from mailsync.usecases.microsoft import forget_account as forget_microsoft

        forget_microsoft(tenant_id, account_id)
    purge_account(tenant_id, account_id, acc["email"])


def purge_account(tenant_id: str, account_id: str, email: str) -> None:
    """Remove everything of an account. Idempotent; safe to re-run after a crash."""
    pk = keys.account(tenant_id, account_id)
    thread_ids: set[str] = set()
    mids: set[str] = set()
    account_items = list(LocationItem.query(pk))  # every item type in the partition
    mids.update(i.sk[2:] for i in account_items if i.sk.startswith("O#"))
    mids.update(m.mid for m in MessageItem.by_account.query(keys.account_messages(tenant_id, account_id)))
    links: list[tuple[str, str, str]] = []
    addresses: list[tuple[str, str, str]] = []
    for m in MessageItem.batch_get([(keys.message(tenant_id, mid), "M") for mid in mids]) if mids else []:
        thread_ids.add(m.thread_id)
        links.extend((cid, m.received_at, m.mid) for cid in (m.links or {}))
        addresses.extend((str(e), m.received_at, m.mid) for e in (m.participants or []))
    # Links and the address index go with the mails (contacts stay).
    with LinkItem.batch_write() as b:
        for cid, received, mid in links:
            b.delete(LinkItem(keys.contact(tenant_id, cid), keys.link_sk(received, mid)))
    with AddressMessageItem.batch_write() as b:
        for address, received, mid in addresses:
            b.delete(AddressMessageItem(keys.address_messages(tenant_id, address), f"{received}#{mid}"))
    with MessageItem.batch_write() as b:
        for mid in mids:
            b.delete(MessageItem(keys.message(tenant_id, mid), "M"))
    with ThreadItem.batch_write() as b:
        for th in thread_ids:
            b.delete(ThreadItem(keys.thread(tenant_id, th), "TH"))
    blobs.delete_prefix(blobs.account_prefix(tenant_id, account_id))
    EmailLockItem(keys.email_lock(tenant_id, email), "E").delete()
    with LocationItem.batch_write() as b:
        for i in account_items:
            if i.sk != "A":
                b.delete(LocationItem(pk, i.sk))
    AccountItem(pk, "A").delete()
    logger.info(
        "account purged",
        extra={
            "tenant_id": tenant_id,
            "account_id": account_id,
            "messages": len(mids),
            "threads": len(thread_ids),
        },
    )


def backoff_seconds(failures: int, poll: int) -> int:
    return int(min(poll * (2 ** min(failures, 6)), 3600))


def next_due_after(seconds: int) -> str:
    return iso(utcnow() + timedelta(seconds=seconds))
