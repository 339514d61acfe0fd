"""Counts AWS requests, DynamoDB capacity units and S3 PUTs at the botocore level.

``BaseClient._make_api_call`` is wrapped (as tests/integration/test_crash_safety.py
does), so boto3 and PynamoDB calls are both seen. Capacity units are computed from the
request and response items with DynamoDB's published rules:

* write: per item ``ceil(size / 1 KB)``, times ``1 + GSIs`` the item projects into
  (the ``gsiNpk`` attributes present; every index of the main table projects ALL);
  a delete counts 1 (its item's size is not in the request); an UpdateItem counts its
  key + new values (an under-estimate when the stored item is larger);
* read: strongly consistent ``ceil(size / 4 KB)`` per item (GetItem, BatchGetItem, at
  least 1 per requested key), per page for Query/Scan (sum of the items); eventual
  consistency halves it.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import botocore.client

DDB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
DDB_READS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}
_GSI_PK = re.compile(r"^gsi\d+pk$")


def attr_size(value: dict[str, Any]) -> int:
    """Size in bytes of one typed DynamoDB attribute value (``{"S": ...}`` etc.)."""
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode())
    if kind == "N":
        return len(str(v).lstrip("-").replace(".", "")) // 2 + 1
    if kind == "B":
        return len(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in v)
    if kind == "NS":
        return sum(len(str(n)) // 2 + 1 for n in v)
    if kind == "BS":
        return sum(len(b) for b in v)
    if kind == "L":
        return 3 + sum(attr_size(x) + 1 for x in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + attr_size(x) + 1 for k, x in v.items())
    return 0


def item_size(item: dict[str, Any]) -> int:
    return sum(len(k.encode()) + attr_size(v) for k, v in item.items())


def gsi_count(item: dict[str, Any]) -> int:
    return sum(1 for k in item if _GSI_PK.match(k))


def write_units(item: dict[str, Any]) -> int:
    return max(1, math.ceil(item_size(item) / 1024)) * (1 + gsi_count(item))


@dataclass
class Snapshot:
    ops: Counter[str] = field(default_factory=Counter)
    wcu: float = 0.0
    rcu: float = 0.0
    items_written: int = 0
    s3_put_bytes: int = 0
    s3_deleted_keys: int = 0
    wcu_by_kind: Counter[str] = field(default_factory=Counter)  # item kind (sort-key prefix) -> WCU

    def copy(self) -> Snapshot:
        return Snapshot(
            Counter(self.ops),
            self.wcu,
            self.rcu,
            self.items_written,
            self.s3_put_bytes,
            self.s3_deleted_keys,
            Counter(self.wcu_by_kind),
        )

    def __sub__(self, other: Snapshot) -> Snapshot:
        ops = Counter(self.ops)
        ops.subtract(other.ops)
        return Snapshot(
            +ops,
            self.wcu - other.wcu,
            self.rcu - other.rcu,
            self.items_written - other.items_written,
            self.s3_put_bytes - other.s3_put_bytes,
            self.s3_deleted_keys - other.s3_deleted_keys,
            _minus(self.wcu_by_kind, other.wcu_by_kind),
        )

    @property
    def ddb_writes(self) -> int:
        return sum(n for op, n in self.ops.items() if op in DDB_WRITES)

    @property
    def ddb_reads(self) -> int:
        return sum(n for op, n in self.ops.items() if op in DDB_READS)

    @property
    def ddb_requests(self) -> int:
        return self.ddb_writes + self.ddb_reads

    @property
    def s3_puts(self) -> int:
        return self.ops["PutObject"]

    def as_dict(self) -> dict[str, Any]:
        return {
            "ops": dict(sorted(self.ops.items())),
            "ddb_write_requests": self.ddb_writes,
            "ddb_read_requests": self.ddb_reads,
            "wcu": round(self.wcu, 1),
            "rcu": round(self.rcu, 1),
            "items_written": self.items_written,
            "s3_puts": self.s3_puts,
            "s3_put_bytes": self.s3_put_bytes,
            "s3_deleted_keys": self.s3_deleted_keys,
            "wcu_by_kind": dict(self.wcu_by_kind.most_common()),
        }


def _minus(a: Counter[str], b: Counter[str]) -> Counter[str]:
    out = Counter(a)
    out.subtract(b)
    return +out


def item_kind(item: dict[str, Any]) -> str:
    """Message ``M``, thread ``TH``, ref ``R``, location ``L``, folder ``F``, address ``A`` (sort-key prefix)."""
    sk = item.get("sk", {}).get("S", "")
    if sk[:1].isdigit():
        return "A"  # address index / contact link entries: "<received>#<mid>"
    return sk.split("#", 1)[0] if "#" in sk else (sk[:2] or "?")


class Meter:
    """Install once; ``snap()`` before and after the code measured, subtract."""

    def __init__(self) -> None:
        self.total = Snapshot()
        self.aws_seconds = 0.0  # wall time spent inside AWS calls (moto here)
        self._original: Any = None

    def install(self) -> Meter:
        if self._original is not None:
            return self
        original = botocore.client.BaseClient._make_api_call
        self._original = original
        meter = self

        def counted(client: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            t0 = time.perf_counter()
            try:
                response = original(client, operation_name, api_params)
            finally:
                meter.aws_seconds += time.perf_counter() - t0
            meter._account(operation_name, api_params, response)
            return response

        botocore.client.BaseClient._make_api_call = counted  # type: ignore[method-assign]
        return self

    def uninstall(self) -> None:
        if self._original is not None:
            botocore.client.BaseClient._make_api_call = self._original  # type: ignore[method-assign]
            self._original = None

    def snap(self) -> Snapshot:
        return self.total.copy()

    def _account(self, op: str, params: dict[str, Any], resp: dict[str, Any]) -> None:
        t = self.total
        t.ops[op] += 1
        factor = 1.0 if params.get("ConsistentRead") else 0.5
        if op == "PutItem":
            wu = write_units(params["Item"])
            t.wcu += wu
            t.wcu_by_kind[item_kind(params["Item"])] += wu
            t.items_written += 1
        elif op == "BatchWriteItem":
            for reqs in params.get("RequestItems", {}).values():
                for r in reqs:
                    if "PutRequest" in r:
                        wu = write_units(r["PutRequest"]["Item"])
                        t.wcu_by_kind[item_kind(r["PutRequest"]["Item"])] += wu
                    else:
                        wu = 1
                        t.wcu_by_kind["delete"] += 1
                    t.wcu += wu
                    t.items_written += 1
            # Unprocessed items are retried by the caller and counted again there.
            for reqs in (resp.get("UnprocessedItems") or {}).values():
                t.items_written -= len(reqs)
        elif op == "UpdateItem":
            vals = params.get("ExpressionAttributeValues") or {}
            names = params.get("ExpressionAttributeNames") or {}
            size = item_size(params.get("Key", {})) + sum(attr_size(v) for v in vals.values())
            gsis = sum(1 for n in names.values() if _GSI_PK.match(n))
            t.wcu += max(1, math.ceil(size / 1024)) * (1 + gsis)
            t.items_written += 1
        elif op == "DeleteItem":
            t.wcu += 1
            t.items_written += 1
        elif op == "TransactWriteItems":
            for it in params.get("TransactItems", []):
                ((kind, body),) = it.items()
                t.wcu += 2 * (write_units(body["Item"]) if kind == "Put" else 1)
                t.items_written += 1
        elif op == "GetItem":
            item = resp.get("Item")
            t.rcu += max(1, math.ceil(item_size(item) / 4096) if item else 1) * factor
        elif op == "BatchGetItem":
            for table, req in params.get("RequestItems", {}).items():
                f = 1.0 if req.get("ConsistentRead") else 0.5
                got = (resp.get("Responses") or {}).get(table, [])
                t.rcu += sum(max(1, math.ceil(item_size(i) / 4096)) for i in got) * f
                t.rcu += max(0, len(req.get("Keys", [])) - len(got)) * f  # missing keys cost 1 each
        elif op in ("Query", "Scan"):
            size = sum(item_size(i) for i in resp.get("Items", []))
            t.rcu += max(1, math.ceil(size / 4096)) * factor
        elif op == "PutObject":
            body = params.get("Body")
            t.s3_put_bytes += len(body) if isinstance(body, bytes | bytearray) else 0
        elif op == "DeleteObjects":
            t.s3_deleted_keys += len(params.get("Delete", {}).get("Objects", []))
        elif op == "DeleteObject":
            t.s3_deleted_keys += 1
