"""Smoke version of ``make bench`` (100 mails) so the benchmark cannot rot.

``--quick`` installs nothing and runs (a) raw imapclient, (d) our engine with moto,
(e) our engine with the no-op sink, the no-op delta, the small delta, the cost per
mail and the cold start; mbsync, offlineimap3 and the API phase are skipped.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_bench_quick(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard, not a speed goal (those are `make bench`'s)
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "figure" in proc.stdout and "met?" in proc.stdout  # the table was printed

    data = json.loads(out.read_text())
    for key in ("cpu", "cores", "python", "dovecot", "date"):
        assert data["machine"][key]
    figs = {f["key"]: f for f in data["figures"]}
    for key in (
        "initial.a.100",
        "initial.e_over_a.100",
        "initial.d.100",
        "noop.d.100",
        "noop.commands.100",
        "noop.wire.100",
        "cost.write_requests_per_new_mail",
        "cost.engine_cpu_per_1000",
        "cold.api",
        "cold.api.clients",
        "cost.suggestions_page",
        "cost.suggestions_one",
    ):
        assert key in figs, key

    r = data["sizes"]["100"]
    assert r["a"]["messages"] == 100 and r["d"]["result"]["new"] == 100 and r["e"]["new"] == 100
    assert figs["initial.e_over_a.100"]["ratio"] > 0
    assert figs["initial.d.100"]["ratio"] > 0
    # No-op: the same O(1) commands on every run, no FETCH, under 2 KB on the wire.
    noop = r["noop"]["d"]
    assert len(set(noop["commands_per_run"])) == 1
    assert noop["commands"].count("STATUS") == 3 and not any("FETCH" in c for c in noop["commands"])
    assert noop["wire_bytes"] < 2048
    assert noop["aws"]["s3_puts"] == 0
    # Small delta: 10 new, 10 flag changes, 10 moves, 10 deletions all arrive.
    assert r["delta"]["d"]["result"]["new"] == 10 and r["delta"]["d"]["result"]["purged"] == 10
    # Cost per mail.
    assert figs["cost.write_requests_per_new_mail"]["value"] <= 1.5
    assert r["cost"]["new10"]["aws"]["s3_puts"] == 10
    assert figs["cost.engine_cpu_per_1000"]["value"] > 0
    assert figs["cold.api.clients"]["value"] == 0
    # Suggestions: a page of 50 unassigned mails with their top suggestion reads, never scans.
    sg = r["suggest"]
    assert sg["page"] == 50 and sg["with_suggestion"] > 0
    assert "Scan" not in sg["aws"]["ops"] and sg["aws"]["ddb_write_requests"] == 0
    assert figs["cost.suggestions_page"]["met"] is True
