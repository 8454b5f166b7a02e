"""
OCPP 2.0.1 TransactionEvents across a restart of the gateway (docs/contract.md
section 7): the ledger keeps each transaction's progress in C{gateway.sqlite},
so a repeated (transactionId, seqNo) causes nothing twice and C{meterStart}
still comes from the earliest register; the replayed start of a 1.6 or 2.0.1
transaction carries C{ocppVersion}.  The gateway's file is closed and opened
again; the backend and the broker are outside the gateway and keep what they
got.
"""

from __future__ import annotations

import pytest

from ocpptw.ocpp import transaction_events
from ocpptw.ocpp.router import Router
from ocpptw.ocpp.router_v201 import Router201
from ocpptw.services.delivery import START_SESSION
from tests.helpers import success_result_of
from tests.ocpp.test_transaction_events import CP, T0, call, event, register
from tests.services.support import Rig


class _Session16:
    charge_point_id = "CP-16"


@pytest.fixture
def rig(clock, tmp_path):
    r = Rig(clock, state_path=tmp_path / "gateway.sqlite")
    r.add_tag("TAG1", user_id="user-1", prepaid="10.00")
    r.router = Router201(r.chargers, r.sessions, clock)
    boot = {"chargingStation": {"vendorName": "V", "model": "M"}, "reason": "PowerUp"}
    assert call(r, "BootNotification", boot)["status"] == "Accepted"
    yield r
    r.close()


def restart(rig):
    rig.restart()
    rig.router = Router201(rig.chargers, rig.sessions, rig.clock)


def meter_events(rig):
    return len(rig.publisher.of("charging.meterValues"))


def charging_events(rig):
    return [e for e in rig.publisher.events if e["type"].startswith("charging.")]


def test_repeated_seq_no_after_a_restart_causes_nothing(rig):
    """The Started event repeated after a restart gets the first answer: no second start, no second meter event."""
    first = call(rig, "TransactionEvent", event("Started", 0, meter=[register(1000, "Transaction.Begin")]))
    assert first == {"idTokenInfo": {"status": "Accepted"}}
    published = charging_events(rig)
    assert [e["type"] for e in published] == ["charging.meterValues", "charging.started"]
    restart(rig)
    assert call(rig, "TransactionEvent", event("Started", 0, meter=[register(1000, "Transaction.Begin")])) == first
    assert charging_events(rig) == published
    assert len(rig.backend.called("start_session")) == 1
    # the next seqNo is new: its meter values go out
    call(rig, "TransactionEvent", event("Updated", 1, token=None, meter=[register(1500)]))
    assert meter_events(rig) == 2


def test_meter_start_from_the_earliest_register_after_a_restart(rig):
    """A register sent before the restart, with no idToken yet, is the meterStart of the session started after it."""
    assert call(rig, "TransactionEvent", event("Started", 0, token=None, meter=[register(1000, "Transaction.Begin")])) == {}
    restart(rig)
    call(rig, "TransactionEvent", event("Updated", 1, meter=[register(2500)]))
    [(start,)] = rig.backend.called("start_session")
    assert start["meterStart"] == 1000 and start["evseId"] == 2 and start["ocppVersion"] == "2.0.1"


def test_repeated_ended_after_a_restart_gets_the_same_total_cost_once(rig):
    """The Ended event repeated after a restart: the same totalCost, one stop, one refund."""
    call(rig, "TransactionEvent", event("Started", 0, meter=[register(1000, "Transaction.Begin")]))
    ended = event("Ended", 1, token=None, reason="EVDisconnected", meter=[register(13580, "Transaction.End")])
    assert call(rig, "TransactionEvent", ended) == {"totalCost": 6.29}
    rig.retry()
    restart(rig)
    assert call(rig, "TransactionEvent", ended) == {"totalCost": 6.29}
    rig.retry()
    assert len(rig.backend.called("stop_session")) == 1
    assert rig.sql("SELECT count(*) FROM wallet_ledger") == [(1,)]
    assert len(rig.publisher.of("charging.stopped")) == 1


def test_answers_kept_per_transaction_are_bounded(rig):
    """A transaction keeps the answers of its last MAX_SEQ seqNos, in memory and on disk."""
    for seq in range(transaction_events.MAX_SEQ + 20):
        call(rig, "TransactionEvent", event("Updated", seq, token=None))
    saved = success_result_of(rig.ledger.progress(CP, "tx-1"))
    assert saved["seen"] == list(range(20, transaction_events.MAX_SEQ + 20))
    assert saved["answered"] == []  # no idToken, not ended: every answer was empty


def test_replayed_starts_carry_ocpp_version_after_a_restart(rig):
    """
    A start whose outbox entry was lost in a crash is replayed from the
    ledger when its stop is delivered: after a restart it still carries
    ocppVersion (1.6 here; a 2.0.1 one also its evseId).
    """
    rig.backend.mode = "down"
    router = Router(rig.chargers, rig.sessions, rig.clock)
    rig.router(_Session16(), "BootNotification", {"chargingStation": {"vendorName": "V", "model": "M"}, "reason": "PowerUp"})
    rig.chargers.is_accepted("CP-16") or success_result_of(rig.ledger.remember_charger("CP-16", {}, True))
    started = success_result_of(router(_Session16(), "StartTransaction", {"connectorId": 1, "idTag": "TAG1", "meterStart": 0,
                                                                          "timestamp": T0}))
    assert started["idTagInfo"]["status"] == "Accepted"
    v201 = call(rig, "TransactionEvent", event("Started", 0, tx="tx-2"))
    assert v201 == {"idTokenInfo": {"status": "Accepted"}}
    # the crash: the reconciling starts never reached the outbox
    success_result_of(rig.state.write(lambda conn: conn.execute("DELETE FROM outbox WHERE operation = ?", (START_SESSION,))))
    restart(rig)
    rig.backend.mode = "up"
    router = Router(rig.chargers, rig.sessions, rig.clock)
    success_result_of(router(_Session16(), "StopTransaction", {"transactionId": started["transactionId"], "meterStop": 1000,
                                                               "timestamp": T0}))
    call(rig, "TransactionEvent", event("Ended", 1, tx="tx-2", token=None))
    rig.retry()
    starts = {body["transactionId"]: body for (body,) in rig.backend.called("start_session") if "transactionId" in body}
    assert starts[started["transactionId"]]["ocppVersion"] == "1.6"
    assert starts["tx-2"]["ocppVersion"] == "2.0.1" and starts["tx-2"]["evseId"] == 2
    assert len(rig.backend.called("stop_session")) == 2
