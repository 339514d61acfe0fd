"""Account use cases: connect (IMAP/SMTP with a password), read, settings, pause, delete.

Invariants:

* An account is created only after a successful login (``auth_failed`` /
  ``connection_failed`` otherwise; ``tls_error`` when the certificate is not trusted, names
  another host, or a ``starttls`` server offers no STARTTLS: never downgraded, RFC 8314) and only for hosts on the public internet
  unless ``MAILSYNC_ALLOW_PRIVATE_HOSTS=1`` (``host_not_allowed``), so a tenant
  cannot make us probe our own network (SSRF).
* Passwords are envelope-encrypted before they reach DynamoDB and never leave
  this module in a response or a log.
* One mailbox is connected at most once per tenant (``account_exists``).
* Deleting an account purges messages, threads, S3 objects, cursors and
  credentials; it is resumable (state ``deleting``) if interrupted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from mailsync import connectors
from mailsync.config import Settings, get_settings
from mailsync.domain import detect as detect_mod
from mailsync.domain import hostguard
from mailsync.domain.account import NOT_DUE_STATES, Account, AccountSettings, Server, new_account
from mailsync.domain.clock import iso, parse_iso, utcnow
from mailsync.domain.exclusions import ExcludeRules, InvalidRule
from mailsync.domain.health import CheckResult, health_view
from mailsync.domain.ports import (
    AuthFailed,
    ConnectionFailed,
    FolderInfo,
    MailProvider,
    ProviderError,
    TlsFailed,
)
from mailsync.domain.sync import AccountContext
from mailsync.errors import Conflict, InvalidRequest, NotFound, Unprocessable
from mailsync.observability import logger
from mailsync.store import accounts as repo
from mailsync.store import health as health_store
from mailsync.store.accounts import load_secrets
from mailsync.store.queue import sync_jobs
from mailsync.usecases.lifecycle import ensure_not_purging, purge_account_step

ProviderFactory = Callable[[Account, dict[str, Any]], MailProvider]

__all__ = [
    "ProviderFactory", "account_context", "load_secrets", "new_account", "public_view",
]  # fmt: skip


def account_context(acc: Account, s: Settings) -> AccountContext:
    return AccountContext(
        tenant_id=acc.tenant_id,
        account_id=acc.account_id,
        owner=acc.owner,
        email=acc.email,
        visibility=acc.settings.visibility,
        sync_start=parse_iso(acc.sync_start),
        backfill_days=acc.backfill_days,
        auto_assign=acc.settings.auto_assign,
        exclude=acc.settings.exclude,
    )


PUBLIC_FIELDS = (
    "email", "provider", "owner", "state", "error", "settings", "servers", "backfill_days", "sync", "created_at",
)  # fmt: skip


def public_view(acc: Account, check: CheckResult | None = None) -> dict[str, Any]:
    """The account as the API shows it: never any secret (servers carry no password); its
    ``health`` block with the last completeness check ``check``."""
    doc = repo.to_doc(acc)
    view = {"id": acc.account_id, **{f: doc[f] for f in PUBLIC_FIELDS}}
    view["health"] = health_view(acc, check)
    view["error"] = view["health"]["last_error"]
    return view


def view(acc: Account) -> dict[str, Any]:
    """:func:`public_view` with the account's last check (one GetItem)."""
    return public_view(acc, health_store.get_check(acc.tenant_id, acc.account_id))


def _owned(tenant_id: str, user_id: str, account_id: str) -> Account:
    acc = repo.get_account(tenant_id, account_id)
    if acc is None or acc.owner != user_id or acc.state == "deleting":
        raise NotFound("account not found")
    return acc


def get_account(tenant_id: str, user_id: str, account_id: str) -> dict[str, Any]:
    return view(_owned(tenant_id, user_id, account_id))


def list_accounts(
    tenant_id: str, user_id: str, *, limit: int = 50, cursor: str | None = None
) -> dict[str, Any]:
    docs, next_cursor = repo.accounts_of_owner(tenant_id, user_id, limit=limit, cursor=cursor)
    checks = health_store.get_checks(tenant_id, [d.account_id for d in docs]) if docs else {}
    return {"items": [public_view(d, checks.get(d.account_id)) for d in docs], "next_cursor": next_cursor}


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


