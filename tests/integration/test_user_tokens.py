"""User tokens for browsers (issue 17), over moto and Dovecot: minted with the tenant key,
accepted as a bearer token without X-User-Id for that user alone, never on tenant routes,
refused once expired, once the minting key is deleted, or once the user is deleted, and
checked with one DynamoDB request."""

from __future__ import annotations

from typing import Any

import pytest

from mailsync.domain import user_tokens as rules
from mailsync.usecases import user_tokens
from tests.support import secrets as leakscan
from tests.support.accounts import connect
from tests.support.api import ApiClient

pytestmark = pytest.mark.integration


def mint(user: str = "alice", key: str = "key-t1", **body: Any) -> dict[str, Any]:
    r = ApiClient(key, None).post("/v1/user-tokens", {"user_id": user, **body})
    assert r.status == 201, r.body
    leakscan.register("user token", r.body["token"])
    return r.body


@pytest.fixture
def alice_account(tenant: Any, dovecot: Any, imap_user: tuple[str, str]) -> dict[str, Any]:
    return connect(dovecot, imap_user, owner="alice")


def test_a_token_acts_for_its_user_alone_without_x_user_id(alice_account: dict[str, Any]) -> None:
    made = mint(ttl_seconds=600)
    assert made["token"].startswith("mut_") and made["expires_at"].endswith("Z")
    me = ApiClient(made["token"], None)
    r = me.get("/v1/accounts")
    assert r.status == 200 and [a["id"] for a in r.body["items"]] == [alice_account["id"]], r.body
    assert me.get(f"/v1/accounts/{alice_account['id']}").status == 200
    # bob's token sees none of alice's mail
    bob = ApiClient(mint("bob")["token"], None)
    assert bob.get("/v1/accounts").body["items"] == []
    assert bob.get(f"/v1/accounts/{alice_account['id']}").status == 404
    # naming another user with the token is refused; naming its own user is fine
    r = me.call("GET", "/v1/accounts", headers={"X-User-Id": "bob"})
    assert r.status == 403 and r.body["code"] == "user_mismatch"
    assert me.call("GET", "/v1/accounts", headers={"X-User-Id": "alice"}).status == 200
    # the token carries no mail data and no secret: only who, which key and when
    claims, _, _ = rules.read(made["token"])
    assert (claims.tenant_id, claims.user_id) == ("t1", "alice")
    assert claims.expires_at - claims.issued_at == 600


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/api-keys"),
        ("POST", "/v1/user-tokens"),
        ("GET", "/v1/users/alice"),
        ("GET", "/v1/tenant/settings"),
        ("GET", "/v1/webhook-endpoints"),
        ("GET", "/v1/events"),
    ],
)
def test_a_token_never_reaches_tenant_routes(tenant: Any, method: str, path: str) -> None:
    r = ApiClient(mint()["token"], None).call(method, path, {"user_id": "x"} if method == "POST" else None)
    assert r.status == 403 and r.body["code"] == "tenant_key_required", r.body


def test_bad_requests_and_forged_tokens(tenant: Any) -> None:
    tenant_api = ApiClient("key-t1", None)
    for body in ({"user_id": "alice", "ttl_seconds": 3601}, {"user_id": "alice", "ttl_seconds": 10},
                 {"user_id": "a#b"}, {}, {"user_id": "alice", "extra": 1}):  # fmt: skip
        r = tenant_api.post("/v1/user-tokens", body)
        assert r.status == 422 and r.body["code"] == "invalid_request", (body, r.body)
    assert mint(ttl_seconds=3600)["token"]
    good = mint()["token"]
    claims, _, mac = rules.read(good)
    forged_claims = rules.Claims("t1", "bob", claims.key_id, claims.issued_at, claims.expires_at)
    forged = rules.sign(forged_claims, b"x" * 32)  # a MAC with another secret
    spliced = forged.split(".")[0] + "." + good.split(".")[1]  # bob's claims, alice's MAC
    for token in (forged, spliced, good[:-3] + "AAA", "mut_garbage", "mut_e30.AAAA"):
        r = ApiClient(token, None).get("/v1/accounts")
        assert r.status == 401 and r.body["code"] == "unauthorized", (token, r.body)
    # another tenant's token acts in that tenant only
    t2 = ApiClient(mint("alice", key="key-t2")["token"], None)
    assert t2.get("/v1/accounts").body["items"] == []


def test_a_token_expires_on_its_own(tenant: Any) -> None:
    past = user_tokens.mint("t1", None, "alice", 60, now=1_000_000_000)  # long ago
    leakscan.register("user token", past["token"])
    r = ApiClient(past["token"], None).get("/v1/accounts")
    assert r.status == 401 and r.body["code"] == "token_expired", r.body


def test_deleting_the_minting_key_refuses_its_tokens_at_once(tenant: Any) -> None:
    tenant_api = ApiClient("key-t1", None)
    made = tenant_api.post("/v1/api-keys", {"name": "browser minting"}).body
    leakscan.register("tenant api key", made["key"])
    token = mint(key=made["key"])["token"]
    other = mint()["token"]  # minted with key-t1
    assert ApiClient(token, None).get("/v1/accounts").status == 200
    assert tenant_api.delete(f"/v1/api-keys/{made['id']}").status == 204
    r = ApiClient(token, None).get("/v1/accounts")
    assert r.status == 401 and r.body["code"] == "unauthorized"
    assert ApiClient(other, None).get("/v1/accounts").status == 200  # other keys' tokens live on


