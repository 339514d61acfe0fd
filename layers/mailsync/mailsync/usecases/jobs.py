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
    aws.client("sqs").send_message(
        QueueUrl=s.queue_url,
        MessageBody=json.dumps({"tenant_id": tenant_id, "account_id": account_id, "reason": reason}),
        MessageGroupId=f"{tenant_id}:{account_id}",
        MessageDeduplicationId=(dedup_id or uuid.uuid4().hex)[:128],
    )
