"""The mail side's typed records and the pure visibility rule (no AWS)."""

from __future__ import annotations

from typing import Any

import pytest

from mailsync.domain.records import Contact, Location, link_of
from mailsync.domain.visibility import may_see, may_see_contact


def test_location_round_trips_and_keeps_colons_in_the_ref() -> None:
    loc = Location.parse("3:AAMk:x=")
    assert loc == Location(3, "AAMk:x=")
    assert loc.encode() == "3:AAMk:x="


def test_location_without_generation_is_refused() -> None:
    with pytest.raises(ValueError):
        Location.parse("no-generation")


def _doc(**kw: Any) -> dict[str, Any]:
    base = {
        "mid": "m1", "account_id": "a1", "received_at": "2026-01-02T03:04:05Z", "owner": "alice",
        "thread_id": "t1", "visibility": "public", "links": {"c1": {"kind": "customer"}}, "orphan": False,
    }  # fmt: skip
    return {**base, **kw}


def _contact(visible_to: tuple[str, ...]) -> Contact:
    return Contact("c1", "customer", "", ("x@example.com",), visible_to, "", "")


def test_link_of_a_message() -> None:
    ln = link_of(_doc(visibility=None), "c1")
    assert (ln.contact_id, ln.mid, ln.account_id, ln.owner, ln.thread_id) == ("c1", "m1", "a1", "alice", "t1")
    assert ln.visibility == "private"  # a doc without visibility is private


@pytest.mark.parametrize(
    ("doc", "user", "visible_to", "seen"),
    [
        (_doc(), "alice", (), True),  # the owner, whatever the links
        (_doc(visibility="private"), "bob", ("*",), False),
        (_doc(links={}), "bob", ("*",), False),
        (_doc(), "bob", ("*",), True),
        (_doc(), "bob", ("bob",), True),
        (_doc(), "bob", ("carol",), False),
        (_doc(orphan=True), "alice", (), False),  # an orphan is seen by no one
    ],
)
def test_who_sees_a_message(doc: dict[str, Any], user: str, visible_to: tuple[str, ...], seen: bool) -> None:
    assert may_see(doc, user, {"c1": _contact(visible_to)}) is seen


def test_a_missing_contact_grants_nothing() -> None:
    assert not may_see(_doc(), "bob", {})
    assert may_see_contact(["*"], "anyone") and not may_see_contact([], "bob")
