"""The Powertools idempotency table (``Settings.idempotency_table``), over the shared lazy client."""

from __future__ import annotations

from typing import Any

from mailsync.config import get_settings
from mailsync.store import aws

SORT_KEY = "sk"


def persistence_layer(layer: Any, *, partition: str) -> Any:
    """``layer`` (Powertools' DynamoDBPersistenceLayer) on our table and client, its records
    kept in ``partition`` (the account's key), so a purge finds them with one Query."""
    return layer(
        table_name=get_settings().idempotency_table,
        boto3_client=aws.client("dynamodb"),
        static_pk_value=partition,
        sort_key_attr=SORT_KEY,
    )


def delete_partition(partition: str) -> int:
    """Delete every idempotency record of ``partition``; returns how many there were."""
    client, table = aws.client("dynamodb"), get_settings().idempotency_table
    n = 0
    for page in client.get_paginator("query").paginate(
        TableName=table,
        KeyConditionExpression="id = :p",
        ExpressionAttributeValues={":p": {"S": partition}},
        ProjectionExpression="id, sk",
        ConsistentRead=True,
    ):
        for i in range(0, len(page["Items"]), 25):
            chunk = page["Items"][i : i + 25]
            request = {table: [{"DeleteRequest": {"Key": k}} for k in chunk]}
            while request:
                request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            n += len(chunk)
    return n
