# -*- test-case-name: tests.chaos.test_backend_outage_v201 -*-
"""
The backend answers 503 to everything while an OCPP 2.0.1 station runs its
transaction (docs/contract.md sections 5 and 7): never a CALLERROR, Started answered
Accepted, Ended answered without totalCost (the price is not known); once
the backend is back the outbox starts the session with the station's string
transactionId, stops it billed to the cent and refunds once.
"""

from __future__ import annotations

import json

import pytest_twisted

from tests.chaos.support import start_backend, start_gateway, stop_gateway, wait_until
from tests.wsclient import connect_charger

T0 = "2026-12-04T10:00:00Z"


def register(wh, context):
    return [{"timestamp": T0, "sampledValue": [{"value": wh, "context": context, "measurand": "Energy.Active.Import.Register",
                                                "unitOfMeasure": {"unit": "Wh"}}]}]


@pytest_twisted.ensureDeferred
async def test_backend_down_during_a_2_0_1_transaction(tmp_path, expected_errors):
    expected_errors.append(r"backend unreachable .* circuit open")
    backend, url = start_backend(price_per_kwh="0.50")
    backend.add_id_tag("TAG201", user_id="user-1", prepaid_amount="10.00", price_per_kwh="0.50", currency="EUR")
    gateway = await start_gateway(tmp_path / "data", {"BACKEND_API_URL": url})
    try:
        charger = await connect_charger(gateway.test_port, "/ocpp/OUT-201", ["ocpp2.0.1"])
        boot = await charger.call("BootNotification", {"chargingStation": {"vendorName": "V", "model": "M"}, "reason": "PowerUp"})
        assert boot[2]["status"] == "Accepted"
        backend.fail_with(503)
        answers = []
        tx = {"transactionId": "out-201-1"}
        token = {"idToken": "TAG201", "type": "ISO14443"}
        events = [
            {"eventType": "Started", "timestamp": T0, "triggerReason": "Authorized", "seqNo": 0, "transactionInfo": tx,
             "idToken": token, "evse": {"id": 1, "connectorId": 1}, "meterValue": register(1000, "Transaction.Begin")},
            {"eventType": "Updated", "timestamp": T0, "triggerReason": "MeterValuePeriodic", "seqNo": 1, "transactionInfo": tx,
             "meterValue": register(5000, "Sample.Periodic")},
            {"eventType": "Ended", "timestamp": T0, "triggerReason": "StopAuthorized", "seqNo": 2,
             "transactionInfo": dict(tx, stoppedReason="Local"), "meterValue": register(13580, "Transaction.End")},
        ]
        for event in events + events[-1:]:  # the Ended event comes twice
            answers.append(await charger.call("TransactionEvent", event))
        assert all(a[0] == 3 for a in answers), answers
        assert answers[0][2] == {"idTokenInfo": {"status": "Accepted"}}
        assert answers[2][2] == answers[3][2] == {}
        assert (await charger.call("MeterValues", {"evseId": 1, "meterValue": register(13580, "Sample.Periodic")}))[0] == 3
        backend.clear_faults()
        await wait_until(lambda: backend.refunds_succeeded and gateway.outbox.depth() == 0, 30, what="refund delivered")
        stops = backend.delivered_calls("/stop")
        assert len(stops) == 1
        stop = stops[0].body
        assert (stop["transactionId"], stop["energyWh"], stop["cost"], stop["refund"], stop["ocppVersion"]) == (
            "out-201-1", 12580, "6.29", "3.71", "2.0.1")
        starts = backend.delivered_calls("/charging-session/start")
        assert {s.body["transactionId"] for s in starts} == {"out-201-1"}
        assert backend.refunds_succeeded == 1
        [refund] = backend.refunds.values()
        assert json.loads(json.dumps(refund))["amount"] == "3.71"
    finally:
        await stop_gateway(gateway)
        await backend.stop()