def login_check(acc: Account, secrets: dict[str, str], provider_factory: ProviderFactory) -> list[FolderInfo]:
    """Log in with ``secrets`` and list the folders; a refusal is 422 ``auth_failed``,
    ``tls_error`` (certificate or STARTTLS, see the module docstring) or ``connection_failed``
    (the credentials are not stored then)."""
    try:
        with provider_factory(acc, secrets) as provider:
            return provider.list_folders()
    except AuthFailed as e:
        raise Unprocessable(f"login failed: {e}", code="auth_failed") from e
    except TlsFailed as e:
        raise Unprocessable(f"TLS failed, nothing was sent in plain text: {e}", code="tls_error") from e
    except ConnectionFailed as e:
        raise Unprocessable(f"could not connect: {e}", code="connection_failed") from e
    except ProviderError as e:
        raise Unprocessable(f"the server refused: {e}", code="connection_failed") from e


def create_account(
    tenant_id: str,
    user_id: str,
    body: dict[str, Any],
    *,
    provider_factory: ProviderFactory = connectors.open_provider,
    settings: Settings | None = None,
) -> dict[str, Any]:
    s = settings or get_settings()
    ensure_not_purging(tenant_id, user_id)
    email, imap, smtp, _found = resolve_servers(body)
    for server in (imap, smtp):
        _guard(server, s)
    if repo.account_by_email(tenant_id, email):
        raise Conflict(f"{email} is already connected in this tenant", code="account_exists")

    doc = new_account(
        tenant_id,
        user_id,
        email,
        "imap",
        settings=body.get("settings"),
        servers={
            "imap": Server(imap["host"], imap["port"], imap["security"], imap["username"]),
            "smtp": Server(smtp["host"], smtp["port"], smtp["security"], smtp["username"]),
        },
        backfill_days=int(body.get("backfill_days") or 0),
        saves_sent=bool(_found.get("saves_sent", False)),
    )
    account_id = doc.account_id
    secret_values = {"imap_password": imap["password"], "smtp_password": smtp["password"]}
    folders = login_check(doc, secret_values, provider_factory)

    mode, selected = doc.settings.folder_mode, doc.settings.folders
    names = {f.name for f in folders}
    unknown = [f for f in selected if f not in names]
    if mode == "selected" and unknown:
        raise Unprocessable(f"unknown folders: {', '.join(unknown)}", code="unknown_folder")
    envelope = repo.encrypt_credentials(tenant_id, account_id, secret_values, s.kms_key_id)
    repo.insert_account(doc, envelope, s.due_shards)
    repo.add_folders(tenant_id, account_id, folders)
    sync_jobs.enqueue(tenant_id, account_id, "initial")
    logger.info("account connected", extra={"tenant_id": tenant_id, "account_id": account_id})
    return public_view(doc)


# ----------------------------------------------------------------- folders
def list_folders(tenant_id: str, user_id: str, account_id: str) -> list[dict[str, Any]]:
    _owned(tenant_id, user_id, account_id)
    return [
        {"name": f.name, "role": f.role, "synced": f.synced, "messages": f.messages}
        for f in sorted(repo.list_folders(tenant_id, account_id), key=lambda f: (f.role != "inbox", f.name))
    ]


