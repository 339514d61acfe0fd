"""Outbound events in tests: the real stream pipeline over moto's DynamoDB stream.

``EventLog`` drives the local runner's stream pump (the same code ``mailsync run`` uses)
with the real events function (functions/events/app.py), then reads the tenant's feed
through the real use case, so a test sees exactly what a tenant would.
"""

from __future__ import annotations

from typing import Any

from mailsync_local.runner import load_handler
from mailsync_local.streams import StreamPump


class EventLog:
    def __init__(self, tenant_id: str = "t1") -> None:
        from mailsync.config import get_settings

        self.tenant_id = tenant_id
        self.handler = load_handler("events")
        self.batches: list[list[dict[str, Any]]] = []

        def handler(event: dict[str, Any], context: Any) -> Any:
            self.batches.append(event["Records"])
            return self.handler(event, context)

        self.pump = StreamPump(get_settings().table, handler)
        self.cursor: str | None = None
        self.seen: list[dict[str, Any]] = []

    def drain(self) -> list[dict[str, Any]]:
        """Process the stream to its end; the events that reached the feed since the last call."""
        from mailsync.usecases.events import feed

        self.pump.drain()
        new: list[dict[str, Any]] = []
        while True:
            page = feed(self.tenant_id, self.cursor, [], 500)
            new.extend(e.as_dict() for e in page.items)
            self.cursor = page.next_cursor
            if not page.has_more:
                break
        self.seen.extend(new)
        return new

    @staticmethod
    def of(events: list[dict[str, Any]], type_: str) -> list[dict[str, Any]]:
        return [e for e in events if e["type"] == type_]

    @staticmethod
    def types(events: list[dict[str, Any]]) -> list[str]:
        return [e["type"] for e in events]
