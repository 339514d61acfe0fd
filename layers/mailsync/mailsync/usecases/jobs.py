"""Sync jobs on the SQS FIFO queue: one message group per account serialises its syncs."""

from __future__ import annotations

import json
import uuid

from mailsync.config import get_settings
from mailsync.store import aws


def enqueue_sync(tenant_id: str, account_id: str, reason: str, dedup_id: str | None = None) -> None:
    s = get_settings()
    if not s.queue_url:
        return  # no queue configured (unit use): the caller runs syncs itself
    aws.client("sqs").send_message(QueueUrl=s.queue_url, **_entry(tenant_id, account_id, reason, dedup_id))


def enqueue_syncs(jobs: list[tuple[str, str, str, str]]) -> list[int]:
    """Enqueue ``(tenant, account, reason, dedup id)`` jobs with SendMessageBatch (at most
    10 per request); returns the indexes of the jobs that were accepted. A job the queue
    refused is left to the caller (the scheduler keeps the account due, so the next tick
    sends it again)."""
    s = get_settings()
    if not s.queue_url:
        return list(range(len(jobs)))
    accepted: list[int] = []
    for start in range(0, len(jobs), 10):
        entries = [{"Id": str(i), **_entry(*jobs[i])} for i in range(start, min(start + 10, len(jobs)))]
        response = aws.client("sqs").send_message_batch(QueueUrl=s.queue_url, Entries=entries)
        accepted.extend(int(ok["Id"]) for ok in response.get("Successful", []))
    return sorted(accepted)


def _entry(tenant_id: str, account_id: str, reason: str, dedup_id: str | None) -> dict[str, str]:
    return {
        "MessageBody": json.dumps({"tenant_id": tenant_id, "account_id": account_id, "reason": reason}),
        "MessageGroupId": f"{tenant_id}:{account_id}",
        "MessageDeduplicationId": (dedup_id or uuid.uuid4().hex)[:128],
    }
