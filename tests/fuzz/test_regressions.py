# -*- test-case-name: tests.fuzz.test_regressions -*-
"""
The bugs the fuzzers found, each pinned by the smallest frame that showed
it, over a real WebSocket to a running gateway (embedded store).
"""

from __future__ import annotations

import json

import pytest_twisted

from ocpptw.ocpp.errors import PROPERTY_CONSTRAINT_VIOLATION
from tests.fuzz.support import WireCharger, fresh_id, start_gateway, stop_gateway
from tests.helpers import until

T = "2026-11-24T10:00:00Z"


@pytest_twisted.async_yield_fixture
async def wire(tmp_path):
    service = await start_gateway(str(tmp_path / "data"))
    charger = WireCharger(service.test_port, "REGRESS1")
    await charger.connect(boot=True)
    charger.service = service
    yield charger
    await stop_gateway(service)


async def _call(wire, action, payload):
    answers = await wire.exchange(json.dumps([2, fresh_id(), action, payload]))
    assert len(answers) == 1, answers
    return answers[0]


@pytest_twisted.ensureDeferred
async def test_integers_beyond_64_bits_are_out_of_range(wire):
    """connectorId, meterStart or transactionId beyond 64 bits: PropertyConstraintViolation, not InternalError."""
    cases = [
        ("StartTransaction", {"connectorId": 2**64, "idTag": "A", "meterStart": 0, "timestamp": T}),
        ("StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 10**30, "timestamp": T}),
        ("StopTransaction", {"transactionId": 2**64, "meterStop": 1, "timestamp": T}),
        ("StopTransaction", {"transactionId": 1, "meterStop": -(2**63) - 1, "timestamp": T}),
        ("StatusNotification", {"connectorId": 2**63, "errorCode": "NoError", "status": "Available"}),
    ]
    for action, payload in cases:
        frame = await _call(wire, action, payload)
        assert frame[0] == 4 and frame[2] == PROPERTY_CONSTRAINT_VIOLATION, (action, payload, frame)


@pytest_twisted.ensureDeferred
async def test_time_that_leaves_the_calendar_in_utc_is_refused(wire):
    """9999-12-31T23:59:59-05:00 is year 10000 in UTC: PropertyConstraintViolation, not InternalError."""
    for stamp in ("9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00"):
        frame = await _call(wire, "StopTransaction", {"transactionId": 1, "meterStop": 1, "timestamp": stamp})
        assert frame[0] == 4 and frame[2] == PROPERTY_CONSTRAINT_VIOLATION, frame
    frame = await _call(wire, "StopTransaction", {"transactionId": 1, "meterStop": 1, "timestamp": "9999-12-31T23:59:59Z"})
    assert frame[0] == 3, frame


@pytest_twisted.ensureDeferred
async def test_absurd_meter_reading_is_answered_and_kept_as_sent(wire):
    """A 5,000-digit reading is answered (it used to leave MeterValues unanswered) and kept as the charger's string."""
    sampled = [{"value": "9" * 5000, "unit": "kWh"}, {"value": "1e400"}, {"value": "12.5", "unit": "kWh"}]
    payload = {"connectorId": 1, "meterValue": [{"timestamp": T, "sampledValue": sampled}]}
    frame = await _call(wire, "MeterValues", payload)
    assert frame[0] == 3 and frame[2] == {}, frame


@pytest_twisted.ensureDeferred
async def test_energy_beyond_64_bits_is_an_anomaly_and_the_outbox_drains(wire):
    """meterStart -2**63, meterStop 2**63-1: answered, recorded as an anomaly; the charger's deliveries do not stall."""
    started = await _call(wire, "StartTransaction", {"connectorId": 1, "idTag": "Q", "meterStart": -(2**63), "timestamp": T})
    assert started[0] == 3, started
    tx = started[2]["transactionId"]
    stopped = await _call(wire, "StopTransaction", {"transactionId": tx, "meterStop": 2**63 - 1, "timestamp": T})
    assert stopped[0] == 3, stopped
    outbox = wire.service.outbox
    await until(lambda: outbox.depth() == 0, 10)
    assert outbox.dead_letters() == 0


def test_a_batch_write_that_raises_fails_its_waiters(clock):
    """When the embedded store's batch write raises, every publish of that turn fails instead of hanging."""
    from zope.interface import implementer

    from ocpptw.adapters.local_events import LocalEventPublisher
    from ocpptw.interfaces import IMessageLog
    from tests.helpers import failure_result_of

    @implementer(IMessageLog)
    class Exploding:
        def log_events(self, events):
            raise ValueError("cannot encode")

        def log_frames(self, rows):
            raise ValueError("cannot encode")

        def record_event(self, event):
            raise ValueError("cannot encode")

    publisher = LocalEventPublisher(outbox=None, backend=Exploding(), clock=clock)
    first = publisher.publish({"type": "charging.meterValues", "deviceId": "CP", "data": {}})
    second = publisher.publish({"type": "charger.lastSeen", "deviceId": "CP2", "data": {}})
    clock.advance(0)
    failure_result_of(first, ValueError)
    failure_result_of(second, ValueError)


@pytest_twisted.ensureDeferred
async def test_command_with_a_lone_surrogate_is_invalid_not_500(wire):
    """A command body with a "\\ud800" escape is 400 InvalidPayload (it was a 500 page, or a silent 504)."""
    import treq

    from tests.helpers import bounded

    for action, body in [("DataTransfer", b'{"vendorId":"\\ud800"}'), ("GetConfiguration", b'{"key":["\\udfff"]}')]:
        url = f"http://127.0.0.1:{wire.port}/api/v1/chargers/REGRESS1/commands/{action}?timeout=2"
        response = await bounded(treq.post(url, data=body, persistent=False))
        content = json.loads(await bounded(response.content()))
        assert response.code == 400 and content["error"]["code"] == "InvalidPayload", content
    assert not wire.charger.received.pending


@pytest_twisted.ensureDeferred
async def test_lenient_integer_beyond_64_bits_is_its_violation(tmp_path):
    """Lenient: meterStart 2**64 is tolerated by validation but cannot be stored: PropertyConstraintViolation, not InternalError."""
    service = await start_gateway(str(tmp_path / "data"), OCPP_VALIDATION="lenient")
    try:
        charger = WireCharger(service.test_port, "REGRESS2")
        await charger.connect(boot=True)
        frame = await _call(charger, "StartTransaction", {"connectorId": 1, "idTag": "A", "meterStart": 2**64, "timestamp": T})
        assert frame[0] == 4 and frame[2] == PROPERTY_CONSTRAINT_VIOLATION, frame
    finally:
        await stop_gateway(service)


def test_a_time_beyond_the_utc_calendar_is_not_a_timestamp():
    """parse_iso raises ValueError (which every caller handles), not OverflowError, for a time past year 9999 in UTC."""
    import pytest

    from ocpptw.clock import parse_iso

    for text in ("9999-12-31T23:59:59-05:00", "0001-01-01T00:30:00+01:00"):
        with pytest.raises(ValueError):
            parse_iso(text)
