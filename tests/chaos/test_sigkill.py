# -*- test-case-name: tests.chaos.test_sigkill -*-
"""
Scenario 4: the daemon is killed with SIGKILL after the stops were answered
while the backend was down; started again with the backend back, it
delivers everything it answered exactly once, in order.
"""

from __future__ import annotations

import pytest_twisted

from tests.chaos.backend_scenarios import sigkill


@pytest_twisted.ensureDeferred
async def test_kill_9_then_restart_delivers_everything_once(tmp_path):
    """Everything answered before kill -9 reaches the backend once, in order, after the restart."""
    result = await sigkill(tmp_path, chargers=2, meters=5)
    tally = result["tally"]
    assert tally.problems == [], tally.problems
    assert tally.call_errors == 0
    assert tally.transaction_messages == 2 * (1 + 5 + 1)
    assert result["alive"], result["log"][-3000:]
    backend = result["backend"]
    reconciled = [r for r in backend.delivered_calls("/charging-session/start") if "transactionId" in r.body]
    assert len(reconciled) == 2
    assert backend.refunds_succeeded == 2
    assert "outbox: " in result["log"] and "entries to deliver from before the restart" in result["log"]
    assert "Traceback" not in result["log"], result["log"][-3000:]
