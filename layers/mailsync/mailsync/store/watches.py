"""Push channels of OAuth accounts: the Gmail address index and watch registry, the Graph
subscription index and registry, and the renewal lease over either registry.

Invariants:

* ``GADDR#<email>`` finds the account(s) a Gmail push names; ``MSUB#<id>`` the account a
  Graph notification names, with the SHA-256 of its ``clientState`` (never the value).
* A registry entry (``GWATCH`` / ``MSWATCH``, sort key the account partition) is renewed
  at most once per period: the renewer that wins the conditional update of
  ``renewed_at`` holds the lease.
* ``pending`` (Graph) is taken by one sync only: it is removed under a condition on its value.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from pynamodb.exceptions import DoesNotExist, UpdateError

from mailsync.store import keys
from mailsync.store.models import GoogleAddressItem, GraphSubscriptionItem, MicrosoftWatchItem, WatchItem


@dataclass(frozen=True)
class AccountRef:
    tenant_id: str
    account_id: str


@dataclass(frozen=True)
class GraphWatch:
    """An account's Graph subscription registry entry."""

    tenant_id: str
    account_id: str
    subscription_id: str | None = None
    notification_url: str | None = None
    pending: str | None = None  # "renew" or "recreate", set by a lifecycle event
    renewed_at: int = 0


@dataclass(frozen=True)
class GraphSubscriber:
    tenant_id: str
    account_id: str
    client_state_hash: str


def _graph_watch(i: MicrosoftWatchItem) -> GraphWatch:
    return GraphWatch(
        i.tenant_id, i.account_id, i.subscription_id, i.notification_url, i.pending, int(i.renewed_at or 0)
    )


# ------------------------------------------------------------------ gmail
def add_gmail_watch(tenant_id: str, account_id: str, email: str) -> None:
    """Index the address for pushes and register the account for daily watch renewal."""
    sk = keys.account(tenant_id, account_id)
    GoogleAddressItem(keys.gmail_address(email), sk, tenant_id=tenant_id, account_id=account_id).save()
    WatchItem(keys.GMAIL_WATCHES, sk, tenant_id=tenant_id, account_id=account_id).save()


def has_gmail_watch(tenant_id: str, account_id: str) -> bool:
    try:
        WatchItem.get(keys.GMAIL_WATCHES, keys.account(tenant_id, account_id), attributes_to_get=["sk"])
    except DoesNotExist:
        return False
    return True


def remove_gmail_watch(tenant_id: str, account_id: str, email: str) -> None:
    sk = keys.account(tenant_id, account_id)
    GoogleAddressItem(keys.gmail_address(email), sk).delete()
    WatchItem(keys.GMAIL_WATCHES, sk).delete()


def gmail_accounts(email: str) -> list[AccountRef]:
    return [AccountRef(t.tenant_id, t.account_id) for t in GoogleAddressItem.query(keys.gmail_address(email))]


def lease_gmail_watches(period: float, now: float) -> Iterator[AccountRef]:
    """The Gmail watches not renewed for ``period`` seconds, each leased as it is yielded."""
    for w in WatchItem.query(keys.GMAIL_WATCHES):
        if _lease(w, WatchItem, period, now):
            yield AccountRef(w.tenant_id, w.account_id)


# ------------------------------------------------------------------ graph
def graph_watch(tenant_id: str, account_id: str) -> GraphWatch | None:
    try:
        item = MicrosoftWatchItem.get(
            keys.GRAPH_WATCHES, keys.account(tenant_id, account_id), consistent_read=True
        )
    except DoesNotExist:
        return None
    return _graph_watch(item)


def register_graph_account(tenant_id: str, account_id: str, notification_url: str) -> None:
    """Register the account for subscription upkeep (kept as is when already registered;
    ``notification_url``, when given, replaces the stored one)."""
    sk = keys.account(tenant_id, account_id)
    try:
        item = MicrosoftWatchItem.get(keys.GRAPH_WATCHES, sk, consistent_read=True)
    except DoesNotExist:
        item = MicrosoftWatchItem(keys.GRAPH_WATCHES, sk, tenant_id=tenant_id, account_id=account_id)
    if notification_url:
        item.notification_url = notification_url
    item.save()


