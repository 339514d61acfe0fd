"""GET /v1/accounts follows the list convention: limit, cursor, next_cursor."""

from __future__ import annotations

import pytest

from tests.support.accounts import connect
from tests.support.api import ApiClient

pytestmark = pytest.mark.integration


def test_accounts_are_paged(tenant, dovecot):
    ids = {connect(dovecot, dovecot.new_user(f"page{i}"))["id"] for i in range(3)}
    api = ApiClient("key-t1", "alice")
    first = api.get("/v1/accounts", limit=2)
    assert first.status == 200 and len(first.body["items"]) == 2 and first.body["next_cursor"]
    second = api.get("/v1/accounts", limit=2, cursor=first.body["next_cursor"])
    assert second.status == 200
    seen = [a["id"] for a in first.body["items"] + second.body["items"]]
    assert sorted(seen) == sorted(ids) and second.body["next_cursor"] is None
    assert api.get("/v1/accounts", limit=0).status == 422
    assert api.get("/v1/accounts", cursor="garbage!").body["code"] == "invalid_cursor"
    assert ApiClient("key-t1", "bob").get("/v1/accounts", cursor=first.body["next_cursor"]).status == 400