def update_settings(tenant_id: str, user_id: str, account_id: str, patch: dict[str, Any]) -> dict[str, Any]:
    acc = _owned(tenant_id, user_id, account_id)
    current = acc.settings
    new_doc = {**current.as_dict(), **{k: v for k, v in patch.items() if v is not None}}
    if "folders" in patch and patch["folders"] is not None and "folder_mode" not in patch:
        new_doc["folder_mode"] = "selected"
    exclude = patch.get("exclude")
    if exclude is not None:
        try:
            new_doc["exclude"] = ExcludeRules.parse(
                current.exclude.addresses if exclude.get("addresses") is None else exclude["addresses"],
                current.exclude.domains if exclude.get("domains") is None else exclude["domains"],
            ).as_dict()
        except InvalidRule as e:
            if e.code == "invalid_address":
                raise Unprocessable(str(e), code="invalid_address") from None
            if e.code == "invalid_domain":
                raise Unprocessable(str(e), code="invalid_domain") from None
            raise Unprocessable(str(e), code="too_many_entries") from None
    new = AccountSettings.from_dict(new_doc)
    if new.folder_mode == "selected":
        known = {f.name for f in repo.list_folders(tenant_id, account_id)}
        unknown = [f for f in new.folders if f not in known]
        if unknown:
            raise Unprocessable(f"unknown folders: {', '.join(unknown)}", code="unknown_folder")
    acc = acc.with_(settings=new)
    folders_changed = (new.folder_mode, new.folders) != (current.folder_mode, current.folders)
    if folders_changed and acc.state not in NOT_DUE_STATES:
        acc = acc.with_(next_due=iso(utcnow()))
    repo.save_account(acc, get_settings().due_shards)
    if folders_changed and acc.state not in NOT_DUE_STATES:
        sync_jobs.enqueue(tenant_id, account_id, "settings")
    elif new.exclude.digest() not in (None, acc.exclude_applied):
        sync_jobs.enqueue(tenant_id, account_id, "exclude")  # the pass runs even when paused
    return view(acc)


# ---------------------------------------------------------- state changes
def require_syncable(acc: Account) -> None:
    """A sync can be asked for: 409 ``account_paused`` / ``auth_error`` otherwise."""
    if acc.state == "paused":
        raise Conflict("the account is paused; resume it first", code="account_paused")
    if acc.state == "auth_error":
        raise Conflict("the account needs new credentials", code="auth_error")


def request_sync(tenant_id: str, user_id: str, account_id: str) -> dict[str, Any]:
    acc = _owned(tenant_id, user_id, account_id)
    require_syncable(acc)
    sync_jobs.enqueue(tenant_id, account_id, "manual")
    return {"account_id": account_id, "queued": True}


def pause(tenant_id: str, user_id: str, account_id: str) -> dict[str, Any]:
    acc = _owned(tenant_id, user_id, account_id).with_(state="paused", next_due=None)
    repo.save_account(acc, get_settings().due_shards)
    return view(acc)


def resume(tenant_id: str, user_id: str, account_id: str) -> dict[str, Any]:
    acc = _owned(tenant_id, user_id, account_id)
    if acc.state == "paused":
        done = acc.sync.last_success_at and acc.sync.initial_done
        acc = acc.with_(state="active" if done else "initial_sync", next_due=iso(utcnow()), failures=0)
        repo.save_account(acc, get_settings().due_shards)
        sync_jobs.enqueue(tenant_id, account_id, "resume")
    return view(acc)


DELETE_BUDGET_SECONDS = 15.0  # inside API Gateway's 29 s; a bigger mailbox goes on in the worker


def delete_account(tenant_id: str, user_id: str, account_id: str) -> None:
    """Mark the account ``deleting`` (off every list and the due index at once), stop its
    push channel at the provider, and purge it; a mailbox too big to purge within
    :data:`DELETE_BUDGET_SECONDS` is finished by the worker (the job queued first)."""
    acc = repo.get_account(tenant_id, account_id)
    if acc is None or acc.owner != user_id or acc.state == "deleting":
        raise NotFound("account not found")
    acc = acc.with_(state="deleting", next_due=None)
    repo.save_account(acc, get_settings().due_shards)
    # Queued before the work: if this request dies (API timeout), the worker finishes it;
    # when the purge completes here, the job finds the account gone and does nothing.
    sync_jobs.enqueue(tenant_id, account_id, "purge")
    purge_account_step(acc, time.monotonic() + DELETE_BUDGET_SECONDS)


def next_due_after(seconds: int) -> str:
    return iso(utcnow() + timedelta(seconds=seconds))
