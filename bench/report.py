"""The table and the JSON of a benchmark run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    key: str
    label: str
    value: float | None
    unit: str = ""
    reference: float | None = None
    reference_label: str = ""
    ratio: float | None = None  # value relative to the reference, oriented so that higher is better
    target: str = ""
    met: bool | None = None  # None: no target


def _fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if abs(v) >= 100 or float(v).is_integer():
        s = f"{v:,.0f}"
    elif abs(v) >= 1:
        s = f"{v:.2f}"
    else:
        s = f"{v:.3f}"
    return f"{s} {unit}".strip()


def table(figures: list[Figure]) -> str:
    rows = [("figure", "value", "reference", "ratio", "target", "met?")]
    for f in figures:
        ref = f"{_fmt(f.reference, f.unit)} ({f.reference_label})" if f.reference is not None else ""
        met = "" if f.met is None else ("yes" if f.met else "NO")
        ratio = f"{_fmt(f.ratio)}x" if f.ratio is not None else ""
        rows.append((f.label, _fmt(f.value, f.unit), ref, ratio, f.target, met))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        lines.append(
            "  ".join(
                c.ljust(w) if i in (0, 4) else c.rjust(w)
                for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ).rstrip()
        )
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine_info() -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from mailsync_local.dovecot import DOVECOT_BIN

        dovecot = subprocess.run(  # noqa: S603
            [DOVECOT_BIN, "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except OSError:
        dovecot = "?"
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) // 1024} MB"
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": mem,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "dovecot": dovecot,
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def write_json(path: Path, data: dict[str, Any], figures: list[Figure]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**data, "figures": [asdict(f) for f in figures]}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    os.replace(tmp, path)
