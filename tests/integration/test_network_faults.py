"""Network faults between the engine and a real Dovecot: a loopback proxy
(:class:`~tests.support.netfault.Forwarder`) cuts the connection after a random number of
bytes, in either direction and inside FETCH literals too (mails up to 200 KB), or stalls it.

Every faulted run must end quickly with a typed, retryable error (``connection_failed`` or
``timeout``, never a hang nor an untyped exception); the next runs resume where it stopped
(what was stored stays, a mail already stored is never fetched again); no mail is ever stored
truncated (after every run each stored raw equals the server's bytes of that Message-ID); and
after convergence the mirror is exactly the mailbox.

The default run tries the fixed seeds below; ``MAILSYNC_FUZZ_EXAMPLES=<n>`` (``make fuzz``)
tries ``n`` seeds of each kind.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from mailsync import connectors
from mailsync.config import get_settings
from mailsync.domain.ports import Upsert
from mailsync.usecases import accounts
from mailsync.usecases.sync_account import sync_account
from tests.support.accounts import bare_id, mirror, server_mailbox, stored_raw
from tests.support.dovecot import make_mail
from tests.support.netfault import C2S, S2C, Fault, Forwarder

pytestmark = pytest.mark.integration

FOLDERS = ("INBOX", "Archive")
SIZES = (600, 3_000, 70_000, 12_000, 150_000, 1_500, 8_000, 200_000, 400)
TIMEOUT = 1.0  # seconds: MAILSYNC_IMAP_TIMEOUT_SECONDS of these tests
STALL = 60.0  # a stall far longer than the timeout: only the timeout can end the run
FAULTS_PER_CASE = 3  # faulted runs in a row before the clean one
_N = int(os.environ.get("MAILSYNC_FUZZ_EXAMPLES", "0"))
CUT_SEEDS = list(range(_N)) if _N else [1, 2]
STALL_SEEDS = list(range(1000, 1000 + max(1, _N // 4))) if _N else [1001]

FIGURES = {"cases": 0, "cuts": 0, "stalls": 0, "truncated": 0, "hangs": 0, "refetched": 0}


def mailbox_mails() -> dict[str, list[bytes]]:
    """Mails of varied sizes (attachments of random bytes; some > 64 KB so cuts land in
    literals), the same for every case."""
    rng = random.Random(0)
    now = datetime.now(UTC)
    out: dict[str, list[bytes]] = {f: [] for f in FOLDERS}
    for i, size in enumerate(SIZES):
        raw = make_mail(
            f"Mail {i} of {size} bytes",
            message_id=f"net-{i}@example.test",
            date=now - timedelta(minutes=30 - i),
            attachment=(f"blob{i}.bin", "application/octet-stream", rng.randbytes(size)),
        )
        out[FOLDERS[i % 3 == 2]].append(raw)
    return out


class CountingProvider:
    """The real provider, counting the mails it hands to the engine (to see re-fetches)."""

    def __init__(self, inner: Any, fetched: list[tuple[str, str]]) -> None:
        self.inner = inner
        self.fetched = fetched

    def __enter__(self) -> CountingProvider:
        self.inner.__enter__()
        return self

    def __exit__(self, *exc: object) -> Any:
        return self.inner.__exit__(*exc)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def changes(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        for batch in self.inner.changes(*args, **kwargs):
            self.fetched += [(c.folder, c.ref) for c in batch.changes if isinstance(c, Upsert)]
            yield batch


@pytest.fixture
def net(tenant: Any, dovecot: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Forwarder]:
    monkeypatch.setenv("MAILSYNC_IMAP_TIMEOUT_SECONDS", str(TIMEOUT))
    monkeypatch.setenv(
        "MAILSYNC_SYNC_BATCH_SIZE", "3"
    )  # several batches per folder: cursors move between them
    get_settings.cache_clear()
    fwd = Forwarder((dovecot.host, dovecot.port))
    try:
        yield fwd
    finally:
        fwd.close()
        get_settings.cache_clear()


def new_account(dovecot: Any, fwd: Forwarder, mails: dict[str, list[bytes]]) -> tuple[str, dict[str, Any]]:
    user, pw = dovecot.new_user("net")
    for folder, raws in mails.items():
        dovecot.append_many(user, folder, raws)
    server = {"host": fwd.host, "port": fwd.port, "security": "none", "username": user, "password": pw}
    acc = accounts.create_account(
        "t1",
        "alice",
        {"email": f"{user}@example.test", "imap": server, "smtp": dict(server), "backfill_days": 1},
    )
    fwd.wait_idle()  # the login check's connection must not take the fault meant for the sync
    return user, acc


def run(acc: dict[str, Any], fetched: list[tuple[str, str]]) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    result = sync_account(
        "t1",
        acc["id"],
        provider_factory=lambda a, s: CountingProvider(connectors.open_provider(a, s), fetched),
    )
    return result, time.monotonic() - started


def check_stored(acc: dict[str, Any], server: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every stored mail is the server's mail byte for byte; returns the mirror by Message-ID."""
    stored = {}
    for m in mirror(acc):
        mid = bare_id(m["message_id"])
        raw = stored_raw(m)
        if mid not in server or raw != server[mid]["raw"] or len(raw) != server[mid]["size"]:
            FIGURES["truncated"] += 1
            pytest.fail(f"{mid}: {len(raw)} bytes stored, the server has {server.get(mid, {}).get('size')}")
        stored[mid] = m
    return stored


