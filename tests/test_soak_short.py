# -*- test-case-name: tests.test_soak_short -*-
"""
The soak's short form, for CI: C{bench/soak.py} against a real
C{twistd -n ocpp} with 200 simulated chargers for about 20 seconds and five
samples.  It checks correctness, not speed: the server never exits, every
call is answered, and once the chargers leave the open file descriptors
and the connected count return to their baseline.  The long form is
C{.venv/bin/python bench/soak.py} (30 minutes, 2,000 chargers).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

SOAK = Path(__file__).resolve().parents[1] / "bench" / "soak.py"


def _soak_module():
    spec = importlib.util.spec_from_file_location("soak", SOAK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_short_soak_leaves_nothing_behind(tmp_path):
    """200 chargers for 20 s: no crash, every call answered, descriptors and connections back to baseline."""
    soak = _soak_module()
    report = soak.run_soak(
        seconds=20, interval=3, chargers=200, rate=100, processes=1, connect_rate=500, workdir=tmp_path
    )
    print(soak.table(report))
    assert not report["crashed"], report.get("server_exit")
    assert report["server_exit"] == 0
    assert len(report["samples"]) >= 4
    assert all(row["connected"] == 200 for row in report["samples"]), report["samples"]
    assert sum(row["answers"] for row in report["samples"]) > 1000
    calls = report["sim"]["calls"]
    assert calls["lost"] == 0 and calls["timeouts"] == 0 and not calls["errors"], calls
    after, baseline = report["after"], report["baseline"]
    assert after["connected"] == 0
    assert after["fds"] <= baseline["fds"], (after["fds"], baseline["fds"])
    # what the flags say about descriptors must hold; RSS over 20 s says nothing about an hour
    assert not [flag for flag in report["flags"] if "descriptors" in flag or "exited" in flag], report["flags"]
