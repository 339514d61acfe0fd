"""UIDVALIDITY flapping: when a folder's reloads stop.

A changed UIDVALIDITY invalidates every UID the mirror knows of a folder (RFC 3501 §2.3.1.1,
RFC 9051 §2.3.1.1), so the engine reloads it. A broken server that hands out a new
UIDVALIDITY on every connect would make us re-download the folder forever. The rule:

* A folder keeps the times of its last :data:`FLAPS_BEFORE_STOP` UIDVALIDITY changes
  (``FolderState.flaps``, ISO 8601 UTC, oldest first). The list changes only when a flap
  happens, so a normal poll writes nothing more.
* A flap is recorded before the reload starts. When the last :data:`FLAPS_BEFORE_STOP` flaps
  fall within :data:`FLAP_WINDOW`, the folder is *stopped*: this flap and every later one is
  not reloaded (no FETCH), the mails already mirrored stay, and the account turns ``error``
  (code ``provider_error``, action ``check_server_settings``).
* A stopped folder stays stopped (the history no longer changes) until the user resyncs the
  account or gives new credentials, which clear the history (``domain.check.clear_flaps``).

Pure: time is passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from mailsync.domain.clock import iso, parse_iso
from mailsync.domain.ports import ProviderError

FLAPS_BEFORE_STOP = 3
FLAP_WINDOW = timedelta(hours=1)
STOP_ACTION = "check_server_settings"


def stopped(flaps: Sequence[str]) -> bool:
    """The last :data:`FLAPS_BEFORE_STOP` flaps of ``flaps`` fall within :data:`FLAP_WINDOW`."""
    if len(flaps) < FLAPS_BEFORE_STOP:
        return False
    last = flaps[-FLAPS_BEFORE_STOP:]
    return parse_iso(last[-1]) - parse_iso(last[0]) <= FLAP_WINDOW


def record(flaps: Sequence[str], now: datetime) -> list[str]:
    """The history after a flap at ``now``: at most :data:`FLAPS_BEFORE_STOP` times, oldest first."""
    return [*flaps, iso(now)][-FLAPS_BEFORE_STOP:]


class UidValidityFlapping(ProviderError):
    """A folder's UIDVALIDITY keeps changing: it is not reloaded again and the account turns
    ``error`` at once (not after ``FAILURES_BEFORE_ERROR`` runs), since retrying cannot help."""

    kind = "provider_error"
    stops_account = True
    action = STOP_ACTION

    def __init__(self, folder: str, flaps: Sequence[str]) -> None:
        super().__init__(
            f"folder {folder!r}: its UIDVALIDITY keeps changing ({len(flaps)} times between "
            f"{flaps[0]} and {flaps[-1]}): the folder is no longer reloaded and its mails already "
            "mirrored stay; check the mail server, then resync the account"
        )
        self.folder = folder


__all__ = ["FLAPS_BEFORE_STOP", "FLAP_WINDOW", "UidValidityFlapping", "record", "stopped"]
