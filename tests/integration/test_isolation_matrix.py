"""Tenant and user isolation as a matrix built from the OpenAPI spec (in-process handler,
moto, Dovecot): every operation x {no key, wrong key, revoked key, other tenant's ids,
other user of the same tenant}.

* no / wrong / revoked key: 401 with a ``code`` (public paths, ``security: []``, excluded).
* other tenant: t2 calls with t1's path ids and gets what an id that never existed gets
  (404), never 200/403/409/422 that would reveal the id exists; lists hold none of t1's ids.
* other user: bob (t1) calls with alice's private resources and gets 404; his lists hold
  none of alice's ids. Contacts, users and keys are the tenant's, not a user's (n/a).

The operations come from ``app.get_openapi_schema()``: a new route without an entry in
:data:`CASES` fails the test, so it cannot go uncovered. Each seeded world is checked intact
at the end (the foreign calls include deletes and patches that must not have acted).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from mailsync.api.app import app, openapi_options
from mailsync.api.auth import TENANT_PATHS
from mailsync.usecases import webhooks
from tests.support.accounts import connect, sync
from tests.support.api import ApiClient, Resp
from tests.support.crm import append, put_contact
from tests.support.events import EventLog
from tests.support.webhooks import drain as drain_webhooks
from tests.support.webhooks import event

pytestmark = pytest.mark.integration

METHODS = ("get", "post", "put", "patch", "delete")
AXES = ("no_key", "wrong_key", "revoked_key", "other_tenant", "other_user")
KUNDE = "kunde@kunde.test"

# operationId -> (body, query, foreign, user). ``foreign``/``user`` say what the other
# tenant / other user case checks: "ids" (path ids of t1/alice: 404), "list" (200 and none
# of the victim's ids), "query" (the victim's id in the query: answered as an unknown id,
# nothing leaks), "shared" (the tenant's contact, which a colleague may see: 200 without
# the owner's private mail), "own" (acts in the caller's own namespace: allowed, victim untouched),
# or "n/a: why".
NA_TENANT = "n/a: tenant resource, no user scope"
NA_NOIDS = "n/a: no ids, acts on the caller's own tenant"
NA_PUBLIC = "n/a: public path, authenticated otherwise"
SEND = {"to": ["x@example.test"], "subject": "s", "text": "t"}
CASES: dict[str, tuple[Any, dict[str, str], str, str]] = {
    "listAccounts": (None, {}, "list", "list"),
    "createAccount": (None, {}, NA_NOIDS, NA_NOIDS),
    "getAccount": (None, {}, "ids", "ids"),
    "deleteAccount": (None, {}, "ids", "ids"),
    "listFolders": (None, {}, "ids", "ids"),
    "updateSettings": ({"signature": "pwned"}, {}, "ids", "ids"),
    "syncNow": (None, {}, "ids", "ids"),
    "pause": (None, {}, "ids", "ids"),
    "resume": (None, {}, "ids", "ids"),
    "putCredentials": ({"password": "pwned"}, {}, "ids", "ids"),
    "resync": (None, {}, "ids", "ids"),
    "check": (None, {}, "ids", "ids"),
    "listSyncs": (None, {}, "ids", "ids"),
    "sendMail": (SEND, {}, "ids", "ids"),
    "listMessages": (None, {}, "query", "query"),
    "getMessage": (None, {}, "ids", "ids"),
    "messageSuggestions": (None, {}, "ids", "ids"),
    "deleteMessage": (None, {}, "ids", "ids"),
    "patchMessage": ({"unread": False}, {}, "ids", "ids"),
    "getAttachment": (None, {}, "ids", "ids"),
    # A signed link names its tenant and message (tests/integration/test_images.py: a t2
    # link to a t1 message, forged and expired links).
    "getImage": (None, {}, NA_PUBLIC, NA_PUBLIC),
    "listThreads": (None, {}, "list", "list"),
    "getThread": (None, {}, "ids", "ids"),
    "patchThread": ({"unread": False}, {}, "ids", "ids"),
    "linkThread": ({"contact_id": "{contact_id}"}, {}, "ids", "ids"),
    "unlinkThread": (None, {}, "ids", "ids"),
    "getContact": (None, {}, "ids", "shared"),
    "searchContacts": (None, {"q": "kunde"}, "list", "shared"),
    "putContact": ({"kind": "customer", "name": "Fremd", "emails": ["f@f.test"]}, {}, "own", NA_TENANT),
    "deleteContact": (None, {}, "ids", NA_TENANT),
    "contactMessages": (None, {}, "ids", "shared"),
    "contactThreads": (None, {}, "ids", "shared"),
    "batchContacts": (None, {}, NA_NOIDS, NA_TENANT),
    "detectProvider": (None, {"email": "x@example.test"}, NA_NOIDS, NA_NOIDS),
    "googleAuthorize": (None, {"redirect_uri": "http://127.0.0.1:8999/x"}, NA_NOIDS, NA_NOIDS),
    "microsoftAuthorize": (None, {"redirect_uri": "http://127.0.0.1:8999/x"}, NA_NOIDS, NA_NOIDS),
    "googleCallback": (None, {}, NA_PUBLIC, NA_PUBLIC),
    "microsoftCallback": (None, {}, NA_PUBLIC, NA_PUBLIC),
    "googleWebhook": (None, {}, NA_PUBLIC, NA_PUBLIC),
    "microsoftWebhook": (None, {}, NA_PUBLIC, NA_PUBLIC),
    "getUser": (None, {}, "ids", NA_TENANT),
    # Idempotent for any name (a user exists as their data): t2 purges a "alice" of its own.
    "deleteUser": (None, {}, "own", NA_TENANT),
    "listApiKeys": (None, {}, "list", NA_TENANT),
    "createApiKey": ({"name": "k"}, {}, NA_NOIDS, NA_TENANT),
    "deleteApiKey": (None, {}, "ids", NA_TENANT),
    "deleteTenant": (None, {}, NA_NOIDS, NA_TENANT),
    "getTenantSettings": (None, {}, "list", NA_TENANT),
    "createUserToken": ({"user_id": "token-user"}, {}, "own", NA_TENANT),
    "updateTenantSettings": ({"assign_bulk": True}, {}, "own", NA_TENANT),
    "createWebhookEndpoint": ({"url": "http://127.0.0.1:9/x", "events": ["*"]}, {}, NA_NOIDS, NA_TENANT),
    "listWebhookEndpoints": (None, {}, "list", NA_TENANT),
    "getWebhookEndpoint": (None, {}, "ids", NA_TENANT),
    "updateWebhookEndpoint": ({"description": "pwned"}, {}, "ids", NA_TENANT),
    "deleteWebhookEndpoint": (None, {}, "ids", NA_TENANT),
    "rotateWebhookSecret": (None, {}, "ids", NA_TENANT),
    "sendWebhookTest": (None, {}, "ids", NA_TENANT),
    "listWebhookDeliveries": (None, {}, "ids", NA_TENANT),
    "retryWebhookDelivery": (None, {}, "ids", NA_TENANT),
    "listEvents": (None, {}, "list", NA_TENANT),
}


def operations() -> list[tuple[str, str, str, bool]]:
    """``(operationId, METHOD, path, public)`` of every operation the spec documents."""
    spec = json.loads(app.get_openapi_json_schema(**openapi_options()))
    out = []
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                op = item[method]
                out.append((op["operationId"], method.upper(), path, op.get("security") == []))
    return out


def seed(dovecot: Any, tenant_id: str, key: str, owner: str, tag: str) -> dict[str, Any]:
    """An account (private) with two mails (one with an attachment), a contact linked to
    its thread, and an API key of the tenant: the ids a foreign caller tries."""
    api = ApiClient(key, owner)
    imap_user = dovecot.new_user(f"iso{tag}")
    acc = connect(dovecot, imap_user, tenant_id=tenant_id, owner=owner, backfill_days=2)
    r = api.patch(f"/v1/accounts/{acc['id']}/settings", {"visibility": "private"})
    assert r.status == 200, r.body
    pdf = ("a.pdf", "application/pdf", b"%PDF-1.4 isolation")
    append(dovecot, imap_user[0], 0, f"{tag} first", from_=KUNDE, to=acc["email"], attachment=pdf)
    append(dovecot, imap_user[0], 1, f"{tag} second", from_=KUNDE, to=acc["email"])
    sync(acc, tenant_id)
    msgs = api.get("/v1/messages", account_id=acc["id"]).body["items"]
    assert len(msgs) == 2, msgs
    with_att = next(m for m in msgs if m["has_attachments"])
    detail = api.get(f"/v1/messages/{with_att['id']}").body
    contact = f"k-{tag}"
    put_contact(api, contact, [KUNDE])
    r = api.post(f"/v1/threads/{with_att['thread_id']}/links", {"contact_id": contact})
    assert r.status == 201, r.body
    hook = ApiClient(key, None).post(
        "/v1/webhook-endpoints", {"url": f"http://127.0.0.1:9/{tag}", "events": ["*"], "description": tag}
    )
    assert hook.status == 201, hook.body
    assert webhooks.fan_out(tenant_id, [event(1, tenant_id=tenant_id)]) >= 1
    drain_webhooks()  # its first attempt (refused: nobody listens) writes the delivery's record
    EventLog(tenant_id).pump.drain()  # the stream so far: this tenant's feed names its ids
    deliveries = ApiClient(key, None).get(f"/v1/webhook-endpoints/{hook.body['id']}/deliveries")
    r = ApiClient(key, None).post("/v1/api-keys", {"name": f"{tag} spare"})
    assert r.status == 201, r.body
    return {
        "api": api,
        "acc": acc,
        "messages": {m["id"] for m in msgs},
        "ids": {
            "account_id": acc["id"],
            "message_id": with_att["id"],
            "thread_id": with_att["thread_id"],
            "attachment_id": detail["attachments"][0]["id"],
            "contact_id": contact,
            "user_id": owner,
            "key_id": r.body["id"],
            "endpoint_id": hook.body["id"],
            "delivery_id": deliveries.body["items"][0]["id"],
        },
    }


def secret_ids(world: dict[str, Any]) -> set[str]:
    """The victim's ids that must never show in another caller's answer (user names,
    contact ids and attachment ids, which are MIME part numbers, are not secret)."""
    ids = world["ids"]
    return {
        ids["account_id"],
        ids["thread_id"],
        ids["key_id"],
        ids["endpoint_id"],
        ids["delivery_id"],
        *world["messages"],
    }


def fill(path: str, ids: dict[str, str]) -> str:
    return path.format(**ids)


def body_of(body: Any, ids: dict[str, str]) -> Any:
    return json.loads(json.dumps(body).replace("{contact_id}", ids["contact_id"])) if body else body


def leaked(r: Resp, victim: dict[str, Any]) -> set[str]:
    text = json.dumps(r.body)
    return {i for i in secret_ids(victim) if i in text}


@pytest.fixture
def worlds(tenant: dict[str, str], dovecot: Any) -> dict[str, Any]:
    t1 = seed(dovecot, "t1", "key-t1", "alice", "t1")
    t2 = seed(dovecot, "t2", "key-t2", "tom", "t2")
    bob = seed(dovecot, "t1", "key-t1", "bob", "bob")
    return {"t1": t1, "t2": t2, "bob": bob}


def test_every_operation_has_a_case():
    ops = {op for op, *_ in operations()}
    assert ops == set(CASES), {"no case": ops - set(CASES), "no route": set(CASES) - ops}


def test_isolation_matrix(worlds: dict[str, Any]) -> None:
    t1, t2 = worlds["t1"], worlds["t2"]
    r = ApiClient("key-t1", None).post("/v1/api-keys", {"name": "to revoke"})
    assert r.status == 201, r.body
    revoked = r.body
    assert ApiClient("key-t1", None).delete(f"/v1/api-keys/{revoked['id']}").status == 204

    ops = operations()
    faults: list[str] = []
    cases = 0
    # 1. The foreign axes first, while every id exists (their correct answer changes nothing).
    callers = {
        "other_tenant": (ApiClient("key-t2", "tom"), t1),
        "other_user": (ApiClient("key-t1", "bob"), t1),
    }
    own = {"other_tenant": t2, "other_user": worlds["bob"]}
    for op, method, path, _public in ops:
        body, query, *modes = CASES[op]
        for axis, mode in zip(("other_tenant", "other_user"), modes, strict=True):
            cases += 1
            if mode.startswith("n/a"):
                continue
            caller, victim = callers[axis]
            tenant_route = path.startswith(TENANT_PATHS)
            if tenant_route:
                caller = caller.as_user(None)
            where = f"{axis} {method} {path}"
            if mode == "ids":
                ids = {**victim["ids"]}
                if op == "linkThread":  # the caller's own contact onto the victim's thread
                    ids["contact_id"] = own[axis]["ids"]["contact_id"]
                r = caller.call(method, fill(path, ids), body_of(body, ids), params=query or None)
                code = r.body.get("code") if isinstance(r.body, dict) else None
                if r.status != 404 or not code:
                    faults.append(f"{where}: {r.status} {r.body}")
            elif mode in ("list", "shared"):  # the caller's own ids / the tenant's shared ones
                ids = own[axis]["ids"] if mode == "list" else victim["ids"]
                r = caller.call(method, fill(path, ids), params=query or None)
                if r.status != 200 or leaked(r, victim):
                    faults.append(f"{where}: {r.status} leaked {leaked(r, victim)}")
            elif mode == "query":
                mine = caller.get(path, account_id="never-existed")
                r = caller.get(path, account_id=victim["ids"]["account_id"])
                if (r.status, r.body) != (mine.status, mine.body) or leaked(r, victim):
                    faults.append(f"{where}?account_id=: {r.status} {r.body} vs unknown {mine.status}")
            elif mode == "own":
                r = caller.call(method, fill(path, victim["ids"]), body_of(body, victim["ids"]))
                if r.status not in (200, 201, 202) or leaked(r, victim):
                    faults.append(f"{where}: {r.status} {r.body}")
                if method == "PUT":  # the caller's own copy goes again: the victim's stays
                    assert caller.delete(fill(path, victim["ids"])).status in (200, 204)
    # 2. The key axes: refused before anything runs.
    for op, method, path, public in ops:
        body, query, *_ = CASES[op]
        for axis, key in (("no_key", None), ("wrong_key", "key-wrong"), ("revoked_key", revoked["key"])):
            cases += 1
            if public:
                continue
            caller = ApiClient(key, "alice")
            r = caller.call(method, fill(path, t1["ids"]), body_of(body, t1["ids"]), params=query or None)
            if r.status != 401 or not (isinstance(r.body, dict) and r.body.get("code")):
                faults.append(f"{axis} {method} {path}: {r.status} {r.body}")

    print(f"isolation matrix: {len(ops)} operations x {len(AXES)} = {cases} cases, leaks {len(faults)}")
    assert cases == len(ops) * len(AXES)
    assert not faults, "\n".join(faults)

    # 3. Nothing of the victims changed.
    for w in (t1, worlds["bob"]):
        api, ids = w["api"], w["ids"]
        acc = api.get(f"/v1/accounts/{ids['account_id']}")
        assert acc.status == 200 and acc.body["settings"].get("signature") != "pwned", acc.body
        assert {m["id"] for m in api.get("/v1/messages", account_id=ids["account_id"]).body["items"]} == w[
            "messages"
        ]
        msg = api.get(f"/v1/messages/{ids['message_id']}").body
        assert msg["unread"] is True and ids["contact_id"] in {ln["contact_id"] for ln in msg["links"]}, msg
    contact = t1["api"].get(f"/v1/contacts/{t1['ids']['contact_id']}").body
    assert contact["name"] != "Fremd", contact
    keys = {k["id"] for k in ApiClient("key-t1", None).get("/v1/api-keys").body["items"]}
    assert t1["ids"]["key_id"] in keys, keys
    hook = ApiClient("key-t1", None).get(f"/v1/webhook-endpoints/{t1['ids']['endpoint_id']}")
    assert hook.status == 200 and hook.body["description"] == "t1", hook.body
    listed = ApiClient("key-t1", None).get(f"/v1/webhook-endpoints/{t1['ids']['endpoint_id']}/deliveries")
    assert t1["ids"]["delivery_id"] in {d["id"] for d in listed.body["items"]}
