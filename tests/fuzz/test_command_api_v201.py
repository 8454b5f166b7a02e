# -*- test-case-name: tests.fuzz.test_command_api_v201 -*-
"""
Fuzzing the command API (C{POST /api/v1/chargers/{id}/commands/{Action}})
for an OCPP 2.0.1 charger, as L{tests.fuzz.test_command_api} does for 1.6,
with payloads generated from the official 2.0.1 request schemas
(C{ocpptw/ocpp/schemas_v201}).  The charger is a real WebSocket client that
selected C{ocpp2.0.1} and answers each command the way the case says.

  - A valid payload reaches the charger as that CALL, and its answer comes
    back (200 for a schema-valid CALLRESULT, 502 for one that breaks the
    2.0.1 response schema or a CALLERROR, 504 for silence).
  - An invalid payload gets 400 C{InvalidPayload} and never reaches it.
  - A 1.6-only action gets 400 naming the charger's version, 2.0.1.
  - Never a 500; every answer is documented (C{docs/openapi.yaml}).
"""

from __future__ import annotations

import json

import pytest_twisted
import treq
from hypothesis import given
from hypothesis import strategies as st

from ocpptw.ocpp.actions import SERVER_TO_CHARGER as SERVER_TO_CHARGER_16
from ocpptw.ocpp.actions_v201 import SERVER_TO_CHARGER
from ocpptw.ocpp.errors import OcppError
from ocpptw.ocpp.validation import Validator
from ocpptw.ocpp.versions import CODES_V201, V201
from tests.fuzz.schemas import fuzz_settings, mutated, valid_payload, valid_response
from tests.fuzz.support import start_gateway, stop_gateway
from tests.fuzz.test_command_api import _post, _read, json_values
from tests.fuzz.test_ocpp_wire_v201 import WireStation
from tests.helpers import bounded
from tests.integration.test_gateway import check_documented

_VALIDATOR = Validator(V201)
_ACTIONS = sorted(SERVER_TO_CHARGER)
_ONLY_16 = sorted(SERVER_TO_CHARGER_16 - SERVER_TO_CHARGER)
_TEMPLATE = "/api/v1/chargers/{chargePointId}/commands/{action}"
CHARGER = "FUZZAPI201"


@pytest_twisted.async_yield_fixture(scope="module")
async def api(tmp_path_factory):
    service = await start_gateway(str(tmp_path_factory.mktemp("fuzz-api-201") / "data"))
    charger = WireStation(service.test_port, CHARGER)
    await charger.connect(boot=True)
    yield charger
    await stop_gateway(service)


@st.composite
def commands(draw):
    """(action, body bytes, charger behaviour, charger answer or None, expected status, expected error code)."""
    action = draw(st.sampled_from(_ACTIONS))
    body_kind = draw(st.sampled_from(["valid"] * 4 + ["mutated", "random-json", "not-json"]))
    if body_kind == "valid":
        payload = draw(valid_payload(action, V201))
    elif body_kind == "mutated":
        payload, _, _ = draw(mutated(action, version=V201))
    else:
        payload = draw(json_values)
    body = b"{" if body_kind == "not-json" else json.dumps(payload).encode()
    valid = type(payload) is dict and body_kind != "not-json"
    if valid:
        try:
            _VALIDATOR.check_request(action, payload)
        except OcppError:
            valid = False
    if not valid:
        return action, body, "none", None, 400, "InvalidPayload"
    behaviour = draw(st.sampled_from(["result"] * 3 + ["bad-result", "call-error", "silent"]))
    if behaviour == "result":
        return action, body, behaviour, draw(valid_response(action, V201)), 200, None
    if behaviour == "bad-result":
        answer, code, _ = draw(mutated(action, response=True, version=V201))
        return action, body, behaviour, answer, 502, V201.wire_code(code)
    if behaviour == "call-error":
        code = draw(st.sampled_from(sorted(CODES_V201)))
        return action, body, behaviour, (code, draw(st.text(max_size=30)), {}), 502, code
    return action, body, behaviour, None, 504, "Timeout"


@fuzz_settings(40)
@given(case=commands())
async def test_2_0_1_commands_get_the_documented_answer(api, case):
    """Valid payloads reach the 2.0.1 charger and its answer comes back; invalid ones get 400; never a 500."""
    action, body, behaviour, answer, status, code = case
    charger = await api.ensure()
    silent = behaviour == "silent"
    pending = await _post(api.port, CHARGER, action, body, timeout=0.3 if silent else 10)
    if behaviour not in ("none", "silent"):
        call = await charger.next()
        assert call[0] == 2 and call[2] == action and call[3] == json.loads(body), call
        if behaviour in ("result", "bad-result"):
            charger.send_text(json.dumps([3, call[1], answer]))
        else:
            charger.send_text(json.dumps([4, call[1], answer[0], answer[1], answer[2]]))
    got, content, content_type = await _read(pending)
    check_documented("post", _TEMPLATE, got, content, content_type)
    assert got == status, (action, body[:200], behaviour, got, content[:300])
    decoded = json.loads(content)
    if status == 200:
        assert decoded == {"result": answer}
    else:
        assert decoded["error"]["code"] == code, decoded
    if silent:  # the call did reach the charger; it simply never answered
        call = await charger.next()
        assert call[2] == action
    if status != 200:
        assert decoded["error"]["code"] not in ("FormationViolation", "OccurenceConstraintViolation")
    assert not charger.received.pending, charger.received.pending


@fuzz_settings(20)
@given(action=st.sampled_from(_ONLY_16), data=st.data())
async def test_1_6_only_actions_get_400_naming_the_version(api, action, data):
    """A 1.6-only action to the 2.0.1 charger (a valid 1.6 payload or any object): 400 naming 2.0.1, nothing sent."""
    scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    payload = data.draw(valid_payload(action) | st.dictionaries(st.text(max_size=10), scalars, max_size=4))
    charger = await api.ensure()
    got, content, content_type = await _read(await _post(api.port, CHARGER, action, json.dumps(payload).encode()))
    check_documented("post", _TEMPLATE, got, content, content_type)
    assert got == 400, (action, got, content)
    error = json.loads(content)["error"]
    assert error["code"] == "InvalidPayload" and "2.0.1" in error["description"], error
    assert not charger.received.pending, charger.received.pending


@pytest_twisted.ensureDeferred
async def test_2_0_1_charger_still_served_after_the_fuzzing(api):
    """After every case above, the 2.0.1 charger still gets answers and /health says ok."""
    charger = await api.ensure()
    answer = await charger.call("Heartbeat", {})
    assert answer[0] == 3 and "currentTime" in answer[2], answer
    response = await bounded(treq.get(f"http://127.0.0.1:{api.port}/health", persistent=False))
    assert response.code == 200
    await bounded(response.content())
