"""The OpenAPI document states the limits the service enforces on path ids."""

from __future__ import annotations

import pytest

from mailsync.api.app import app, openapi_options
from mailsync.api.params import ID_MAX
from mailsync.domain.images import TOKEN_MAX

pytestmark = pytest.mark.unit


def _spec() -> dict:
    """The document ``GET /v1/openapi.json`` serves (same options, security schemes included)."""
    return app.get_openapi_schema(**openapi_options()).model_dump(
        by_alias=True, exclude_none=True, mode="json"
    )


def test_every_path_id_is_limited_to_128_characters_in_the_spec() -> None:
    spec = _spec()
    seen, unlimited = 0, []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            for p in op.get("parameters", []):
                if p["in"] == "path":
                    seen += 1
                    # an image link's token is a signed capability, not an id (domain/images.py)
                    limit = TOKEN_MAX if path == "/v1/images/{token}" else ID_MAX
                    if (p["schema"].get("minLength"), p["schema"].get("maxLength")) != (1, limit):
                        unlimited.append(f"{method.upper()} {path} {p['name']}")
    assert seen > 20  # every id route is in the spec
    assert unlimited == []


def test_api_key_routes_are_documented_with_every_answer_and_need_no_user_header() -> None:
    paths = _spec()["paths"]
    want = {
        ("post", "/v1/api-keys"): {"201", "401", "415", "422"},
        ("get", "/v1/api-keys"): {"200", "401"},
        ("delete", "/v1/api-keys/{key_id}"): {"204", "401", "404", "409", "422"},
    }
    for (method, path), codes in want.items():
        op = paths[path][method]
        assert codes <= set(op["responses"]), (method, path, sorted(op["responses"]))
        assert op["security"] == [{"apiKey": []}], (method, path)  # the key alone, no X-User-Id
        for code in codes - {"200", "201", "204"}:
            ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
            assert ref.endswith("/Error"), (method, path, code)
    created = paths["/v1/api-keys"]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    assert created["$ref"].endswith("/ApiKeyCreated")


