"""The UIDVALIDITY flapping rule (domain/flaps.py): pure, time passed in."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from mailsync.domain.account import new_account
from mailsync.domain.flaps import FLAP_WINDOW, UidValidityFlapping, record, stopped
from mailsync.domain.health import action_for, after_failure, error_of

pytestmark = pytest.mark.unit

T0 = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def history(*minutes: float) -> list[str]:
    flaps: list[str] = []
    for m in minutes:
        flaps = record(flaps, T0 + timedelta(minutes=m))
    return flaps


def test_two_flaps_never_stop():
    assert not stopped([])
    assert not stopped(history(0))
    assert not stopped(history(0, 1))


def test_third_flap_within_the_hour_stops():
    assert stopped(history(0, 30, 59))
    assert stopped(history(0, 0, 0))
    assert stopped(history(0, 30, 60))  # exactly the window: still "within an hour"


def test_flaps_spread_over_more_than_an_hour_never_stop():
    flaps = history(0, 40, 80, 120, 160, 200)  # every 40 min: any 3 span 80 min
    assert not stopped(flaps)


def test_history_keeps_the_last_three_oldest_first():
    flaps = history(0, 40, 80, 120)
    assert len(flaps) == 3
    assert flaps == sorted(flaps)
    assert flaps[0].startswith("2026-12-03T10:40")


def test_an_old_flap_falls_out_of_the_window():
    # Two quick flaps, a long quiet, then two quick ones again: never 3 within the hour.
    assert not stopped(history(0, 1, 120, 121))
    assert stopped(history(0, 1, 120, 121, 122))
    assert timedelta(hours=1) == FLAP_WINDOW


def test_a_stopped_folder_makes_the_account_error_at_once_with_its_action():
    acc = new_account("t1", "alice", "a@example.test", "imap").with_(state="active")
    exc = UidValidityFlapping("Kunden", history(0, 10, 20))
    err = error_of(exc, T0, folder="Kunden")
    assert err.code == "provider_error" and err.folder == "Kunden"
    assert "Kunden" in err.message and "UIDVALIDITY" in err.message
    out = after_failure(acc, err, now=T0, poll_seconds=300, rng=random.Random(1), stop=True)
    assert out.state == "error" and out.failures == 1
    assert action_for(out.state, out.error) == "check_server_settings"
    assert err.public().keys() == {"code", "message", "at", "folder"}
    # Without stop, one failure of provider_error is not yet an error, and has no action.
    plain = after_failure(acc, error_of(Exception("x"), T0), now=T0, poll_seconds=300, rng=random.Random(1))
    assert plain.state == "active" and action_for("error", plain.error) is None
