# -*- test-case-name: tests.chaos.test_reconnect_storm -*-
"""
Scenario 7: chargers reconnecting at once (CI: 500; C{bench/chaos.py}:
2,000 and more).  All reconnect and boot again, the daemon does not crash,
and chargers connected before keep being answered.
"""

from __future__ import annotations

import pytest_twisted

from tests.chaos.storm_scenario import reconnect_storm

CHARGERS = 500


@pytest_twisted.ensureDeferred
async def test_reconnect_storm_all_back_and_others_answered(tmp_path):
    """Every stormed charger reconnects and boots; the daemon lives; bystanders are answered throughout."""
    result = await reconnect_storm(tmp_path, chargers=CHARGERS, bystanders=3)
    report = result["report"]
    assert result["sim_exit"] == 0, result["sim_stderr"]
    assert report["connections"]["ok"] == CHARGERS and report["connections"]["booted"] == CHARGERS, report["connections"]
    assert report["storm"]["reconnected"] == CHARGERS and report["storm"]["failed"] == 0, report["storm"]
    assert report["calls"]["errors"] == {} and report["calls"]["timeouts"] == 0 and report["calls"]["lost"] == 0
    assert report["ok"] is True
    assert result["alive"], result["log"][-3000:]
    assert result["bystander_errors"] == 0 and result["bystander_calls"] >= 10, result
    assert result["bystander_max_seconds"] < 5.0, result
    assert "Traceback" not in result["log"], result["log"][-3000:]
