"""
Tests for L{ocpptw.services.delivery}: how outbox entries reach the backend.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from twisted.internet.defer import succeed
from zope.interface import implementer

from ocpptw.interfaces import IBatchedMessageLog
from ocpptw.services import delivery
from ocpptw.store.ledger import GATEWAY_ID_BASE, Transaction
from tests.helpers import success_result_of
from tests.services.support import Rig

CP = "CP-1"


@pytest.fixture
def rig(clock):
    r = Rig(clock)
    success_result_of(r.store.ensure_charger({"deviceId": CP, "vendor": "V", "model": "M"}))
    yield r
    r.close()


def backend_session(rig, tag="TAG", prepaid="10.00", user="u-1", meter_start=1000):
    rig.add_tag(tag, user_id=user, prepaid=prepaid)
    answer = success_result_of(rig.store.start_session(
        {"deviceId": CP, "connectorId": 1, "idTag": tag, "meterStart": meter_start, "timestamp": "2026-09-22T08:00:00Z"}
    ))
    t = Transaction(cp=CP, transaction_id=answer["transactionId"], connector_id=1, id_tag=tag, meter_start=meter_start,
                    timestamp="2026-09-22T08:00:00Z")
    t.apply_session(answer)
    success_result_of(rig.ledger.record_start(t))
    return t


def stop_entry(t, meter_stop=13580):
    return {"deviceId": CP, "transactionId": t.transaction_id, "meterStop": meter_stop,
            "stoppedAt": "2026-09-22T09:00:00.000Z", "reason": "Local"}


def test_every_operation_registered(rig):
    """Every operation name the services write has a deliverer."""
    assert set(rig.outbox._deliverers) >= set(delivery.OPERATIONS)
    assert len(set(delivery.OPERATIONS)) == 7


def test_stop_bills_and_queues_the_refund(rig):
    """The stop PATCH carries energy, cost and refund; the refund follows as its own entry."""
    t = backend_session(rig)
    success_result_of(rig.outbox.append(CP, delivery.STOP_SESSION, stop_entry(t)))
    [(session_id, body)] = rig.backend.called("stop_session")
    assert session_id == t.session_id
    assert body == {"transactionId": t.transaction_id, "meterStop": 13580, "energyWh": 12580,
                    "stoppedAt": "2026-09-22T09:00:00.000Z", "reason": "Local", "cost": "6.29", "refund": "3.71"}
    assert rig.backend.called("refund") == [
        ({"sessionId": t.session_id, "userId": "u-1", "amount": "3.71", "currency": "EUR", "idempotencyKey": t.session_id},)
    ]
    assert rig.outbox.depth() == 0


def test_no_refund_when_the_cost_eats_the_prepayment(rig):
    """Cost above the prepayment: refund "0.00" in the stop, no refund posted."""
    t = backend_session(rig, prepaid="5.00")
    success_result_of(rig.outbox.append(CP, delivery.STOP_SESSION, stop_entry(t)))
    assert rig.backend.called("stop_session")[0][1]["refund"] == "0.00"
    assert rig.backend.called("refund") == []


def test_refund_without_user_is_not_posted(rig):
    """A backend that gave no userId gets the stop but no refund (logged)."""
    t = backend_session(rig, user=None)
    success_result_of(rig.outbox.append(CP, delivery.STOP_SESSION, stop_entry(t)))
    assert len(rig.backend.called("stop_session")) == 1
    assert rig.backend.called("refund") == []


def test_stop_reconciles_a_start_that_never_reached_the_outbox(rig):
    """A gateway-assigned transaction with no session yet is started at the backend before it is stopped."""
    rig.add_tag("TAG", user_id="u-1", prepaid="10.00")
    t = Transaction(cp=CP, transaction_id=GATEWAY_ID_BASE | 9, connector_id=1, id_tag="TAG", meter_start=1000,
                    timestamp="2026-09-22T08:00:00Z", assigned=True)
    success_result_of(rig.ledger.record_start(t))
    success_result_of(rig.outbox.append(CP, delivery.STOP_SESSION, stop_entry(t)))
    assert rig.backend.called("start_session")[0][0]["transactionId"] == t.transaction_id
    assert rig.sql("SELECT transaction_id, stopped, cost FROM sessions") == [(t.transaction_id, 1, "6.29")]
    assert success_result_of(rig.ledger.lookup(CP, t.transaction_id)).session_id is not None


def test_start_delivery_keeps_the_charger_id(rig):
    """The reconciling start stores the backend's session in the ledger under the charger's id."""
    rig.add_tag("TAG", user_id="u-1", prepaid="10.00")
    t = Transaction(cp=CP, transaction_id=GATEWAY_ID_BASE | 5, connector_id=1, id_tag="TAG", meter_start=0,
                    timestamp="2026-09-22T08:00:00Z", assigned=True)
    success_result_of(rig.ledger.record_start(t))
    success_result_of(rig.outbox.append(CP, delivery.START_SESSION, t.start_body()))
    stored = success_result_of(rig.ledger.lookup(CP, t.transaction_id))
    assert stored.session_id and stored.user_id == "u-1"
    assert (stored.prepaid, stored.price, stored.currency) == (Decimal("10.00"), Decimal("0.50"), "EUR")


def test_stop_refused_by_the_backend_is_parked(rig, fail_on_logged_errors):
    """A 4xx on the stop parks the entry as a dead letter (logged as an error)."""
    t = backend_session(rig)
    rig.backend.modes["stop_session"] = "reject"
    success_result_of(rig.outbox.append(CP, delivery.STOP_SESSION, stop_entry(t)))
    assert rig.outbox.dead_letters() == 1
    assert rig.backend.called("refund") == []
    assert [e["operation"] for e in fail_on_logged_errors] == [delivery.STOP_SESSION]
    fail_on_logged_errors.clear()


def test_plain_forwards(rig):
    """Status, last-seen, messages and ensure go to their backend calls; ensure refreshes the ledger."""
    status = {"connectorId": 1, "status": "Available", "errorCode": "NoError", "timestamp": "2026-09-22T08:00:00.000Z"}
    success_result_of(rig.outbox.append(CP, delivery.UPDATE_STATUS, {"deviceId": CP, "body": status}))
    success_result_of(rig.outbox.append(CP, delivery.UPDATE_LAST_SEEN, {"deviceId": CP, "body": {"lastSeen": "x"}}))
    message = {"direction": "in", "messageType": "CALL", "messageId": "1", "action": "Heartbeat", "payload": {},
               "timestamp": "2026-09-22T08:00:00.000Z"}
    success_result_of(rig.outbox.append(CP, delivery.STORE_MESSAGE, {"deviceId": CP, "body": message}))
    success_result_of(rig.outbox.append(CP, delivery.ENSURE_CHARGER, {"deviceId": CP, "vendor": "V2", "model": "M"}))
    assert rig.backend.called("update_status") == [(CP, status)]
    assert rig.backend.called("update_last_seen") == [(CP, {"lastSeen": "x"})]
    assert rig.backend.called("store_message") == [(CP, message)]
    assert rig.ledger.charger(CP)["vendor"] == "V2"
    assert rig.outbox.depth() == 0


@implementer(IBatchedMessageLog)
class _MessageLog:
    """A backend double with both forms of the message log."""

    def __init__(self):
        self.calls = []

    def store_message(self, device_id, body):
        self.calls.append(("one", device_id, body["messageId"]))
        return succeed(None)

    def store_messages(self, items):
        self.calls.append(("many", [(device_id, body["messageId"]) for device_id, body in items]))
        return succeed(None)


def _message_outbox(clock, backend, message_batch):
    from ocpptw.store.outbox import SCHEMA, Outbox
    from ocpptw.store.sqlite import InlineDatabase

    db = InlineDatabase(":memory:", SCHEMA)
    outbox = Outbox(db, clock, max_age=3600.0)
    delivery.register_deliveries(outbox, backend, ledger=None, wallet=None, message_batch=message_batch)
    return outbox, db


def _append_messages(outbox, ids):
    for message_id in ids:
        body = {"direction": "in", "messageType": "CALL", "messageId": message_id, "timestamp": "2026-09-22T08:00:00.000Z"}
        outbox.append(CP, delivery.STORE_MESSAGE, {"deviceId": CP, "body": body})


def test_messages_one_request_each_by_default(clock):
    """BACKEND_MESSAGE_BATCH 1 (the default) keeps the contract's one request per message."""
    backend = _MessageLog()
    outbox, db = _message_outbox(clock, backend, 1)
    _append_messages(outbox, ["1", "2", "3"])
    success_result_of(outbox.start())
    assert backend.calls == [("one", CP, "1"), ("one", CP, "2"), ("one", CP, "3")]
    outbox.stop()
    db.close()