def test_every_operation_has_a_clean_unique_operation_id() -> None:
    ids = [op["operationId"] for ops in _spec()["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) > 40
    # Generated clients name their methods after these: listAccounts, not list_accounts_v1_accounts_get.
    assert all(i.isidentifier() and "_" not in i and i[0].islower() for i in ids), ids
    paths = _spec()["paths"]
    assert paths["/v1/accounts"]["get"]["operationId"] == "listAccounts"
    assert paths["/v1/accounts/{account_id}"]["get"]["operationId"] == "getAccount"


def test_every_error_answer_declares_the_code_message_body() -> None:
    missing = []
    for path, ops in _spec()["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            want = {"422"}
            if "{" in path:
                want.add("404")
            if method in ("post", "put", "patch"):
                want.add("415")
            if op.get("security") != []:
                want.add("401")
            if not want <= codes:
                missing.append(f"{method.upper()} {path}: {sorted(want - codes)}")
            if not any(c[0] in "23" for c in codes):
                missing.append(f"{method.upper()} {path}: no success answer")
            for code, resp in op["responses"].items():
                if code[0] in "45":
                    ref = resp["content"]["application/json"]["schema"]["$ref"]
                    if not ref.endswith("/Error"):
                        missing.append(f"{method.upper()} {path} {code}: {ref}")
    assert missing == []
    error = _spec()["components"]["schemas"]["Error"]
    assert {"code", "message"} <= set(error["required"])


def test_public_routes_say_they_need_no_key() -> None:
    paths = _spec()["paths"]
    public = {
        ("post", "/v1/webhooks/google"),
        ("post", "/v1/webhooks/microsoft"),
        ("get", "/v1/oauth/google/callback"),
        ("get", "/v1/oauth/microsoft/callback"),
    }
    for method, path in public:
        assert paths[path][method]["security"] == [], (method, path)
        if "callback" in path:  # a browser arrives here: no key, no 401
            assert "401" not in paths[path][method]["responses"]
            assert "302" in paths[path][method]["responses"]
    assert paths["/v1/accounts"]["get"].get("security") is None  # the document's default: key and user
    assert _spec()["security"] == [{"apiKey": [], "user": []}]


def test_nested_objects_are_typed_for_generated_clients() -> None:
    schemas = _spec()["components"]["schemas"]
    detection = schemas["Detection"]["properties"]
    assert detection["imap"]["$ref"].endswith("/DetectedServer")
    assert detection["smtp"]["$ref"].endswith("/DetectedServer")
    assert detection["source"]["$ref"].endswith("/DetectionSources")
    assert set(schemas["DetectedServer"]["required"]) == {"host", "port", "security", "username"}
    free = [
        f"{name}.{field}"
        for name, d in schemas.items()
        for field, p in (d.get("properties") or {}).items()
        if p.get("type") == "object" and p.get("additionalProperties") is True
    ]
    assert free == []  # no property is an object of anything


def test_every_delete_that_answers_204_documents_204_without_a_body() -> None:
    paths = _spec()["paths"]
    for path in (
        "/v1/contacts/{contact_id}",
        "/v1/accounts/{account_id}",
        "/v1/messages/{message_id}",
        "/v1/threads/{thread_id}/links/{contact_id}",
        "/v1/api-keys/{key_id}",
    ):
        responses = paths[path]["delete"]["responses"]
        assert "204" in responses and "200" not in responses, (path, sorted(responses))
    no_body = [
        f"{method.upper()} {path}"
        for path, ops in paths.items()
        for method, op in ops.items()
        if op["responses"].get("204", {}).get("content")
    ]
    assert no_body == []  # RFC 9110 §15.3.5: a 204 has no content


def test_an_account_id_filter_documents_its_404() -> None:
    paths = _spec()["paths"]
    taking = [
        (path, method)
        for path, ops in paths.items()
        for method, op in ops.items()
        if any(p["in"] == "query" and p["name"] == "account_id" for p in op.get("parameters", []))
    ]
    assert ("/v1/messages", "get") in taking
    assert [t for t in taking if "404" not in paths[t[0]][t[1]]["responses"]] == []


def test_contact_ids_state_their_pattern_wherever_they_are_given() -> None:
    from mailsync.domain.records import CONTACT_ID_PATTERN

    spec = _spec()
    path_ids = [
        p["schema"].get("pattern")
        for ops in spec["paths"].values()
        for op in ops.values()
        for p in op.get("parameters", [])
        if p["in"] == "path" and p["name"] == "contact_id"
    ]
    assert len(path_ids) == 6 and set(path_ids) == {CONTACT_ID_PATTERN}
    schemas = spec["components"]["schemas"]
    assert schemas["ThreadLinkIn"]["properties"]["contact_id"]["pattern"] == CONTACT_ID_PATTERN
    assert schemas["ContactBatchItem"]["properties"]["id"]["pattern"] == CONTACT_ID_PATTERN


def test_contact_ids_refuse_a_trailing_newline() -> None:
    from pydantic import ValidationError

    from mailsync.api.schemas import ThreadLinkIn

    assert ThreadLinkIn(contact_id="crm:k-1@a.b").contact_id == "crm:k-1@a.b"
    for bad in ("k-1\n", "-k", "", "k" * 129, "k/1"):
        with pytest.raises(ValidationError):
            ThreadLinkIn(contact_id=bad)


def test_links_lead_from_created_resources_to_their_operations() -> None:
    paths = _spec()["paths"]
    ops = {op["operationId"] for item in paths.values() for op in item.values()}
    created = paths["/v1/accounts"]["post"]["responses"]["201"]["links"]
    assert {"getAccount", "updateSettings", "deleteAccount"} <= {x["operationId"] for x in created.values()}
    assert all(x["parameters"] == {"account_id": "$response.body#/id"} for x in created.values())
    contact = paths["/v1/contacts/{contact_id}"]["put"]["responses"]
    for status in ("200", "201"):
        assert {x["operationId"] for x in contact[status]["links"].values()} == {
            "getContact",
            "deleteContact",
        }
    key = paths["/v1/api-keys"]["post"]["responses"]["201"]["links"]
    assert key == {
        "DeleteApiKey": {"operationId": "deleteApiKey", "parameters": {"key_id": "$response.body#/id"}}
    }
    linked = {
        x["operationId"]
        for item in paths.values()
        for op in item.values()
        for r in op["responses"].values()
        for x in r.get("links", {}).values()
    }
    assert linked <= ops


def test_input_booleans_take_only_true_and_false() -> None:
    from pydantic import ValidationError

    from mailsync.api.schemas import SettingsIn

    assert SettingsIn(auto_assign=False).auto_assign is False
    with pytest.raises(ValidationError):
        SettingsIn.model_validate({"auto_assign": 0})  # was taken for false
