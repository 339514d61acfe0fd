"""Crash injection at the n-th AWS write (botocore level, so it hits boto3 and pynamodb alike,
between and inside our batched commits): a sync that dies anywhere, as a Lambda does."""

from __future__ import annotations

from typing import Any

import botocore.client
import pytest

WRITES = {
    "PutItem",
    "BatchWriteItem",
    "DeleteItem",
    "UpdateItem",
    "TransactWriteItems",
    "PutObject",
    "DeleteObjects",
    "DeleteObject",
}


class Crash(Exception):
    pass


class WriteCounter:
    """Counts AWS write calls and raises :class:`Crash` at the n-th one (``crash_at``, an
    absolute count; ``None``: no crash)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.n = 0
        self.crash_at: int | None = None
        original = botocore.client.BaseClient._make_api_call

        def patched(client: Any, operation_name: str, api_params: Any) -> Any:
            if operation_name in WRITES:
                self.n += 1
                if self.crash_at is not None and self.n == self.crash_at:
                    raise Crash(f"crash at write {self.n} ({operation_name})")
            return original(client, operation_name, api_params)

        monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", patched)