def converge(dovecot: Any, fwd: Forwarder, faults: list[Any], seed: int) -> None:
    user, acc = new_account(dovecot, fwd, mailbox_mails())
    server = server_mailbox(dovecot, user, FOLDERS)
    fetched: list[tuple[str, str]] = []
    kept: set[str] = set()
    for fault in faults:
        fwd.arm(fault)
        result, took = run(acc, fetched)
        fwd.wait_idle()
        limit = TIMEOUT * 8 + 5  # generous: a stall costs one timeout, a cut none
        if took > limit:
            FIGURES["hangs"] += 1
        assert took <= limit, f"seed {seed}, {fault}: the run took {took:.1f} s"
        assert result["status"] in ("ok", "error"), result
        if result["status"] == "error":
            want = "timeout" if fault.stall else "connection_failed"
            assert result["code"] == want, f"seed {seed}, {fault}: {result}"
        stored = set(check_stored(acc, server))
        assert kept <= stored, f"seed {seed}, {fault}: stored mails were lost"
        kept = stored
    result, _ = run(acc, fetched)
    assert result["status"] == "ok", result
    final = check_stored(acc, server)
    assert {mid: m["folder"] for mid, m in final.items()} == {mid: s["folder"] for mid, s in server.items()}
    refetched = len(fetched) - len(set(fetched))
    FIGURES["refetched"] += refetched
    assert refetched == 0, f"seed {seed}: {refetched} mails fetched again after a fault"
    FIGURES["cases"] += 1


def exchange_size(dovecot: Any, fwd: Forwarder) -> tuple[int, int]:
    """Bytes (server to client, client to server) of a clean first sync of the mailbox."""
    _, acc = new_account(dovecot, fwd, mailbox_mails())
    result, _ = run(acc, [])
    assert result["status"] == "ok", result
    fwd.wait_idle()
    s2c, c2s = fwd.last_bytes[S2C], fwd.last_bytes[C2S]
    assert s2c > sum(SIZES)  # the whole mailbox went through the proxy
    return s2c, c2s


def test_cuts_at_random_offsets_resume_and_store_nothing_truncated(net: Forwarder, dovecot: Any) -> None:
    s2c, c2s = exchange_size(dovecot, net)
    for seed in CUT_SEEDS:
        net.rng.seed(seed)
        faults = [net.random_fault(s2c, c2s) for _ in range(FAULTS_PER_CASE)]
        converge(dovecot, net, faults, seed)
    # A later fault of a case may lie beyond what the resumed run still transfers; the first
    # one of every case lies within a full load and always fires.
    assert len(CUT_SEEDS) <= net.cuts <= len(CUT_SEEDS) * FAULTS_PER_CASE
    FIGURES["cuts"] += net.cuts
    report()


def test_stalled_reads_time_out_and_the_next_run_resumes(net: Forwarder, dovecot: Any) -> None:
    s2c, c2s = exchange_size(dovecot, net)
    for seed in STALL_SEEDS:
        net.rng.seed(seed)
        converge(dovecot, net, [net.random_fault(s2c, c2s, stall=STALL)], seed)
    assert net.stalls == len(STALL_SEEDS)
    FIGURES["stalls"] += net.stalls
    report()


def report() -> None:
    print(f"\nnetwork faults: {FIGURES} (seed lists: cuts {CUT_SEEDS}, stalls {STALL_SEEDS})")


def login_offsets(dovecot: Any) -> tuple[int, int]:
    """(server bytes before the answer to LOGIN, client bytes before the LOGIN command):
    imapclient asks for CAPABILITY after the greeting, then logs in."""
    with socket.create_connection((dovecot.host, dovecot.port), timeout=5) as s:
        f = s.makefile("rb")
        s2c = len(f.readline())
        s.sendall(b"ABCD0 CAPABILITY\r\n")  # the length of imaplib's first command
        while not (line := f.readline()).startswith(b"ABCD0 "):
            s2c += len(line)
        return s2c + len(line), len(b"ABCD0 CAPABILITY\r\n")


@pytest.mark.parametrize("where", ["answer", "command", "stalled command"])
def test_connection_broken_during_login_is_a_network_error_not_auth_error(
    net: Forwarder, dovecot: Any, where: str
) -> None:
    """Regression (found by the cut seeds): imapclient turns an EOF during LOGIN into
    ``LoginError``, which put the account into ``auth_error`` (polling stopped, the user told to
    reauthenticate) although the password was right. The cut lands inside the server's answer
    to LOGIN or inside the LOGIN command; a stalled LOGIN must end as ``timeout``."""
    user, acc = new_account(dovecot, net, {})
    s2c, c2s = login_offsets(dovecot)
    fault = {
        "answer": Fault(S2C, s2c + 3),
        "command": Fault(C2S, c2s + 7),
        "stalled command": Fault(C2S, c2s + 7, stall=STALL),
    }[where]
    net.arm(fault)
    result, _ = run(acc, [])
    assert net.cuts + net.stalls == 1  # the fault fired
    assert result == {"status": "error", "code": "timeout" if fault.stall else "connection_failed"}
    assert accounts.get_account("t1", "alice", acc["id"])["state"] != "auth_error"
    net.wait_idle()
    assert run(acc, [])[0]["status"] == "ok"  # the next run logs in as before
