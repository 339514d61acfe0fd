"""The runner's embedded moto under concurrent DynamoDB writes (found by tests/e2e/test_load.py).

moto's TransactWriteItems deep-copies each table it writes to (to roll back on a failed
condition) while other request threads keep writing to the same table: the copy failed with
``RuntimeError: dictionary changed size during iteration``, moto answered 500, and
``POST /v1/accounts`` answered 500 under load. A rollback from such a copy would also undo the
writes that other threads made meanwhile. DynamoDB makes each request atomic; the runner's moto
must too.
"""

from __future__ import annotations

import threading

import boto3
import pytest

from mailsync_local.runner import REGION, start_moto

pytestmark = pytest.mark.integration


def test_concurrent_transactions_and_puts_all_succeed() -> None:
    server, endpoint = start_moto()
    try:
        kw = {
            "endpoint_url": endpoint,
            "region_name": REGION,
            "aws_access_key_id": "t",
            "aws_secret_access_key": "t",
        }
        ddb = boto3.client("dynamodb", **kw)
        ddb.create_table(
            TableName="t",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        errors: list[BaseException] = []

        def writer(n: int) -> None:
            client = boto3.client("dynamodb", **kw, config=boto3.session.Config(retries={"max_attempts": 1}))
            try:
                for i in range(60):
                    item = {"pk": {"S": f"{n}-{i}"}, "body": {"S": "x" * 200}}
                    if n % 2:
                        client.transact_write_items(TransactItems=[{"Put": {"TableName": "t", "Item": item}}])
                    else:
                        client.put_item(TableName="t", Item=item)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        assert ddb.scan(TableName="t", Select="COUNT")["Count"] == 6 * 60  # nothing rolled away
    finally:
        server.stop()
