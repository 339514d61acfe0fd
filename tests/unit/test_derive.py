"""The derivation of events from item changes (domain/derive.py): the rules a tenant relies on."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from mailsync.domain.derive import ItemChange, derive
from mailsync.store.schema import CfnLoader, default_template_path
from mailsync.store.streams import decode

pytestmark = pytest.mark.unit


def msg(**kw: Any) -> dict[str, Any]:
    base = {
        "mid": "m1", "account_id": "a1", "owner": "u1", "thread_id": "th1", "folder": "INBOX",
        "subject": "Hallo", "from": [{"email": "k@x.test"}], "to": [], "cc": [], "date": "2026-01-01T00:00:00Z",
        "snippet": "…", "unread": True, "links": {}, "visibility": "private", "orphan": False,
        "raw_key": "t/t1/a/a1/m1", "body_parts": [{"kind": "text"}],
    }  # fmt: skip
    return {**base, **kw}


def change(name: str, old: Any, new: Any, kind: str = "message", source: str = "rec-1") -> ItemChange:
    return ItemChange(source, name, kind, "t1", "T#t1#M#m1", "M", "2026-12-03T10:00:00.000Z", old, new)


def types(events: list[Any]) -> list[str]:
    return [e.type for e in events]


def test_orphaning_is_no_event_and_a_rescue_into_another_folder_is_one_update():
    orphaned = msg(orphan=True, gone_reason="deleted_at_provider")
    assert derive(change("MODIFY", msg(), orphaned)) == []
    (e,) = derive(change("MODIFY", orphaned, msg(folder="Archiv")))
    assert e.type == "message.updated" and e.data["changes"] == ["folder"] and e.data["folder"] == "Archiv"
    assert derive(change("MODIFY", orphaned, msg())) == []  # back where it was: nothing changed


def test_removal_carries_the_reason_and_purges_are_silent():
    (e,) = derive(change("REMOVE", msg(orphan=True, gone_reason="folder_unsynced"), None))
    assert e.type == "message.deleted" and e.data["reason"] == "folder_unsynced"
    assert derive(change("REMOVE", msg(), None), account_purging=True) == []
    assert derive(change("REMOVE", msg(), None))[0].data["reason"] == "deleted_at_provider"


def test_summary_never_carries_bodies_or_storage_keys():
    (e,) = derive(change("INSERT", None, msg()))
    assert "body_parts" not in e.data and "raw_key" not in e.data and e.type == "message.created"


def test_ids_are_stable_per_record_and_distinct_between_records():
    a = derive(change("MODIFY", msg(), msg(unread=False), source="rec-7"))
    b = derive(change("MODIFY", msg(), msg(unread=False), source="rec-7"))
    c = derive(change("MODIFY", msg(), msg(unread=False), source="rec-8"))
    assert a[0].id == b[0].id != c[0].id
    other_tenant = ItemChange(
        "rec-7", "MODIFY", "message", "t2", "T#t2#M#m1", "M", "x", msg(), msg(unread=False)
    )
    assert derive(other_tenant)[0].id != a[0].id


def test_account_rules():
    acc = {"account_id": "a1", "owner": "u1", "email": "u@x.test", "provider": "imap", "state": "active"}
    assert types(derive(change("INSERT", None, acc, "account"))) == ["account.connected"]
    assert types(derive(change("REMOVE", acc, None, "account"))) == ["account.deleted"]
    assert derive(change("MODIFY", acc, {**acc, "state": "deleting"}, "account")) == []
    failed = {**acc, "state": "error", "error": {"code": "connection_failed", "message": "down"}}
    (e,) = derive(change("MODIFY", acc, failed, "account"), action_of=lambda c: "check_server_settings")
    assert (
        e.data["from"] == "active" and e.data["to"] == "error" and e.data["action"] == "check_server_settings"
    )
    loading = {**acc, "state": "initial_sync", "health": {}}
    loaded = {**acc, "state": "active", "health": {"initial_done_at": "2026-12-03T10:00:00Z"}}
    assert types(derive(change("MODIFY", loading, loaded, "account"))) == [
        "account.state_changed",
        "account.initial_sync_completed",
    ]
    assert types(derive(change("MODIFY", loaded, {**loaded, "sync": {"messages": 3}}, "account"))) == []


def test_send_record_expiry_is_no_event():
    rec = {
        "account_id": "a1",
        "owner": "u1",
        "status": "failed",
        "message_id": "<x>",
        "recipients": [],
        "error": {},
    }
    assert types(derive(change("INSERT", None, rec, "send"))) == ["send.failed"]
    assert derive(change("REMOVE", rec, None, "send")) == []


def test_stream_records_of_other_items_are_not_decoded():
    lock = {
        "eventID": "1",
        "eventName": "MODIFY",
        "dynamodb": {"Keys": {"pk": {"S": "T#t1#A#a1"}, "sk": {"S": "LOCK"}}},
    }
    assert decode(lock) is None
    item = {"eventID": "2", "eventName": "INSERT", "dynamodb": {
        "Keys": {"pk": {"S": "T#t1#M#m1"}, "sk": {"S": "M"}},
        "NewImage": {"mid": {"S": "m1"}, "links": {"S": "{\"c1\": {\"kind\": \"customer\", \"auto\": [\"k@x\"]}}"},
                     "size": {"N": "12"}},
        "ApproximateCreationDateTime": 1796300000.0}}  # fmt: skip
    c = decode(item)
    assert c is not None and c.tenant_id == "t1" and c.new["links"]["c1"]["kind"] == "customer"
    assert c.new["size"] == 12 and c.at.startswith("2026-")


def test_the_template_filter_admits_exactly_the_decoded_kinds():
    """The deployed FilterCriteria and the decoder agree: no event is filtered away in AWS."""
    template = yaml.load(default_template_path().read_text(), Loader=CfnLoader)  # noqa: S506
    props = template["Resources"]["EventsFunction"]["Properties"]["Events"]["MainTableStream"]["Properties"]
    import json

    (f,) = props["FilterCriteria"]["Filters"]
    allowed = json.loads(f["Pattern"])["dynamodb"]["Keys"]["sk"]["S"]
    exact = {a for a in allowed if isinstance(a, str)}
    prefixes = {a["prefix"] for a in allowed if isinstance(a, dict)}
    from mailsync.store.streams import _PREFIX_KINDS, KINDS

    assert exact == set(KINDS) and prefixes == {p for p, _ in _PREFIX_KINDS}
