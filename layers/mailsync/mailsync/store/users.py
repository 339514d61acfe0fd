"""A user's purge record: ``T#<t>`` / ``U#<user>``, present from ``DELETE /v1/users/{id}``
until the background purge is done. Every connection path checks it (one GetItem), so
nothing new is connected for a user whose mail is being purged."""

from __future__ import annotations

from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist, PutError

from mailsync.store import keys
from mailsync.store.models import UserPurgeItem


@dataclass(frozen=True)
class UserPurge:
    user_id: str
    accounts: int
    started_at: str
    account_ids: tuple[str, ...] = ()


def _key(tenant_id: str, user_id: str) -> tuple[str, str]:
    return keys.tenant(tenant_id), keys.tenant_member_sk("U", user_id)


def get_purge(tenant_id: str, user_id: str) -> UserPurge | None:
    try:
        i = UserPurgeItem.get(*_key(tenant_id, user_id), consistent_read=True)
    except DoesNotExist:
        return None
    return UserPurge(
        i.user_id, int(i.accounts or 0), i.started_at, tuple(str(a) for a in i.account_ids or ())
    )


def start_purge(
    tenant_id: str, user_id: str, accounts: int, now: str, account_ids: tuple[str, ...] = ()
) -> UserPurge:
    """Create the record, or keep the running one (a repeated DELETE restarts no clock).
    Its removal when the purge is done is the ``user.purged`` event (``domain/derive.py``),
    which names ``account_ids``."""
    try:
        UserPurgeItem(
            *_key(tenant_id, user_id),
            user_id=user_id,
            accounts=accounts,
            started_at=now,
            account_ids=list(account_ids) or None,
        ).save(condition=UserPurgeItem.sk.does_not_exist())
    except PutError as e:
        if e.cause_response_code != "ConditionalCheckFailedException":
            raise
        running = get_purge(tenant_id, user_id)
        if running is not None:
            return running
    return UserPurge(user_id, accounts, now, account_ids)


def finish_purge(tenant_id: str, user_id: str) -> None:
    UserPurgeItem(*_key(tenant_id, user_id)).delete()


def purging_users(tenant_id: str) -> list[str]:
    """The tenant's users being purged (one Query of its partition's ``U#`` entries)."""
    return [
        i.user_id
        for i in UserPurgeItem.query(
            keys.tenant(tenant_id),
            UserPurgeItem.sk.startswith(keys.tenant_member_sk("U", "")),
            consistent_read=True,
        )
    ]
