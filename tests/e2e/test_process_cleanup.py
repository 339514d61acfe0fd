"""`mailsync demo` and `mailsync run` stopped with SIGTERM (as a supervisor, a container
runtime or CI stops them) leave none of their processes behind: the demo's Dovecot runs in
a session of its own, so nothing but our own shutdown stops it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.support.dovecot import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _dovecot_pids() -> set[int]:
    """Every running Dovecot process (master and its children), from /proc."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"dovecot" in cmd:
            pids.add(int(entry.name))
    return pids


def _ppid(pid: int) -> int:
    try:  # the field after the parenthesised name, which may itself hold spaces
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _descends_from(pid: int, root: int) -> bool:
    """``pid`` was started by ``root`` or by one of its descendants (its own session or not):
    other test workers' Dovecots, started meanwhile, are not the runner's."""
    for _ in range(64):
        if pid == root:
            return True
        if pid <= 1:
            return False
        pid = _ppid(pid)
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose but its parent's wait.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("command", ["demo", "run"])
def test_sigterm_stops_everything_the_runner_started(command: str, tmp_path: Path) -> None:
    exe = shutil.which("mailsync", path=str(Path(sys.executable).parent)) or "mailsync"
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "MAILSYNC_MOTO_PORT": str(free_port()),
        "MAILSYNC_DEMO_EVERY": "3600",
    }
    env.pop("AWS_ENDPOINT_URL", None)
    before = _dovecot_pids()
    log = tmp_path / "out.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([exe, command, "--port", str(port)] if command == "demo" else [exe, command],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/v1/openapi.json", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        started = {p for p in _dovecot_pids() - before if _descends_from(p, proc.pid)}
        if command == "demo":
            assert started, "the demo runs a Dovecot of its own"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]  # a clean stop, not a kill
        deadline = time.monotonic() + 15
        while {p for p in started if _alive(p)} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert {p for p in started if _alive(p)} == set(), log.read_text()[-3000:]
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/v1/openapi.json", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
