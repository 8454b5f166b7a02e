"""
Tests for L{ocpptw.services.sessions}: docs/contract.md section 5's session
guarantees, on the real ledger, outbox and embedded store.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from zope.interface.verify import verifyObject

from ocpptw.interfaces import ISessionService
from ocpptw.store.ledger import GATEWAY_ID_BASE
from tests.helpers import failure_result_of, no_result, success_result_of
from tests.services.support import Rig

CP = "CP-1"
T0 = "2026-09-22T08:00:00Z"


@pytest.fixture
def rig(clock):
    r = Rig(clock)
    success_result_of(r.chargers.boot(CP, {"chargePointVendor": "V", "chargePointModel": "M"}, now(r)))
    r.add_tag("TAG1", user_id="user-1", prepaid="10.00")
    r.publisher.events.clear()
    yield r
    r.close()


def now(rig):
    return datetime.fromtimestamp(rig.clock.seconds(), tz=timezone.utc)


def start(rig, meter_start=1000, id_tag="TAG1", timestamp=T0, connector=1):
    payload = {"connectorId": connector, "idTag": id_tag, "meterStart": meter_start, "timestamp": timestamp}
    return rig.sessions.start(CP, payload, now(rig))


def stop(rig, transaction_id, meter_stop=13580, **extra):
    payload = {"transactionId": transaction_id, "meterStop": meter_stop, "timestamp": "2026-09-22T09:00:00Z", **extra}
    return rig.sessions.stop(CP, payload, now(rig))


def test_provides_interface(rig):
    """SessionService provides ISessionService."""
    verifyObject(ISessionService, rig.sessions)


def test_full_session_bills_to_the_cent(rig):
    """Start, meter values, stop: 12,580 Wh at 0.50 costs 6.29, refunds 3.71 of 10.00, once."""
    answer = success_result_of(start(rig))
    tx = answer["transactionId"]
    assert answer["idTagInfo"] == {"status": "Accepted"}
    assert tx < GATEWAY_ID_BASE
    [started] = rig.publisher.of("charging.started")
    session_id = started["sessionId"]
    assert started == {"sessionId": session_id, "transactionId": tx, "connectorId": 1, "idTag": "TAG1", "meterStart": 1000}

    meter = {"connectorId": 1, "transactionId": tx,
             "meterValue": [{"timestamp": "2026-09-22T08:30:00Z", "sampledValue": [{"value": "6.5", "unit": "kWh"}]}]}
    assert success_result_of(rig.sessions.meter_values(CP, meter, now(rig))) is None
    [values] = rig.publisher.of("charging.meterValues")
    assert values["transactionId"] == tx and values["samples"][0]["value"] == 6500

    assert success_result_of(stop(rig, tx, reason="EVDisconnected")) == {}
    [stopped] = rig.publisher.of("charging.stopped")
    assert stopped == {"sessionId": session_id, "transactionId": tx, "meterStop": 13580, "energyWh": 12580,
                       "cost": "6.29", "refund": "3.71", "reason": "EVDisconnected"}
    assert rig.sql("SELECT stopped, energy_wh, cost, refund, reason FROM sessions WHERE session_id = ?", session_id) == [
        (1, 12580, "6.29", "3.71", "EVDisconnected")
    ]
    assert rig.sql("SELECT idempotency_key, user_id, amount, currency FROM wallet_ledger") == [
        (session_id, "user-1", "3.71", "EUR")
    ]
    assert rig.outbox.depth() == 0


def test_repeated_stop_stops_and_refunds_nothing_twice(rig):
    """A StopTransaction sent again is answered and changes nothing."""
    tx = success_result_of(start(rig))["transactionId"]
    success_result_of(stop(rig, tx))
    refunds = len(rig.backend.called("refund"))
    stops = len(rig.backend.called("stop_session"))
    assert success_result_of(stop(rig, tx, meter_stop=20000, idTag="TAG1")) == {"idTagInfo": {"status": "Accepted"}}
    assert len(rig.backend.called("stop_session")) == stops == 1
    assert len(rig.backend.called("refund")) == refunds == 1
    assert len(rig.publisher.of("charging.stopped")) == 1


def test_repeated_start_gets_the_same_transaction(rig):
    """Same connector, idTag, timestamp and meterStart: same transactionId, one backend session."""
    first = success_result_of(start(rig))
    again = success_result_of(start(rig))
    assert again == first
    assert len(rig.backend.called("start_session")) == 1
    other = success_result_of(start(rig, meter_start=1001))
    assert other["transactionId"] != first["transactionId"]


def test_repeat_while_the_first_start_waits(rig):
    """A repeat that arrives while the backend is still thinking gets the same answer."""
    rig.backend.mode = "hang"
    first, again = start(rig), start(rig)
    no_result(first)
    no_result(again)
    assert len(rig.backend.called("start_session")) == 1
    rig.clock.advance(5)
    assert success_result_of(first) == success_result_of(again)


def test_stop_minus_one_unknown_and_transaction_data(rig):
    """-1 and unknown ids are answered; transactionData still becomes meter values."""
    data = [{"timestamp": "2026-09-22T08:59:00Z", "sampledValue": [{"value": "13.58", "unit": "kWh", "context": "Transaction.End"}]}]
    assert success_result_of(stop(rig, -1, transactionData=data)) == {}
    assert success_result_of(stop(rig, 424242, idTag="TAG1")) == {"idTagInfo": {"status": "Accepted"}}
    assert rig.publisher.of("charging.meterValues")[0]["samples"][0] == {
        "timestamp": "2026-09-22T08:59:00.000Z", "measurand": "Energy.Active.Import.Register",
        "value": 13580, "unit": "Wh", "context": "Transaction.End",
    }
    assert rig.publisher.of("charging.stopped") == []
    assert rig.backend.called("stop_session") == []
    assert rig.outbox.depth() == 0  # looked up in active-sessions, nothing there
    assert success_result_of(stop(rig, 424242)) == {}  # a repeat of the unknown one
    assert len(rig.backend.called("active_sessions")) == 1


def test_unknown_transaction_found_at_the_backend(rig):
    """A stop for a session this gateway never saw start is found through active-sessions and billed."""
    tx = success_result_of(start(rig))["transactionId"]
    success_result_of(rig.ledger.forget(success_result_of(rig.ledger.lookup(CP, tx))))  # as if started through another gateway
    success_result_of(stop(rig, tx))
    assert rig.sql("SELECT stopped, cost, refund FROM sessions WHERE transaction_id = ?", tx) == [(1, "6.29", "3.71")]
    assert rig.sql("SELECT amount FROM wallet_ledger") == [("3.71",)]


def test_meter_running_backwards(rig, fail_on_logged_errors):
    """meterStop below meterStart: answered, energy 0, cost 0, whole prepayment refunded."""
    tx = success_result_of(start(rig, meter_start=5000))["transactionId"]
    assert success_result_of(stop(rig, tx, meter_stop=4000)) == {}
    [stopped] = rig.publisher.of("charging.stopped")
    assert (stopped["energyWh"], stopped["cost"], stopped["refund"]) == (0, "0.00", "10.00")
    assert rig.sql("SELECT energy_wh, cost FROM sessions WHERE transaction_id = ?", tx) == [(0, "0.00")]


def test_backend_down_at_start_then_reconciled_in_order(rig):
    """Past the deadline the gateway assigns the id; later the start, stop and refund reach the backend once, in order."""
    rig.backend.mode = "hang"
    d = start(rig)
    no_result(d)
    rig.clock.advance(5)
    answer = success_result_of(d)
    tx = answer["transactionId"]
    assert answer["idTagInfo"] == {"status": "Accepted"}
    assert tx == GATEWAY_ID_BASE | (3 << 20) | 1
    [started] = rig.publisher.of("charging.started")
    assert started["sessionId"] is None and started["transactionId"] == tx

    # still down: the charger stops; the stop is answered at once
    rig.backend.mode = "down"
    assert success_result_of(stop(rig, tx, reason="Local")) == {}
    [stopped] = rig.publisher.of("charging.stopped")
    assert stopped["sessionId"] is None and stopped["energyWh"] == 12580 and "cost" not in stopped
    assert rig.outbox.depth() == 2

    rig.backend.mode = "up"
    rig.retry(90)  # the start delivery that hung is cancelled after 60 s, then retried
    assert rig.outbox.depth() == 0
    delivered = [name for name, _ in rig.backend.calls if name in ("start_session", "stop_session", "refund")]
    assert delivered[-3:] == ["start_session", "stop_session", "refund"]
    assert rig.backend.called("start_session")[-1][0]["transactionId"] == tx
    rows = rig.sql("SELECT transaction_id, stopped, energy_wh, cost, refund FROM sessions")
    assert rows == [(tx, 1, 12580, "6.29", "3.71")]
    assert rig.sql("SELECT amount FROM wallet_ledger") == [("3.71",)]
    assert success_result_of(rig.ledger.lookup(CP, tx)).session_id is not None

    # the charger repeats its stop after a reconnect: nothing happens twice
    success_result_of(stop(rig, tx))
    rig.retry(5)
    assert len([n for n, _ in rig.backend.calls if n == "refund"]) == 1
    assert rig.sql("SELECT count(*) FROM wallet_ledger") == [(1,)]


def test_gateway_ids_never_reused_after_restart(rig):
    """The counter is durable: a new ledger on the same database continues after the last id."""
    rig.backend.mode = "down"
    first = success_result_of(start(rig))["transactionId"]
    second = success_result_of(start(rig, meter_start=2000))["transactionId"]
    assert second == first + 1
    from ocpptw.store.ledger import Ledger

    reopened = Ledger(rig.state, rig.clock)
    success_result_of(reopened.start())
    assert reopened.assign_transaction_id(3) == second + 1
    assert reopened.cached_start((CP, 1, "TAG1", T0, 1000)).transaction_id == first
    rig.backend.mode = "up"
    rig.retry(10)


def test_blocked_tag_starts_nothing(rig):
    """A Blocked idTag is answered Blocked; no charging.started, and its stop finds no session."""
    rig.add_tag("BAD", status="Blocked")
    answer = success_result_of(start(rig, id_tag="BAD"))
    assert answer["idTagInfo"] == {"status": "Blocked"}
    assert rig.publisher.of("charging.started") == []
    success_result_of(stop(rig, answer["transactionId"]))
    assert rig.backend.called("stop_session") == []
    assert rig.backend.called("active_sessions") == []
    assert rig.publisher.of("charging.stopped") == []
    assert rig.outbox.depth() == 0


def test_refused_start_answers_invalid(rig):
    """A backend that refuses the start (4xx) gets the charger Invalid; nothing is reconciled or stopped."""
    rig.backend.modes["start_session"] = "reject"
    answer = success_result_of(start(rig))
    assert answer["idTagInfo"] == {"status": "Invalid"}
    assert answer["transactionId"] >= GATEWAY_ID_BASE
    assert rig.publisher.of("charging.started") == []
    assert rig.outbox.depth() == 0
    assert success_result_of(stop(rig, answer["transactionId"])) == {}
    assert rig.outbox.depth() == 0
    assert rig.backend.called("stop_session") == []
    assert rig.publisher.of("charging.stopped") == []
    assert len(rig.backend.called("start_session")) == 1


def test_start_waits_for_durable_events(rig):
    """StartTransaction is answered only once its event is durable."""
    rig.publisher.hold = True
    d = start(rig)
    no_result(d)
    rig.publisher.release()
    assert success_result_of(d)["idTagInfo"]["status"] == "Accepted"


def test_stop_not_durable_is_not_a_repeat(rig):
    """A stop whose writes failed is stopped for real when the charger retries."""
    from twisted.internet.defer import fail

    tx = success_result_of(start(rig))["transactionId"]
    real = rig.publisher.publish
    rig.publisher.publish = lambda event: fail(OSError("disk full"))
    failure_result_of(stop(rig, tx), OSError)
    rig.publisher.publish = real
    assert success_result_of(stop(rig, tx)) == {}
    assert len(rig.publisher.of("charging.stopped")) == 1


def test_authorize_from_cache_while_backend_down(rig):
    """Authorize answers from the backend, then from the cache within the TTL, then Invalid."""
    assert success_result_of(rig.sessions.authorize(CP, "TAG1", now(rig))) == {"status": "Accepted"}
    rig.backend.mode = "down"
    assert success_result_of(rig.sessions.authorize(CP, "TAG1", now(rig))) == {"status": "Accepted"}
    assert success_result_of(rig.sessions.authorize(CP, "OTHER", now(rig))) == {"status": "Invalid"}
    rig.clock.advance(3601)
    assert success_result_of(rig.sessions.authorize(CP, "TAG1", now(rig))) == {"status": "Invalid"}


def test_authorize_deadline(rig):
    """A backend that does not answer Authorize in time is treated as down."""
    rig.backend.mode = "hang"
    d = rig.sessions.authorize(CP, "TAG1", now(rig))
    no_result(d)
    rig.clock.advance(5)
    assert success_result_of(d) == {"status": "Invalid"}


def test_cached_accepted_tag_past_its_expiry(rig):
    """A cached Accepted whose expiryDate passed is Expired."""
    success_result_of(rig.ledger.auth_put("OLD", {"status": "Accepted", "expiryDate": "2026-09-21T00:00:00.000Z"}))
    rig.backend.mode = "down"
    assert success_result_of(rig.sessions.authorize(CP, "OLD", now(rig)))["status"] == "Expired"
