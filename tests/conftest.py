"""Shared fixtures: moto-backed AWS (tables from template.yaml), tenants, and Dovecot.

``aws`` runs moto in-process (``mock_aws``); e2e tests use the real local runner
(moto's server mode) instead, see tests/e2e/conftest.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import secrets as leakscan
from tests.support.fixtures import (  # noqa: F401
    dovecot,
    dovecot_nocondstore,
    imap_user,
    imap_user_nocondstore,
    smtp_server,
)
from tests.support.google import google  # noqa: F401
from tests.support.microsoft import microsoft  # noqa: F401
from tests.support.providers import quick_retries  # noqa: F401

REGION = "eu-central-1"
os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_DEV", "0")


def pytest_configure(config: pytest.Config) -> None:
    # A run stopped with SIGTERM (a CI timeout, `timeout`) tears its fixtures down as after
    # Ctrl-C, so that no Dovecot or runner started by a fixture is left behind.
    from mailsync_local.runner import interrupt_on_sigterm

    interrupt_on_sigterm()
    # moto's transactions copy whole tables; roll back item by item as DynamoDB does.
    from mailsync_local import moto_transactions

    moto_transactions.install()
    leakscan.install()
    if not hasattr(config, "workerinput") and config.getoption("numprocesses", None):
        # pytest-xdist: the workers (started after this hook, with this environment) report here.
        import tempfile

        os.environ[leakscan.WORKER_RESULTS] = tempfile.mkdtemp(prefix="leakscan-")


# The secrets scan (tests/support/secrets.py): every log record and all captured output of the
# session is scanned at its end for every secret the tests used; a find fails the session.
def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    leakscan.feed_report(report)


def pytest_runtest_setup(item: pytest.Item) -> None:
    leakscan.ensure_log_feed()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    worker = getattr(session.config, "workerinput", {}).get("workerid")
    if leakscan.finish(worker) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    leakscan.summary(terminalreporter)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """Fresh moto AWS with the deployed table schemas, bucket, FIFO queue and KMS key."""
    from moto import mock_aws

    for k, v in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "MAILSYNC_ALLOW_PRIVATE_HOSTS": "1",
        # Stream calls by ARN go to moto's in-process mock only without account endpoints.
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
    }.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        env = _provision_in_process()
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        from mailsync.config import get_settings
        from mailsync.store import aws as aws_mod
        from mailsync.store import models

        get_settings.cache_clear()
        aws_mod.reset()
        models.bind(env["MAILSYNC_TABLE"], host=None, region=REGION)
        yield env
        get_settings.cache_clear()
        aws_mod.reset()
        from mailsync.store import crypto

        crypto.forget_data_keys()


def _provision_in_process() -> dict[str, str]:
    from mailsync_local import runner

    return runner.provision(endpoint=None)  # type: ignore[arg-type]


@pytest.fixture
def tenant(aws: dict[str, str]) -> dict[str, str]:
    from mailsync.store import tenants

    tenants.create_tenant("t1", "Tenant One", "key-t1", "2026-01-01T00:00:00Z")
    tenants.create_tenant("t2", "Tenant Two", "key-t2", "2026-01-01T00:00:00Z")
    return {"tenant_id": "t1", "api_key": "key-t1", "other_tenant": "t2", "other_key": "key-t2"}
