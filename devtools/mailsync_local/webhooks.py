"""The local runner's webhook consumer: long-polls the webhook queue (SQS standard) and hands
batches to the webhook handler (``functions/webhooks/app.py``) as Lambda's event source mapping
would, deleting what succeeded and leaving reported failures for redelivery.

DelaySeconds (retries within 15 minutes) are honoured by moto; longer waits come back through
the scheduler's sweep of the due index, as deployed.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

BATCH_SIZE = 10  # template.yaml: WebhookFunction's BatchSize


def provision_queue(sqs: Any, prefix: str) -> str:
    """The webhook queue and its dead-letter queue (standard, as in template.yaml)."""
    import json

    dlq = sqs.create_queue(QueueName=f"{prefix}-webhooks-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    url: str = sqs.create_queue(
        QueueName=f"{prefix}-webhooks",
        Attributes={
            "VisibilityTimeout": "120",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    return url


def consume_once(handler: Callable[[dict[str, Any], Any], Any], queue_url: str, wait_seconds: int = 1) -> int:
    """Receive one batch, run the handler on it, delete the records it did not report; the
    number of records received."""
    from mailsync.store import aws
    from mailsync_local.runner import LambdaContext, sqs_record

    sqs = aws.client("sqs")
    got = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=BATCH_SIZE,
        WaitTimeSeconds=wait_seconds,
        AttributeNames=["All"],
    ).get("Messages", [])
    if not got:
        return 0
    event = {"Records": [sqs_record(m, queue_url) for m in got]}
    result = handler(event, LambdaContext("webhooks", timeout_ms=60_000)) or {}
    failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
    for m in got:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return len(got)


def start_consumer(stop: threading.Event) -> threading.Thread | None:
    """A thread feeding the webhook handler until ``stop`` is set (None without a queue)."""
    from mailsync.config import get_settings
    from mailsync_local.runner import load_handler

    queue_url = get_settings().webhook_queue_url
    if not queue_url:
        return None
    handler = load_handler("webhooks")

    def loop() -> None:
        while not stop.is_set():
            try:
                consume_once(handler, queue_url)
            except Exception as e:  # noqa: BLE001 - a consumer must survive a bad batch
                print(f"webhook consumer error: {e!r}", file=sys.stderr)
                stop.wait(1)

    thread = threading.Thread(target=loop, name="webhooks", daemon=True)
    thread.start()
    return thread
