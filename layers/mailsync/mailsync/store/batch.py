"""One BatchGetItem for items of several kinds (the single table holds them all), so a
read that needs, say, contacts and the accounts they show mail of pays one request.

Invariant: at most 100 keys per request (DynamoDB's limit); unprocessed keys are asked
again until none is left.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mailsync.config import get_settings
from mailsync.store import aws


def get_items(item_keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(pk, sk): raw item}`` of the keys that exist (eventually consistent)."""
    wanted = list(dict.fromkeys(item_keys))
    table, out = get_settings().table, {}
    client = aws.client("dynamodb")
    for start in range(0, len(wanted), 100):
        request: dict[str, Any] = {
            table: {"Keys": [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in wanted[start : start + 100]]}
        }
        while request:
            got = client.batch_get_item(RequestItems=request)
            for item in got.get("Responses", {}).get(table, []):
                out[(item["pk"]["S"], item["sk"]["S"])] = item
            request = got.get("UnprocessedKeys") or {}
    return out


def live_accounts(
    raw: dict[tuple[str, str], dict[str, Any]], account_keys: dict[tuple[str, str], str]
) -> set[str]:
    """The account ids among ``account_keys`` ({key: id}) whose item came back and is not
    ``deleting``: a mail shows only while its account is live."""
    return {a for k, a in account_keys.items() if k in raw and raw[k].get("state", {}).get("S") != "deleting"}
