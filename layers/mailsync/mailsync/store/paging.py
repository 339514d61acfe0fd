"""Page cursors of list reads: the DynamoDB LastEvaluatedKey, base64url JSON.

Invariant: a cursor is only followed within the partition it was issued for (tenant,
user, list); a forged one is refused (``invalid_cursor``).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from mailsync.errors import InvalidCursor
from mailsync.store import keys


def encode_cursor(lek: dict[str, Any] | None) -> str | None:
    if not lek:
        return None
    return base64.urlsafe_b64encode(json.dumps(lek, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None, expected: dict[str, str]) -> dict[str, Any] | None:
    """Decode a page cursor and check it belongs to the partition being read.

    A cursor forged for another partition (tenant, user) is refused, not followed.
    """
    if not cursor:
        return None
    try:
        lek = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except ValueError as e:
        raise InvalidCursor("cursor is not valid") from e
    if not isinstance(lek, dict):
        raise InvalidCursor("cursor is not valid")
    for attr, value in expected.items():
        if not isinstance(lek.get(attr), dict) or lek[attr].get("S") != value:
            raise InvalidCursor("cursor does not belong to this list")
    return lek


def page_cursor(tenant_id: str, cursor: str | None, attr: str, pk: str) -> dict[str, Any] | None:
    """Decode a page cursor of the index partition ``attr = pk``.

    Beyond the partition check of :func:`decode_cursor`, the key must have exactly
    the table and index key attributes as short strings of this tenant: a tampered
    cursor is a 400, never a DynamoDB validation error (a 500).
    """
    lek = decode_cursor(cursor, {attr: pk})
    if lek is None:
        return None
    expected = {"pk", "sk"} if attr == "pk" else {"pk", "sk", attr, attr[:-2] + "sk"}
    ok = set(lek) == expected and all(
        isinstance(v, dict)
        and set(v) == {"S"}
        and isinstance(v["S"], str)
        and 0 < len(v["S"].encode()) <= 1024
        for v in lek.values()
    )
    if not ok or not lek["pk"]["S"].startswith(keys.tenant(tenant_id) + "#"):
        raise InvalidCursor("cursor is not valid")
    return lek
