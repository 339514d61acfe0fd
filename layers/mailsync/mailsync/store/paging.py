"""Page cursors of list reads: the DynamoDB LastEvaluatedKey, base64url JSON.

Invariant: a cursor is only followed within the partition it was issued for (tenant,
user, list); a forged one is refused (``invalid_cursor``).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from mailsync.errors import InvalidCursor


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
