"""Helpers of the user purge tests: the tenant-level API caller, the queue run through the
real sync worker, and everything left in the tables and the bucket that names some ids."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

import boto3
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from mailsync.config import get_settings
from mailsync_local.runner import LambdaContext, load_handler, sqs_record
from tests.support.api import ApiClient

Worker = Callable[[dict[str, Any], Any], dict[str, Any]]


def tenant_api(api_key: str = "key-t1") -> ApiClient:
    """The caller of the tenant-level routes (``/v1/users``, ``/v1/tenant``). They act for the
    tenant and will not need ``X-User-Id`` once the API-key branch is merged; until then
    this sends one (any value). Remove the user here after the merge."""
    return ApiClient(api_key, "crm-admin")


def discard_jobs() -> list[dict[str, Any]]:
    """Take every job off the queue without running it (e.g. the first syncs of connect)."""
    sqs, url, out = boto3.client("sqs"), get_settings().queue_url, []
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        for m in msgs:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            out.append(json.loads(m["Body"]))
    return out


def run_one(worker: Worker | None = None) -> tuple[dict[str, Any], bool] | None:
    """Receive the next queued job and hand it to the sync worker's handler (an SQS event as
    the runner builds it); ``(job, succeeded)``, or None when the queue is empty. A job the
    handler reports as failed is made visible again, as SQS redelivers it after its
    visibility timeout (a handler whose every record failed raises, as Powertools does, and
    the invocation's failure returns the batch to the queue)."""
    worker = worker or load_handler("sync_worker")
    sqs, url = boto3.client("sqs"), get_settings().queue_url
    msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1).get("Messages", [])
    if not msgs:
        return None
    m = msgs[0]
    try:
        out = worker({"Records": [sqs_record(m, url)]}, LambdaContext("worker"))
        ok = not out.get("batchItemFailures")
    except BatchProcessingError:  # every record failed: the invocation fails, SQS keeps the batch
        ok = False
    if ok:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    else:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"], VisibilityTimeout=0)
    return json.loads(m["Body"]), ok


def run_jobs(
    worker: Worker | None = None, *, max_jobs: int = 200, stop_after_failure: bool = False
) -> list[tuple[dict[str, Any], bool]]:
    """:func:`run_one` until the queue is empty (or, with ``stop_after_failure``, until a
    job failed); ``[(job, succeeded)]`` in the order run."""
    worker = worker or load_handler("sync_worker")
    ran: list[tuple[dict[str, Any], bool]] = []
    for _ in range(max_jobs):
        got = run_one(worker)
        if got is None:
            return ran
        ran.append(got)
        if stop_after_failure and not got[1]:
            return ran
    raise AssertionError(f"the queue did not run dry after {max_jobs} jobs: {ran[-5:]}")


def all_items() -> list[tuple[str, dict[str, Any]]]:
    """``(table, raw item)`` of every item of every table (the main and the idempotency
    table included): a test may Scan."""
    ddb, out = boto3.client("dynamodb"), []
    for table in ddb.list_tables()["TableNames"]:
        for page in ddb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
            out.extend((table, i) for i in page["Items"])
    return out


def naming(needles: Iterable[str]) -> list[tuple[str, dict[str, Any]]]:
    """The items any of whose keys or attributes (at any depth) contains one of ``needles``."""
    wanted = [n for n in needles if n]
    return [(t, i) for t, i in all_items() if any(n in json.dumps(i) for n in wanted)]


def objects(prefix: str) -> set[str]:
    s3, bucket, out = boto3.client("s3"), get_settings().bucket, set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out |= {o["Key"] for o in page.get("Contents", [])}
    return out


def account_objects(account_id: str, tenant_id: str = "t1") -> set[str]:
    return objects(f"t/{tenant_id}/a/{account_id}/")


class LogRecords(logging.Handler):
    """The service logger's records (Powertools keeps a plain ``logging`` logger underneath;
    ``extra`` keys become record attributes)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> LogRecords:
        from mailsync.observability import logger

        logging.getLogger(logger.name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        from mailsync.observability import logger

        logging.getLogger(logger.name).removeHandler(self)

    def warnings(self, **extra: str) -> list[logging.LogRecord]:
        return [
            r
            for r in self.records
            if r.levelno == logging.WARNING and all(getattr(r, k, None) == v for k, v in extra.items())
        ]
