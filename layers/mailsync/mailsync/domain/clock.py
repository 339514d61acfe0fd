"""The one home of time helpers: UTC now, ISO 8601 text and naive-to-UTC.

Invariant: every timestamp the service stores or returns is ``YYYY-MM-DDTHH:MM:SSZ``
(UTC, second precision), so keys built from it sort lexicographically by time.
"""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def iso(dt: datetime) -> str:
    """ISO 8601 UTC with a ``Z``, second precision (sorts lexicographically)."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(s: str) -> datetime:
    return datetime.fromisoformat(s.replace("Z", "+00:00"))


def as_utc(dt: datetime) -> datetime:
    """A provider's date in UTC; a naive one is taken to be UTC already."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
