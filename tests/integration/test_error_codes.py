"""Every error code the service answers is documented in its OpenAPI spec and reached by a
test that asserts it (issue 14: "every documented error code is reachable").

* The codes the service can answer are read from its source: every ``code = "..."`` of a
  :class:`~mailsync.errors.MailsyncError` class, every ``code="..."`` a ``raise`` passes and
  every code ``api/app.py`` answers itself (``_error(405, "method_not_allowed", ...)``).
* Each must be named in an error answer of the spec (a tenant's generated client sees it),
  and :data:`PROOFS` names the test that makes the service answer it; that test must assert
  it. The codes no other test reached are reached here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailsync import errors
from tests.support.api import ApiClient
from tests.support.spec import served_spec

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "layers" / "mailsync" / "mailsync"

#: The base classes' defaults: never answered as such (every raise names its own code).
ABSTRACT = {"bad_request", "conflict", "unprocessable"}
#: The 500 of an unexpected exception: always a bug, never a contract (a 5xx fails schemathesis).
BUG = "internal_error"
#: Answered to a method no operation has (405 with Allow), so no operation can list it.
OUTSIDE_OPERATIONS = {"method_not_allowed"}
THIS = "tests/integration/test_error_codes.py"
PROOFS = {
    "account_busy": "tests/integration/test_mirror_lock.py",
    "account_exists": "tests/integration/test_api_contract.py",
    "account_paused": "tests/integration/test_api_contract.py",
    "auth_error": THIS,
    "auth_failed": "tests/integration/test_api_contract.py",
    "confirmation_required": "tests/integration/test_tenant_purge.py",
    "connection_failed": "tests/integration/test_network_faults.py",
    "delivery_pending": "tests/integration/test_webhooks.py",
    "endpoint_disabled": "tests/integration/test_webhooks.py",
    "endpoint_limit": "tests/integration/test_webhooks.py",
    "host_not_allowed": "tests/integration/test_api_contract.py",
    "host_unresolvable": THIS,
    "idempotency_key_reused": "tests/integration/test_send.py",
    "image_unavailable": "tests/integration/test_images.py",
    "insecure_connection": THIS,
    "invalid_address": "tests/integration/test_send.py",
    "invalid_cursor": "tests/integration/test_api_contract.py",
    "invalid_domain": "tests/integration/test_exclusions.py",
    "invalid_origin": "tests/integration/test_user_tokens.py",
    "invalid_request": "tests/integration/test_api_contract.py",
    "invalid_state": "tests/integration/test_google_accounts.py",
    "invalid_url": "tests/integration/test_webhooks.py",
    "key_not_found": "tests/integration/test_api_keys.py",
    "last_key": "tests/integration/test_api_keys.py",
    "link_expired": "tests/integration/test_images.py",
    "method_not_allowed": "tests/e2e/test_schemathesis.py",
    "missing_user": "tests/integration/test_api_contract.py",
    "not_configured": THIS,
    "not_found": "tests/integration/test_api_contract.py",
    "oauth_account": THIS,
    "provider_error": "tests/integration/test_mail_client.py",
    "redirect_not_allowed": "tests/integration/test_google_accounts.py",
    "request_in_progress": "tests/integration/test_send.py",
    "smtp_rejected": "tests/integration/test_send.py",
    "suggestions_need_unassigned": "tests/integration/test_suggestions.py",
    "tenant_key_required": "tests/integration/test_user_tokens.py",
    "tls_error": "tests/integration/test_tls.py",
    "token_expired": "tests/integration/test_user_tokens.py",
    "too_large": "tests/integration/test_send.py",
    "too_many_entries": "tests/integration/test_exclusions.py",
    "unauthorized": "tests/integration/test_api_contract.py",
    "unknown_event_type": "tests/integration/test_event_feed.py",
    "unknown_folder": "tests/integration/test_mail_client.py",
    "unsupported_media_type": "tests/integration/test_api_contract.py",
    "user_mismatch": "tests/integration/test_user_tokens.py",
    "user_not_found": "tests/integration/test_user_purge.py",
    "user_purging": "tests/integration/test_user_purge.py",
}


def answered_codes() -> set[str]:
    def classes(c: type) -> list[type]:
        return [c, *(x for sub in c.__subclasses__() for x in classes(sub))]

    import importlib
    import pkgutil

    import mailsync

    for info in pkgutil.walk_packages(mailsync.__path__, "mailsync."):  # every error class
        importlib.import_module(info.name)
    codes = {c.code for c in classes(errors.MailsyncError) if isinstance(c.__dict__.get("code"), str)}
    for path in SOURCE.rglob("*.py"):
        text = path.read_text()
        for m in re.finditer(r"raise \w+\((?:[^()]|\([^()]*\))*?\bcode=\"([a-z_]+)\"", text, re.S):
            codes.add(m.group(1))
        codes |= set(re.findall(r"_error\(\d{3}, \"([a-z_]+)\"", text))  # answered by api/app.py
    return codes - ABSTRACT - {BUG}


def spec_codes() -> set[str]:
    found: set[str] = set()
    for ops in served_spec()["paths"].values():
        for op in ops.values():
            for status, resp in op.get("responses", {}).items():
                if status[0] in "45":
                    found |= set(re.findall(r"`([a-z_]+)`", resp.get("description", "")))
    return found


def test_every_code_the_service_answers_is_in_the_spec() -> None:
    answered = answered_codes()
    assert len(answered) > 30  # the scan finds the raises
    assert sorted(answered - spec_codes() - OUTSIDE_OPERATIONS) == []


def test_every_code_the_service_answers_has_a_test_that_asserts_it() -> None:
    answered = answered_codes()
    assert sorted(answered - set(PROOFS)) == [], "add the test that reaches it to PROOFS"
    assert sorted(set(PROOFS) - answered) == [], "a proof of a code the service no longer answers"
    unproven = [c for c, f in PROOFS.items() if f'"{c}"' not in (ROOT / f).read_text()]
    assert unproven == []


def test_a_plaintext_server_is_refused_in_production_settings(tenant, monkeypatch) -> None:  # noqa: ANN001
    from mailsync.config import get_settings

    monkeypatch.setenv("MAILSYNC_ALLOW_PRIVATE_HOSTS", "0")
    get_settings.cache_clear()
    server = {"host": "imap.example.com", "port": 143, "security": "none", "username": "u", "password": "p"}
    r = ApiClient("key-t1", "alice").post(
        "/v1/accounts", {"email": "u@example.com", "imap": server, "smtp": {**server, "port": 25}}
    )
    get_settings.cache_clear()
    assert (r.status, r.body["code"]) == (422, "insecure_connection"), r.body
    assert ApiClient("key-t1", "alice").get("/v1/accounts").body["items"] == []


def test_oauth_without_its_configuration_is_503_not_configured(tenant) -> None:  # noqa: ANN001
    for provider in ("google", "microsoft"):
        r = ApiClient("key-t1", "alice").get(
            f"/v1/oauth/{provider}/authorize", redirect_uri="http://127.0.0.1:8999/x"
        )
        assert (r.status, r.body["code"]) == (503, "not_configured"), (provider, r.body)


def test_a_google_account_gets_new_credentials_through_oauth_only(tenant, google) -> None:  # noqa: ANN001
    from tests.support.google import connect_google

    api = ApiClient("key-t1", "alice")
    status, q = connect_google(api, google, "broker@firma.example")
    assert status == 302 and "account_id" in q, q
    r = api.put(f"/v1/accounts/{q['account_id']}/credentials", {"password": "x"})
    assert (r.status, r.body["code"]) == (409, "oauth_account"), r.body


def test_a_webhook_url_whose_host_does_not_resolve_is_refused(tenant) -> None:  # noqa: ANN001
    r = ApiClient("key-t1", None).post(
        "/v1/webhook-endpoints", {"url": "https://hooks.crm.invalid/mailsync", "events": ["*"]}
    )  # .invalid never resolves (RFC 6761 §6.4)
    assert (r.status, r.body["code"]) == (422, "host_unresolvable"), r.body


def test_an_account_that_needs_new_credentials_cannot_be_synced_on_request(
    tenant, dovecot, imap_user
) -> None:  # noqa: ANN001
    from tests.support.accounts import connect, sync

    acc = connect(dovecot, imap_user)
    dovecot.add_user(imap_user[0], "changed-at-the-provider")
    assert sync(acc)["status"] == "auth_error"
    r = ApiClient("key-t1", "alice").post(f"/v1/accounts/{acc['id']}/sync")
    assert (r.status, r.body["code"]) == (409, "auth_error"), r.body
