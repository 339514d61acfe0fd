"""Send records: one item per send attempt that reached the provider (issue 15).

``T#<t>#A#<a>`` / ``SEND#<at>#<id>``: in the account partition, so deleting the account
deletes them with its other items; they expire after 30 days (DynamoDB TTL on ``ttl``).
Writing one is the send's event: the stream yields ``send.succeeded`` or ``send.failed``
from it (``domain/derive.py``); its expiry yields nothing.

Mutation path: :func:`record_send` (the send use case), nothing else.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from mailsync.store import keys
from mailsync.store.models import SendRecordItem

RETENTION_SECONDS = 30 * 86400


def record_send(
    tenant_id: str,
    account_id: str,
    owner: str,
    *,
    status: str,
    message_id: str | None,
    recipients: list[dict[str, Any]],
    error: dict[str, Any] | None,
    at: str,
) -> None:
    """Store the outcome of one send (``status`` ``succeeded`` | ``failed``); no body, no secret."""
    SendRecordItem(
        keys.account(tenant_id, account_id),
        keys.send_sk(at, secrets.token_hex(6)),
        account_id=account_id,
        owner=owner,
        status=status,
        message_id=message_id,
        recipients=recipients,
        error=error,
        ttl=int(time.time()) + RETENTION_SECONDS,
    ).save()
