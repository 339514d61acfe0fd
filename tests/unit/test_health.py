"""The sync-health state machine (domain/health.py): pure, with time and randomness passed in."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from mailsync.domain.account import new_account
from mailsync.domain.clock import iso, parse_iso
from mailsync.domain.health import (
    ERRORS,
    CheckResult,
    FolderCheck,
    HealthError,
    action_for,
    after_failure,
    after_success,
    backoff_seconds,
    check_due,
    error_of,
    health_view,
    marks,
    recovered,
    scrub,
)
from mailsync.domain.ports import (
    AuthFailed,
    ConnectionFailed,
    FolderGone,
    PermissionDenied,
    ProviderError,
    RateLimited,
    TimedOut,
    TlsFailed,
)

pytestmark = pytest.mark.unit

NOW = datetime(2030, 5, 1, 8, 0, tzinfo=UTC)
POLL = 300


def fresh() -> object:
    return new_account("t1", "alice", "a@example.test", "imap")


def loaded():  # type: ignore[no-untyped-def]
    acc = new_account("t1", "alice", "a@example.test", "imap")
    return after_success(acc, now=NOW, poll_seconds=POLL, loaded=True, folder_errors=[])


def err(code: str, folder: str | None = None) -> HealthError:
    return HealthError(code, f"{code} happened", iso(NOW), folder)


def test_every_code_is_documented_with_an_action_of_the_contract() -> None:
    assert set(ERRORS) == {
        "auth_failed", "connection_failed", "tls_error", "timeout", "rate_limited",
        "mailbox_gone", "permission_denied", "provider_error", "quota_exceeded",
    }  # fmt: skip
    assert {e.action for e in ERRORS.values()} == {
        None,
        "reauthenticate",
        "check_server_settings",
        "grant_permissions",
    }


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (AuthFailed("no"), "auth_failed"),
        (ConnectionFailed("refused"), "connection_failed"),
        (TlsFailed("bad cert"), "tls_error"),
        (TimedOut("slow"), "timeout"),
        (RateLimited("429", retry_after=30), "rate_limited"),
        (FolderGone("gone"), "mailbox_gone"),
        (PermissionDenied("403"), "permission_denied"),
        (ProviderError("500"), "provider_error"),
        (ProviderError("x", kind="quota_exceeded"), "quota_exceeded"),
        (ProviderError("x", kind="something-new"), "provider_error"),
        (ValueError("not a provider error"), "provider_error"),
    ],
)
def test_error_codes_come_from_the_exception_kind(exc: Exception, code: str) -> None:
    e = error_of(exc, NOW, folder="INBOX")
    assert e.code == code and e.folder == "INBOX" and e.at == iso(NOW)


def test_messages_are_scrubbed_of_credentials() -> None:
    text = (
        'LOGIN alice "hunter2-secret" failed; password=s3cret&token=abc.def '
        "Authorization: Bearer ya29.a0AfH6SMBx-long-token refresh_token: 1//0gLong"
    )
    out = scrub(text, secrets=["hunter2-secret", "s3cret"])
    for secret in ("hunter2-secret", "s3cret", "abc.def", "ya29.a0AfH6SMBx-long-token", "1//0gLong"):
        assert secret not in out, out
    assert "LOGIN alice" in out and "failed" in out
    assert len(scrub("x" * 5000)) == 500


@pytest.mark.parametrize("failures", range(1, 12))
def test_backoff_doubles_with_equal_jitter_and_never_exceeds_an_hour(failures: int) -> None:
    step = min(3600, POLL * 2 ** (failures - 1))
    waits = [backoff_seconds(failures, POLL, random.Random(seed)) for seed in range(200)]
    assert all(step / 2 <= w <= step for w in waits)
    assert len(set(waits)) > 10  # jittered: workers that failed together do not retry together


def test_retry_after_is_honoured_within_the_hour() -> None:
    assert backoff_seconds(1, POLL, random.Random(1), retry_after=1200) == 1200
    assert backoff_seconds(1, POLL, random.Random(1), retry_after=7200) == 3600


def test_error_only_after_three_consecutive_failures_and_healthy_on_first_success() -> None:
    acc = loaded()
    rng = random.Random(7)
    for n in (1, 2, 3, 4):
        acc = after_failure(acc, err("timeout"), now=NOW, poll_seconds=POLL, rng=rng)
        assert acc.failures == n
        assert acc.state == ("active" if n < 3 else "error")
        assert acc.next_due is not None and acc.error["code"] == "timeout"
    assert action_for(acc.state, acc.error) is None  # timeout: nothing for the user to do
    acc = after_success(acc, now=NOW, poll_seconds=POLL, loaded=True, folder_errors=[])
    assert (acc.state, acc.failures, acc.error) == ("active", 0, None)
    assert parse_iso(acc.next_due) - NOW == timedelta(seconds=POLL)


def test_failures_during_the_first_load_keep_initial_sync_until_the_third() -> None:
    acc = new_account("t1", "alice", "a@example.test", "imap")
    acc = after_failure(acc, err("connection_failed"), now=NOW, poll_seconds=POLL, rng=random.Random(1))
    assert acc.state == "initial_sync"
    acc = after_success(acc, now=NOW, poll_seconds=POLL, loaded=False, folder_errors=[])
    assert acc.state == "initial_sync"
    acc = after_success(acc, now=NOW, poll_seconds=POLL, loaded=True, folder_errors=[])
    assert acc.state == "active" and marks(acc).initial_done_at == iso(NOW)


def test_auth_error_polls_every_six_hours_and_gives_up_after_fourteen_days() -> None:
    acc = after_failure(loaded(), err("auth_failed"), now=NOW, poll_seconds=POLL, rng=random.Random(1))
    assert acc.state == "auth_error" and action_for(acc.state, acc.error) == "reauthenticate"
    assert parse_iso(acc.next_due) - NOW == timedelta(hours=6)
    # A transient failure while in auth_error keeps it (nothing proves the password works).
    later = NOW + timedelta(days=3)
    acc = after_failure(acc, err("connection_failed"), now=later, poll_seconds=POLL, rng=random.Random(1))
    assert acc.state == "auth_error" and acc.error["code"] == "auth_failed"
    assert parse_iso(acc.next_due) - later == timedelta(hours=6)
    acc = after_failure(
        acc, err("auth_failed"), now=NOW + timedelta(days=14), poll_seconds=POLL, rng=random.Random(1)
    )
    assert acc.state == "auth_error" and acc.next_due is None  # off the due index until the user acts
    back = recovered(acc, now=NOW + timedelta(days=20))
    assert back.state == "active" and back.next_due == iso(NOW + timedelta(days=20))
    assert marks(back).auth_error_since is None and back.failures == 0 and back.error is None


def test_a_paused_account_stays_paused_when_its_credentials_are_replaced() -> None:
    acc = loaded().with_(state="paused", next_due=None)
    assert recovered(acc, now=NOW).state == "paused"


def test_folder_failures_and_healed_checks_make_degraded_until_a_clean_check() -> None:
    acc = loaded()
    acc = after_success(
        acc, now=NOW, poll_seconds=POLL, loaded=True, folder_errors=[err("permission_denied", "Privat")]
    )
    assert acc.state == "degraded" and acc.error["folder"] == "Privat"
    assert action_for(acc.state, acc.error) == "grant_permissions"
    acc = after_success(acc, now=NOW, poll_seconds=POLL, loaded=True, folder_errors=[])
    assert acc.state == "active" and acc.error is None
    healed = CheckResult(iso(NOW), [FolderCheck("INBOX", 10, 9, 1, 0, 1)])
    acc = after_success(acc, now=NOW, poll_seconds=POLL, loaded=True, folder_errors=[], check=healed)
    assert acc.state == "degraded" and acc.error is None
    acc = after_success(acc, now=NOW, poll_seconds=POLL, loaded=True, folder_errors=[])  # no check ran
    assert acc.state == "degraded"
    clean = CheckResult(iso(NOW), [FolderCheck("INBOX", 10, 10, 0, 0, 0)])
    acc = after_success(acc, now=NOW, poll_seconds=POLL, loaded=True, folder_errors=[], check=clean)
    assert acc.state == "active"


def test_the_check_is_due_a_day_after_the_load_and_then_daily() -> None:
    acc = loaded()
    assert not check_due(acc, NOW + timedelta(hours=23))
    assert check_due(acc, NOW + timedelta(hours=24))
    checked = after_success(
        acc, now=NOW + timedelta(days=1), poll_seconds=POLL, loaded=True, folder_errors=[],
        check=CheckResult(iso(NOW + timedelta(days=1))),
    )  # fmt: skip
    assert not check_due(checked, NOW + timedelta(days=1, hours=23))
    assert check_due(checked, NOW + timedelta(days=2))
    assert not check_due(new_account("t1", "u", "b@example.test", "imap"), NOW + timedelta(days=30))


def test_health_view_shape_and_legacy_error_codes() -> None:
    acc = loaded().with_(state="error", error={"code": "folder_gone", "message": "x"}, failures=4)
    view = health_view(acc, None)
    assert set(view) == {
        "last_success_at", "last_attempt_at", "next_attempt_at", "consecutive_failures",
        "last_error", "action", "check",
    }  # fmt: skip
    assert view["last_error"]["code"] == "mailbox_gone" and view["consecutive_failures"] == 4
    assert view["action"] == "check_server_settings"
    odd = health_view(acc.with_(error={"code": "ErrorItemNotFound", "message": "x"}), None)
    assert odd["last_error"]["code"] == "provider_error"


def test_a_success_keeps_no_attempt_date_of_its_own_but_the_view_shows_the_latest() -> None:
    from dataclasses import replace

    acc = loaded()
    acc = acc.with_(sync=replace(acc.sync, last_success_at=iso(NOW)))
    assert acc.health == {"initial_done_at": iso(NOW)}  # only what is set rides on each poll
    assert health_view(acc, None)["last_attempt_at"] == iso(NOW)
    later = NOW + timedelta(minutes=5)
    failed = after_failure(acc, err("timeout"), now=later, poll_seconds=POLL, rng=random.Random(1))
    assert health_view(failed, None)["last_attempt_at"] == iso(later)
    assert health_view(failed, None)["last_success_at"] == iso(NOW)