def test_deleting_the_user_refuses_their_tokens_at_once(alice_account: dict[str, Any]) -> None:
    token = mint()["token"]
    bobs = mint("bob")["token"]
    assert ApiClient(token, None).get("/v1/accounts").status == 200
    assert ApiClient("key-t1", None).delete("/v1/users/alice").status == 202
    r = ApiClient(token, None).get("/v1/accounts")
    assert r.status == 401 and r.body["code"] == "unauthorized"
    assert ApiClient(bobs, None).get("/v1/accounts").status == 200
    r = ApiClient("key-t1", None).post("/v1/user-tokens", {"user_id": "alice"})
    assert r.status == 409 and r.body["code"] == "user_purging"


def test_checking_a_token_costs_one_dynamodb_request(tenant: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """As cheap as a key lookup (one GetItem): one BatchGetItem, and KMS only on a cold cache."""
    from botocore.client import BaseClient

    token = mint()["token"]
    ApiClient(token, None).get("/v1/accounts")  # warm the data-key cache
    calls: list[str] = []
    real = BaseClient._make_api_call

    def counting(self: Any, operation: str, params: Any) -> Any:
        calls.append(f"{self.meta.service_model.service_name}:{operation}")
        return real(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting)
    user_tokens.authenticate(token)
    assert calls == ["dynamodb:BatchGetItem"], calls


# ------------------------------------------------------------------ CORS
CRM = "https://crm.example"


def preflight(origin: str, path: str = "/v1/accounts") -> Any:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization",
    }
    return ApiClient(None, None).call("OPTIONS", path, headers=headers)


def test_cors_follows_the_fetch_standard_for_the_tenants_origins_only(tenant: Any) -> None:
    tenant_api = ApiClient("key-t1", None)
    r = tenant_api.patch(
        "/v1/tenant/settings", {"allowed_origins": ["HTTPS://CRM.Example:443", "http://127.0.0.1:3000"]}
    )
    assert r.status == 200 and r.body["allowed_origins"] == [CRM, "http://127.0.0.1:3000"], r.body
    assert tenant_api.get("/v1/tenant/settings").body["allowed_origins"] == [CRM, "http://127.0.0.1:3000"]

    # Preflight: allowed for a listed origin (no credentials, so from the origin index) ...
    r = preflight(CRM)
    assert r.status == 204
    assert r.headers["Access-Control-Allow-Origin"] == CRM and r.headers["Vary"] == "Origin"
    assert "authorization" in r.headers["Access-Control-Allow-Headers"]
    assert "PATCH" in r.headers["Access-Control-Allow-Methods"]
    # ... and not for another one: no allow headers, so the browser refuses the request.
    r = preflight("https://evil.example")
    assert r.status == 204 and "Access-Control-Allow-Origin" not in r.headers

    # Actual responses: the tenant's own origins only, never "*".
    mine = ApiClient(mint()["token"], None)
    r = mine.call("GET", "/v1/accounts", headers={"Origin": CRM})
    assert (
        r.status == 200 and r.headers["Access-Control-Allow-Origin"] == CRM and r.headers["Vary"] == "Origin"
    )
    r = mine.call("GET", "/v1/accounts", headers={"Origin": "https://evil.example"})
    assert r.status == 200 and "Access-Control-Allow-Origin" not in r.headers
    t2 = ApiClient(mint(key="key-t2")["token"], None)  # t2 does not list t1's origin
    assert (
        "Access-Control-Allow-Origin" not in t2.call("GET", "/v1/accounts", headers={"Origin": CRM}).headers
    )
    # A browser can read a refusal, to mint a new token.
    expired = user_tokens.mint("t1", None, "alice", 60, now=1_000_000_000)["token"]
    leakscan.register("user token", expired)
    r = ApiClient(expired, None).call("GET", "/v1/accounts", headers={"Origin": CRM})
    assert (
        r.status == 401
        and r.body["code"] == "token_expired"
        and r.headers["Access-Control-Allow-Origin"] == CRM
    )

    # Removing an origin ends both at once.
    assert tenant_api.patch("/v1/tenant/settings", {"allowed_origins": []}).body["allowed_origins"] == []
    assert "Access-Control-Allow-Origin" not in preflight(CRM).headers
    assert (
        "Access-Control-Allow-Origin" not in mine.call("GET", "/v1/accounts", headers={"Origin": CRM}).headers
    )


@pytest.mark.parametrize(
    "bad",
    [
        "http://crm.example",
        "https://crm.example/app",
        "crm.example",
        "ftp://crm.example",
        "https://u:p@crm.example",
    ],
)
def test_bad_origins_are_refused(tenant: Any, bad: str) -> None:
    r = ApiClient("key-t1", None).patch("/v1/tenant/settings", {"allowed_origins": [bad]})
    assert r.status == 422 and r.body["code"] == "invalid_origin", r.body
    r = ApiClient("key-t1", None).patch(
        "/v1/tenant/settings", {"allowed_origins": [f"https://o{i}.example" for i in range(21)]}
    )
    assert r.status == 422
