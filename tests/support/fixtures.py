"""Pytest fixtures around :class:`tests.support.dovecot.Dovecot`.

Import them into a test module (or ``tests/conftest.py``)::

    from tests.support.fixtures import dovecot, imap_user  # noqa: F401

* ``dovecot``: one Dovecot per test session (CONDSTORE/QRESYNC advertised).
* ``dovecot_nocondstore``: a second one without CONDSTORE/QRESYNC, per session.
* ``imap_user``: ``(user, password)`` of a fresh user on ``dovecot``.
* ``imap_user_nocondstore``: the same on ``dovecot_nocondstore``.

A missing Dovecot fails the tests loudly (``make test`` installs it); it never skips.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dovecot import Dovecot


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
