"""API latency through the local runner (``mailsync run``) and DynamoDB requests per call."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.meter import Meter
from mailsync_local.dovecot import Dovecot, free_port

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "bench-key"
USER = "bench-user"


class Runner:
    def __init__(self) -> None:
        self.port, self.moto_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.moto = f"http://127.0.0.1:{self.moto_port}"
        self.log = Path(tempfile.mkdtemp(prefix="bench-runner-")) / "runner.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.http = requests.Session()
        self.http.headers.update({"Authorization": f"Bearer {API_KEY}", "X-User-Id": USER})

    def start(self, timeout: float = 90) -> Runner:
        exe = shutil.which("mailsync", path=str(Path(sys.executable).parent)) or "mailsync"
        env = {
            **os.environ,
            "PORT": str(self.port),
            "MAILSYNC_MOTO_PORT": str(self.moto_port),
            "MAILSYNC_POLL_SECONDS": "2",
            "MAILSYNC_DEV_API_KEY": API_KEY,
            "MAILSYNC_ALLOW_PRIVATE_HOSTS": "1",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        }
        env.pop("AWS_ENDPOINT_URL", None)
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(  # noqa: S603
                [exe, "run"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.http.get(self.url + "/v1/openapi.json", timeout=2).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"mailsync run did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.3)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(15)
        shutil.rmtree(self.log.parent, ignore_errors=True)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def measure_api(
    dovecot: Dovecot,
    user: str,
    password: str,
    expected: int,
    meter: Meter,
    n: int = 200,
    max_seconds: float = 60,
    sync_timeout: float = 900,
) -> dict[str, Any]:
    """p50/p95 over HTTP (at most ``n`` requests each, stopped after ``max_seconds``: moto's
    server answers a GSI Query by scanning the whole table, seconds per call at 10,000 mails),
    then the same calls in-process for DynamoDB requests per call and our own latency."""
    runner = Runner().start()
    try:
        server = {
            "host": dovecot.host,
            "port": dovecot.port,
            "security": "none",
            "username": user,
            "password": password,
        }
        t0 = time.perf_counter()
        r = runner.http.post(
            runner.url + "/v1/accounts",
            json={"email": f"{user}@bench.test", "imap": server, "smtp": dict(server), "backfill_days": 30},
            timeout=60,
        )
        r.raise_for_status()
        acc_id = r.json()["id"]
        deadline = time.monotonic() + sync_timeout
        while True:
            acc = runner.http.get(f"{runner.url}/v1/accounts/{acc_id}", timeout=30).json()
            if acc["state"] == "active" and acc["sync"]["messages"] >= expected:
                break
            if acc["state"] in ("error", "auth_error") or time.monotonic() > deadline:
                raise RuntimeError(f"runner sync did not finish: {acc}\n{runner.log.read_text()[-3000:]}")
            time.sleep(1)
        sync_seconds = time.perf_counter() - t0
        ids: list[str] = []
        cursor = None
        while len(ids) < n:
            page = runner.http.get(
                runner.url + "/v1/messages",
                params={"limit": 100, **({"cursor": cursor} if cursor else {})},
                timeout=30,
            ).json()
            ids += [m["id"] for m in page["items"]]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        timings: dict[str, list[float]] = {"threads": [], "message": []}
        stop = time.monotonic() + max_seconds
        for i in range(n):
            if i >= 5 and time.monotonic() > stop:
                break
            for name, path in (("threads", "/v1/threads"), ("message", f"/v1/messages/{ids[i % len(ids)]}")):
                t = time.perf_counter()
                resp = runner.http.get(runner.url + path, timeout=30)
                timings[name].append((time.perf_counter() - t) * 1000)
                resp.raise_for_status()
        in_process = _count_in_process(runner, ids[:5], meter)
    finally:
        runner.stop()
    out: dict[str, Any] = {"mails": expected, "runner_initial_sync_seconds": sync_seconds}
    for name, ms in timings.items():
        out[name] = {
            "n": len(ms),
            "p50_ms": statistics.median(ms),
            "p95_ms": _pct(ms, 0.95),
            **in_process[name],
        }
    return out


def _count_in_process(runner: Runner, ids: list[str], meter: Meter) -> dict[str, float]:
    """The API handler in this process, on the runner's moto, with the botocore counter."""
    from mailsync_local.runner import LambdaContext, configure_process_env, load_handler, to_event

    configure_process_env(
        runner.moto,
        {
            "MAILSYNC_TABLE": "mailsync-main",
            "MAILSYNC_IDEMPOTENCY_TABLE": "mailsync-idempotency",
            "MAILSYNC_BUCKET": "mailsync-mail",
            "MAILSYNC_ALLOW_PRIVATE_HOSTS": "1",
        },
    )
    api = load_handler("api")
    headers = {"authorization": f"Bearer {API_KEY}", "x-user-id": USER}
    out: dict[str, dict[str, float]] = {}
    for name, paths in (
        ("threads", ["/v1/threads"] * len(ids)),
        ("message", [f"/v1/messages/{i}" for i in ids]),
    ):
        api(to_event("GET", paths[0], headers, b"", "127.0.0.1"), LambdaContext("mailsync-api"))  # warm
        before = meter.snap()
        own_ms: list[float] = []
        for path in paths:
            aws0, t0 = meter.aws_seconds, time.perf_counter()
            res = api(to_event("GET", path, headers, b"", "127.0.0.1"), LambdaContext("mailsync-api"))
            own_ms.append((time.perf_counter() - t0 - (meter.aws_seconds - aws0)) * 1000)
            if int(res["statusCode"]) != 200:
                raise RuntimeError(f"GET {path}: {res}")
        diff = meter.snap() - before
        out[name] = {
            "ddb_requests_per_call": diff.ddb_requests / len(paths),
            "own_p50_ms": statistics.median(own_ms),
            "own_p95_ms": _pct(own_ms, 0.95),
        }
    return out
