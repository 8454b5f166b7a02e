# -*- test-case-name: tests.fuzz.test_ocpp_wire_v201 -*-
"""
Fuzzing a running gateway over a real WebSocket with OCPP 2.0.1 frames built
from the official 2.0.1 schemas, as L{tests.fuzz.test_ocpp_wire} does for
1.6: a schema-valid CALL of every charger-to-CSMS action gets a CALLRESULT
valid against its 2.0.1 schema; a payload with one fault gets the code named
for it, in 2.0.1's spelling; broken framing gets RpcFrameworkError,
FormatViolation or MessageTypeNotSupported; the connection stays usable and
nothing is logged as an error (the autouse fixture).
"""

from __future__ import annotations

import json

import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st

from ocpptw.ocpp.actions_v201 import CHARGER_TO_SERVER, SERVER_TO_CHARGER
from ocpptw.ocpp.validation import Validator
from ocpptw.ocpp.versions import CODES_V201, V201
from tests.fuzz.schemas import fuzz_settings, mutated, valid_payload
from tests.fuzz.support import WireCharger, fresh_id, start_gateway, stop_gateway
from tests.wsclient import connect_charger

_VALIDATOR = Validator(V201)
_INBOUND = sorted(CHARGER_TO_SERVER)
_OUTBOUND_ONLY = sorted(SERVER_TO_CHARGER - CHARGER_TO_SERVER)
BOOT_201 = {"chargingStation": {"vendorName": "Fuzz", "model": "F2"}, "reason": "PowerUp"}


class WireStation(WireCharger):
    """L{WireCharger} speaking OCPP 2.0.1."""

    async def connect(self, boot: bool = False):
        self.charger = await connect_charger(self.port, f"/ocpp/{self.identity}", ["ocpp2.0.1"])
        assert self.charger.subprotocol == "ocpp2.0.1", self.charger.close_reason
        self.connections += 1
        if boot:
            answer = await self.charger.call("BootNotification", BOOT_201)
            assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer
        return self.charger


@pytest_twisted.async_yield_fixture(scope="module")
async def wire(tmp_path_factory):
    service = await start_gateway(str(tmp_path_factory.mktemp("fuzz-wire-201") / "data"))
    charger = WireStation(service.test_port, "FUZZ201")
    await charger.connect(boot=True)
    yield charger
    await stop_gateway(service)


@fuzz_settings(100)
@given(action=st.sampled_from(_INBOUND), data=st.data())
async def test_valid_2_0_1_payloads_get_a_schema_valid_result(wire, action, data):
    """A schema-valid CALL of every charger-to-CSMS action gets a CALLRESULT that passes its 2.0.1 schema."""
    payload = data.draw(valid_payload(action, V201))
    message_id = fresh_id()
    answers = await wire.exchange(json.dumps([2, message_id, action, payload]))
    assert len(answers) == 1 and answers[0][:2] == [3, message_id], (payload, answers)
    _VALIDATOR.check_response(action, answers[0][2])


@fuzz_settings(100)
@given(action=st.sampled_from(_INBOUND), data=st.data())
async def test_one_fault_gets_its_2_0_1_code(wire, action, data):
    """A payload with one fault gets the code named for it, spelled as 2.0.1 spells it."""
    payload, code, what = data.draw(mutated(action, version=V201))
    message_id = fresh_id()
    answers = await wire.exchange(json.dumps([2, message_id, action, payload]))
    assert len(answers) == 1, (what, answers)
    assert answers[0][:3] == [4, message_id, V201.wire_code(code)], (what, answers)
    assert answers[0][2] in CODES_V201


@st.composite
def bad_frames(draw):
    """A frame that breaks OCPP-J framing, the id and the 2.0.1 code it must get back."""
    mid = fresh_id()
    kind = draw(st.sampled_from(["unknown-type", "no-id", "long-id", "call-length", "payload", "action", "junk",
                                 "unknown-action", "wrong-direction"]))
    if kind == "unknown-type":
        return json.dumps([draw(st.integers().filter(lambda n: n not in (2, 3, 4))), mid, "Heartbeat", {}]), mid, "MessageTypeNotSupported"
    if kind == "no-id":
        return json.dumps([2, draw(st.one_of(st.none(), st.integers(), st.just(""))), "Heartbeat", {}]), "-1", "RpcFrameworkError"
    if kind == "long-id":
        return json.dumps([2, "x" * draw(st.integers(37, 400)), "Heartbeat", {}]), "-1", "RpcFrameworkError"
    if kind == "call-length":
        return json.dumps(draw(st.sampled_from([[2, mid, "Heartbeat"], [2, mid, "Heartbeat", {}, {}]]))), mid, "RpcFrameworkError"
    if kind == "payload":
        return json.dumps([2, mid, "Heartbeat", draw(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.just([])))]), mid, "FormatViolation"
    if kind == "action":
        return json.dumps([2, mid, draw(st.one_of(st.none(), st.integers(), st.just([]))), {}]), mid, "RpcFrameworkError"
    if kind == "junk":
        return draw(st.sampled_from(["", "[", "{}", "null", "\"x\"", "[2,", "nope"])), "-1", "RpcFrameworkError"
    if kind == "unknown-action":
        action = draw(st.text(max_size=40).filter(lambda a: a not in CHARGER_TO_SERVER | SERVER_TO_CHARGER))
        return json.dumps([2, mid, action, {}]), mid, "NotImplemented"
    return json.dumps([2, mid, draw(st.sampled_from(_OUTBOUND_ONLY)), {}]), mid, "NotSupported"


@fuzz_settings(100)
@given(case=bad_frames())
async def test_bad_frames_get_2_0_1_codes(wire, case):
    text, message_id, code = case
    answers = await wire.exchange(text)
    assert len(answers) == 1 and answers[0][:3] == [4, message_id, code], (text, answers)
    assert type(answers[0][4]) is dict
