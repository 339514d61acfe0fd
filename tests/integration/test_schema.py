"""Tables created through ``mailsync.store.schema`` (moto) match what template.yaml deploys."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

try:
    from mailsync.store import schema
except ModuleNotFoundError:  # package not installed: use the layer source tree
    sys.path.insert(0, str(ROOT / "layers" / "mailsync"))
    from mailsync.store import schema

pytestmark = pytest.mark.integration

NAMES = {"MainTable": "test-mailsync-main", "IdempotencyTable": "test-mailsync-idempotency"}


@pytest.fixture
def ddb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for var, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv(schema.TEMPLATE_ENV, raising=False)
    with mock_aws():
        yield boto3.client("dynamodb", region_name="us-east-1")


def _template_tables() -> dict[str, dict[str, Any]]:
    resources = schema.load_template(TEMPLATE)["Resources"]
    return {k: v["Properties"] for k, v in resources.items() if v["Type"] == "AWS::DynamoDB::Table"}


def _by_name(items: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {item[key]: item for item in items}


def test_tables_match_the_template(ddb: Any) -> None:
    schema.create_tables(ddb, NAMES)
    declared = _template_tables()
    assert set(declared) == set(NAMES)

    for logical_id, physical in NAMES.items():
        props = declared[logical_id]
        table = ddb.describe_table(TableName=physical)["Table"]
        assert table["TableStatus"] == "ACTIVE"
        assert table["KeySchema"] == props["KeySchema"]
        assert _by_name(table["AttributeDefinitions"], "AttributeName") == _by_name(
            props["AttributeDefinitions"], "AttributeName"
        )
        assert table["BillingModeSummary"]["BillingMode"] == props["BillingMode"] == "PAY_PER_REQUEST"

        created_gsis = _by_name(table.get("GlobalSecondaryIndexes", []), "IndexName")
        declared_gsis = _by_name(props.get("GlobalSecondaryIndexes", []), "IndexName")
        assert set(created_gsis) == set(declared_gsis)
        for name, gsi in declared_gsis.items():
            assert created_gsis[name]["KeySchema"] == gsi["KeySchema"], name
            assert created_gsis[name]["Projection"]["ProjectionType"] == gsi["Projection"]["ProjectionType"]

        ttl = ddb.describe_time_to_live(TableName=physical)["TimeToLiveDescription"]
        assert ttl["TimeToLiveStatus"] == "ENABLED"
        assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]


def test_main_table_layout(ddb: Any) -> None:
    schema.create_tables(ddb, {"MainTable": "only-main"})
    assert ddb.list_tables()["TableNames"] == ["only-main"]
    table = ddb.describe_table(TableName="only-main")["Table"]
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["pk", "sk"]
    gsis = _by_name(table["GlobalSecondaryIndexes"], "IndexName")
    assert sorted(gsis) == ["GSI1", "GSI2", "GSI3", "GSI4", "GSI5", "GSI6"]
    assert gsis["GSI6"]["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    for n in range(1, 7):
        sort = "pk" if n == 6 else f"gsi{n}sk"
        assert [k["AttributeName"] for k in gsis[f"GSI{n}"]["KeySchema"]] == [f"gsi{n}pk", sort]
    ttl = ddb.describe_time_to_live(TableName="only-main")["TimeToLiveDescription"]
    assert ttl["AttributeName"] == "ttl"


def test_idempotency_table_has_powertools_layout(ddb: Any) -> None:
    schema.create_tables(ddb, {"IdempotencyTable": "idem"})
    table = ddb.describe_table(TableName="idem")["Table"]
    # Powertools' layout with a sort key: an account's records share the partition ``id``.
    assert table["KeySchema"] == [
        {"AttributeName": "id", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert (
        ddb.describe_time_to_live(TableName="idem")["TimeToLiveDescription"]["AttributeName"] == "expiration"
    )


def test_create_tables_is_idempotent(ddb: Any) -> None:
    schema.create_tables(ddb, NAMES)
    ddb.put_item(TableName=NAMES["MainTable"], Item={"pk": {"S": "T#1"}, "sk": {"S": "X"}})
    schema.create_tables(ddb, NAMES)
    assert sorted(ddb.list_tables()["TableNames"]) == sorted(NAMES.values())
    assert ddb.get_item(TableName=NAMES["MainTable"], Key={"pk": {"S": "T#1"}, "sk": {"S": "X"}})["Item"]


def test_unknown_logical_id_is_rejected(ddb: Any) -> None:
    with pytest.raises(KeyError, match="NoSuchTable"):
        schema.create_tables(ddb, {"NoSuchTable": "x"})
    assert ddb.list_tables()["TableNames"] == []


def test_template_override_by_environment(ddb: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    custom = tmp_path / "template.yaml"
    custom.write_text(
        "Resources:\n"
        "  Extra:\n"
        "    Type: AWS::DynamoDB::Table\n"
        "    Properties:\n"
        "      BillingMode: PAY_PER_REQUEST\n"
        "      AttributeDefinitions: [{AttributeName: k, AttributeType: S}]\n"
        "      KeySchema: [{AttributeName: k, KeyType: HASH}]\n"
        "      SSESpecification: {SSEEnabled: true, KMSMasterKeyId: !GetAtt Key.Arn}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv(schema.TEMPLATE_ENV, str(custom))
    schema.create_tables(ddb, {"Extra": "extra"})
    assert ddb.describe_table(TableName="extra")["Table"]["KeySchema"] == [
        {"AttributeName": "k", "KeyType": "HASH"}
    ]
