"""(d) and (e): our engine with its real store (moto in-process) and with the no-op sink."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.meter import Meter, Snapshot
from bench.sink import NullStore
from bench.timing import settled_heap
from mailsync_local.dovecot import Dovecot

REGION = "eu-central-1"
TENANT = "bench"
OWNER = "bench-user"
BACKFILL_DAYS = 30  # the API's maximum; the generated mail lies inside it

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "MAILSYNC_ALLOW_PRIVATE_HOSTS": "1",
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "mailsync",
    "POWERTOOLS_SERVICE_NAME": "mailsync",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


@contextmanager
def moto_in_process() -> Iterator[dict[str, str]]:
    """moto in this process with the deployed schemas, as the ``aws`` fixture of tests/conftest.py."""
    from moto import mock_aws

    from mailsync_local import moto_transactions

    moto_transactions.install()  # the cost of a transaction, not of copying the table
    saved = {k: os.environ.get(k) for k in [*AWS_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update(AWS_ENV)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    try:
        with mock_aws():
            from mailsync.config import get_settings
            from mailsync.store import aws, models, tenants
            from mailsync_local import runner

            env = runner.provision(endpoint=None)  # type: ignore[arg-type]
            os.environ.update(env)
            get_settings.cache_clear()
            aws.reset()
            models.bind(env["MAILSYNC_TABLE"], host=None, region=REGION)
            tenants.create_tenant(TENANT, "Benchmark", "bench-key", "2026-01-01T00:00:00Z")
            yield env
            get_settings.cache_clear()
            aws.reset()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class Recording:
    """Provider factory that keeps the providers, for their command and byte counts."""

    def __init__(self) -> None:
        self.providers: list[Any] = []

    def __call__(self, account: dict[str, Any], secrets: dict[str, Any]) -> Any:
        from mailsync.connectors import open_provider as make_provider

        p = make_provider(account, secrets)
        self.providers.append(p)
        return p


class OurAccount:
    """A Dovecot user connected through ``create_account``, synced with ``sync_account``."""

    def __init__(self, dovecot: Dovecot, user: str, password: str, meter: Meter) -> None:
        from mailsync.usecases.accounts import create_account

        self.dovecot, self.user, self.meter = dovecot, user, meter
        server = {
            "host": dovecot.host,
            "port": dovecot.port,
            "security": "none",
            "username": user,
            "password": password,
        }
        body = {
            "email": f"{user}@bench.test",
            "imap": server,
            "smtp": dict(server),
            "backfill_days": BACKFILL_DAYS,
        }
        self.acc = create_account(TENANT, OWNER, body)
        self.rec = Recording()

    def sync(self, profile: str | None = None) -> dict[str, Any]:
        """One ``sync_account`` run: wall and CPU time, IMAP commands, wire bytes, AWS costs."""
        from mailsync.usecases.sync_account import sync_account

        d = self.dovecot
        sessions = quiesce(d, self.user)
        wire0 = d.session_bytes(self.user)
        before: Snapshot = self.meter.snap()
        profiler = _profiler(profile)
        with settled_heap():
            t0, c0 = time.perf_counter(), time.process_time()
            result = sync_account(TENANT, self.acc["id"], provider_factory=self.rec)
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        if profiler is not None:
            _save_profile(profiler, profile)  # type: ignore[arg-type]
        aws = self.meter.snap() - before
        d.wait_for_logouts(self.user, sessions + 1)
        p = self.rec.providers[-1]
        return {
            "seconds": seconds,
            "cpu_seconds": cpu,
            "result": result,
            "commands": list(p.commands),
            "client_bytes": p.bytes_in + p.bytes_out,
            "wire_bytes": d.session_bytes(self.user) - wire0,
            "aws": aws.as_dict(),
        }


def quiesce(d: Dovecot, user: str, timeout: float = 15.0) -> int:
    """Wait until every session of ``user`` that logged in has logged out; return their count.

    Dovecot writes a session's ``in=/out=`` line when it ends, so byte counts taken
    before this would include sessions still closing (the sink's, a tool's, ...).
    """
    login = f"Login: user=<{user}>"
    deadline = time.monotonic() + timeout
    while True:
        text = d.log_text()
        logins = text.count(login)
        outs = d.logged_out_sessions(user)
        if outs >= logins or time.monotonic() > deadline:
            return outs
        time.sleep(0.02)


def sink_sync(
    dovecot: Dovecot, user: str, password: str, store: NullStore | None = None, profile: str | None = None
) -> dict[str, Any]:
    """(e): ``SyncEngine`` + ``ImapProvider`` + :class:`NullStore`, timed around the engine."""
    from mailsync.domain.sync import AccountContext, SyncEngine
    from mailsync.providers.imap import ImapProvider

    now = datetime.now(UTC)
    ctx = AccountContext(TENANT, "sink", OWNER, f"{user}@bench.test", "private", now, BACKFILL_DAYS)
    store = store or NullStore()
    engine = SyncEngine(store, ctx, batch_size=_batch_size())
    profiler = _profiler(profile)
    with settled_heap():
        t0, c0 = time.perf_counter(), time.process_time()
        with ImapProvider(dovecot.host, dovecot.port, "none", user, password) as provider:
            states = engine.reconcile_folders(provider.list_folders(), "all", [])
            report = engine.run(provider, states, time.monotonic() + 3600)
            commands = list(provider.commands)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if profiler is not None:
        _save_profile(profiler, profile)  # type: ignore[arg-type]
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "new": report.new,
        "commands": len(commands),
        "messages_put": store.messages_put,
        "store": store,
    }


def _batch_size() -> int:
    from mailsync.config import get_settings

    return get_settings().sync_batch_size


def _profiler(path: str | None) -> Any:
    if not path:
        return None
    try:
        from pyinstrument import Profiler
    except ImportError:
        return None
    p = Profiler(interval=0.002)
    p.start()
    return p


def _save_profile(profiler: Any, path: str) -> None:
    profiler.stop()
    with open(path, "w") as f:
        f.write(profiler.output_text(unicode=False, color=False, show_all=False))


def since_anchor(days_back: float = 26.0) -> datetime:
    """Where generated mail starts: inside the 30-day backfill of an account created now."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(days=days_back)
