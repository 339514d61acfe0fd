"""The secrets scanner (tests/support/secrets.py) finds a planted secret in every form it
claims to, so that the session-wide scan that reports "found: 0" is not trivially empty."""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import quote, urlencode

import pytest

from tests.support import secrets as leakscan
from tests.support.secrets import Registry

pytestmark = pytest.mark.unit

SECRET = "1//fake-Zq9+x/y=Token~abc.DEF_ghi-jkl"  # '/', '+', '=', '~': each encoding differs


def found(reg: Registry) -> set[str]:
    return {f.form for f in reg.findings()}


@pytest.mark.parametrize(
    ("text", "form"),
    [
        (f"refresh failed for token {SECRET}, retrying", "plain"),
        (json.dumps({"refresh_token": SECRET}), "plain"),
        ("blob=" + base64.b64encode(SECRET.encode()).decode(), "base64"),
        ("blob=" + base64.urlsafe_b64encode(SECRET.encode()).decode().rstrip("="), "base64"),
        *(  # inside a longer base64 text, at each byte alignment
            (base64.b64encode(b"x" * k + b'{"pw": "' + SECRET.encode() + b'"}').decode(), "base64")
            for k in range(3)
        ),
        ("GET /cb?" + urlencode({"token": SECRET}), "url"),
        ("url=" + quote(SECRET, safe=""), "url"),
    ],
)
def test_a_planted_secret_is_found_in_each_form(text, form):
    reg = Registry()
    reg.register("refresh token", SECRET)
    reg.feed(text, "planted")
    assert form in found(reg)


def test_a_secret_with_spaces_and_symbols_is_found_too():
    reg = Registry()
    secret = "p@ss wörd: geheim!"
    reg.register("imap/smtp password", secret)
    reg.feed(f"LOGIN user {secret}\n", "planted")
    assert found(reg) == {"plain"}


def test_clean_text_and_short_values_give_no_finding():
    reg = Registry()
    reg.register("imap/smtp password", SECRET)
    reg.register("tenant api key", "key-t1")  # too short to register: a word, not a secret
    reg.feed("account connected key-t1 " + SECRET[:-1] + " " + base64.b64encode(b"other").decode(), "clean")
    assert reg.findings() == []
    assert "key-t1" not in reg.secrets


def test_a_finding_never_shows_the_secret(tmp_path):
    reg = Registry()
    reg.register("client secret", SECRET)
    log = tmp_path / "runner.log"
    log.write_text(f"boot with secret {SECRET}\n")
    reg.watch_file(log, "runner log")  # read at the end: what the process wrote by then
    [finding] = reg.findings()
    assert finding.where == "runner log" and finding.kind == "client secret"
    assert SECRET not in str(finding) and finding.digest == leakscan.digest(SECRET)


def test_the_session_scan_sees_log_records_with_their_extras():
    """The root handler that tests/conftest.py installs feeds the session registry, ``extra``
    fields included (where a careless log line would put a token)."""
    before = leakscan.registry.fed_chars
    logging.getLogger("tests.leakscan.probe").warning("probe", extra={"detail": "harmless-probe-value"})
    assert leakscan.registry.fed_chars > before
    assert any("harmless-probe-value" in t for t in leakscan.registry._tokens)
