"""``mailsync`` console script: ``run``, ``demo`` and ``admin`` (``create-tenant NAME``,
``allow-redirect``, ``list-tenants``, ``delete-tenant TENANT_ID``, ``accounts --state S``,
``resync TENANT ACCOUNT``, ``check TENANT ACCOUNT``)."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys


def _bind() -> None:
    from mailsync.store import models

    models.bind(
        os.environ.get("MAILSYNC_TABLE", "mailsync-main"),
        host=os.environ.get("AWS_ENDPOINT_URL") or None,
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-central-1",
    )


def create_tenant(name: str) -> dict[str, str]:
    """Create a tenant and its API key in DynamoDB (``AWS_ENDPOINT_URL`` honoured)."""
    from mailsync.domain.apikeys import new_secret
    from mailsync.domain.clock import iso, utcnow
    from mailsync.store import tenants

    _bind()
    tenant_id = "t_" + secrets.token_hex(8)
    api_key = new_secret()  # msk_…, as POST /v1/api-keys makes them
    tenants.create_tenant(tenant_id, name, api_key, iso(utcnow()))
    return {"tenant_id": tenant_id, "api_key": api_key}


def list_tenants() -> list[dict[str, object]]:
    """Every tenant with its account count (one Query of the registry, one count per tenant)."""
    from mailsync.store import accounts, tenants

    _bind()
    return [
        {"tenant_id": t, "name": name, "created_at": created, "accounts": accounts.count_of_tenant(t)}
        for t, name, created in tenants.list_tenants()
    ]


def delete_tenant(tenant_id: str) -> dict[str, object]:
    """What ``DELETE /v1/tenant`` does (keys refused at once), then the whole purge in the
    foreground, one step after the other, with a progress line per step on stderr."""
    from mailsync.store import tenants
    from mailsync.usecases import lifecycle

    _bind()
    if not tenants.exists(tenant_id):
        raise LookupError(f"no tenant {tenant_id}")
    lifecycle.delete_tenant(tenant_id, tenant_id)
    steps = 0
    while True:
        steps += 1
        result = lifecycle.purge_tenant_step(tenant_id)
        print(json.dumps({"step": steps, **result}), file=sys.stderr)
        if result["status"] != "partial":
            return {"tenant_id": tenant_id, "state": "deleted", "steps": steps}


def reindex_contacts(tenant_id: str) -> dict[str, object]:
    """The suggestion index entries of every contact of a tenant (contacts stored before they
    existed get them; the others are rewritten as they are)."""
    from mailsync.usecases import contacts

    _bind()
    return {"tenant_id": tenant_id, "contacts": contacts.reindex_contacts(tenant_id)}


def accounts_in_state(state: str, tenant_id: str | None) -> list[dict[str, object]]:
    """Accounts in ``state`` (support): a Query of the state index."""
    from mailsync.usecases import recovery

    _bind()
    return recovery.accounts_in_state(state, tenant_id)


def run_now(tenant_id: str, account_id: str, what: str) -> dict[str, object]:
    """``resync`` or ``check`` an account without an API key, in the foreground: the reset
    (resync) or nothing (check), then syncs until the account is caught up, with a progress
    line per run on stderr; prints the account's state and health at the end."""
    from mailsync.store import accounts
    from mailsync.usecases import recovery
    from mailsync.usecases.accounts import view
    from mailsync.usecases.sync_account import sync_account

    _bind()
    queued = (
        recovery.admin_resync(tenant_id, account_id)
        if what == "resync"
        else recovery.admin_check(tenant_id, account_id)
    )
    reason = "check" if what == "check" else "resync"
    for run in range(1, 1000):
        result = sync_account(tenant_id, account_id, reason=reason)
        print(json.dumps({"run": run, **result}), file=sys.stderr)
        if result.get("status") != "partial":
            break
        reason = "continue"
    acc = accounts.get_account(tenant_id, account_id)
    shown = view(acc) if acc else {}
    return {**queued, "state": shown.get("state"), "health": shown.get("health")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailsync", description="mailsync: email sync backend for CRMs")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="the local runner (moto + HTTP API + scheduler + worker)")
    run.add_argument("--port", type=int, default=None, help="HTTP port (default $PORT or 3000)")
    demo = sub.add_parser("demo", help="the runner plus a throwaway Dovecot with sample mail")
    demo.add_argument("--port", type=int, default=None)
    admin = sub.add_parser("admin", help="administration")
    admin_sub = admin.add_subparsers(dest="admin_cmd", required=True)
    ct = admin_sub.add_parser("create-tenant", help="create a tenant; prints its id and API key as JSON")
    ct.add_argument("name")
    ar = admin_sub.add_parser(
        "allow-redirect", help="allow OAuth redirect URIs for a tenant ('http://host:*' = any port)"
    )
    ar.add_argument("tenant_id")
    ar.add_argument("patterns", nargs="+")
    admin_sub.add_parser("list-tenants", help="every tenant with its account count, as JSON")
    dt = admin_sub.add_parser(
        "delete-tenant", help="revoke a tenant's keys and purge everything it has (runs to the end)"
    )
    dt.add_argument("tenant_id")
    rc = admin_sub.add_parser(
        "reindex-contacts", help="write the suggestion index of a tenant's contacts (after an upgrade)"
    )
    rc.add_argument("tenant_id")
    ac = admin_sub.add_parser("accounts", help="accounts in a state, for support, as JSON")
    ac.add_argument(
        "--state",
        required=True,
        choices=("auth_error", "error", "degraded", "initial_sync", "paused", "active"),
    )
    ac.add_argument("--tenant", default=None)
    for name, text in (("resync", "reload every synced folder"), ("check", "run the completeness check")):
        op = admin_sub.add_parser(name, help=f"{text} of an account now (no API key)")
        op.add_argument("tenant_id")
        op.add_argument("account_id")
    args = parser.parse_args(argv)

    if args.cmd == "run":
        from mailsync_local.runner import interrupt_on_sigterm, serve

        interrupt_on_sigterm()
        serve(args.port)
    elif args.cmd == "demo":
        from mailsync_local.demo import run_demo
        from mailsync_local.runner import interrupt_on_sigterm

        interrupt_on_sigterm()
        try:
            run_demo(args.port)
        except KeyboardInterrupt:
            pass  # stopped during start-up: run_demo has stopped what it started
    elif args.cmd == "admin":
        try:
            if args.admin_cmd == "create-tenant":
                print(json.dumps(create_tenant(args.name)))
            elif args.admin_cmd == "list-tenants":
                print(json.dumps(list_tenants()))
            elif args.admin_cmd == "delete-tenant":
                print(json.dumps(delete_tenant(args.tenant_id)))
            elif args.admin_cmd == "reindex-contacts":
                print(json.dumps(reindex_contacts(args.tenant_id)))
            elif args.admin_cmd == "accounts":
                print(json.dumps(accounts_in_state(args.state, args.tenant)))
            elif args.admin_cmd in ("resync", "check"):
                print(json.dumps(run_now(args.tenant_id, args.account_id, args.admin_cmd)))
            else:
                _bind()
                from mailsync.store import tenants

                print(
                    json.dumps(
                        {
                            "tenant_id": args.tenant_id,
                            "redirect_allowlist": tenants.allow_redirects(args.tenant_id, args.patterns),
                        }
                    )
                )
        except Exception as e:  # noqa: BLE001 - a CLI reports, it does not dump a trace
            print(json.dumps({"error": type(e).__name__, "message": str(e)}), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
