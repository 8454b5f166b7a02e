"""
Tests for the OCPP 2.0.1 handlers (L{ocpptw.ocpp.router_v201},
L{ocpptw.ocpp.transaction_events}) over the version-neutral services, on
the real ledger, outbox and embedded store (docs/contract.md section 7).
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocpptw.ocpp.router_v201 import Router201
from ocpptw.ocpp.validation import Validator
from ocpptw.ocpp.versions import V201
from tests.helpers import failure_result_of, success_result_of
from tests.services.support import Rig

CP = "CS-201"
T0 = "2026-09-22T08:00:00Z"
VALIDATOR = Validator(V201)


class _Session:
    charge_point_id = CP


@pytest.fixture
def rig(clock):
    r = Rig(clock)
    r.router = Router201(r.chargers, r.sessions, clock)
    r.add_tag("TAG1", user_id="user-1", prepaid="10.00")
    answer = call(r, "BootNotification", {"chargingStation": {"vendorName": "V", "model": "M", "serialNumber": "S",
                                                             "modem": {"iccid": "I1", "imsi": "I2"}}, "reason": "PowerUp"})
    assert answer["status"] == "Accepted"
    yield r
    r.close()


def call(rig, action, payload):
    """One CALL through the router, both payloads checked against the 2.0.1 schemas."""
    VALIDATOR.check_request(action, payload)
    answer = rig.router(_Session(), action, payload)
    if not isinstance(answer, dict):
        answer = success_result_of(answer)
    VALIDATOR.check_response(action, answer)
    return answer


def register(wh, context=None, phase=None, unit="Wh", multiplier=None, measurand="Energy.Active.Import.Register"):
    sampled = {"value": wh, "unitOfMeasure": {"unit": unit}}
    if measurand is not None:
        sampled["measurand"] = measurand
    if multiplier is not None:
        sampled["unitOfMeasure"]["multiplier"] = multiplier
    if context:
        sampled["context"] = context
    if phase:
        sampled["phase"] = phase
    return {"timestamp": T0, "sampledValue": [sampled]}


def event(kind, seq, tx="tx-1", token="TAG1", meter=None, reason=None, evse=True, token_type="ISO14443"):
    payload = {"eventType": kind, "timestamp": T0, "triggerReason": "Authorized", "seqNo": seq,
               "transactionInfo": {"transactionId": tx}}
    if reason:
        payload["transactionInfo"]["stoppedReason"] = reason
    if token:
        payload["idToken"] = {"idToken": token, "type": token_type}
    if meter:
        payload["meterValue"] = meter
    if evse:
        payload["evse"] = {"id": 2, "connectorId": 1}
    return payload


def test_boot_and_status_reach_the_backend_in_the_contracts_shape(rig):
    """ensure carries chargingStation's fields, reason and ocppVersion; status carries evseId and 2.0.1's status."""
    [(ensure,)] = rig.backend.called("ensure_charger")
    assert ensure == {"deviceId": CP, "vendor": "V", "model": "M", "serialNumber": "S", "iccid": "I1", "imsi": "I2",
                      "reason": "PowerUp", "ocppVersion": "2.0.1"}
    assert rig.publisher.of("charger.metadataUpdate")[-1] == ensure
    assert call(rig, "StatusNotification", {"timestamp": T0, "connectorStatus": "Faulted", "evseId": 2, "connectorId": 1}) == {}
    rig.retry()
    [(_, body)] = rig.backend.called("update_status")
    assert body == {"evseId": 2, "connectorId": 1, "status": "Faulted", "errorCode": "OtherError",
                    "timestamp": "2026-09-22T08:00:00.000Z", "ocppVersion": "2.0.1"}
    assert rig.publisher.of("charger.statusUpdate")[-1] == {"evseId": 2, "connectorId": 1, "status": "Faulted",
                                                            "errorCode": "OtherError", "online": True}


def test_authorize_maps_id_token_info(rig, clock):
    """idTag = idToken.idToken with its type; expiryDate and parentIdTag become 2.0.1's fields."""
    assert call(rig, "Authorize", {"idToken": {"idToken": "TAG1", "type": "ISO14443"}}) == {"idTokenInfo": {"status": "Accepted"}}
    [(cp, tag, extra)] = rig.backend.called("authorize")
    assert (cp, tag, extra) == (CP, "TAG1", {"extra": {"idTokenType": "ISO14443", "ocppVersion": "2.0.1"}})
    assert call(rig, "Authorize", {"idToken": {"idToken": "", "type": "NoAuthorization"}}) == {"idTokenInfo": {"status": "Accepted"}}
    assert len(rig.backend.called("authorize")) == 1
    from ocpptw.ocpp.model_v201 import id_token_info

    assert id_token_info({"status": "Blocked", "expiryDate": "2026-01-01T00:00:00.000Z", "parentIdTag": "P"}) == {
        "status": "Blocked", "cacheExpiryDateTime": "2026-01-01T00:00:00.000Z",
        "groupIdToken": {"idToken": "P", "type": "Central"}}