def save_graph_subscription(
    tenant_id: str, account_id: str, subscription_id: str, client_state_hash: str, url: str, renewed_at: int
) -> None:
    """Index a new subscription and record it in the registry (pending work cleared)."""
    sk = keys.account(tenant_id, account_id)
    GraphSubscriptionItem(
        keys.graph_subscription(subscription_id),
        sk,
        tenant_id=tenant_id,
        account_id=account_id,
        client_state_hash=client_state_hash,
    ).save()
    MicrosoftWatchItem(
        keys.GRAPH_WATCHES,
        sk,
        tenant_id=tenant_id,
        account_id=account_id,
        subscription_id=subscription_id,
        notification_url=url,
        pending=None,
        renewed_at=renewed_at,
    ).save()


def drop_graph_subscription(tenant_id: str, account_id: str, subscription_id: str) -> None:
    GraphSubscriptionItem(
        keys.graph_subscription(subscription_id), keys.account(tenant_id, account_id)
    ).delete()


def remove_graph_watch(tenant_id: str, account_id: str) -> None:
    """Drop the account's subscription index entry and registry entry."""
    watch = graph_watch(tenant_id, account_id)
    if watch is not None and watch.subscription_id:
        drop_graph_subscription(tenant_id, account_id, watch.subscription_id)
    MicrosoftWatchItem(keys.GRAPH_WATCHES, keys.account(tenant_id, account_id)).delete()


def graph_subscribers(subscription_id: str) -> list[GraphSubscriber]:
    return [
        GraphSubscriber(t.tenant_id, t.account_id, t.client_state_hash)
        for t in GraphSubscriptionItem.query(keys.graph_subscription(subscription_id))
    ]


def take_graph_pending(watch: GraphWatch) -> bool:
    """Clear the watch's ``pending`` if it is still the value read; False when another sync took it."""
    item = MicrosoftWatchItem(keys.GRAPH_WATCHES, keys.account(watch.tenant_id, watch.account_id))
    try:
        item.update(
            actions=[MicrosoftWatchItem.pending.remove()],
            condition=MicrosoftWatchItem.pending == watch.pending,
        )
    except UpdateError:
        return False
    return True


def mark_graph_renewed(tenant_id: str, account_id: str, now: int | None = None) -> None:
    item = MicrosoftWatchItem(keys.GRAPH_WATCHES, keys.account(tenant_id, account_id))
    item.update(actions=[MicrosoftWatchItem.renewed_at.set(int(now if now is not None else time.time()))])


def mark_graph_pending(tenant_id: str, account_id: str, pending: str) -> None:
    """Ask the account's next sync to ``renew`` or ``recreate`` its subscription (a pending
    ``recreate`` is never downgraded)."""
    watch = graph_watch(tenant_id, account_id)
    if watch is not None and watch.pending != "recreate":
        item = MicrosoftWatchItem(keys.GRAPH_WATCHES, keys.account(tenant_id, account_id))
        item.update(actions=[MicrosoftWatchItem.pending.set(pending)])


def lease_graph_watches(period: float, now: float) -> Iterator[GraphWatch]:
    """The Graph registry entries not renewed for ``period`` seconds, each leased as it is yielded."""
    for w in MicrosoftWatchItem.query(keys.GRAPH_WATCHES):
        if _lease(w, MicrosoftWatchItem, period, now):
            yield _graph_watch(w)


# ------------------------------------------------------------------ lease
def _lease(
    item: WatchItem | MicrosoftWatchItem,
    model: type[WatchItem] | type[MicrosoftWatchItem],
    period: float,
    now: float,
) -> bool:
    try:  # only one renewer wins for this account until the next period
        item.update(actions=[model.renewed_at.set(int(now))], condition=model.renewed_at < int(now - period))
    except UpdateError:
        return False
    return True
