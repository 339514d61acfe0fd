"""OAuth state records: one per started sign-in, single use, expiring (TTL).

Invariants: the key is the SHA-256 of the state id (``OAUTH#<sha256>``), so the table
never holds a usable state; :func:`take_state` marks a record used with a conditional
update, so of two concurrent callbacks exactly one gets it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailsync.store import keys
from mailsync.store.models import OAuthStateItem, TenantMemberItem


@dataclass(frozen=True)
class OAuthState:
    provider: str
    tenant_id: str
    user_id: str
    redirect_uri: str
    callback_url: str
    nonce: str
    verifier: str
    expires_at: int
    backfill_days: int = 0
    flow: str | None = None  # microsoft: msal's auth code flow (JSON), kept server-side


class StateUsed(Exception):
    """The state record exists but was already used (a replay)."""

    def __init__(self, state: OAuthState) -> None:
        super().__init__("state used")
        self.state = state


def save_state(state_id: str, st: OAuthState, ttl: int) -> None:
    OAuthStateItem(
        keys.oauth_state(state_id),
        "S",
        provider=st.provider,
        tenant_id=st.tenant_id,
        user_id=st.user_id,
        redirect_uri=st.redirect_uri,
        callback_url=st.callback_url,
        nonce=st.nonce,
        verifier=st.verifier,
        flow=st.flow,
        backfill_days=st.backfill_days,
        expires_at=st.expires_at,
        ttl=ttl,
    ).save()
    # The tenant's pointer to it (same TTL), so a tenant purge deletes states still pending.
    TenantMemberItem(
        keys.tenant(st.tenant_id), keys.tenant_member_sk("S", keys.oauth_state_hash(state_id)), ttl=ttl
    ).save()


def get_state(state_id: str) -> OAuthState | None:
    try:
        i = OAuthStateItem.get(keys.oauth_state(state_id), "S", consistent_read=True)
    except DoesNotExist:
        return None
    return OAuthState(
        i.provider,
        i.tenant_id,
        i.user_id,
        i.redirect_uri,
        i.callback_url,
        i.nonce,
        i.verifier,
        int(i.expires_at),
        int(i.backfill_days or 0),
        i.flow,
    )


def mark_used(state_id: str, st: OAuthState) -> None:
    """Mark the record used; raises :class:`StateUsed` when another callback did first."""
    item = OAuthStateItem(keys.oauth_state(state_id), "S")
    try:  # single use: of two concurrent callbacks, one loses this condition
        item.update(actions=[OAuthStateItem.used.set(True)], condition=OAuthStateItem.used.does_not_exist())
    except UpdateError as e:
        raise StateUsed(st) from e