def test_whole_transaction_bills_to_the_cent_and_refunds_once(rig):
    """meterStart from the earliest register (before the idToken); Ended stops, bills 6.29, refunds 3.71 once."""
    assert call(rig, "TransactionEvent", event("Started", 0, token=None, meter=[register(1000, "Transaction.Begin")])) == {}
    assert rig.backend.called("start_session") == []
    answer = call(rig, "TransactionEvent", event("Updated", 1, meter=[register(2.5, unit="kWh")]))
    assert answer == {"idTokenInfo": {"status": "Accepted"}}
    [(start,)] = rig.backend.called("start_session")
    assert start == {"deviceId": CP, "connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": T0,
                     "transactionId": "tx-1", "evseId": 2, "ocppVersion": "2.0.1"}
    [started] = rig.publisher.of("charging.started")
    assert started["transactionId"] == "tx-1" and started["evseId"] == 2 and started["meterStart"] == 1000
    ended = call(rig, "TransactionEvent", event("Ended", 2, token=None, reason="EVDisconnected",
                                                meter=[register(13.58, unit="kWh", multiplier=0, context="Transaction.End"),
                                                       register(1, "Sample.Periodic", multiplier=4)]))
    assert ended == {"totalCost": 6.29}
    rig.retry()
    [(session_id, stop)] = rig.backend.called("stop_session")
    assert stop == {"transactionId": "tx-1", "meterStop": 13580, "energyWh": 12580, "stoppedAt": "2026-09-22T08:00:00.000Z",
                    "reason": "EVDisconnected", "ocppVersion": "2.0.1", "cost": "6.29", "refund": "3.71"}
    [stopped] = rig.publisher.of("charging.stopped")
    assert stopped["transactionId"] == "tx-1" and stopped["evseId"] == 2 and stopped["cost"] == "6.29"
    assert rig.sql("SELECT amount FROM wallet_ledger") == [("3.71",)]
    samples = [s for e in rig.publisher.of("charging.meterValues") for s in e["samples"]]
    assert [s["value"] for s in samples][:2] == [1000, 2500]
    assert all(e["transactionId"] == "tx-1" and e["evseId"] == 2 for e in rig.publisher.of("charging.meterValues"))
    # the Ended event again (same seqNo), and once more after it left memory: nothing twice
    assert call(rig, "TransactionEvent", event("Ended", 2, token=None, reason="EVDisconnected")) == {"totalCost": 6.29}
    rig.router.transactions._open.clear()
    again = call(rig, "TransactionEvent", event("Ended", 2, token=None, reason="EVDisconnected"))
    rig.retry()
    assert again.get("totalCost") == 6.29
    assert len(rig.backend.called("stop_session")) == 1 and rig.sql("SELECT count(*) FROM wallet_ledger") == [(1,)]
    assert len(rig.publisher.of("charging.stopped")) == 1


def test_repeated_seq_no_causes_nothing_twice(rig):
    """The same (transactionId, seqNo) gets the first answer; no second start or meter event."""
    first = call(rig, "TransactionEvent", event("Started", 0, meter=[register(500)]))
    events = len(rig.publisher.events)
    assert call(rig, "TransactionEvent", event("Started", 0, meter=[register(500)])) == first
    assert len(rig.publisher.events) == events and len(rig.backend.called("start_session")) == 1


