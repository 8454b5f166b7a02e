# -*- test-case-name: tests.chaos.test_backend_outage -*-
"""
Scenario 2: the backend answers 503 to everything for a window in the
middle of every charger's session (CI: 5 s; C{bench/chaos.py}: 60 s).
"""

from __future__ import annotations

import pytest_twisted

from tests.chaos.backend_scenarios import backend_outage

OUTAGE = 5.0


@pytest_twisted.ensureDeferred
async def test_backend_503_window_loses_nothing(tmp_path, expected_errors):
    """No CALLERROR during a 503 window; afterwards every stop, refund and status arrives once, in order."""
    expected_errors.append(r"backend unreachable .* circuit open")
    result = await backend_outage(tmp_path, chargers=3, outage=OUTAGE, interval=0.2)
    tally = result["tally"]
    assert tally.problems == [], tally.problems
    assert tally.call_errors == 0
    assert tally.transaction_messages >= 3 * 10  # start, many meter values, stop per charger
    assert result["stops"] == 3 and result["refunds"] == 3
    during = [r for r, code in zip(result["backend"].requests, result["backend"].outcomes) if code == 503]
    assert during, "the backend was never asked during the outage: the scenario tested nothing"
