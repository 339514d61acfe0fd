"""The Powertools idempotency table (``Settings.idempotency_table``), over the shared lazy client."""

from __future__ import annotations

from typing import Any

from mailsync.config import get_settings
from mailsync.store import aws


def persistence_layer(layer: Any, *, static_pk_value: str) -> Any:
    """``layer`` (Powertools' DynamoDBPersistenceLayer) on our table and client."""
    return layer(
        table_name=get_settings().idempotency_table,
        boto3_client=aws.client("dynamodb"),
        static_pk_value=static_pk_value,
    )
