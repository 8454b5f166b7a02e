# -*- test-case-name: tests.chaos.test_zz_broker_outage -*-
"""
Scenario 5: RabbitMQ stopped in the middle of charging traffic and started
again (CI: about 5 s down; C{bench/chaos.py}: 30 s).  Marked to run after
every other test of the run: it stops the broker they share, and leaves it
running and answering before it ends.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.chaos.broker_scenarios import broker_outage
from tests.chaos.support import amqp_answers


@pytest.mark.broker
@pytest.mark.broker_outage
@pytest_twisted.ensureDeferred
async def test_broker_restart_loses_no_event(tmp_path, expected_errors):
    """No CALLERROR while the broker is down; every event of the outage arrives afterwards, in order, once per id."""
    expected_errors.append(r"RabbitMQ .*retrying with backoff")
    expected_errors.append(r"cannot reach RabbitMQ")
    result = await broker_outage(tmp_path, chargers=3, outage=5.0, interval=0.2)
    tally = result["tally"]
    assert tally.problems == [], tally.problems
    assert tally.call_errors == 0
    assert result["answered_during_outage"] > 3 * 10, result
    assert result["outboxed"] >= result["answered_during_outage"], "events of the outage did not wait in the outbox"
    assert amqp_answers(), "the broker must be left running"