def test_messages_batched_per_charger(clock):
    """With batching on, a charger's consecutive messages go in requests of at most BACKEND_MESSAGE_BATCH, in order."""
    backend = _MessageLog()
    outbox, db = _message_outbox(clock, backend, 2)
    _append_messages(outbox, ["1", "2", "3", "4", "5"])
    success_result_of(outbox.start())
    clock.advance(delivery.MESSAGE_BATCH_LINGER)  # the last one waited for company
    assert backend.calls == [("many", [(CP, "1"), (CP, "2")]), ("many", [(CP, "3"), (CP, "4")]), ("one", CP, "5")]
    assert outbox.depth() == 0
    outbox.stop()
    db.close()


def test_messages_batch_waits_briefly_for_the_answer(clock):
    """A lone message waits MESSAGE_BATCH_LINGER for more (a CALL and its answer share a request)."""
    backend = _MessageLog()
    outbox, db = _message_outbox(clock, backend, 50)
    success_result_of(outbox.start())
    _append_messages(outbox, ["1"])
    clock.advance(0.01)
    _append_messages(outbox, ["1r"])
    assert backend.calls == []
    clock.advance(delivery.MESSAGE_BATCH_LINGER)
    assert backend.calls == [("many", [(CP, "1"), (CP, "1r")])]
    outbox.stop()
    db.close()


def test_no_batches_without_a_batch_capable_backend(clock):
    """A backend without store_messages gets one request per message whatever the setting."""
    class OneAtATime:
        """Not an IBatchedMessageLog: the contract's one call per message only."""

        def __init__(self):
            self.calls = []

        store_message = _MessageLog.store_message

    backend = OneAtATime()
    outbox, db = _message_outbox(clock, backend, 50)
    _append_messages(outbox, ["1", "2"])
    success_result_of(outbox.start())
    assert backend.calls == [("one", CP, "1"), ("one", CP, "2")]
    outbox.stop()
    db.close()
