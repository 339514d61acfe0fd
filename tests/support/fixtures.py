"""Pytest fixtures around :class:`tests.support.dovecot.Dovecot`.

Import them into a test module (or ``tests/conftest.py``)::

    from tests.support.fixtures import dovecot, imap_user  # noqa: F401

* ``dovecot``: one Dovecot per test session (CONDSTORE/QRESYNC advertised).
* ``dovecot_nocondstore``: a second one without CONDSTORE/QRESYNC, per session.
* ``imap_user``: ``(user, password)`` of a fresh user on ``dovecot``.
* ``imap_user_nocondstore``: the same on ``dovecot_nocondstore``.
* ``smtp_server``: an SMTP server delivering into ``dovecot`` (tests/support/smtp.py), per session.

A missing Dovecot fails the tests loudly (``make test`` installs it); it never skips.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from tests.support.dovecot import Dovecot

if TYPE_CHECKING:
    from tests.support.smtp import SmtpServer


def _start(condstore: bool) -> Dovecot:
    try:
        return Dovecot(condstore=condstore).start()
    except Exception as e:
        pytest.fail(f"could not start Dovecot for the integration tests: {e}", pytrace=False)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    server = _start(condstore=True)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def dovecot_nocondstore() -> Iterator[Dovecot]:
    server = _start(condstore=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def imap_user(dovecot: Dovecot) -> tuple[str, str]:
    return dovecot.new_user()


@pytest.fixture
def imap_user_nocondstore(dovecot_nocondstore: Dovecot) -> tuple[str, str]:
    return dovecot_nocondstore.new_user()


@pytest.fixture(scope="session")
def smtp_server(dovecot: Dovecot) -> Iterator[SmtpServer]:
    """An SMTP server (tests/support/smtp.py) delivering into ``dovecot``'s INBOXes.

    Authenticate as a Dovecot user; ``<user>@example.test`` reaches that user.
    """
    from tests.support.smtp import SmtpServer  # aiosmtpd is only needed by these tests

    server = SmtpServer(dovecot).start()
    try:
        yield server
    finally:
        server.stop()