@pytest.mark.parametrize("failing", ["record_progress", "meter_samples"])
def test_an_update_not_made_durable_is_handled_as_new_when_repeated(rig, monkeypatch, failing, fail_on_logged_errors):
    """
    When an Updated event's progress row or its meter values cannot be
    written, the event fails (no answer is sent) and the charger's repeat
    is handled as new: its meter values go out once, then repeats cause
    nothing.
    """
    from twisted.internet.defer import fail

    from ocpptw.interfaces import StorageFull
    from ocpptw.ocpp.errors import OcppError

    call(rig, "TransactionEvent", event("Started", 0, meter=[register(500)]))
    real = getattr(rig.sessions, failing)
    monkeypatch.setattr(rig.sessions, failing, lambda *a, **k: fail(StorageFull("disk full")))
    updated = event("Updated", 1, token=None, evse=False, meter=[register(600)])
    failure = failure_result_of(rig.router(_Session(), "TransactionEvent", updated), OcppError)
    assert failure.value.code == "InternalError"
    [logged] = fail_on_logged_errors
    assert "refuses writes" in logged["log_format"]
    fail_on_logged_errors.clear()
    monkeypatch.setattr(rig.sessions, failing, real)
    meter_events = len(rig.publisher.of("charging.meterValues"))
    assert call(rig, "TransactionEvent", updated) == {}
    assert call(rig, "TransactionEvent", updated) == {}
    assert len(rig.publisher.of("charging.meterValues")) == meter_events + 1


def test_no_id_token_no_backend_session(rig):
    """A transaction that never carries an idToken (or only NoAuthorization) starts and stops nothing."""
    call(rig, "TransactionEvent", event("Started", 0, token=None, meter=[register(10)]))
    assert call(rig, "TransactionEvent", event("Updated", 1, token="", token_type="NoAuthorization")) == {}
    assert call(rig, "TransactionEvent", event("Ended", 2, token=None, meter=[register(20)])) == {}
    rig.retry()
    assert rig.backend.called("start_session") == [] and rig.backend.called("stop_session") == []
    assert rig.publisher.of("charging.started") == [] and len(rig.publisher.of("charging.meterValues")) == 2


def test_ended_with_the_first_id_token_starts_then_stops(rig):
    """One Ended event carrying the idToken: started and stopped (its register is both meterStart and meterStop)."""
    answer = call(rig, "TransactionEvent", event("Ended", 0, tx="123", meter=[register(700)]))
    assert answer == {"idTokenInfo": {"status": "Accepted"}, "totalCost": 0.0}
    rig.retry()
    [(start,)] = rig.backend.called("start_session")
    assert start["transactionId"] == "123" and start["meterStart"] == 700
    [(_, stop)] = rig.backend.called("stop_session")
    assert stop["transactionId"] == "123" and stop["energyWh"] == 0 and stop["reason"] == "Local"


def test_register_choice(rig):
    """Phase readings and other measurands are no register; Transaction.Begin wins among several."""
    from ocpptw.ocpp.model_v201 import sampled_values
    from ocpptw.services.meter import energy_registers as registers

    meter = [register(5, phase="L1"), register(7, measurand="Power.Active.Import"), register(9, measurand=None),
             register(3, unit="kWh", multiplier=-3)]
    assert registers(sampled_values(meter)) == [(9, None), (3, None)]
    call(rig, "TransactionEvent", event("Started", 0, meter=[register(40), register(30, "Transaction.Begin")]))
    [(start,)] = rig.backend.called("start_session")
    assert start["meterStart"] == 30


