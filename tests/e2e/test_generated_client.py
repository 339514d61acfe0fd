"""A client generated from our served OpenAPI document works, as a tenant's developer would
use it: ``openapi-python-client`` (0.29) turns ``/v1/openapi.json`` into a typed package,
and a short scenario runs through it against ``mailsync run``: connect an IMAP account, list
accounts, wait for the sync, list messages, read one, and two errors parsed into the
generated ``Error`` model with their machine-readable ``code``.

The generator's warnings about the spec count as faults (a skipped model or operation is a
hole in every client generated from it), and so do operation names that leak the path
(``list_accounts_v1_accounts_get``) or nested objects left untyped (``dict``/``Any``).
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.mailboxes import ImapMailbox

pytestmark = pytest.mark.e2e

PACKAGE = "mailsync_api_client"


@pytest.fixture(scope="module")
def generated(service: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    """The generated package (imported) and the generator's console output."""
    root = tmp_path_factory.mktemp("genclient")
    spec = root / "spec.json"
    r = requests.get(service.url + "/v1/openapi.json", timeout=30)
    assert r.status_code == 200, r.text
    spec.write_bytes(r.content)
    # The image route answers image/*, which the generator reads as bytes only when told
    # (its documented content_type_overrides; README "Generated clients").
    config = root / "config.json"
    config.write_text(json.dumps({"content_type_overrides": {"image/*": "application/octet-stream"}}))
    bindir = Path(sys.executable).parent
    # Its post-hooks run ruff; the venv's ruff, else the missing hook is a warning too.
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run(
        [str(bindir / "openapi-python-client"), "generate", "--path", str(spec), "--config", str(config)]
        + ["--output-path", str(root / PACKAGE), "--meta", "none"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    console = out.stdout + out.stderr
    assert out.returncode == 0, console
    sys.path.insert(0, str(root))
    try:
        yield importlib.import_module(PACKAGE), console
    finally:
        sys.path.remove(str(root))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


def test_generator_reports_no_warnings(generated):
    _, console = generated
    assert "Warning" not in console and "Unable to" not in console, console


def test_operations_have_clean_names_and_typed_models(generated):
    pkg, _ = generated
    accounts = importlib.import_module(f"{PACKAGE}.api.accounts")
    names = {p.stem for p in Path(accounts.__file__).parent.glob("*.py")} - {"__init__"}
    assert {"list_accounts", "create_account", "get_account", "detect_provider"} <= names, names
    every = {p.stem for p in Path(pkg.__file__).parent.glob("api/*/*.py")}
    assert not [n for n in every if "_v1_" in n or n.endswith(("_get", "_post", "_delete"))], every

    models = importlib.import_module(f"{PACKAGE}.models")
    # Nested objects are classes of their own, not dicts: the connect request's and the
    # detection's IMAP settings, the account's servers and settings.
    create_in = models.CreateAccountIn.__annotations__
    assert "ServerIn" in str(create_in["imap"]), create_in
    detection = models.Detection.__annotations__
    assert detection["imap"] == "DetectedServer", detection
    account = models.Account.__annotations__
    assert account["settings"] == "AccountSettings" and account["servers"] == "AccountServers", account
    for cls in (models.ServerIn, models.DetectedServer, models.AccountSettings, models.Error):
        assert hasattr(cls, "from_dict") and hasattr(cls, "to_dict"), cls


def test_scenario_through_the_generated_client(generated, service, dovecot, smtp_server):
    pkg, _ = generated
    models = importlib.import_module(f"{PACKAGE}.models")
    list_accounts = importlib.import_module(f"{PACKAGE}.api.accounts.list_accounts")
    create_account = importlib.import_module(f"{PACKAGE}.api.accounts.create_account")
    get_account = importlib.import_module(f"{PACKAGE}.api.accounts.get_account")
    list_messages = importlib.import_module(f"{PACKAGE}.api.mail.list_messages")
    get_message = importlib.import_module(f"{PACKAGE}.api.mail.get_message")

    user = f"genclient-{uuid.uuid4().hex[:8]}"  # a user of its own: the runner is shared
    client = pkg.AuthenticatedClient(base_url=service.url, token=service.api_key, timeout=60).with_headers(
        {"X-User-Id": user}
    )
    box = ImapMailbox(service, dovecot, smtp_server, dovecot.new_user("genclient"))

    # 1. connect: typed request models in, a typed Account out.
    server = {"host": dovecot.host, "port": dovecot.port, "security": "none"}
    auth = {"username": box.login, "password": box.password}
    body = models.CreateAccountIn(
        email=box.self_address,
        imap=models.ServerIn.from_dict({**server, **auth}),
        smtp=models.ServerIn.from_dict(
            {"host": smtp_server.host, "port": smtp_server.port, "security": "none", **auth}
        ),
    )
    r = create_account.sync_detailed(client=client, body=body)
    assert r.status_code == 201, r.content
    acc = r.parsed
    assert isinstance(acc, models.Account), acc
    assert acc.owner == user and acc.email == box.self_address
    assert isinstance(acc.servers.additional_properties["imap"], models.ServerOut), acc.servers
    assert acc.servers.additional_properties["imap"].host == dovecot.host

    box.deliver("generated client hello")  # new mail after the connect (no backfill)

    # 2. list: the caller's accounts, typed.
    page = list_accounts.sync(client=client)
    assert isinstance(page, models.AccountList), page
    assert [a.id for a in page.items] == [acc.id]

    # 3. the runner syncs on its own; the account and the message list show it.
    def synced() -> Any:
        got = get_account.sync(acc.id, client=client)
        assert isinstance(got, models.Account), got
        msgs = list_messages.sync(client=client, account_id=acc.id)
        assert isinstance(msgs, models.MessageList), msgs
        return msgs.items

    items = service.wait_for(synced, timeout=60, what="the first sync")
    (summary,) = items
    assert isinstance(summary, models.MessageSummary), summary
    assert summary.subject == "generated client hello"

    # 4. read one message.
    detail = get_message.sync(summary.id, client=client)
    assert isinstance(detail, models.MessageDetail), detail
    assert detail.id == summary.id and detail.subject == "generated client hello"

    # 5. errors are the generated Error model with their code.
    r = get_message.sync_detailed("no-such-message", client=client)
    assert r.status_code == 404, r.content
    assert isinstance(r.parsed, models.Error) and r.parsed.code == "not_found", r.parsed
    r = list_accounts.sync_detailed(client=client, limit=0)
    assert r.status_code == 422, r.content
    assert isinstance(r.parsed, models.Error) and r.parsed.code == "invalid_request", r.parsed
    assert r.parsed.message
    # The account is someone else's for another user of the tenant: 404, not 403.
    other = client.with_headers({"X-User-Id": user + "-other"})
    r = get_account.sync_detailed(acc.id, client=other)
    assert r.status_code == 404 and isinstance(r.parsed, models.Error), r.content
