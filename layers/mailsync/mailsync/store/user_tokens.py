"""The store side of user tokens (``domain/user_tokens.py``): the tenant's token secret and
the one read that checks a token.

Invariants:

* The secret is 32 random bytes, kept only as a KMS envelope on the tenant item (encryption
  context ``{tenant_id, purpose: user-tokens}``), created once with a conditional update (two
  first mints agree on one secret). Its plaintext lives in the data-key cache of
  ``store/crypto.py``: one KMS Decrypt per tenant per warm worker per 5 minutes.
* Checking a token is **one** consistent BatchGetItem of three items of the tenant partition:
  the tenant (secret, ``state``), the record of the key that minted the token (gone when the
  key is deleted), and the user's revocation mark (written when the user is deleted). That is
  no more requests than authenticating a key (one GetItem).
"""

from __future__ import annotations

import secrets as pysecrets
from dataclasses import dataclass
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailsync.store import batch, crypto, keys
from mailsync.store.models import TenantItem
from mailsync.store.models_index import UserTokenRevocationItem

TENANT_SK = "T"
REVOCATION_PREFIX = "UT#"


def _context(tenant_id: str) -> dict[str, str]:
    return {"tenant_id": tenant_id, "purpose": "user-tokens"}


def _secret_of(tenant_id: str, envelope: dict[str, Any]) -> bytes:
    return bytes.fromhex(crypto.decrypt(envelope, context=_context(tenant_id))["secret"].reveal())


def token_secret(tenant_id: str, kms_key_id: str) -> bytes:
    """The tenant's secret, created on first use."""
    try:
        item = TenantItem.get(keys.tenant(tenant_id), TENANT_SK, consistent_read=True)
    except DoesNotExist:
        raise LookupError(tenant_id) from None
    if item.token_secret:
        return _secret_of(tenant_id, item.token_secret)
    envelope = crypto.encrypt(
        {"secret": pysecrets.token_bytes(32).hex()}, key_id=kms_key_id, context=_context(tenant_id)
    )
    try:
        item.update(
            actions=[TenantItem.token_secret.set(envelope)],
            condition=TenantItem.token_secret.does_not_exist(),
        )
    except UpdateError as e:
        if e.cause_response_code != "ConditionalCheckFailedException":
            raise
        return token_secret(tenant_id, kms_key_id)  # another mint won: use its secret
    return _secret_of(tenant_id, envelope)


@dataclass(frozen=True)
class TokenState:
    """What the store says about a token's tenant, key and user."""

    secret: bytes | None  # None: the tenant is gone, deleting, or never minted a token
    key_exists: bool
    not_before: int | None  # tokens issued before this (Unix seconds) are revoked
    allowed_origins: tuple[str, ...] = ()  # the tenant's CORS origins (domain.cors)


def token_state(tenant_id: str, key_id: str | None, user_id: str) -> TokenState:
    """One consistent BatchGetItem (see the module docstring)."""
    pk = keys.tenant(tenant_id)
    tenant_key, revoked_key = (pk, TENANT_SK), (pk, REVOCATION_PREFIX + user_id)
    record_key = (pk, keys.api_key_record_sk(key_id)) if key_id is not None else None
    found = batch.get_items([tenant_key, revoked_key, *([record_key] if record_key else [])], consistent=True)
    tenant = TenantItem.from_raw_data(found[tenant_key]) if tenant_key in found else None
    live = tenant is not None and tenant.state != "deleting"
    revoked = UserTokenRevocationItem.from_raw_data(found[revoked_key]) if revoked_key in found else None
    return TokenState(
        secret=_secret_of(tenant_id, tenant.token_secret)
        if live and tenant and tenant.token_secret
        else None,
        key_exists=record_key is None or record_key in found,
        not_before=int(revoked.not_before) if revoked else None,
        allowed_origins=tuple(str(o) for o in tenant.allowed_origins or ()) if tenant else (),
    )


def revoke_user(tenant_id: str, user_id: str, now: int, max_ttl: int) -> None:
    """Refuse every token of ``user_id`` issued up to ``now`` (the user is deleted)."""
    UserTokenRevocationItem(
        keys.tenant(tenant_id), REVOCATION_PREFIX + user_id, not_before=now + 1, ttl=now + max_ttl + 3600
    ).save()