def test_backend_down_during_the_transaction(rig):
    """Never a CALLERROR: answered Accepted, no totalCost; reconciled later, billed once, refunded once."""
    rig.backend.mode = "down"
    assert call(rig, "TransactionEvent", event("Started", 0, meter=[register(1000)])) == {"idTokenInfo": {"status": "Accepted"}}
    assert call(rig, "TransactionEvent", event("Ended", 1, token=None, meter=[register(13580)])) == {}
    assert rig.outbox.depth() >= 2
    rig.backend.mode = "up"
    rig.retry(30)
    assert rig.outbox.depth() == 0
    assert rig.sql("SELECT stopped, energy_wh, cost, refund FROM sessions") == [(1, 12580, "6.29", "3.71")]
    assert rig.sql("SELECT amount FROM wallet_ledger") == [("3.71",)]
    [(active_body,)] = [c for c in rig.backend.called("start_session")][-1:]
    assert active_body["transactionId"] == "tx-1"


def test_string_id_that_looks_numeric_survives_the_disk(rig):
    """The ledger keys 2.0.1 ids as strings: "42" read back from disk is "42", never 42."""
    call(rig, "TransactionEvent", event("Started", 0, tx="42", meter=[register(0)]))
    rig.ledger._transactions.clear()
    tx = success_result_of(rig.ledger.lookup(CP, "42"))
    assert tx is not None and tx.transaction_id == "42"
    assert success_result_of(rig.ledger.lookup(CP, 42)) is None


@pytest.mark.parametrize("action", ["DataTransfer", "SignCertificate", "Get15118EVCertificate", "GetCertificateStatus",
                                    "NotifyEVChargingNeeds", "NotifyEVChargingSchedule", "NotifyReport", "NotifyEvent",
                                    "SecurityEventNotification", "ReservationStatusUpdate", "MeterValues", "Heartbeat"])
def test_other_actions_answered_schema_valid(rig, action):
    from ocpptw.ocpp.examples import minimal_request

    call(rig, action, minimal_request("2.0.1", action))


def test_every_charger_to_csms_action_has_a_handler(rig):
    from ocpptw.ocpp.actions_v201 import CHARGER_TO_SERVER

    assert rig.router.actions() == CHARGER_TO_SERVER


def test_not_accepted_gets_security_error(clock):
    from ocpptw.ocpp.errors import OcppError

    r = Rig(clock)
    r.router = Router201(r.chargers, r.sessions, clock)
    try:
        with pytest.raises(OcppError) as caught:
            r.router(_Session(), "Heartbeat", {})
        assert caught.value.code == "SecurityError"
    finally:
        r.close()


def now(rig):
    return datetime.fromtimestamp(rig.clock.seconds(), tz=timezone.utc)


def _decimal_text_by_decimal(value, multiplier):
    """The reference: every value through L{Decimal}, as the fast path must agree with."""
    from decimal import Decimal, InvalidOperation

    try:
        number = Decimal(repr(value) if isinstance(value, float) else str(value))
        if multiplier:
            number = number.scaleb(int(multiplier))
        return format(number.normalize(), "f") if number == number.to_integral_value() else format(number, "f")
    except (InvalidOperation, ValueError, TypeError, OverflowError):
        return str(value)


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.text(max_size=5)),
    st.one_of(st.none(), st.integers(-5, 5)),
)
def test_sampled_value_text_is_the_decimal_text(value, multiplier):
    """decimal_text's fast path for plain ints and floats gives the same text as Decimal."""
    from ocpptw.ocpp.model_v201 import decimal_text

    assert decimal_text(value, multiplier) == _decimal_text_by_decimal(value, multiplier)


def test_sampled_value_text_examples():
    from ocpptw.ocpp.model_v201 import decimal_text

    assert [decimal_text(v) for v in (1234, 1234.0, 1234.5, -0.0, 1e16, 10**30)] == [
        "1234", "1234", "1234.5", "-0", "10000000000000000", "1000000000000000000000000000000"
    ]
    assert decimal_text(1.5, 3) == "1500"


def test_an_absurd_multiplier_is_kept_as_sent_not_expanded():
    """A multiplier beyond 10^30 is not applied: no million-digit text from a small frame."""
    from ocpptw.ocpp.model_v201 import decimal_text

    assert decimal_text(1, 999999) == "1E999999"
    assert decimal_text(1, 10**6) == "1E1000000"
    assert len(decimal_text(1.5e308, 30)) < 400
    assert decimal_text(1, 30) == "1" + "0" * 30
