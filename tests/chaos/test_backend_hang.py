# -*- test-case-name: tests.chaos.test_backend_hang -*-
"""
Scenario 3: the backend hangs, or refuses connections, while sessions
start, charge and stop.  StartTransaction is answered within
C{BACKEND_START_DEADLINE} with a gateway-assigned transactionId, and the
session is reconciled afterwards with that id.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.chaos.backend_scenarios import backend_unreachable
from tests.chaos.ledger import GATEWAY_ASSIGNED

DEADLINE = 1.0


@pytest.mark.parametrize("mode", ["hang", "refuse"])
@pytest_twisted.ensureDeferred
async def test_start_answered_alone_then_reconciled(tmp_path, expected_errors, mode):
    """A hanging or refusing backend: starts answered in time with our own ids, reconciled, stopped and refunded once."""
    expected_errors.append(r"backend unreachable .* circuit open")
    result = await backend_unreachable(tmp_path, mode, chargers=2, fault=3.0, start_deadline=DEADLINE)
    tally = result["tally"]
    assert tally.problems == [], tally.problems
    assert tally.call_errors == 0
    assert result["assigned"], result["start_answers"]
    assert result["slowest_start"] < DEADLINE + 1.0, result["start_answers"]
    if mode == "refuse":
        assert result["slowest_start"] < DEADLINE, "a refused connection needs no waiting"
    txs = sorted(tx for tx, _ in result["start_answers"])
    assert sorted(r.body["transactionId"] for r in result["reconciled"]) == txs
    assert all(tx >= GATEWAY_ASSIGNED for tx in txs)
    backend = result["backend"]
    assert sorted(s["transactionId"] for s in backend.sessions.values() if s["stop"] is not None) == txs
    assert backend.refunds_succeeded == 2
