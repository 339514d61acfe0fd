"""Tenant API keys through the real API handler (in-process, moto): create, list, delete.

What a tenant relies on: a new key works at once and is shown only once (only its
hash is stored); a deleted key gets 401 on its next request; the last key cannot be
deleted (409 ``last_key``), so rotation is create → switch → delete; a tenant never
sees or deletes another tenant's keys (404 ``key_not_found``); ``last_used_at`` costs at
most one write per key per 5 minutes; the routes need no ``X-User-Id``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from mailsync.domain.clock import iso
from mailsync.errors import LastKey
from mailsync.store import keys, tenants
from mailsync.store.models import ApiKeyItem, ApiKeyRecordItem, TenantItem
from tests.support.api import ApiClient, Resp

pytestmark = pytest.mark.integration

CREATED_FIELDS = {"id", "name", "key", "prefix", "created_at"}
LISTED_FIELDS = {"id", "name", "prefix", "created_at", "last_used_at"}


def assert_error(r: Resp, status: int, code: str) -> None:
    assert r.status == status, (r.status, r.body)
    assert isinstance(r.body, dict) and r.body.get("code") == code, r.body
    assert isinstance(r.body.get("message"), str), r.body


def tenant_api(api_key: str) -> ApiClient:
    """A caller of the tenant routes: the key alone, no X-User-Id."""
    return ApiClient(api_key, None)


def create(api: ApiClient, name: str = "CRM production") -> dict[str, Any]:
    r = api.post("/v1/api-keys", {"name": name})
    assert r.status == 201, r.body
    return r.body


def listed(api: ApiClient) -> list[dict[str, Any]]:
    r = api.get("/v1/api-keys")
    assert r.status == 200, r.body
    assert set(r.body) == {"items"}, r.body
    return r.body["items"]


def own_id(api: ApiClient, secret: str) -> str:
    """The id of the key ``secret`` (the tenant's first one, from create_tenant)."""
    (match,) = [k["id"] for k in listed(api) if k["name"] == "default" and secret.startswith(k["prefix"])]
    return match


def works(api_key: str) -> bool:
    """The key authenticates on a user route and on a tenant route (401 otherwise)."""
    user = ApiClient(api_key, "alice").get("/v1/accounts")
    tenant = tenant_api(api_key).get("/v1/api-keys")
    assert user.status in (200, 401) and tenant.status in (200, 401), (user, tenant)
    assert user.status == tenant.status, (user, tenant)
    return user.status == 200


def table_items(aws: dict[str, str]) -> list[dict[str, Any]]:
    ddb = boto3.client("dynamodb")
    items, kw = [], {"TableName": aws["MAILSYNC_TABLE"]}
    while True:
        page = ddb.scan(**kw)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return items
        kw["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@pytest.fixture
def a(tenant: dict[str, str]) -> ApiClient:
    return tenant_api("key-t1")


@pytest.fixture
def b(tenant: dict[str, str]) -> ApiClient:
    return tenant_api("key-t2")


# -------------------------------------------------------------------- create
def test_create_answers_201_with_the_key_once_and_it_works_at_once(a):
    made = create(a, "CRM production")
    assert set(made) == CREATED_FIELDS
    assert made["name"] == "CRM production"
    assert made["key"].startswith("msk_") and len(made["key"]) >= 40
    assert made["prefix"] == made["key"][:12]
    assert listed(a)[0]["prefix"] == "ke"  # a short key shows at most a third of itself ("key-t1")
    assert made["id"].startswith("key_")
    assert datetime.fromisoformat(made["created_at"].replace("Z", "+00:00")).utcoffset() == timedelta(0)
    # The new key works for a user route and for the key routes, and the old one still does.
    assert ApiClient(made["key"], "alice").get("/v1/accounts").status == 200
    mine = listed(tenant_api(made["key"]))
    assert made["id"] in {k["id"] for k in mine}
    assert works("key-t1")


def test_only_the_hash_of_a_key_is_stored(a, aws):
    made = create(a)
    dump = json.dumps(table_items(aws))
    assert made["key"] not in dump
    assert made["key"][12:] not in dump  # not even the part after the shown prefix
    assert tenants.hash_key(made["key"]) in dump  # the auth lookup and the record hold the hash


def test_list_shows_every_key_of_the_tenant_but_never_a_key(a):
    first = create(a, "first")
    second = create(a, "second")
    r = a.get("/v1/api-keys")
    assert r.status == 200
    items = r.body["items"]
    assert len(items) == 3  # the tenant's first key (create_tenant) and the two new ones
    for k in items:
        assert set(k) == LISTED_FIELDS, k
    by_id = {k["id"]: k for k in items}
    assert by_id[first["id"]]["name"] == "first" and by_id[second["id"]]["name"] == "second"
    assert by_id[first["id"]]["prefix"] == first["prefix"]
    assert by_id[first["id"]]["created_at"] == first["created_at"]
    assert by_id[first["id"]]["last_used_at"] is None  # never used yet
    text = json.dumps(r.body)
    for secret in (first["key"], second["key"], "key-t1"):
        assert secret not in text


# -------------------------------------------------------------------- delete
def test_a_deleted_key_gets_401_on_its_next_request(a):
    made = create(a)
    assert works(made["key"])
    r = a.delete(f"/v1/api-keys/{made['id']}")
    assert r.status == 204 and r.body is None
    assert not works(made["key"])
    assert_error(ApiClient(made["key"], "alice").get("/v1/accounts"), 401, "unauthorized")
    assert made["id"] not in {k["id"] for k in listed(a)}
    assert_error(a.delete(f"/v1/api-keys/{made['id']}"), 404, "key_not_found")  # already gone
    assert works("key-t1")


def test_the_only_key_cannot_delete_itself(a):
    mine = own_id(a, "key-t1")
    assert_error(a.delete(f"/v1/api-keys/{mine}"), 409, "last_key")
    assert works("key-t1")
    assert [k["id"] for k in listed(a)] == [mine]


def test_a_key_may_delete_itself_when_another_exists_and_the_other_keeps_working(a):
    mine = own_id(a, "key-t1")
    other = create(a, "rotation")
    assert a.delete(f"/v1/api-keys/{mine}").status == 204
    assert not works("key-t1")
    assert works(other["key"])
    new = tenant_api(other["key"])
    assert [k["id"] for k in listed(new)] == [other["id"]]
    # Now the new key is the last one.
    assert_error(new.delete(f"/v1/api-keys/{other['id']}"), 409, "last_key")
    assert works(other["key"])


def test_tenants_see_and_delete_only_their_own_keys(a, b):
    made = create(a, "tenant A's")
    a_ids = {k["id"] for k in listed(a)}
    b_ids = {k["id"] for k in listed(b)}
    assert a_ids and b_ids and not a_ids & b_ids
    for key_id in a_ids:
        assert_error(b.delete(f"/v1/api-keys/{key_id}"), 404, "key_not_found")
    assert_error(b.delete("/v1/api-keys/key_0000000000000000"), 404, "key_not_found")
    assert works(made["key"]) and works("key-t1")
    assert {k["id"] for k in listed(a)} == a_ids
    # B's own keys still obey the last-key rule after all that.
    assert_error(b.delete(f"/v1/api-keys/{own_id(b, 'key-t2')}"), 409, "last_key")


def test_two_keys_deleting_each_other_at_once_leave_one(tenant, monkeypatch):
    """The count condition holds for every delete. Key two deletes key one in the window
    between key one's read of its target and its write (the race two concurrent requests
    run): key one's delete then fails with last_key and the tenant keeps key two.

    Interleaved in one thread on purpose: the in-process moto is not safe for concurrent
    transactions (it restores a whole-table snapshot when one fails), while DynamoDB
    serialises them; what is ours to test is the read-then-write window."""
    one = tenants.create_key("t1", "one", "msk_one-secret-for-the-race-test", "2026-01-01T00:00:00Z")
    two_secret = "msk_two-secret-for-the-race-test"
    two = tenants.create_key("t1", "two", two_secret, "2026-01-01T00:00:00Z")
    first = own_id(tenant_api("key-t1"), "key-t1")
    tenants.delete_key("t1", first, first)  # three keys → two: one and two
    original_get = ApiKeyRecordItem.get
    interleaved: list[str] = []

    def get_then_let_the_other_request_run(*args: Any, **kw: Any) -> ApiKeyRecordItem:
        record = original_get(*args, **kw)
        if not interleaved:
            interleaved.append(record.key_id)
            tenants.delete_key("t1", one.key_id, two.key_id)  # key two deletes key one: allowed
        return record

    monkeypatch.setattr(ApiKeyRecordItem, "get", get_then_let_the_other_request_run)
    with pytest.raises(LastKey):
        tenants.delete_key("t1", two.key_id, one.key_id)  # key one deletes key two: too late
    assert interleaved == [two.key_id]
    assert [k.key_id for k in tenants.list_keys("t1")] == [two.key_id]
    assert TenantItem.get(keys.tenant("t1"), "T", consistent_read=True).key_count == 1
    assert works(two_secret) and not works("msk_one-secret-for-the-race-test")


# ------------------------------------------------------------ last_used_at
@pytest.fixture
def auth_updates(tenant: dict[str, str]) -> Iterator[list[str]]:
    """Every UpdateItem on an auth item (``KEY#…``) while the test runs."""
    seen: list[str] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        pk = params["Key"]["pk"]["S"]
        if pk.startswith("KEY#"):
            seen.append(pk)

    events = ApiKeyItem._get_connection().connection.client.meta.events
    events.register("provide-client-params.dynamodb.UpdateItem", record)
    yield seen
    events.unregister("provide-client-params.dynamodb.UpdateItem", record)


def test_last_used_at_costs_at_most_one_write_per_key_per_5_minutes(a, auth_updates):
    writes = auth_updates
    user = ApiClient("key-t1", "alice")
    for _ in range(10):
        assert user.get("/v1/accounts").status == 200
    for _ in range(10):
        assert a.get("/v1/api-keys").status == 200
    assert writes == [keys.api_key(tenants.hash_key("key-t1"))]  # the first request: it was missing
    (mine,) = listed(a)
    used = mine["last_used_at"]
    assert used is not None
    used_at = datetime.fromisoformat(used.replace("Z", "+00:00"))
    assert abs(datetime.now(UTC) - used_at) < timedelta(minutes=1)
    assert len(writes) == 1

    # The clock moves 5 minutes and a second: the next request writes once, then not again.
    later = used_at + tenants.LAST_USED_INTERVAL + timedelta(seconds=1)
    assert tenants.tenant_for_key("key-t1", now=later) == "t1"
    assert len(writes) == 2
    assert tenants.tenant_for_key("key-t1", now=later + timedelta(seconds=30)) == "t1"
    assert len(writes) == 2
    (mine,) = listed(a)
    assert mine["last_used_at"] == iso(later)
    # Exactly 5 minutes later is not "older than 5 minutes" yet.
    assert tenants.tenant_for_key("key-t1", now=later + tenants.LAST_USED_INTERVAL) == "t1"
    assert len(writes) == 2
    # Other keys are throttled on their own: key-t2's first use writes once.
    assert ApiClient("key-t2", "alice").get("/v1/accounts").status == 200
    assert writes[2:] == [keys.api_key(tenants.hash_key("key-t2"))]


def test_a_lost_race_or_a_failing_write_never_fails_the_request(a, monkeypatch):
    """Another request saved last_used_at between our read and our write: the condition
    fails and is swallowed; any other write error is logged, the request still works."""
    assert tenants.tenant_for_key("key-t1") == "t1"  # last_used_at now set
    future = datetime.now(UTC) + timedelta(hours=1)
    ApiKeyItem.get(keys.api_key(tenants.hash_key("key-t1")), "K").update(
        actions=[ApiKeyItem.last_used_at.set(iso(future))]
    )
    stale = ApiKeyItem.get(keys.api_key(tenants.hash_key("key-t1")), "K")
    stale.last_used_at = None  # what a request read before the other one wrote
    tenants._touch(stale, datetime.now(UTC))  # the conditional write loses: no error
    assert listed(a)[0]["last_used_at"] == iso(future)

    from pynamodb.exceptions import UpdateError

    def broken(*_: Any, **__: Any) -> None:
        raise UpdateError("throttled")

    monkeypatch.setattr(ApiKeyItem, "update", broken)
    later = future + timedelta(hours=1)
    assert tenants.tenant_for_key("key-t1", now=later) == "t1"
    assert ApiClient("key-t1", "alice").get("/v1/accounts").status == 200


def test_a_deleted_key_is_not_recreated_by_the_last_used_write(a):
    made = create(a)
    stale = ApiKeyItem.get(keys.api_key(tenants.hash_key(made["key"])), "K")
    assert a.delete(f"/v1/api-keys/{made['id']}").status == 204
    tenants._touch(stale, datetime.now(UTC))  # a request that read the item before the delete
    with pytest.raises(ApiKeyItem.DoesNotExist):
        ApiKeyItem.get(keys.api_key(tenants.hash_key(made["key"])), "K", consistent_read=True)
    assert not works(made["key"])


# ---------------------------------------------------------------- the auth
def test_key_routes_need_no_user_header_but_user_routes_still_do(a):
    made = create(a)  # a is a client without X-User-Id
    assert listed(a)
    assert a.delete(f"/v1/api-keys/{made['id']}").status == 204
    assert_error(ApiClient("key-t1", None).get("/v1/accounts"), 400, "missing_user")
    # A user header on a tenant route is ignored, even one a user route would refuse.
    assert ApiClient("key-t1", "a#b").get("/v1/api-keys").status == 200
    assert ApiClient("key-t1", "alice").get("/v1/api-keys").status == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/api-keys", {"name": 5, "bogus": True}),
        ("POST", "/v1/api-keys", None),
        ("GET", "/v1/api-keys", None),
        ("DELETE", "/v1/api-keys/key_x", None),
        ("DELETE", "/v1/api-keys/" + "x" * 500, None),
    ],
)
@pytest.mark.parametrize("api_key", [None, "nope", "KEY-T1"])
def test_key_routes_answer_401_before_anything_else(tenant, method, path, body, api_key):
    assert_error(ApiClient(api_key, None).call(method, path, body), 401, "unauthorized")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x" * 101},
        {"name": 5},
        {"name": None},
        {"name": ["a"]},
        {"name": "ok", "extra": 1},
        [],
        "name",
    ],
)
def test_bad_input_is_422_with_a_code(a, body):
    before = listed(a)
    assert_error(a.post("/v1/api-keys", body), 422, "invalid_request")
    assert listed(a) == before


