"""
Tests for L{ocpptw.ocpp.router}: every charger-to-server action answered
schema-valid, boot gating, and the hot path answered without Deferreds.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from twisted.internet.defer import Deferred
from zope.interface import implementer

from ocpptw.interfaces import IFrameSink
from ocpptw.ocpp.actions import CHARGER_TO_SERVER
from ocpptw.ocpp.errors import OcppError
from ocpptw.ocpp.router import Router
from ocpptw.ocpp.session import OcppSession
from ocpptw.ocpp.validation import Validator
from tests.helpers import success_result_of
from tests.services.support import Rig

CP = "CP-1"
TS = "2026-09-22T08:00:00Z"

PAYLOADS = {
    "Authorize": {"idTag": "TAG1"},
    "BootNotification": {"chargePointVendor": "Acme", "chargePointModel": "Fast-22"},
    "DataTransfer": {"vendorId": "com.acme", "messageId": "hello", "data": "x"},
    "DiagnosticsStatusNotification": {"status": "Uploaded"},
    "FirmwareStatusNotification": {"status": "Installed"},
    "Heartbeat": {},
    "MeterValues": {"connectorId": 1, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": "1.5", "unit": "kWh"}]}]},
    "StartTransaction": {"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": TS},
    "StatusNotification": {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    "StopTransaction": {"transactionId": 1, "meterStop": 10, "timestamp": TS, "idTag": "TAG1"},
    "SecurityEventNotification": {"type": "StartupOfTheDevice", "timestamp": TS},
    "SignCertificate": {"csr": "-----BEGIN CERTIFICATE REQUEST-----\nMII\n-----END CERTIFICATE REQUEST-----"},
    "LogStatusNotification": {"status": "Uploaded", "requestId": 1},
    "SignedFirmwareStatusNotification": {"status": "Installed", "requestId": 1},
}


@pytest.fixture
def rig(clock):
    r = Rig(clock)
    r.router = Router(r.chargers, r.sessions, clock)
    yield r
    r.close()


def call(rig, action, payload=None):
    result = rig.router(SimpleNamespace(charge_point_id=CP), action, PAYLOADS[action] if payload is None else payload)
    return success_result_of(result) if isinstance(result, Deferred) else result


def test_every_charger_action_gets_a_schema_valid_answer(rig):
    """Each of the 14 charger-to-server actions is answered with a payload valid against its response schema."""
    validator = Validator()
    assert set(rig.router._actions) == CHARGER_TO_SERVER
    call(rig, "BootNotification")
    for action in sorted(CHARGER_TO_SERVER):
        validator.check_request(action, PAYLOADS[action])
        answer = call(rig, action)
        validator.check_response(action, answer)


def test_fixed_answers(rig):
    """Heartbeat, DataTransfer, SignCertificate and notifications answer at once with plain dicts."""
    call(rig, "BootNotification")
    assert rig.router(SimpleNamespace(charge_point_id=CP), "Heartbeat", {}) == {"currentTime": "2026-09-22T00:00:00.000Z"}
    assert call(rig, "DataTransfer") == {"status": "UnknownVendorId"}
    assert call(rig, "SignCertificate") == {"status": "Rejected"}
    assert call(rig, "FirmwareStatusNotification") == {}


def test_boot_gating(rig):
    """Before the boot every other CALL is a SecurityError; after it they are answered."""
    with pytest.raises(OcppError) as raised:
        call(rig, "Heartbeat")
    assert raised.value.code == "SecurityError"
    with pytest.raises(OcppError):
        call(rig, "StartTransaction")
    assert rig.backend.called("start_session") == []
    assert call(rig, "BootNotification")["status"] == "Accepted"
    assert "currentTime" in call(rig, "Heartbeat")


def test_rejected_boot_keeps_the_gate_shut(rig):
    """A disabled charger is Rejected and stays gated."""
    call(rig, "BootNotification")
    rig.store_db.write(lambda c: c.execute("UPDATE chargers SET enabled = 0"))
    assert call(rig, "BootNotification")["status"] == "Rejected"
    with pytest.raises(OcppError):
        call(rig, "Heartbeat")


def test_every_call_counts_as_seen(rig):
    """Every CALL reaches chargers.seen, gated or not."""
    seen = []
    rig.chargers.seen = lambda cp, now: seen.append(cp)
    with pytest.raises(OcppError):
        call(rig, "Heartbeat")
    call(rig, "BootNotification")
    call(rig, "Heartbeat")
    assert seen == [CP, CP, CP]


def test_unknown_action(rig):
    """An action that is not charger-to-server is NotImplemented here (the session refuses it first)."""
    with pytest.raises(OcppError) as raised:
        call(rig, "Reset", {"type": "Hard"})
    assert raised.value.code == "NotImplemented"


def test_authorize_and_transaction_through_the_router(rig):
    """Authorize wraps idTagInfo; start and stop answer as the services do."""
    call(rig, "BootNotification")
    assert call(rig, "Authorize") == {"idTagInfo": {"status": "Accepted"}}
    started = call(rig, "StartTransaction")
    assert started["idTagInfo"] == {"status": "Accepted"}
    stop = dict(PAYLOADS["StopTransaction"], transactionId=started["transactionId"])
    assert call(rig, "StopTransaction", stop) == {"idTagInfo": {"status": "Accepted"}}


@implementer(IFrameSink)
class Sink:
    def __init__(self):
        self.frames = []

    def send_text(self, text):
        self.frames.append(json.loads(text))

    def close(self, code, reason):
        self.frames.append(("close", code))


def test_conversation_over_an_ocpp_session(rig):
    """Frames in, frames out: the router serves a real OcppSession, CALLERROR for the gate included."""
    sink = Sink()
    session = OcppSession(CP, sink, rig.router, rig.clock, Validator())
    session.frame_received(json.dumps([2, "1", "Heartbeat", {}]))
    session.frame_received(json.dumps([2, "2", "BootNotification", PAYLOADS["BootNotification"]]))
    session.frame_received(json.dumps([2, "3", "StartTransaction", PAYLOADS["StartTransaction"]]))
    assert sink.frames[0][:3] == [4, "1", "SecurityError"]
    assert sink.frames[1] == [3, "2", {"status": "Accepted", "currentTime": "2026-09-22T00:00:00.000Z", "interval": 300}]
    assert sink.frames[2][0:2] == [3, "3"] and sink.frames[2][2]["idTagInfo"] == {"status": "Accepted"}
