"""DynamoDB table definitions, read from the deployed ``template.yaml``.

Invariant: the tables that the tests (moto) and the local runner create come from
the very same CloudFormation resources that are deployed, so tests cannot drift
from the deployment. Change a key, an index or a TTL attribute in ``template.yaml``
and every test table follows; there is no second copy of the schema in Python.

Usage::

    from mailsync.store.schema import create_tables, table_definitions

    table_definitions()            # {"MainTable": {...create_table kwargs...}, "IdempotencyTable": {...}}
    create_tables(boto3.client("dynamodb"), {"MainTable": "mailsync-main",
                                              "IdempotencyTable": "mailsync-idempotency"})

The template is found at the repository root (``MAILSYNC_TEMPLATE`` overrides it).
Nothing here touches AWS at import time.
"""

from __future__ import annotations

import copy
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

TEMPLATE_ENV = "MAILSYNC_TEMPLATE"

# CreateTable accepts these table-level properties of AWS::DynamoDB::Table as they are.
_TABLE_PROPS = (
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "ProvisionedThroughput",
    "StreamSpecification",
    "TableClass",
)
_INDEX_PROPS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput")
# Deliberately dropped: SSESpecification (KMS key is an intrinsic), PointInTimeRecoverySpecification
# and TimeToLiveSpecification (not create_table arguments; TTL is applied with update_time_to_live),
# TableName (physical names are the caller's), Tags, ContributorInsights, etc.


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation short-form tags.

    ``!Ref X`` → ``{"Ref": "X"}``, ``!GetAtt A.B`` → ``{"Fn::GetAtt": ["A", "B"]}``,
    ``!Condition C`` → ``{"Condition": "C"}`` and any other ``!Name v`` → ``{"Fn::Name": v}``.
    """


def _construct_cfn_tag(loader: CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - yaml has no other node kinds
        raise yaml.constructor.ConstructorError(
            None, None, f"unexpected node for !{tag_suffix}", node.start_mark
        )
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_cfn_tag)


def load_template(template_path: Path | None = None) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template (short tags become their long-form dicts)."""
    path = Path(template_path) if template_path is not None else default_template_path()
    return copy.deepcopy(_load_cached(path.resolve()))


@lru_cache(maxsize=8)
def _load_cached(path: Path) -> dict[str, Any]:
    loader = CfnLoader(path.read_text(encoding="utf-8"))
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    if not isinstance(data, dict) or "Resources" not in data:
        raise ValueError(f"{path} is not a CloudFormation template (no Resources)")
    return data


def default_template_path() -> Path:
    """``$MAILSYNC_TEMPLATE`` if set, else ``template.yaml`` at the repository root."""
    override = os.environ.get(TEMPLATE_ENV)
    if override:
        return Path(override)
    # layers/mailsync/mailsync/store/schema.py -> parents[4] is the repository root
    return Path(__file__).resolve().parents[4] / "template.yaml"


def _ensure_literal(value: Any, where: str) -> Any:
    """Reject intrinsic functions: create_table needs concrete values."""
    if isinstance(value, dict):
        for key in value:
            if key == "Ref" or key.startswith("Fn::"):
                raise ValueError(
                    f"{where} uses the intrinsic {key}; keep table schemas literal in template.yaml"
                )
        return {k: _ensure_literal(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_ensure_literal(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _create_kwargs(logical_id: str, props: dict[str, Any]) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for name in _TABLE_PROPS:
        if name in props:
            kwargs[name] = _ensure_literal(props[name], f"{logical_id}.{name}")
    for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(index_kind):
            kwargs[index_kind] = [
                {
                    k: _ensure_literal(idx[k], f"{logical_id}.{index_kind}.{k}")
                    for k in _INDEX_PROPS
                    if k in idx
                }
                for idx in props[index_kind]
            ]
    if "StreamSpecification" in kwargs:
        # CloudFormation names the view type alone; CreateTable also wants StreamEnabled.
        kwargs["StreamSpecification"] = {"StreamEnabled": True, **kwargs["StreamSpecification"]}
    kwargs.setdefault(
        "BillingMode", "PROVISIONED" if "ProvisionedThroughput" in kwargs else "PAY_PER_REQUEST"
    )
    return kwargs


def _dynamodb_tables(template_path: Path | None) -> dict[str, dict[str, Any]]:
    resources = load_template(template_path)["Resources"]
    return {
        logical_id: resource.get("Properties") or {}
        for logical_id, resource in resources.items()
        if isinstance(resource, dict) and resource.get("Type") == "AWS::DynamoDB::Table"
    }


def table_definitions(template_path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Logical id (``MainTable``, ``IdempotencyTable``) → boto3 ``create_table`` kwargs without TableName."""
    return {
        logical_id: _create_kwargs(logical_id, props)
        for logical_id, props in _dynamodb_tables(template_path).items()
    }


def ttl_attributes(template_path: Path | None = None) -> dict[str, str]:
    """Logical id → TTL attribute name, for tables whose TimeToLiveSpecification is enabled."""
    result: dict[str, str] = {}
    for logical_id, props in _dynamodb_tables(template_path).items():
        spec = props.get("TimeToLiveSpecification") or {}
        if spec.get("Enabled") in (True, "true", "True") and spec.get("AttributeName"):
            result[logical_id] = _ensure_literal(
                spec["AttributeName"], f"{logical_id}.TimeToLiveSpecification"
            )
    return result


def create_tables(
    dynamodb_client: Any,
    names: dict[str, str],
    *,
    template_path: Path | None = None,
) -> None:
    """Create each logical table of ``names`` (logical id → physical name) as the template declares it.

    Idempotent: an existing table is left as it is. TTL is enabled where the template enables it.
    """
    definitions = table_definitions(template_path)
    ttls = ttl_attributes(template_path)
    unknown = sorted(set(names) - set(definitions))
    if unknown:
        raise KeyError(
            f"not DynamoDB tables in the template: {', '.join(unknown)} (known: {sorted(definitions)})"
        )

    for logical_id, table_name in names.items():
        try:
            dynamodb_client.describe_table(TableName=table_name)
        except dynamodb_client.exceptions.ResourceNotFoundException:
            try:
                dynamodb_client.create_table(TableName=table_name, **definitions[logical_id])
            except dynamodb_client.exceptions.ResourceInUseException:
                pass  # created concurrently by another process
            dynamodb_client.get_waiter("table_exists").wait(
                TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )

        attribute = ttls.get(logical_id)
        if attribute is None:
            continue
        current = dynamodb_client.describe_time_to_live(TableName=table_name).get("TimeToLiveDescription", {})
        if current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            continue
        dynamodb_client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"AttributeName": attribute, "Enabled": True},
        )
