"""DynamoDB transactions in moto, rolled back item by item as DynamoDB does.

moto 5 prepares a TransactWriteItems by deep-copying every table it names, once per action,
and on a cancellation *replaces* the live table with that copy. Two faults follow:

* Cost grows with the table, not the transaction: a 10-action transaction on a table of
  N items copies 10·N items, including every stream record ever written. A test that writes
  as it goes becomes quadratic (the crash matrix took minutes; the whole suite paid for it).
* A reader holding the old table object (a stream iterator, a shard) keeps reading a table
  that no longer receives writes (tests/integration/test_events.py).

DynamoDB itself commits all actions or none, and a cancelled transaction writes no stream
record (Developer Guide, "Amazon DynamoDB Transactions: How it works"). :func:`install`
keeps moto's own validation and write code, disables its table copy, and instead records the
items the actions name, and the stream's length, before the call; on any failure it puts
those items back and drops the stream records the partial writes added. The table object
stays the same, and the work is proportional to the transaction.
"""

from __future__ import annotations

import copy
import functools
import threading
import types
from typing import Any

_installed = False
_lock = threading.Lock()


def _key(table: Any, op_type: str, op: dict[str, Any]) -> tuple[Any, Any]:
    from moto.dynamodb.models.dynamo_type import DynamoType

    attrs = op["Item"] if op_type == "Put" else op["Key"]
    hash_value = DynamoType(attrs[table.hash_key_attr])
    range_value = DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
    return hash_value, range_value


def _restore(table: Any, hash_value: Any, range_value: Any, before: Any) -> None:
    """Put the item as it was (or remove it), without a stream record."""
    if table.range_key_attr:
        bucket = table.items[hash_value]
        if before is None:
            bucket.pop(range_value, None)
            if not bucket:
                table.items.pop(hash_value, None)
        else:
            bucket[range_value] = before
    elif before is None:
        table.items.pop(hash_value, None)
    else:
        table.items[hash_value] = before


def install() -> None:
    """Patch moto's DynamoDB backend once per process (idempotent, thread-safe)."""
    global _installed
    with _lock:
        if _installed:
            return
        from moto.dynamodb import models
        from moto.dynamodb.models.table import Table

        class _NoTableCopy(types.ModuleType):
            """moto's ``copy`` module, except that a table is not copied (we roll back)."""

            def __getattr__(self, name: str) -> Any:
                return getattr(copy, name)

            @staticmethod
            def deepcopy(x: Any, memo: Any = None) -> Any:
                return x if isinstance(x, Table) else copy.deepcopy(x, memo)

        models.copy = _NoTableCopy("copy")  # type: ignore[attr-defined]
        original = models.DynamoDBBackend.transact_write_items

        @functools.wraps(original)
        def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
            saved: list[tuple[Any, Any, Any, Any]] = []
            streams: dict[int, tuple[Any, int]] = {}
            for action in transact_items[:100]:  # moto refuses more itself
                for op_type, op in action.items():
                    table = self.tables.get(op.get("TableName", "")) if isinstance(op, dict) else None
                    if table is None or op_type not in {"Put", "Delete", "Update", "ConditionCheck"}:
                        continue
                    try:
                        h, r = _key(table, op_type, op)
                    except KeyError:
                        continue  # moto answers the validation error
                    saved.append((table, h, r, copy.deepcopy(table.get_item(h, r))))
                    if table.stream_shard is not None:
                        streams.setdefault(id(table), (table.stream_shard, len(table.stream_shard.items)))
            try:
                original(self, transact_items)
            except BaseException:
                for table, h, r, before in reversed(saved):
                    _restore(table, h, r, before)
                for shard, length in streams.values():
                    del shard.items[length:]
                raise

        models.DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
        _installed = True
