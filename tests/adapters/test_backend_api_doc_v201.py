# -*- test-case-name: tests.adapters.test_backend_api_doc_v201 -*-
"""
The REST backend contract for OCPP 2.0.1 chargers (docs/contract.md section 7): an
OCPP 2.0.1 session driven through the real services and L{HttpBackend}
against the test backend sends only bodies that C{docs/backend-api.yaml}
documents, each carrying C{ocppVersion}, with the station's string
transactionId and evseId; it is billed to the cent and refunded once, also
when every event is sent twice.
"""

from __future__ import annotations

import fastjsonschema
from treq.testing import RequestTraversalAgent

from ocpptw.adapters.backend_http import HttpBackend
from ocpptw.ocpp.router_v201 import Router201
from ocpptw.services.chargers import ChargerService
from ocpptw.services.delivery import register_deliveries
from ocpptw.services.sessions import SessionService
from ocpptw.services.wallet import WalletService
from ocpptw.store import ledger as ledger_module
from ocpptw.store import outbox as outbox_module
from ocpptw.store.ledger import Ledger
from ocpptw.store.sqlite import InlineDatabase
from ocpptw.testing.backend import FakeBackend
from tests.adapters.test_backend_api_doc import _match, operations  # noqa: F401 (fixture)
from tests.helpers import success_result_of
from tests.services.support import EPOCH, RecordingPublisher

CP = "CS 201/A"
T0 = "2026-12-04T10:00:00Z"


class _Session:
    charge_point_id = CP


def _answer(d):
    return d if isinstance(d, dict) else success_result_of(d)


def test_a_2_0_1_session_sends_documented_bodies_and_bills_once(operations, clock):  # noqa: F811
    clock.advance(EPOCH)
    fake = FakeBackend(clock=clock, price_per_kwh="0.50")
    fake.add_id_tag("TAG1", user_id="user-1", prepaid_amount="10.00")
    backend = HttpBackend("http://backend.invalid", clock, agent=RequestTraversalAgent(fake))
    state = InlineDatabase(schema=outbox_module.SCHEMA + ledger_module.SCHEMA)
    outbox = outbox_module.Outbox(state, clock, max_age=86400.0, initial_delay=1.0, max_delay=8.0)
    ledger = Ledger(state, clock)
    publisher = RecordingPublisher()
    wallet = WalletService(backend)
    chargers = ChargerService(backend, outbox, publisher, ledger, clock)
    sessions = SessionService(backend, outbox, publisher, ledger, clock)
    register_deliveries(outbox, backend, ledger, wallet)
    ledger.start()
    outbox.start()
    router = Router201(chargers, sessions, clock)
    try:
        boot = {"chargingStation": {"vendorName": "V", "model": "M", "serialNumber": "S", "firmwareVersion": "F",
                                    "modem": {"iccid": "I", "imsi": "M"}}, "reason": "FirmwareUpdate"}
        assert _answer(router(_Session(), "BootNotification", boot))["status"] == "Accepted"
        router(_Session(), "StatusNotification", {"timestamp": T0, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1})
        assert _answer(router(_Session(), "Authorize", {"idToken": {"idToken": "TAG1", "type": "ISO14443"}})) == {
            "idTokenInfo": {"status": "Accepted"}}
        meter = lambda wh: [{"timestamp": T0, "sampledValue": [{"value": wh, "unitOfMeasure": {"unit": "kWh", "multiplier": 0}}]}]  # noqa: E731
        events = [
            {"eventType": "Started", "timestamp": T0, "triggerReason": "Authorized", "seqNo": 0, "evse": {"id": 1, "connectorId": 1},
             "transactionInfo": {"transactionId": "7f3a-1"}, "idToken": {"idToken": "TAG1", "type": "ISO14443"}, "meterValue": meter(1)},
            {"eventType": "Ended", "timestamp": T0, "triggerReason": "StopAuthorized", "seqNo": 1,
             "transactionInfo": {"transactionId": "7f3a-1", "stoppedReason": "Remote"}, "meterValue": meter(13.58)},
        ]
        answers = [_answer(router(_Session(), "TransactionEvent", e)) for e in events + events]
        assert answers[1] == answers[3] == {"totalCost": 6.29}
        for _ in range(30):
            clock.advance(1.0)
        assert outbox.depth() == 0
    finally:
        outbox.stop()
        state.close()

    assert fake.refunds_succeeded == 1
    [refund] = fake.refunds.values()
    assert refund["amount"] == "3.71"
    kinds = set()
    for request in fake.requests:
        template, operation = _match(operations, request.method, request.path)
        kinds.add(operation["operationId"])
        schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
        if schema is None:
            continue
        fastjsonschema.compile(schema)(request.body)
        if operation["operationId"] in ("ensure_charger", "update_status", "authorize", "start_session", "stop_session"):
            assert request.body["ocppVersion"] == "2.0.1", request
    assert {"ensure_charger", "update_status", "authorize", "start_session", "stop_session", "refund"} <= kinds
    [start] = [r.body for r in fake.requests if r.path.endswith("/charging-session/start")]
    assert (start["transactionId"], start["evseId"], start["meterStart"]) == ("7f3a-1", 1, 1000)
    [stop] = [r.body for r in fake.requests if r.path.endswith("/stop")]
    assert (stop["transactionId"], stop["energyWh"], stop["cost"], stop["refund"], stop["reason"]) == (
        "7f3a-1", 12580, "6.29", "3.71", "Remote")
