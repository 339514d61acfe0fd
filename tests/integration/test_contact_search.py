"""The contact picker's search, ``GET /v1/contacts?q=&kind=`` over moto: prefix matches on the
name, a word of it and an address, accent- and case-blind; only contacts the caller may see;
the index follows every change of a contact (rename, new address, narrower ``visible_to``,
delete, tenant isolation); bad input is a 422; a search is two Queries, never a Scan."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.api import ApiClient
from tests.support.crm import put_contact

pytestmark = pytest.mark.integration


def found(api: ApiClient, q: str, **params: Any) -> list[str]:
    r = api.call("GET", "/v1/contacts", params={"q": q, **params})
    assert r.status == 200, (r.status, r.body)
    return [c["id"] for c in r.body["items"]]


@pytest.fixture
def crm(tenant: dict[str, str]) -> ApiClient:
    api = ApiClient("key-t1", "alice")
    put_contact(api, "k-mueller", ["hans.mueller@versicherung.test"], name="Hans Müller")
    put_contact(api, "k-muster", ["erika@muster.test", "e.muster@gmail.com"], name="Erika Muster")
    put_contact(api, "k-makler", ["info@makler.test"], kind="intermediary", name="Maklerbüro Nord")
    put_contact(api, "k-bobs", ["mustermann@bob.test"], name="Max Mustermann", visible_to=["bob"])
    put_contact(api, "k-alices", ["privat@alice.test"], name="Martha Meier", visible_to=["alice"])
    return api


def test_prefixes_of_name_words_and_addresses_accent_and_case_blind(crm: ApiClient) -> None:
    assert found(crm, "mül") == ["k-mueller"]
    assert found(crm, "MUL") == ["k-mueller"]
    assert found(crm, "hans mü") == ["k-mueller"]  # the full name
    assert found(crm, "hans.m") == ["k-mueller"]  # an address
    assert found(crm, "e.muster@") == ["k-muster"]  # the second address
    assert found(crm, "versicherung") == []  # a domain is not a prefix of the address
    r = crm.call("GET", "/v1/contacts", params={"q": "maklerb"})
    assert r.body["items"] == [
        {"id": "k-makler", "kind": "intermediary", "name": "Maklerbüro Nord", "emails": ["info@makler.test"]}
    ]
    assert r.body["has_more"] is False


def test_only_contacts_the_caller_may_see(crm: ApiClient) -> None:
    assert set(found(crm, "m")) == {"k-mueller", "k-muster", "k-makler", "k-alices"}
    assert set(found(crm.as_user("bob"), "m")) == {"k-mueller", "k-muster", "k-makler", "k-bobs"}
    assert found(crm.as_user("carol"), "max") == []
    assert found(crm.as_user("carol"), "martha") == []


def test_name_matches_first_each_contact_once_kind_and_limit(crm: ApiClient) -> None:
    # "erika" is her first name and the start of her first address: listed once.
    assert found(crm, "erika") == ["k-muster"]
    # Names starting with the prefix come first: "Erika Muster" is found by a word only.
    put_contact(crm, "k-muster2", ["m2@x.test"], name="Muster GmbH")
    assert found(crm, "muster") == ["k-muster2", "k-muster"]
    assert found(crm, "m", kind="intermediary") == ["k-makler"]
    r = crm.call("GET", "/v1/contacts", params={"q": "m", "limit": "2"})
    assert len(r.body["items"]) == 2 and r.body["has_more"] is True


def test_the_index_follows_every_change_of_a_contact(crm: ApiClient) -> None:
    put_contact(crm, "k-mueller", ["h.mueller@neu.test"], name="Hans Schmidt")  # renamed, new address
    assert found(crm, "mül") == []
    assert found(crm, "hans.m") == []
    assert found(crm, "schmidt") == ["k-mueller"]
    assert found(crm, "h.mu") == ["k-mueller"]
    r = crm.call("GET", "/v1/contacts", params={"q": "schmidt"})
    assert r.body["items"][0]["emails"] == ["h.mueller@neu.test"]  # the copy is new too
    put_contact(crm, "k-mueller", ["h.mueller@neu.test"], kind="intermediary", name="Hans Schmidt")
    assert found(crm, "schmidt", kind="intermediary") == ["k-mueller"]
    # No longer shared with everyone: alice stops finding it, bob alone does.
    put_contact(crm, "k-mueller", ["h.mueller@neu.test"], name="Hans Schmidt", visible_to=["bob"])
    assert found(crm, "schmidt") == []
    assert found(crm.as_user("bob"), "schmidt") == ["k-mueller"]
    assert crm.call("DELETE", "/v1/contacts/k-mueller").status == 204
    assert found(crm.as_user("bob"), "schmidt") == []


def test_contacts_of_another_tenant_are_never_found(crm: ApiClient) -> None:
    other = ApiClient("key-t2", "alice")
    assert found(other, "m") == []
    put_contact(other, "k-mueller", ["x@t2.test"], name="Zora Müller")
    assert found(other, "mül") == ["k-mueller"]
    r = other.call("GET", "/v1/contacts", params={"q": "mül"})
    assert r.body["items"][0]["name"] == "Zora Müller"
    assert crm.call("GET", "/v1/contacts", params={"q": "mül"}).body["items"][0]["name"] == "Hans Müller"


def test_a_query_that_folding_lengthens_past_any_term_finds_nothing(crm: ApiClient) -> None:
    r = crm.call("GET", "/v1/contacts", params={"q": "\ufdfa" * 100})  # NFKD: 18 letters each
    assert r.status == 200 and r.body == {"items": [], "has_more": False}, (r.status, r.body)


@pytest.mark.parametrize(
    "params",
    [{}, {"q": ""}, {"q": "x" * 101}, {"q": "   "}, {"q": "m", "kind": "lead"}, {"q": "m", "limit": "51"}],
)
def test_bad_queries_are_422(crm: ApiClient, params: dict[str, str]) -> None:
    r = crm.call("GET", "/v1/contacts", params=params)
    assert r.status == 422 and r.body["code"] == "invalid_request", (r.status, r.body)


def test_a_search_is_two_queries(crm: ApiClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.client import BaseClient

    from mailsync.usecases import contacts

    calls: list[str] = []
    real = BaseClient._make_api_call

    def counting(self: Any, operation: str, params: Any) -> Any:
        calls.append(f"{self.meta.service_model.service_name}:{operation}")
        return real(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting)
    assert [c["id"] for c in contacts.search_contacts("t1", "alice", "mül")["items"]] == ["k-mueller"]
    assert calls == ["dynamodb:Query", "dynamodb:Query"], calls


def test_reindex_writes_the_search_entries_of_older_contacts(crm: ApiClient) -> None:
    from mailsync.store.models_index import ContactSearchItem
    from mailsync.usecases import contacts

    with ContactSearchItem.batch_write() as b:  # as if stored before search existed
        for i in ContactSearchItem.query("T#t1#CS#*"):
            b.delete(i)
    assert found(crm, "mül") == []
    contacts.reindex_contacts("t1")
    assert found(crm, "mül") == ["k-mueller"]
