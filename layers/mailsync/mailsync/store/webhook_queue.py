"""Webhook delivery jobs over SQS standard (implements :class:`mailsync.domain.webhooks.WebhookQueue`).

Invariants:

* A standard queue: no message groups, so no endpoint or tenant waits behind another's job;
  duplicates are possible (at least once) and harmless, since each job names the attempt it
  performs and the sender claims it conditionally (``store/webhooks.claim``).
* A job's ``DelaySeconds`` is its wait, at most 900 s (SQS's limit); longer waits never reach
  the queue before the scheduler's sweep of the due index.
* SendMessageBatch, 10 jobs a request; a refused job is reported to the caller (the delivery's
  due entry brings it back).
* Without a configured queue (``MAILSYNC_WEBHOOK_QUEUE_URL`` empty) nothing is sent and
  nothing is accepted: the due index keeps the deliveries.
"""

from __future__ import annotations

import json

from mailsync.config import get_settings
from mailsync.domain.webhooks import SQS_MAX_DELAY, Job
from mailsync.store import aws


class SqsWebhookQueue:
    """Jobs on the queue named by ``queue_url`` (default: the current Settings')."""

    def __init__(self, queue_url: str | None = None) -> None:
        self._queue_url = queue_url

    @property
    def queue_url(self) -> str:
        return self._queue_url if self._queue_url is not None else get_settings().webhook_queue_url

    def send(self, jobs: list[Job]) -> list[int]:
        if not self.queue_url or not jobs:
            return []
        accepted: list[int] = []
        client = aws.client("sqs")
        for start in range(0, len(jobs), 10):
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": json.dumps(jobs[i].body(), separators=(",", ":")),
                    "DelaySeconds": max(0, min(SQS_MAX_DELAY, int(jobs[i].delay))),
                }
                for i in range(start, min(start + 10, len(jobs)))
            ]
            response = client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            accepted.extend(int(ok["Id"]) for ok in response.get("Successful", []))
        return sorted(accepted)


webhook_jobs = SqsWebhookQueue()  # the production queue; Settings are read per call