def test_name_limits_and_bad_ids(a):
    assert create(a, "x")["name"] == "x"
    assert create(a, "ü" * 100)["name"] == "ü" * 100
    assert_error(a.delete("/v1/api-keys/" + "k" * 129), 422, "invalid_request")
    r = a.call("POST", "/v1/api-keys", headers={"Content-Type": "text/plain"}, body={"name": "x"})
    assert_error(r, 415, "unsupported_media_type")


# ------------------------------------------------------- store: the purge side
def test_revoke_all_keys_locks_the_tenant_out_at_once_and_leaves_the_records(a, b):
    made = create(a)
    hashes = tenants.key_hashes("t1")
    assert sorted(hashes) == sorted([tenants.hash_key("key-t1"), tenants.hash_key(made["key"])])
    tenants.revoke_all_keys("t1")
    assert not works("key-t1") and not works(made["key"])
    assert sorted(tenants.key_hashes("t1")) == sorted(hashes)  # the purge removes the records
    assert works("key-t2")  # other tenants are untouched


def test_no_new_key_for_a_tenant_being_deleted(a):
    TenantItem(keys.tenant("t1"), "T").update(actions=[TenantItem.state.set("deleting")])
    assert_error(a.post("/v1/api-keys", {"name": "late"}), 401, "unauthorized")
    assert len(listed(a)) == 1


def test_a_key_made_before_key_ids_keeps_working_and_is_not_listed(a):
    # Auth items written before this change have no key_id and no record.
    ApiKeyItem(
        keys.api_key(tenants.hash_key("legacy-key")), "K", tenant_id="t1", created_at="2025-01-01T00:00:00Z"
    ).save()
    assert works("legacy-key")
    assert [k["name"] for k in listed(tenant_api("legacy-key"))] == ["default"]  # key-t1 only
