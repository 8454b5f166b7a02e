"""
A smoke run of the benchmark runner: the quick 2.0.1 scenario, which runs
ocpptw with 2.0.1 chargers and with 1.6 chargers in the same round, writes
its JSON and the 2.0.1 / 1.6 table.  Real processes on loopback, bounded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quick_v201_scenario_beside_1_6(tmp_path):
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--rounds", "1", "--quiet-wait", "0",
         "--servers", "ocpptw", "--scenarios", "closed100-v201", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    [run] = [json.loads(p.read_text()) for p in tmp_path.glob("run-*.json")]
    res = run["results"]["closed100-v201"]
    assert "--ocpp" in res["args"] and "--ocpp" not in res["pair_args"]
    for server in ("ocpptw", "ocpptw-1.6"):
        [report] = res["reports"][server]
        assert report["ok"], report
        assert report["calls"]["answered"] > 100
        assert res["medians"][server]["server CPU µs/call ↓"] > 0
    by_action = res["reports"]["ocpptw"][0]["calls"]["by_action"]
    assert "TransactionEvent" in by_action and "StartTransaction" not in by_action
    assert "2.0.1 against 1.6" in done.stdout
