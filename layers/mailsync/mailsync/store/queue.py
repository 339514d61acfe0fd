"""The sync-job queue over SQS FIFO (implements :class:`mailsync.domain.ports.JobQueue`).

Invariants:

* One message group per account (``<tenant>:<account>``) serialises its syncs; a purge
  job (``{"kind": "purge_user" | "purge_tenant", ...}``) has its own group.
* A job's deduplication id is the caller's (a retried scheduler tick or a redelivered
  push enqueues once) or random; SQS keeps at most 128 characters of it.
* Without a configured queue (``MAILSYNC_QUEUE_URL`` empty: unit use) every job is
  accepted and dropped: the caller runs syncs itself.
"""

from __future__ import annotations

import json
import uuid

from mailsync.config import get_settings
from mailsync.store import aws


class SqsJobQueue:
    """Sync jobs on the queue named by ``queue_url`` (default: the current Settings')."""

    def __init__(self, queue_url: str | None = None) -> None:
        self._queue_url = queue_url

    @property
    def queue_url(self) -> str:
        return self._queue_url if self._queue_url is not None else get_settings().queue_url

    def enqueue(self, tenant_id: str, account_id: str, reason: str, dedup_id: str | None = None) -> None:
        if not self.queue_url:
            return
        aws.client("sqs").send_message(
            QueueUrl=self.queue_url, **_entry(tenant_id, account_id, reason, dedup_id)
        )

    def enqueue_many(self, jobs: list[tuple[str, str, str, str]]) -> list[int]:
        """SendMessageBatch, at most 10 per request. A refused job is left to the caller (the
        scheduler keeps the account due, so the next tick sends it again)."""
        if not self.queue_url:
            return list(range(len(jobs)))
        accepted: list[int] = []
        for start in range(0, len(jobs), 10):
            entries = [{"Id": str(i), **_entry(*jobs[i])} for i in range(start, min(start + 10, len(jobs)))]
            response = aws.client("sqs").send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            accepted.extend(int(ok["Id"]) for ok in response.get("Successful", []))
        return sorted(accepted)

    def enqueue_purge(self, kind: str, tenant_id: str, user_id: str | None = None) -> None:
        """A purge job (``purge_user`` or ``purge_tenant``): one message group per purge,
        so its steps run in order, one at a time, and never hold up a sync."""
        if not self.queue_url:
            return
        body = {"kind": kind, "tenant_id": tenant_id, **({"user_id": user_id} if user_id else {})}
        aws.client("sqs").send_message(
            QueueUrl=self.queue_url,
            MessageBody=json.dumps(body),
            MessageGroupId=f"{tenant_id}:{kind}:{user_id or ''}"[:128],
            MessageDeduplicationId=uuid.uuid4().hex,
        )


def _entry(tenant_id: str, account_id: str, reason: str, dedup_id: str | None) -> dict[str, str]:
    return {
        "MessageBody": json.dumps({"tenant_id": tenant_id, "account_id": account_id, "reason": reason}),
        "MessageGroupId": f"{tenant_id}:{account_id}",
        "MessageDeduplicationId": (dedup_id or uuid.uuid4().hex)[:128],
    }


sync_jobs = SqsJobQueue()  # the production queue; Settings are read per call
