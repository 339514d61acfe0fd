"""What a sync run leaves for people to see: its history record, its metrics and its logs.

Invariants:

* A run is recorded (``store.health.record_run``) only when it changed something, failed,
  or was asked for by hand or by a check; a no-op poll adds no item (polling cost).
* Metrics go through ``mailsync.observability``: ``SyncRuns``, ``SyncFailures`` by error
  code, ``HealedDifferences``, ``AccountStateChanges`` by new state.
* A healed difference is logged with its folder and ref: it points at a bug of ours or a
  provider's, so it must be findable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from mailsync.domain.account import Account
from mailsync.domain.clock import iso
from mailsync.domain.health import CheckResult, HealthError
from mailsync.domain.sync_state import SyncReport
from mailsync.observability import logger, metric_by, metrics
from mailsync.store import health as health_store

RECORDED_TRIGGERS = ("manual", "check")


@dataclass
class Run:
    """One sync run of an account, from its start to its record."""

    account: Account
    trigger: str
    started: datetime
    healed_refs: list[tuple[str, str, str]] = field(default_factory=list)

    def healed(self, folder: str, ref: str, what: str) -> None:
        self.healed_refs.append((folder, ref, what))
        logger.warning(
            "completeness check healed a difference",
            extra={
                "tenant_id": self.account.tenant_id,
                "account_id": self.account.account_id,
                "folder": folder,
                "ref": ref,
                "difference": what,
            },
        )

    def finish(
        self,
        at: datetime,
        outcome: str,
        *,
        report: SyncReport | None = None,
        error: HealthError | None = None,
    ) -> dict[str, Any] | None:
        """Record the run when it is worth a history line; returns the record (or None)."""
        new, updated = (report.new, report.updated) if report else (0, 0)
        removed = (report.removed + report.purged) if report else 0
        # What a completeness check healed counts as new (fetched) or removed mail.
        new += sum(1 for _f, _r, what in self.healed_refs if what == "missing")
        removed += sum(1 for _f, _r, what in self.healed_refs if what == "extra")
        changed = bool(new or updated or removed or self.healed_refs)
        metrics.add_metric(name="SyncRuns", unit=MetricUnit.Count, value=1)
        if not (changed or outcome != "ok" or self.trigger in RECORDED_TRIGGERS):
            return None
        record = {
            "started_at": iso(self.started),
            "finished_at": iso(at),
            "trigger": self.trigger,
            "outcome": outcome,
            "new": new,
            "updated": updated,
            "removed": removed,
            "error": error.public() if error else None,
        }
        health_store.record_run(self.account.tenant_id, self.account.account_id, record)
        return record


def failure(before: Account, after: Account, err: HealthError) -> None:
    metric_by("SyncFailures", 1, code=err.code)
    _state_change(before, after)
    logger.warning(
        "sync failed",
        extra={
            "tenant_id": before.tenant_id,
            "account_id": before.account_id,
            "code": err.code,
            "state": after.state,
            "failures": after.failures,
            "next_due": after.next_due,
        },
    )


def success(before: Account, after: Account, check: CheckResult | None) -> None:
    if check is not None and check.healed:
        metrics.add_metric(name="HealedDifferences", unit=MetricUnit.Count, value=check.healed)
    _state_change(before, after)


def _state_change(before: Account, after: Account) -> None:
    if before.state == after.state:
        return
    metric_by("AccountStateChanges", 1, state=after.state)
    logger.info(
        "account state changed",
        extra={
            "tenant_id": before.tenant_id,
            "account_id": before.account_id,
            "from": before.state,
            "to": after.state,
        },
    )
