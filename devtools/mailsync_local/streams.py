"""The local runner's event source mapping for the main table's DynamoDB stream.

Lambda reads the stream for the events function (template.yaml ``EventsFunction``): per
shard, in order, batches of up to 100 records, the function's ``FilterCriteria`` applied
(only item kinds with events), a failed batch retried from the same position. This pump
does the same against moto's stream (``GetRecords``), so ``mailsync run`` derives and
delivers events exactly as AWS would, with no mock publisher. Tests use :meth:`drain`.

moto keeps a table's stream in one shard. Note the botocore detail of ../shared: newer
botocore sends stream calls to an account-based host unless ``AWS_ACCOUNT_ID_ENDPOINT_MODE``
is ``disabled`` (or an endpoint URL is set, as in the runner), which this module sets.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

REGION = "eu-central-1"
BATCH = 100


class EventsContext:
    function_name = "events"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:000000000000:function:events"
    aws_request_id = "local-events"

    def get_remaining_time_in_millis(self) -> int:
        return 120_000


def _esm_record(r: dict[str, Any], arn: str) -> dict[str, Any]:
    ddb = dict(r["dynamodb"])
    when = ddb.get("ApproximateCreationDateTime")
    if when is not None and hasattr(when, "timestamp"):
        ddb["ApproximateCreationDateTime"] = when.timestamp()  # the event's shape: epoch seconds
    return {
        "eventID": r["eventID"],
        "eventName": r["eventName"],
        "eventVersion": r.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": ddb,
        "eventSourceARN": arn,
        **({"userIdentity": r["userIdentity"]} if r.get("userIdentity") else {}),
    }


def passes_filter(record: dict[str, Any]) -> bool:
    """template.yaml's FilterCriteria: the item kinds that yield events."""
    from mailsync.store.streams import kind_of

    sk = ((record.get("dynamodb") or {}).get("Keys") or {}).get("sk", {}).get("S", "")
    return kind_of(sk) is not None


class StreamPump:
    """Feeds the events handler with the main table's stream records, in order."""

    def __init__(self, table: str, handler: Callable[[dict[str, Any], Any], Any]) -> None:
        os.environ.setdefault("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")
        from mailsync.store import aws

        self.handler = handler
        self.streams = aws.client("dynamodbstreams")
        self.arn = aws.client("dynamodb").describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self.after: dict[str, str] = {}  # the last sequence number handled, per shard
        self.closed: set[str] = set()
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def _shards(self) -> list[str]:
        desc = self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]
        return [s["ShardId"] for s in desc.get("Shards", [])]

    def _iterator(self, shard: str) -> str:
        """A new iterator of ``shard`` just after the last record handled (its start at first).

        Every read opens a new one, as a consumer does when an iterator expires (15 minutes
        on AWS). moto needs it: a cancelled TransactWriteItems restores the table from a deep
        copy, and an iterator opened before keeps reading the discarded copy's shard, which
        never grows again (the runner then went silent after the first 409 ``last_key``)."""
        position: dict[str, str] = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": self.after[shard]}
            if shard in self.after
            else {"ShardIteratorType": "TRIM_HORIZON"}
        )
        return str(
            self.streams.get_shard_iterator(StreamArn=self.arn, ShardId=shard, **position)["ShardIterator"]
        )

    def step(self) -> int:
        """One batch per shard; returns the records read. A failing batch raises and is read
        again from the same position next time (the position only moves after success)."""
        read = 0
        with self.lock:
            for shard in self._shards():
                if shard in self.closed:
                    continue  # read to its end
                got = self.streams.get_records(ShardIterator=self._iterator(shard), Limit=BATCH)
                records = got.get("Records", [])
                batch = [_esm_record(r, self.arn) for r in records]
                batch = [r for r in batch if passes_filter(r)]
                if batch:
                    self.handler({"Records": batch}, EventsContext())
                if records:
                    self.after[shard] = records[-1]["dynamodb"]["SequenceNumber"]
                if got.get("NextShardIterator") is None:
                    self.closed.add(shard)
                read += len(records)
        return read

    def drain(self, rounds: int = 1000) -> int:
        """Read until the stream is caught up (tests): a step that reads less than a full
        batch reached the end as it was then (a background writer, such as a mirror lock's
        lease renewal, may keep appending records that yield no events)."""
        total = 0
        for _ in range(rounds):
            n = self.step()
            total += n
            if n < BATCH:
                return total
        raise RuntimeError(f"the stream did not drain: {total} records")

    def run(self, interval: float = 0.25) -> None:
        """Poll until :attr:`stop` (the runner's thread), as the event source mapping does."""
        while not self.stop.is_set():
            try:
                if self.step() == 0:
                    self.stop.wait(interval)
            except Exception as e:  # noqa: BLE001 - retried from the same position, like Lambda
                print(f"events error: {e!r}", file=sys.stderr)
                self.stop.wait(1)
