"""What sync health keeps beside the account: the run history and the last completeness check.

Invariants:

* Both live in the account partition (``RUN#…``, ``CHECK``), so an account's purge sweeps
  them with everything else, and a read of them is one Query or GetItem.
* A run is recorded only when it changed something, failed, or was asked for (manual,
  check): a no-op poll adds no item. Each run item expires after :data:`RUN_TTL_DAYS` days
  (DynamoDB TTL on ``ttl``).
* The check is its own item, so the account item that every poll rewrites stays small.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from pynamodb.exceptions import DoesNotExist

from mailsync.domain.clock import parse_iso
from mailsync.domain.health import CheckResult
from mailsync.store import batch, keys
from mailsync.store.models import CheckItem, SyncRunItem

RUN_TTL_DAYS = 30
RUNS_SHOWN = 50


def record_run(tenant_id: str, account_id: str, run: dict[str, Any]) -> None:
    """Store one sync run (``run["started_at"]`` ISO text) with its 30-day expiry.

    ``started_at`` has second precision; the key's tail is the nanosecond clock at the write,
    so runs of one second (an account's runs are serialised by its lock) keep their order."""
    started = parse_iso(run["started_at"])
    SyncRunItem(
        keys.account(tenant_id, account_id),
        keys.sync_run_sk(run["started_at"], f"{time.time_ns():020d}"),
        run=run,
        ttl=int((started + timedelta(days=RUN_TTL_DAYS)).timestamp()),
    ).save()


def recent_runs(tenant_id: str, account_id: str, limit: int = RUNS_SHOWN) -> list[dict[str, Any]]:
    """The account's last ``limit`` runs, newest first (one Query, read backwards). Items past
    their TTL that DynamoDB has not removed yet are left out."""
    now = datetime.now().timestamp()
    out: list[dict[str, Any]] = []
    for item in SyncRunItem.query(
        keys.account(tenant_id, account_id),
        SyncRunItem.sk.startswith("RUN#"),
        scan_index_forward=False,
        limit=limit,
    ):
        if item.ttl > now:
            out.append(dict(item.run))
    return out


def save_check(tenant_id: str, account_id: str, check: CheckResult) -> None:
    CheckItem(keys.account(tenant_id, account_id), "CHECK", check=check.as_dict()).save()


def get_check(tenant_id: str, account_id: str) -> CheckResult | None:
    try:
        return CheckResult.from_dict(CheckItem.get(keys.account(tenant_id, account_id), "CHECK").check)
    except DoesNotExist:
        return None


def get_checks(tenant_id: str, account_ids: Iterable[str]) -> dict[str, CheckResult]:
    """The last checks of several accounts of a tenant: one BatchGetItem."""
    wanted = {(keys.account(tenant_id, a), "CHECK"): a for a in account_ids}
    raw = batch.get_items(wanted)
    return {wanted[k]: CheckResult.from_dict(CheckItem.from_raw_data(item).check) for k, item in raw.items()}
