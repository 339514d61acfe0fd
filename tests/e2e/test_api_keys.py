"""Key rotation over HTTP against `mailsync run`, as a tenant does it: create a new key,
switch to it, delete the old one with the new one; the old key is refused at once.

The runner's dev key is shared by the other e2e tests, so this test rotates the key of a
tenant of its own (made with `mailsync admin create-tenant`) and never touches the dev key.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e


def test_key_rotation_without_downtime(service):
    tenant = service.admin("create-tenant", "Rotation GmbH")
    old_key = tenant["api_key"]
    url = service.url + "/v1/api-keys"
    old = service.session(user=None, api_key=old_key)  # tenant routes: no X-User-Id

    r = old.get(url)
    assert r.status_code == 200, r.text
    (old_entry,) = r.json()["items"]
    assert old_key not in r.text

    # 1. A new key: shown once, works at once; the old one keeps working meanwhile.
    r = old.post(url, json={"name": "rotated"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) == {"id", "name", "key", "prefix", "created_at"}
    new_key = created["key"]
    new = service.session(user=None, api_key=new_key)
    assert service.session("carol", api_key=new_key).get(service.url + "/v1/accounts").status_code == 200
    assert service.session("carol", api_key=old_key).get(service.url + "/v1/accounts").status_code == 200
    listed = new.get(url).json()["items"]
    assert {k["id"] for k in listed} == {old_entry["id"], created["id"]}
    assert new_key not in json.dumps(listed)

    # 2. The new key deletes the old one: the old key is refused on its next request.
    assert new.delete(f"{url}/{old_entry['id']}").status_code == 204
    r = service.session("carol", api_key=old_key).get(service.url + "/v1/accounts")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert old.get(url).status_code == 401

    # 3. The new key keeps working, and as the last key it cannot delete itself.
    assert service.session("carol", api_key=new_key).get(service.url + "/v1/accounts").status_code == 200
    assert [k["id"] for k in new.get(url).json()["items"]] == [created["id"]]
    r = new.delete(f"{url}/{created['id']}")
    assert r.status_code == 409 and r.json()["code"] == "last_key"

    # Other tenants are untouched: the runner's dev key still works and cannot see these keys.
    dev = service.session(user=None)
    r = dev.get(url)
    assert r.status_code == 200 and created["id"] not in r.text
    r = dev.delete(f"{url}/{created['id']}")
    assert r.status_code == 404 and r.json()["code"] == "key_not_found"
    assert new.get(url).status_code == 200
