"""Graph change notifications: webhook subscriptions to a mailbox's messages.

References (https://learn.microsoft.com/graph/...): ``api/resources/subscription``,
``api/subscription-post-subscriptions``, ``api/subscription-update``,
``api/subscription-delete``, ``change-notifications-overview``,
``change-notifications-delivery-webhooks`` (validation handshake: Graph calls the
``notificationUrl`` before it answers the POST) and ``change-notifications-lifecycle-events``.

Invariant: a subscription to messages lives at most :data:`MAX_SUBSCRIPTION_MINUTES` (about
three days); ``subscribe`` and ``renew`` ask for five minutes less, and the renewer renews
before that. Deleting an unknown subscription is no error.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from mailsync.domain.clock import iso
from mailsync.providers.graph.client import GraphClient
from mailsync.providers.http import ApiError

__all__ = ["MAX_SUBSCRIPTION_MINUTES", "GraphSubscriptions"]

MAX_SUBSCRIPTION_MINUTES = 4230  # messages


class GraphSubscriptions(GraphClient):
    """The change-notification subscriptions of a Graph session."""

    def subscribe(
        self,
        notification_url: str,
        *,
        client_state: str,
        lifecycle_url: str | None = None,
        resource: str = "me/messages",
        change_type: str = "created,updated,deleted",
        minutes: int = MAX_SUBSCRIPTION_MINUTES - 5,
    ) -> dict[str, Any]:
        """``POST /subscriptions`` (Graph validates ``notification_url`` before answering)."""
        body: dict[str, Any] = {
            "changeType": change_type,
            "notificationUrl": notification_url,
            "resource": resource,
            "expirationDateTime": iso(
                datetime.now(UTC) + timedelta(minutes=min(minutes, MAX_SUBSCRIPTION_MINUTES))
            ),
            "clientState": client_state,
        }
        if lifecycle_url:
            body["lifecycleNotificationUrl"] = lifecycle_url
        return dict(self._request("POST", "subscriptions", json_body=body).body)

    def renew(self, subscription_id: str, minutes: int = MAX_SUBSCRIPTION_MINUTES - 5) -> dict[str, Any]:
        """``PATCH /subscriptions/{id}`` with a new ``expirationDateTime``."""
        exp = iso(datetime.now(UTC) + timedelta(minutes=min(minutes, MAX_SUBSCRIPTION_MINUTES)))
        return dict(
            self._request(
                "PATCH",
                f"subscriptions/{quote(subscription_id, safe='')}",
                json_body={"expirationDateTime": exp},
            ).body
        )

    def unsubscribe(self, subscription_id: str) -> None:
        """``DELETE /subscriptions/{id}`` (an unknown one is no error)."""
        try:
            self._request("DELETE", f"subscriptions/{quote(subscription_id, safe='')}")
        except ApiError as e:
            if e.status != 404:
                raise

    def subscriptions(self) -> list[dict[str, Any]]:
        return [dict(s) for s in self._pages("subscriptions")]
