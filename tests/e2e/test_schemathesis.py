"""Property-based API testing: schemathesis (v4) against the local runner's own OpenAPI spec.

Every documented operation is called with generated valid and invalid requests (examples,
coverage and fuzzing phases), then stateful sequences follow the spec's OpenAPI links
(``createAccount`` → get/patch/delete, ``putContact`` → get/delete, ``createApiKey`` →
delete). The CLI runs as a subprocess (its v4 runner with every check is what tenants use;
the pytest plugin has no stateful phase over HTTP with fixtures) and writes an ndjson event
log and a HAR file, which this test reads.

What must hold (``--checks all``): no answer is a 5xx; each answer's status is documented
for its operation, its body matches the documented schema and its content type the
documented one; invalid requests are refused, methods not routed get 405 with ``Allow``.

Ids exist: an IMAP account on the test Dovecot with one synced message and a contact are
seeded first, and the message and thread ids are fixed parameters, so paths reach real
resources and not only 404s.

Excluded, because they would end the run rather than test it:

* ``deleteTenant``: purges the tenant, and with it the API key every request uses;
* ``deleteApiKey`` is kept but may never see the key in use: schemathesis reuses ids from
  earlier answers only through links (``extra-data-sources`` stays off), and the only link
  into it is from ``createApiKey``.

``positive_data_acceptance`` (a schema-valid request must get a 2xx) is off for the few
operations whose refusal is a business rule the schema cannot state, each named in
:data:`BUSINESS_RULES`.

Size: ``MAILSYNC_FUZZ_EXAMPLES`` examples per operation and phase (default 3, which keeps
the default run near a minute); ``make fuzz`` runs 100.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Service
from tests.e2e.mailboxes import ImapMailbox
from tests.support.spec import documented_codes

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("MAILSYNC_FUZZ_EXAMPLES", "3"))
USER = "fuzzer"
#: The coverage phase (every boundary of every schema: ~1,000 requests, 90 s here) runs in
#: ``make fuzz`` only; the default run has examples, fuzzing and the stateful phase.
PHASES = (
    "examples,coverage,fuzzing,stateful"
    if os.environ.get("MAILSYNC_FUZZ") == "1"
    else "examples,fuzzing,stateful"
)

#: operationId → why a schema-valid request may still be refused (4xx with a code).
BUSINESS_RULES = {
    "createAccount": "`{}` or a bare email is valid JSON Schema, but needs a known provider "
    "(or imap/smtp servers) and a working login: 422 `invalid_request`/`auth_failed`/…",
    "patchMessage": "a patch of only nulls changes nothing: 422 `invalid_request`",
    "patchThread": "a patch of only nulls changes nothing: 422 `invalid_request`",
    "listAccounts": "a made-up cursor: 400 `invalid_cursor` (cursors are opaque, not a schema)",
    "listMessages": "a made-up cursor (400 `invalid_cursor`), an unknown account_id (404), "
    "with_suggestions without unassigned (422 `suggestions_need_unassigned`)",
    "listThreads": "a made-up cursor: 400 `invalid_cursor`",
    "contactMessages": "a made-up cursor: 400 `invalid_cursor`",
    "contactThreads": "a made-up cursor: 400 `invalid_cursor`",
    "googleCallback": "a callback without OAuth's code and state (RFC 6749 §4.1.2): 400",
    "microsoftCallback": "a callback without OAuth's code and state (RFC 6749 §4.1.2): 400",
    "detectProvider": "an address whose domain has no mail servers: 400",
    "googleAuthorize": "a redirect_uri the tenant has not allowed: 400",
    "microsoftAuthorize": "a redirect_uri the tenant has not allowed: 400",
    "sendMail": "an address the SMTP server refuses, or a reply to an unknown message",
    "putCredentials": "credentials the mail server refuses: 422 `auth_failed`",
    "linkThread": "a contact that does not exist: 404",
    "putContact": "addresses are parsed as RFC 5322 addr-specs (422 `invalid_address`)",
    "batchContacts": "addresses are parsed as RFC 5322 addr-specs (422 `invalid_address`)",
    "googleWebhook": "a push that is not signed by Google's service account: 401",
    "microsoftWebhook": "a notification without a known subscription and clientState",
    "listEvents": "a made-up cursor (400 `invalid_cursor`) or event type (422 `unknown_event_type`)",
    "createWebhookEndpoint": "a URL that is not https, does not resolve or is private: 422 "
    "`invalid_url`/`host_unresolvable`/`host_not_allowed`, or the limit of 20: 409",
    "updateWebhookEndpoint": "a URL that is not https, does not resolve or is private: 422",
}


def _config(examples: int) -> str:
    ops = "\n".join(
        f'[[operations]]\ninclude-operation-id = "{op}"\nchecks.positive_data_acceptance.enabled = false\n'
        for op in BUSINESS_RULES
    )
    # Every check (the CLI's --checks would override the per-operation settings).
    return f"generation.max-examples = {examples}\nchecks.enabled = true\n{ops}"


def _seed(service: Service, dovecot: Any, smtp_server: Any) -> dict[str, str]:
    """An IMAP account with one synced message, and a contact: ids that exist."""
    http = service.session(USER)
    box = ImapMailbox(service, dovecot, smtp_server, dovecot.new_user("fuzz"))
    account = box.connect(http, backfill_days=1)
    box.deliver("Fuzz me", "Kunde <kunde@fuzz.example.org>")
    box.sync(http, account["id"])
    items = service.wait_for(
        lambda: http.get(f"{service.url}/v1/messages", params={"account_id": account["id"]}).json()["items"],
        what="the seeded message",
    )
    r = http.put(
        f"{service.url}/v1/contacts/fuzz-1",
        json={"kind": "customer", "name": "Fuzz", "emails": ["kunde@fuzz.example.org"]},
    )
    assert r.status_code in (200, 201), r.text
    return {"account_id": account["id"], "message_id": items[0]["id"], "thread_id": items[0]["thread_id"]}


def test_the_api_conforms_to_its_spec_under_generated_requests(
    service: Service, dovecot: Any, smtp_server: Any, tmp_path: Path
) -> None:
    ids = _seed(service, dovecot, smtp_server)
    config = tmp_path / "schemathesis.toml"
    params = "\n".join(f'"path.{k}" = "{v}"' for k, v in ids.items() if k != "account_id")
    config.write_text(_config(EXAMPLES) + f"\n[parameters]\n{params}\n")
    har, ndjson = tmp_path / "run.har", tmp_path / "events.ndjson"
    exe = Path(sys.executable).parent / "schemathesis"
    cmd = [
        str(exe),
        "--no-color",
        "--config-file",
        str(config),
        "run",
        f"{service.url}/v1/openapi.json",
        "-H",
        f"Authorization: Bearer {service.api_key}",
        "-H",
        f"X-User-Id: {USER}",
        "--phases",
        PHASES,
        "--workers",
        "1",
        "--seed",
        "14",
        "--exclude-operation-id",
        "deleteTenant",
        "--request-timeout",
        "30",
        "--report",
        "har,ndjson",
        "--report-har-path",
        str(har),
        "--report-ndjson-path",
        str(ndjson),
        "--suppress-health-check",
        "all",
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    summary = run.stdout[-6000:]

    statuses: Counter[int] = Counter()
    seen_codes: Counter[str] = Counter()
    entries = json.loads(har.read_text())["log"]["entries"]
    for e in entries:
        status = e["response"]["status"]
        statuses[status] += 1
        text = e["response"].get("content", {}).get("text") or ""
        if status >= 400 and text.startswith("{"):
            code = json.loads(text).get("code")
            if code:
                seen_codes[code] += 1
    spec = service.session(None).get(f"{service.url}/v1/openapi.json").json()
    documented = documented_codes(spec)
    operations = sum(len(ops) for ops in spec["paths"].values()) - 1  # deleteTenant
    reached = documented & set(seen_codes)
    print(
        f"\nschemathesis: {operations} operations, {len(entries)} requests, {EXAMPLES} examples "
        f"per operation and phase; statuses {dict(sorted(statuses.items()))}"
    )
    print(f"error codes reached {len(reached)}/{len(documented)}: {dict(seen_codes)}")
    print(f"documented but not reached: {sorted(documented - reached)}")
    print(f"answered but named nowhere in the spec or errors.py: {sorted(set(seen_codes) - documented)}")

    server_errors = [
        e["request"]["method"] + " " + e["request"]["url"] for e in entries if e["response"]["status"] >= 500
    ]
    assert server_errors == [], server_errors
    assert run.returncode == 0, summary + run.stderr[-3000:]
    assert ndjson.stat().st_size > 0
    # The core every run reaches (ignored_auth drops the key; ids are made up or malformed);
    # the rest needs a provider's cooperation or the coverage phase, and is printed above.
    assert {"unauthorized", "invalid_request", "not_found"} <= set(seen_codes)


def test_a_method_a_path_has_no_route_for_gets_405_with_allow_in_json(service: Service) -> None:
    http = service.session(USER)
    for method in ("TRACE", "PUT", "FOO"):  # http.server answered 501 with an HTML page
        r = http.request(method, f"{service.url}/v1/accounts")
        assert r.status_code == 405, (method, r.status_code, r.text)
        assert r.headers["Allow"] == "GET, POST"
        assert r.json()["code"] == "method_not_allowed"
    r = http.request("TRACE", f"{service.url}/v1/no-such-thing")
    assert (r.status_code, r.json()["code"]) == (404, "not_found")


def test_path_ids_are_decoded_before_they_are_measured_and_used(service: Service) -> None:
    http = service.session(USER)
    # 43 characters, 129 bytes once percent-encoded: an id within the limit, so 404, not 422.
    r = http.get(f"{service.url}/v1/messages/" + "ü" * 43)
    assert (r.status_code, r.json()["code"]) == (404, "not_found"), r.text
    r = http.get(f"{service.url}/v1/messages/" + "ü" * 129)
    assert (r.status_code, r.json()["code"]) == (422, "invalid_request"), r.text
    # a%40b is a@b: the contact put under one spelling is found under the other.
    r = http.put(f"{service.url}/v1/contacts/crm%40b", json={"kind": "customer", "visible_to": ["*"]})
    assert r.status_code in (200, 201), r.text
    assert r.json()["id"] == "crm@b"
    assert http.get(f"{service.url}/v1/contacts/crm@b").json()["id"] == "crm@b"
