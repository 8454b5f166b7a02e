# -*- test-case-name: tests.chaos.test_rest_session -*-
"""
Scenario 1: a full session through the gateway against a REST backend on
loopback, asserting exactly the calls and bodies of docs/contract.md section 3 (with
section 7's ocppVersion in every charger-scoped body),
with cost and refund right to the cent where float or half-even rounding
would be wrong (0.50/kWh x 250 Wh = 0.125 -> "0.13"; 10.00 prepaid ->
refund "9.87").
"""

from __future__ import annotations

import re

import pytest_twisted

from tests.chaos.charger import (
    LedgerCharger,
    meter_payload,
    start_payload,
    stop_payload,
)
from tests.chaos.ledger import Book, check_backend
from tests.chaos.support import start_gateway, stop_gateway, wait_until

CP = "REST-1"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest_twisted.ensureDeferred
async def test_full_session_makes_exactly_the_contract_calls(tmp_path, backend):
    """Boot to refund: exactly the contract's calls, bodies, and money to the cent."""
    backend.add_id_tag("TAG1", user_id="user-1", prepaid_amount="10.00", price_per_kwh="0.50", currency="EUR")
    gateway = await start_gateway(tmp_path / "data", {"BACKEND_API_URL": backend.url})
    book = Book()
    try:
        c = await LedgerCharger(CP, book, gateway.test_port).connect()
        await c.boot()
        status = {"connectorId": 1, "status": "Preparing", "errorCode": "NoError", "timestamp": "2026-11-24T10:00:00Z"}
        await c.call("StatusNotification", status)
        assert (await c.call("Authorize", {"idTag": "TAG1"}))[2] == {"idTagInfo": {"status": "Accepted"}}
        started = await c.call("StartTransaction", start_payload(1, "TAG1", 1000, "2026-11-24T10:01:00Z"))
        tx = started[2]["transactionId"]
        assert started[2] == {"transactionId": tx, "idTagInfo": {"status": "Accepted"}} and tx < 0x40000000
        assert (await c.call("MeterValues", meter_payload(1, tx, 1100, "2026-11-24T10:02:00Z")))[2] == {}
        stop = stop_payload(tx, 1250, "2026-11-24T10:03:00+01:00", reason="EVDisconnected")
        assert (await c.call("StopTransaction", stop))[0] == 3
        await wait_until(lambda: backend.refunds and gateway.outbox.depth() == 0, 10, what="refund delivered")
    finally:
        await stop_gateway(gateway)

    assert backend.outcomes.count(None) == 0 and all(o in (200, 204, 404) for o in backend.outcomes)
    calls = [(r.method, r.path, r.body) for r in backend.requests if not r.path.endswith("/ocpp-message")]
    last_seen = [body for method, path, body in calls if path.endswith("/last-seen")]
    assert len(last_seen) == 1 and set(last_seen[0]) == {"lastSeen"} and ISO_Z.match(last_seen[0]["lastSeen"])
    # Asked while the charger waits, in the order the charger asked:
    answered_at_once = [("GET", f"/api/charger/by-device/{CP}"), ("POST", "/api/charger/ensure"),
                        ("POST", f"/api/charger/{CP}/authorize"), ("POST", "/api/charging-session/start")]
    assert [call for call in calls if call[:2] in answered_at_once] == [
        ("GET", f"/api/charger/by-device/{CP}", None),
        ("POST", "/api/charger/ensure", {"deviceId": CP, "vendor": "Chaos", "model": "C1", "ocppVersion": "1.6"}),
        ("POST", f"/api/charger/{CP}/authorize", {"idTag": "TAG1", "ocppVersion": "1.6"}),
        ("POST", "/api/charging-session/start",
         {"deviceId": CP, "connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": "2026-11-24T10:01:00Z",
          "ocppVersion": "1.6"}),
    ]
    # Delivered from the outbox, in the order they were caused:
    assert [call for call in calls if call[:2] not in answered_at_once and not call[1].endswith("/last-seen")] == [
        ("PATCH", f"/api/charger/{CP}/status",
         {"connectorId": 1, "status": "Preparing", "errorCode": "NoError", "timestamp": "2026-11-24T10:00:00.000Z",
          "ocppVersion": "1.6"}),
        ("PATCH", "/api/charging-session/session-1/stop",
         {"transactionId": tx, "meterStop": 1250, "energyWh": 250, "stoppedAt": "2026-11-24T09:03:00.000Z",
          "reason": "EVDisconnected", "ocppVersion": "1.6", "cost": "0.13", "refund": "9.87"}),
        ("POST", "/api/wallet/refund",
         {"sessionId": "session-1", "userId": "user-1", "amount": "9.87", "currency": "EUR", "idempotencyKey": "session-1"}),
    ]
    frames = [r.body for r in backend.requests if r.path == f"/api/charger/{CP}/ocpp-message"]
    expected = []
    for s in book.sent:
        expected.append({"direction": "in", "messageType": "CALL", "messageId": s.message_id, "action": s.action,
                         "payload": s.payload, "ocppVersion": "1.6"})
        expected.append({"direction": "out", "messageType": "CALLRESULT", "messageId": s.message_id,
                         "action": s.action, "payload": s.answer[2], "ocppVersion": "1.6"})
    assert [{k: v for k, v in f.items() if k != "timestamp"} for f in frames] == expected
    assert all(ISO_Z.match(f["timestamp"]) for f in frames)
    tally = check_backend(book, backend)
    assert tally.problems == [] and tally.duplicates == 0 and tally.transaction_messages == 3
