# -*- test-case-name: tests.fuzz.test_command_api -*-
"""
Fuzzing the command API (C{POST /api/v1/chargers/{id}/commands/{Action}})
of a running gateway whose test charger answers each command the way the
case says: a valid result, a result that breaks its schema, a CALLERROR, a
malformed frame, or silence.  Every answer is one of the documented
statuses (200/400/404/502/504) with the documented body (C{docs/openapi.yaml}),
never a 500; the status is the one the case calls for; nothing is logged as
an error; the gateway keeps serving.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest_twisted
import treq
from hypothesis import given
from hypothesis import strategies as st

from ocpptw.ocpp.actions import SERVER_TO_CHARGER
from ocpptw.ocpp.errors import CODES, OcppError
from ocpptw.ocpp.validation import Validator
from tests.fuzz.schemas import (
    _set,
    _sites,
    fuzz_settings,
    load_schema,
    mutated,
    valid_payload,
    valid_response,
)
from tests.fuzz.support import WireCharger, start_gateway, stop_gateway
from tests.helpers import bounded
from tests.integration.test_gateway import check_documented

_VALIDATOR = Validator()
_ACTIONS = sorted(SERVER_TO_CHARGER)
_TEMPLATE = "/api/v1/chargers/{chargePointId}/commands/{action}"
CHARGER = "FUZZAPI1"

#: Requests made by this module, for docs/reliability.md.
TALLY = {"requests": 0}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@pytest_twisted.async_yield_fixture(scope="module")
async def api(tmp_path_factory):
    service = await start_gateway(str(tmp_path_factory.mktemp("fuzz-api") / "data"))
    charger = WireCharger(service.test_port, CHARGER)
    await charger.connect(boot=True)
    charger.service = service
    yield charger
    print("\nfuzz tally api:", TALLY)
    await stop_gateway(service)


@st.composite
def commands(draw):
    """(action, body bytes, charger behaviour, charger answer or None, expected status, expected error code)."""
    action = draw(st.sampled_from(_ACTIONS))
    body_kind = draw(st.sampled_from(["valid"] * 4 + ["mutated", "random-json", "not-json", "not-object", "empty", "surrogate"]))
    if body_kind == "surrogate":  # a valid payload whose free-text string holds a lone surrogate escape
        payload = draw(valid_payload(action))
        texts = [p for p, n, _ in _sites(payload, *([load_schema(action)] * 2))
                 if p and n.get("type") == "string" and "enum" not in n and "format" not in n]  # fmt: skip
        if texts:
            payload = _set(payload, draw(st.sampled_from(texts)), "SURROGATE")
            body = json.dumps(payload).replace('"SURROGATE"', '"a\\udc00"').encode()
            return action, body, "none", None, 400, "InvalidPayload"
    if body_kind == "valid":
        payload = draw(valid_payload(action))
        body = json.dumps(payload).encode()
    elif body_kind == "mutated":
        payload, _, _ = draw(mutated(action))
        body = json.dumps(payload).encode()
    elif body_kind == "random-json":
        payload = draw(json_values)
        body = json.dumps(payload).encode()
    elif body_kind == "not-json":
        payload = None
        body = draw(st.sampled_from([b"{", b"NaN", b'{"a": Infinity}', b"\xff\xfe{}", b"{'a': 1}", b"[" * 5000 + b"]" * 5000,
                                     b'{"a":' + b"9" * 5000 + b"}", b"\x00"]))  # fmt: skip
    elif body_kind == "not-object":
        payload = draw(json_values.filter(lambda v: type(v) is not dict))
        body = json.dumps(payload).encode()
    else:
        payload = {}
        body = b""
    valid = type(payload) is dict and body_kind != "not-json"
    if valid:
        try:
            _VALIDATOR.check_request(action, payload)
        except OcppError:
            valid = False
    if not valid:
        return action, body, "none", None, 400, "InvalidPayload"
    behaviour = draw(st.sampled_from(["result"] * 3 + ["bad-result", "call-error", "malformed", "silent"]))
    if behaviour == "result":
        answer = draw(valid_response(action))
        return action, body, behaviour, answer, 200, None
    if behaviour == "bad-result":
        answer, code, _ = draw(mutated(action, response=True))
        return action, body, behaviour, answer, 502, code
    if behaviour == "call-error":
        code = draw(st.sampled_from(sorted(CODES)) | st.text(min_size=1, max_size=30))
        details = draw(st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
        return action, body, behaviour, (code, draw(st.text(max_size=50)), details), 502, code
    if behaviour == "malformed":
        return action, body, behaviour, None, 502, "FormationViolation"
    return action, body, behaviour, None, 504, "Timeout"


async def _post(port, charger_id, action, body, timeout=None):
    path = f"/api/v1/chargers/{quote(charger_id, safe='')}/commands/{quote(action, safe='')}"
    if timeout is not None:
        path += f"?timeout={timeout}"
    TALLY["requests"] += 1
    return treq.post(f"http://127.0.0.1:{port}{path}", data=body, persistent=False)


async def _read(response_d):
    response = await bounded(response_d)
    content = await bounded(response.content())
    content_type = (response.headers.getRawHeaders("content-type") or [""])[0]
    return response.code, content, content_type


@fuzz_settings(150)
@given(case=commands())
async def test_commands_get_the_documented_answer(api, case):
    """Each command gets the status its body and the charger's behaviour call for, with a documented body."""
    action, body, behaviour, answer, status, code = case
    charger = await api.ensure()
    silent = behaviour == "silent"
    pending = await _post(api.port, CHARGER, action, body, timeout=0.3 if silent else 10)
    if behaviour not in ("none", "silent"):
        call = await charger.next()
        assert call[0] == 2 and call[2] == action, call
        if behaviour in ("result", "bad-result"):
            charger.send_text(json.dumps([3, call[1], answer]))
        elif behaviour == "call-error":
            charger.send_text(json.dumps([4, call[1], answer[0], answer[1], answer[2]]))
        else:
            charger.send_text(json.dumps([3, call[1], "not an object"]))
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
    assert not charger.received.pending, charger.received.pending


@fuzz_settings(100)
@given(
    charger_id=st.text(min_size=1, max_size=60).filter(lambda s: s != CHARGER),
    action=st.text(max_size=40) | st.sampled_from(_ACTIONS),
    body=st.binary(max_size=200),
)
async def test_unknown_chargers_and_actions_never_500(api, charger_id, action, body):
    """Any charger id, action name or body bytes: 400 or 404 as documented, never a 500."""
    got, content, content_type = await _read(await _post(api.port, charger_id, action, body))
    if action:
        check_documented("post", _TEMPLATE, got, content, content_type)
    assert got in (400, 404), (charger_id, action, body, got, content)


@pytest_twisted.ensureDeferred
async def test_gateway_still_serves_after_the_fuzzing(api):
    """After every case above, the charger still gets answers and /health says ok."""
    await api.ensure()
    assert await api.exchange('[2,"after-api","Heartbeat",{}]') != []
    response = await bounded(treq.get(f"http://127.0.0.1:{api.port}/health", persistent=False))
    assert response.code == 200
    await bounded(response.content())
