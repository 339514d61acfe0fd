"""The main table's change stream, decoded into typed item changes (DynamoDB Streams).

A stream record (``NEW_AND_OLD_IMAGES``; the Lambda event source mapping's shape, which is
also what ``GetRecords`` returns) names the item's keys, its images before and after the
write, the record's ``eventID`` and the approximate commit time. Only the item kinds that
yield outbound events are decoded (:data:`KINDS`); every other record gives ``None``.

Invariants:

* DynamoDB writes a stream record only for a write that changed the item, exactly once per
  change, in order per item (DynamoDB Developer Guide, "Change data capture for DynamoDB
  Streams"). moto also writes one for an unchanged put: the derivation compares the images,
  so such a record yields no event.
* ``eventID`` is the same on every delivery of the same record, which makes it the
  identity the event ids are derived from.
* JSON attributes (pynamodb ``JSONAttribute``: addresses, links, sync blocks) arrive as
  strings and are decoded here, so the domain sees plain values.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from mailsync.domain.derive import ItemChange

# sk -> kind: the items whose changes are events (template.yaml FilterCriteria says the same)
KINDS = {"M": "message", "A": "account", "TH": "thread"}
_PREFIX_KINDS = (("U#", "user_purge"), ("SEND#", "send"))
_JSON = {
    "message": ("from", "to", "cc", "locs", "links"),
    "account": ("error", "settings", "sync", "health"),
    "thread": ("manual_links", "members"),
    "send": ("recipients", "error"),
    "user_purge": (),
}
_deserializer = TypeDeserializer()


def kind_of(sk: str) -> str | None:
    if sk in KINDS:
        return KINDS[sk]
    for prefix, kind in _PREFIX_KINDS:
        if sk.startswith(prefix):
            return kind
    return None


def _image(raw: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
    if not raw:
        return None
    out: dict[str, Any] = {}
    for name, value in raw.items():
        v = _deserializer.deserialize(value)
        if name in _JSON[kind] and isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError:
                pass  # not ours to judge: the derivation ignores what it cannot read
        elif hasattr(v, "as_integer_ratio") and not isinstance(v, (bool, int, float)):
            v = int(v) if v == int(v) else float(v)  # Decimal
        out[name] = v
    return out


def _tenant_of(pk: str) -> str:
    return pk.removeprefix("T#").split("#", 1)[0]


def decode(record: dict[str, Any]) -> ItemChange | None:
    """The typed change of one stream record, or ``None`` for an item kind without events."""
    ddb = record.get("dynamodb") or {}
    keys = ddb.get("Keys") or {}
    pk, sk = keys.get("pk", {}).get("S"), keys.get("sk", {}).get("S")
    if not pk or not sk or not pk.startswith("T#"):
        return None
    kind = kind_of(sk)
    if kind is None:
        return None
    when = ddb.get("ApproximateCreationDateTime")
    if isinstance(when, datetime):
        at = when.astimezone(UTC)
    elif when is not None:
        at = datetime.fromtimestamp(float(when), UTC)
    else:
        at = datetime.now(UTC)
    return ItemChange(
        source=str(record.get("eventID") or ddb.get("SequenceNumber")),
        name=str(record.get("eventName")),
        kind=kind,
        tenant_id=_tenant_of(pk),
        pk=pk,
        sk=sk,
        at=at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
        old=_image(ddb.get("OldImage"), kind),
        new=_image(ddb.get("NewImage"), kind),
        ttl_expiry=(record.get("userIdentity") or {}).get("principalId") == "dynamodb.amazonaws.com",
    )
