"""TLS for real: Dovecot and the SMTP server with a certificate from a throw-away CA.

The CA is made with ``openssl`` (tests/support/tls.py) and trusted the way an operator would
trust a private CA: ``SSL_CERT_FILE``, which the default SSL context of the IMAP connection
and of SMTP honours. Checked through the API (``POST /v1/accounts``, send):

* implicit TLS (``security: "ssl"``, RFC 8314) and STARTTLS (RFC 3501 6.2.1, RFC 3207) work
  and the server logs the login as made over TLS;
* a certificate no trusted CA signed, a certificate for another name, and a ``starttls``
  server that offers no STARTTLS are refused with 422 ``tls_error`` (502 ``tls_error`` on a
  send), no account is created and the password never reaches the server;
* nothing in the settings or the package can turn certificate checking off.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailsync.config import Settings
from mailsync.domain.compose import compose, parse_address
from mailsync.providers.smtp import SmtpTlsFailed, send
from mailsync.store import accounts as repo
from mailsync.usecases.sync_account import sync_account
from tests.support.api import ApiClient
from tests.support.dovecot import Dovecot, make_mail
from tests.support.smtp import SmtpServer
from tests.support.tls import TestCA

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def tls_dovecot(ca: TestCA) -> Iterator[Dovecot]:
    """STARTTLS on ``port``, implicit TLS on ``tls_port``; the certificate names 127.0.0.1 only."""
    server = Dovecot(tls=ca.issue("imap", ips=("127.0.0.1",))).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def tls_smtp(ca: TestCA, tls_dovecot: Dovecot) -> Iterator[dict[str, SmtpServer]]:
    cert = ca.issue("smtp", ips=("127.0.0.1",))
    servers = {
        "starttls": SmtpServer(tls_dovecot, tls=cert).start(),
        "ssl": SmtpServer(tls_dovecot, tls=cert, implicit_tls=True).start(),
    }
    try:
        yield servers
    finally:
        for s in servers.values():
            s.stop()


@pytest.fixture
def trusted(ca: TestCA, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.bundle))


@pytest.fixture
def untrusted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)


@pytest.fixture
def api(tenant: dict[str, str]) -> ApiClient:
    return ApiClient("key-t1", "alice")


def body(
    user: str, pw: str, imap: tuple[str, int, str], smtp: tuple[str, int, str] | None = None
) -> dict[str, Any]:
    def server(host: str, port: int, security: str) -> dict[str, Any]:
        return {"host": host, "port": port, "security": security, "username": user, "password": pw}

    return {"email": f"{user}@example.test", "imap": server(*imap), "smtp": server(*(smtp or imap))}


def tls_logins(dovecot: Dovecot, user: str) -> list[str]:
    return [line for line in dovecot.log_text().splitlines() if f"Login: user=<{user}>" in line]


def assert_refused(api: ApiClient, r: Any, email: str) -> None:
    assert r.status == 422, r.body
    assert r.body["code"] == "tls_error", r.body
    assert api.get("/v1/accounts").body["items"] == []
    assert repo.account_by_email("t1", email) is None


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_a_tls_account_connects_and_syncs(api, tls_dovecot, trusted, security):
    user, pw = tls_dovecot.new_user("tls")
    port = tls_dovecot.tls_port if security == "ssl" else tls_dovecot.port
    r = api.post("/v1/accounts", body(user, pw, ("127.0.0.1", port, security)))
    assert r.status == 201, r.body
    logins = tls_logins(tls_dovecot, user)
    assert logins and all(", TLS" in line for line in logins), logins  # the login check
    tls_dovecot.append(user, "INBOX", make_mail("over TLS"))  # the helper's own (plain) session
    assert sync_account("t1", r.body["id"])["status"] == "ok"
    assert [m["subject"] for m in api.get("/v1/messages").body["items"]] == ["over TLS"]
    assert ", TLS" in tls_logins(tls_dovecot, user)[-1]  # the sync's session


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_an_untrusted_certificate_is_refused(api, tls_dovecot, untrusted, security):
    user, pw = tls_dovecot.new_user("untrusted")
    port = tls_dovecot.tls_port if security == "ssl" else tls_dovecot.port
    r = api.post("/v1/accounts", body(user, pw, ("127.0.0.1", port, security)))
    assert_refused(api, r, f"{user}@example.test")
    assert tls_logins(tls_dovecot, user) == []


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_a_certificate_for_another_name_is_refused(api, tls_dovecot, trusted, security):
    # Trusted CA, but the certificate names 127.0.0.1, not localhost.
    user, pw = tls_dovecot.new_user("wrongname")
    port = tls_dovecot.tls_port if security == "ssl" else tls_dovecot.port
    r = api.post("/v1/accounts", body(user, pw, ("localhost", port, security)))
    assert_refused(api, r, f"{user}@example.test")
    assert "mismatch" in r.body["message"].lower() or "not valid for" in r.body["message"], r.body
    assert tls_logins(tls_dovecot, user) == []


def test_starttls_is_never_downgraded(api, dovecot, imap_user):
    # The default test Dovecot runs with ssl = no: it offers no STARTTLS.
    user, pw = imap_user
    r = api.post("/v1/accounts", body(user, pw, (dovecot.host, dovecot.port, "starttls")))
    assert_refused(api, r, f"{user}@example.test")
    assert tls_logins(dovecot, user) == []  # LOGIN never went out in plain text


# -- SMTP ------------------------------------------------------------------------------------


def _mail(sender: str, to: str) -> bytes:
    return compose(
        sender=parse_address(sender), to=[to], subject="TLS send", text="hi", message_id_domain="example.test"
    )[1]


def _send(server: SmtpServer, security: str, user: str, pw: str, host: str = "127.0.0.1") -> Any:
    addr = server.address(user)
    return send(
        host=host, port=server.port, security=security, username=user, password=pw,
        sender=addr, recipients=[addr], data=_mail(addr, addr), timeout=5,
    )  # fmt: skip


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_smtp_over_tls(tls_dovecot, tls_smtp, trusted, security):
    user, pw = tls_dovecot.new_user("smtps")
    server = tls_smtp[security]
    assert _send(server, security, user, pw) == {server.address(user): {"status": "accepted"}}
    assert server.received_by(user)


@pytest.mark.parametrize("security", ["ssl", "starttls"])
@pytest.mark.parametrize("case", ["untrusted", "wrong name"])
def test_smtp_refuses_a_bad_certificate(tls_dovecot, tls_smtp, ca, monkeypatch, security, case):
    if case == "untrusted":
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    else:
        monkeypatch.setenv("SSL_CERT_FILE", str(ca.bundle))
    user, pw = tls_dovecot.new_user("smtpbad")
    server = tls_smtp[security]
    with pytest.raises(SmtpTlsFailed) as err:
        _send(server, security, user, pw, host="127.0.0.1" if case == "untrusted" else "localhost")
    assert err.value.kind == "tls_error"
    assert [a for a in server.auth_attempts if a[0] == user] == [] and not server.received_by(user)


def test_smtp_starttls_is_never_downgraded(api, dovecot, imap_user, smtp_server):
    """An account whose SMTP server offers no STARTTLS: the send answers 502 ``tls_error``
    and the password is never sent in plain text."""
    user, pw = imap_user
    r = api.post(
        "/v1/accounts",
        body(
            user, pw, (dovecot.host, dovecot.port, "none"), (smtp_server.host, smtp_server.port, "starttls")
        ),
    )
    assert r.status == 201, r.body
    addr = smtp_server.address(user)
    sent = api.post(
        f"/v1/accounts/{r.body['id']}/send", {"to": [{"email": addr}], "subject": "x", "text": "y"}
    )
    assert sent.status == 502 and sent.body["code"] == "tls_error", sent.body
    assert [a for a in smtp_server.auth_attempts if a[0] == user] == [] and not smtp_server.received_by(user)


# -- no way to switch certificate checks off -------------------------------------------------


def test_no_setting_turns_certificate_checks_off():
    # google_certs_uri is where Google's token-signing keys are fetched (over verified TLS).
    names = [n for n in Settings.model_fields if re.search(r"verif|insecure|tls|ssl|cert|ca_", n)]
    names.remove("google_certs_uri")
    assert names == [], f"a setting could weaken TLS: {names}"


def test_the_package_never_disables_certificate_checks():
    """No code path builds an unverified context (``CERT_NONE``, ``check_hostname = False``,
    ``_create_unverified_context``, ``verify=False``): checking is never off."""
    pattern = re.compile(
        r"CERT_NONE|check_hostname\s*=\s*False|_create_unverified_context|verify\s*=\s*False"
    )
    offenders = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in (ROOT / "layers" / "mailsync" / "mailsync").rglob("*.py")
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert offenders == []


def test_the_spec_lists_tls_error(tenant):
    paths = ApiClient(None, None).get("/v1/openapi.json").body["paths"]
    for path, method, status in [
        ("/v1/accounts", "post", "422"),
        ("/v1/accounts/{account_id}/credentials", "put", "422"),
        ("/v1/accounts/{account_id}/send", "post", "502"),
    ]:
        answer = paths[path][method]["responses"][status]
        assert "`tls_error`" in answer["description"], (path, answer)
        assert answer["content"]["application/json"]["schema"], (path, answer)
