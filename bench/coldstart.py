"""Cold start: import time of each function's handler module in a fresh interpreter, and
the size of its built artefact (``sam build`` output)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS = {
    "api": "ApiFunction",
    "scheduler": "SchedulerFunction",
    "sync_worker": "SyncWorkerFunction",
    "watch_renewer": "WatchRenewerFunction",
}

# Runs in the fresh interpreter: import the handler module, then look for botocore clients.
_PROBE = """
import gc, runpy, sys, time
before = set(sys.modules)
t0 = time.perf_counter()
runpy.run_path(sys.argv[1], run_name="handler")
wall = time.perf_counter() - t0
sys.stderr.write("probe: imports done\\n")  # what follows is the probe's own work
clients = 0
if "botocore.client" in sys.modules:
    from botocore.client import BaseClient
    # type(), not isinstance(): isinstance would load the lazily imported modules
    clients = sum(1 for o in gc.get_objects() if issubclass(type(o), BaseClient))
import json
print(json.dumps({"wall_ms": wall * 1000, "before": sorted(before), "boto3": "boto3" in sys.modules,
                  "botocore": "botocore" in sys.modules, "clients": clients}))
"""

# What Lambda sets (template.yaml Globals); LAMBDA_TASK_ROOT makes Powertools' Tracer active,
# as it is with ``Tracing: Active``.
LAMBDA_ENV = {
    "AWS_REGION": "eu-central-1",
    "AWS_DEFAULT_REGION": "eu-central-1",
    "AWS_LAMBDA_FUNCTION_NAME": "mailsync-bench",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
    "LAMBDA_TASK_ROOT": "/var/task",
    "POWERTOOLS_SERVICE_NAME": "mailsync",
    "POWERTOOLS_METRICS_NAMESPACE": "mailsync",
    "MAILSYNC_TABLE": "mailsync-main",
    "MAILSYNC_BUCKET": "mailsync-mail",
}


def import_time(name: str, runs: int = 3) -> dict[str, Any]:
    """Best of ``runs``: summed cumulative ``-X importtime`` of the top-level imports the handler
    module triggers (interpreter start-up excluded), its wall time, and botocore clients created."""
    path = ROOT / "functions" / name / "app.py"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MAILSYNC_", "POWERTOOLS_"))}
    env.update(LAMBDA_ENV)
    best: dict[str, Any] | None = None
    for _ in range(runs):
        out = subprocess.run(  # noqa: S603
            [sys.executable, "-X", "importtime", "-c", _PROBE, str(path)],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(ROOT),
            timeout=120,
        )
        if out.returncode != 0:
            raise RuntimeError(f"importing functions/{name}/app.py failed:\n{out.stderr[-3000:]}")
        probe = json.loads(out.stdout.strip().splitlines()[-1])
        before = set(probe.pop("before"))
        total_us = 0
        top: list[tuple[float, str]] = []
        for line in out.stderr.splitlines():
            if line == "probe: imports done":
                break
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            _head, cum_us, module = line.split("|", 2)
            if module.startswith("  ") or module.strip() in before:
                continue  # nested (in its parent's cumulative time) or loaded at start-up
            total_us += int(cum_us)
            top.append((int(cum_us) / 1000, module.strip()))
        top.sort(reverse=True)
        result = {"import_ms": total_us / 1000, **probe, "top": [f"{m} {ms:.0f} ms" for ms, m in top[:5]]}
        if best is None or result["import_ms"] < best["import_ms"]:
            best = result
    assert best is not None
    return best


def artefact_sizes(build: bool = False) -> dict[str, Any]:
    """Bytes of each function's ``.aws-sam/build`` directory and of the shared layer."""
    build_dir = ROOT / ".aws-sam" / "build"
    if build:
        subprocess.run([str(ROOT / "infra" / "sam-build.sh")], check=True, cwd=str(ROOT))  # noqa: S603
    if not build_dir.is_dir():
        return {"built": False}
    out: dict[str, Any] = {"built": True}
    for name, logical in [*FUNCTIONS.items(), ("layer", "MailsyncLayer")]:
        d = build_dir / logical
        out[name] = _du(d) if d.is_dir() else None
    out["built_at"] = os.path.getmtime(build_dir)
    return out


def _du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
