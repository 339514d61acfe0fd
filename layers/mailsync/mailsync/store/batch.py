"""One BatchGetItem for items of several kinds (the single table holds them all), so a
read that needs, say, contacts and the accounts they show mail of pays one request.

Invariant: at most 100 keys per request (DynamoDB's limit); unprocessed keys are asked
again until none is left.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mailsync.config import get_settings
from mailsync.store import aws, keys


def get_items(
    item_keys: Iterable[tuple[str, str]], *, consistent: bool = False
) -> dict[tuple[str, str], dict[str, Any]]:
    """``{(pk, sk): raw item}`` of the keys that exist (eventually consistent unless asked)."""
    wanted = list(dict.fromkeys(item_keys))
    table, out = get_settings().table, {}
    client = aws.client("dynamodb")
    for start in range(0, len(wanted), 100):
        request: dict[str, Any] = {
            table: {
                "Keys": [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in wanted[start : start + 100]],
                "ConsistentRead": consistent,
            }
        }
        while request:
            got = client.batch_get_item(RequestItems=request)
            for item in got.get("Responses", {}).get(table, []):
                out[(item["pk"]["S"], item["sk"]["S"])] = item
            request = got.get("UnprocessedKeys") or {}
    return out


def with_live_accounts(
    tenant_id: str, item_keys: Iterable[tuple[str, str]], account_ids: Iterable[str]
) -> tuple[dict[tuple[str, str], dict[str, Any]], set[str]]:
    """:func:`get_items` of ``item_keys`` plus the accounts, in the same request(s); returns
    the raw items and the ids of the accounts that are live (stored, not ``deleting``):
    a mail shows only while its account is live."""
    akeys = {(keys.account(tenant_id, a), "A"): a for a in account_ids}
    raw = get_items([*item_keys, *akeys])
    return raw, {a for k, a in akeys.items() if k in raw and raw[k].get("state", {}).get("S") != "deleting"}
