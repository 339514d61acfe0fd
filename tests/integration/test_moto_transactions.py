"""moto's TransactWriteItems, as every test and the local runner use it, is all-or-nothing
like DynamoDB's, and a cancelled one leaves no stream record (mailsync_local/moto_transactions.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.integration


@pytest.fixture
def table(aws: dict[str, str]) -> Iterator[tuple[Any, Any, str]]:
    ddb = boto3.client("dynamodb")
    ddb.create_table(
        TableName="tx",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )
    arn = ddb.describe_table(TableName="tx")["Table"]["LatestStreamArn"]
    yield ddb, boto3.client("dynamodbstreams"), arn


def key(sk: str) -> dict[str, Any]:
    return {"pk": {"S": "p"}, "sk": {"S": sk}}


def put(sk: str, v: str, **extra: Any) -> dict[str, Any]:
    return {"Put": {"TableName": "tx", "Item": {**key(sk), "v": {"S": v}}, **extra}}


def records(streams: Any, arn: str) -> list[tuple[str, str]]:
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    out = streams.get_records(ShardIterator=it["ShardIterator"])["Records"]
    return [(r["eventName"], r["dynamodb"]["Keys"]["sk"]["S"]) for r in out]


def items(ddb: Any) -> dict[str, str]:
    got = ddb.query(
        TableName="tx", KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": "p"}}
    )
    return {i["sk"]["S"]: i["v"]["S"] for i in got["Items"]}


def test_a_cancelled_transaction_changes_nothing_and_emits_no_record(table):
    ddb, streams, arn = table
    ddb.put_item(TableName="tx", Item={**key("a"), "v": {"S": "old"}})
    ddb.put_item(TableName="tx", Item={**key("gone"), "v": {"S": "keep"}})
    before = records(streams, arn)
    with pytest.raises(ClientError) as e:
        ddb.transact_write_items(
            TransactItems=[
                put("a", "new"),  # an overwrite
                put("b", "new"),  # an insert
                {"Delete": {"TableName": "tx", "Key": key("gone")}},
                {
                    "Update": {
                        "TableName": "tx",
                        "Key": key("c"),
                        "UpdateExpression": "SET v = :v",
                        "ExpressionAttributeValues": {":v": {"S": "new"}},
                    }
                },
                put("d", "new", ConditionExpression="attribute_exists(pk)"),  # fails, last
            ]
        )
    assert e.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert items(ddb) == {"a": "old", "gone": "keep"}
    assert records(streams, arn) == before

    # The same table goes on: a later write is stored and streamed.
    ddb.put_item(TableName="tx", Item={**key("e"), "v": {"S": "after"}})
    assert items(ddb) == {"a": "old", "e": "after", "gone": "keep"}
    assert records(streams, arn) == [*before, ("INSERT", "e")]


def test_a_committed_transaction_applies_every_action(table):
    ddb, streams, arn = table
    ddb.put_item(TableName="tx", Item={**key("a"), "v": {"S": "old"}})
    ddb.transact_write_items(
        TransactItems=[put("a", "new"), put("b", "new", ConditionExpression="attribute_not_exists(pk)")]
    )
    assert items(ddb) == {"a": "new", "b": "new"}
    assert records(streams, arn) == [("INSERT", "a"), ("MODIFY", "a"), ("INSERT", "b")]
