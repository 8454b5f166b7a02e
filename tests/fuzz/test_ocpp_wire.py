# -*- test-case-name: tests.fuzz.test_ocpp_wire -*-
"""
Fuzzing a running gateway over a real WebSocket, one gateway per module and
one booted charger: whatever a charger sends, each frame gets exactly the
contract's answer (a schema-valid CALLRESULT, the CALLERROR code named for
the fault, or nothing for an unknown MessageTypeId or an unmatched answer),
the connection stays usable (a Heartbeat is answered after every case) and
nothing is logged as an error (the autouse fixture).

Valid StartTransaction and StopTransaction payloads reach the real embedded
store.  L{tests.ocpp.test_session_properties} covers the session alone on
a clock; this module covers the whole path: socket, Autobahn, session,
router, services, stores, events.
"""

from __future__ import annotations

import json

import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st

from ocpptw.ocpp.actions import CHARGER_TO_SERVER, SERVER_TO_CHARGER
from ocpptw.ocpp.errors import (
    FORMATION_VIOLATION,
    NOT_IMPLEMENTED,
    NOT_SUPPORTED,
    PROTOCOL_ERROR,
)
from ocpptw.ocpp.validation import Validator
from tests.fuzz.schemas import fuzz_settings, mutated, valid_payload
from tests.fuzz.support import WireCharger, fresh_id, start_gateway, stop_gateway

_VALIDATOR = Validator()
_INBOUND = sorted(CHARGER_TO_SERVER)
_OUTBOUND_ONLY = sorted(SERVER_TO_CHARGER - CHARGER_TO_SERVER)

#: Frames sent and cases run by this module, for docs/reliability.md.
TALLY = {"frames": 0, "cases": 0}


@pytest_twisted.async_yield_fixture(scope="module")
async def wire(tmp_path_factory):
    service = await start_gateway(str(tmp_path_factory.mktemp("fuzz-wire") / "data"))
    charger = WireCharger(service.test_port, "FUZZWIRE1")
    await charger.connect(boot=True)
    charger.service = service
    yield charger
    print("\nfuzz tally wire:", TALLY)
    await stop_gateway(service)


async def _one(wire, frame, binary=False):
    TALLY["cases"] += 1
    TALLY["frames"] += 2
    return await wire.exchange(frame, binary)


def _assert_error(answers, message_id, code):
    assert len(answers) == 1, answers
    frame = answers[0]
    assert frame[0] == 4 and frame[1] == message_id and frame[2] == code, frame
    assert type(frame[3]) is str and type(frame[4]) is dict, frame


# -- payloads -----------------------------------------------------------------------------------


@fuzz_settings(300)
@given(action=st.sampled_from(_INBOUND), data=st.data())
async def test_valid_payloads_get_a_schema_valid_result(wire, action, data):
    """A schema-valid CALL of every charger-to-server action gets a CALLRESULT that passes its schema."""
    payload = data.draw(valid_payload(action))
    message_id = fresh_id()
    answers = await _one(wire, json.dumps([2, message_id, action, payload]))
    assert len(answers) == 1 and answers[0][:2] == [3, message_id], (payload, answers)
    _VALIDATOR.check_response(action, answers[0][2])


@fuzz_settings(300)
@given(action=st.sampled_from(_INBOUND), data=st.data())
async def test_one_fault_gets_its_code(wire, action, data):
    """A payload with one fault gets the CALLERROR code named for that fault, and the socket stays usable."""
    payload, code, what = data.draw(mutated(action))
    message_id = fresh_id()
    answers = await _one(wire, json.dumps([2, message_id, action, payload]))
    assert len(answers) == 1, (what, answers)
    assert answers[0][:3] == [4, message_id, code], (what, answers)


# -- frames ------------------------------------------------------------------------------------

_JUNK_VALUES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=10), st.lists(st.integers(), max_size=2), st.just({}))  # fmt: skip


@st.composite
def bad_frames(draw):
    """A frame that breaks OCPP-J framing, and what must come back: (text, id or None, code or None)."""
    kind = draw(st.sampled_from([
        "unknown-type", "type-not-int", "id-too-long", "id-empty", "id-not-string", "call-length",
        "payload-not-object", "action-not-string", "unknown-action", "wrong-direction", "unmatched-result",
        "unmatched-error", "not-json", "not-array", "nan", "huge-number", "many-digits", "deep", "very-deep",
        "lone-surrogate", "duplicate-id",
    ]))  # fmt: skip
    mid = fresh_id()
    heartbeat = [2, mid, "Heartbeat", {}]
    if kind == "unknown-type":
        kind_id = draw(st.integers().filter(lambda n: n not in (2, 3, 4)))
        return json.dumps([kind_id, mid, "Heartbeat", {}]), None, None
    if kind == "type-not-int":
        first = draw(st.sampled_from(["2", 2.0, None, True, [2], {"2": 2}, 3.5]))
        return json.dumps([first, mid, "Heartbeat", {}]), "-1", FORMATION_VIOLATION
    if kind == "id-too-long":
        long_id = mid + "x" * draw(st.integers(min_value=37 - len(mid), max_value=5000))
        return json.dumps([2, long_id, "Heartbeat", {}]), "-1", FORMATION_VIOLATION
    if kind == "id-empty":
        return json.dumps([2, "", "Heartbeat", {}]), "-1", FORMATION_VIOLATION
    if kind == "id-not-string":
        return json.dumps([2, draw(_JUNK_VALUES.filter(lambda v: type(v) is not str)), "Heartbeat", {}]), "-1", FORMATION_VIOLATION
    if kind == "call-length":
        frame = draw(st.sampled_from([heartbeat[:3], heartbeat + [{}], heartbeat[:2]]))
        return json.dumps(frame), mid, FORMATION_VIOLATION
    if kind == "payload-not-object":
        return json.dumps([2, mid, "Heartbeat", draw(_JUNK_VALUES.filter(lambda v: type(v) is not dict))]), mid, FORMATION_VIOLATION
    if kind == "action-not-string":
        return json.dumps([2, mid, draw(_JUNK_VALUES.filter(lambda v: type(v) is not str)), {}]), mid, FORMATION_VIOLATION
    if kind == "unknown-action":
        action = draw(st.text(max_size=80).filter(lambda a: a not in CHARGER_TO_SERVER | SERVER_TO_CHARGER))
        return json.dumps([2, mid, action, {}]), mid, NOT_IMPLEMENTED
    if kind == "wrong-direction":
        return json.dumps([2, mid, draw(st.sampled_from(_OUTBOUND_ONLY)), {}]), mid, NOT_SUPPORTED
    if kind == "unmatched-result":
        return json.dumps([3, mid, {"status": "Accepted"}]), None, None
    if kind == "unmatched-error":
        return json.dumps([4, mid, "InternalError", "x", {}]), None, None
    if kind == "not-json":
        text = draw(st.sampled_from(["", " ", "[", "[2,", "{]", "[2, 'a', 'Heartbeat', {}]", "\ufeff[]", "[2,\"a\",]",
                                     "nul", "[2,\"x\",\"Heartbeat\",{}]]", "\x00"]))  # fmt: skip
        return text + draw(st.text(max_size=3).filter(lambda t: not t.strip())), "-1", FORMATION_VIOLATION
    if kind == "not-array":
        return json.dumps(draw(_JUNK_VALUES.filter(lambda v: type(v) is not list) | st.just([]))), "-1", FORMATION_VIOLATION
    if kind == "nan":
        constant = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        return f'[2,"{mid}","Heartbeat",{{"x":{constant}}}]', "-1", FORMATION_VIOLATION
    if kind == "huge-number":
        return f'[2,"{mid}","StatusNotification",{{"connectorId":1e999,"errorCode":"NoError","status":"Available"}}]', "-1", FORMATION_VIOLATION
    if kind == "many-digits":
        digits = "9" * draw(st.integers(min_value=4301, max_value=100_000))
        return f'[2,"{mid}","StatusNotification",{{"connectorId":{digits},"errorCode":"NoError","status":"Available"}}]', "-1", FORMATION_VIOLATION
    if kind == "deep":
        depth = draw(st.integers(min_value=33, max_value=900))
        return f'[2,"{mid}","Heartbeat",{{"x":{"[" * depth}{"]" * depth}}}]', mid, FORMATION_VIOLATION
    if kind == "very-deep":
        depth = draw(st.integers(min_value=5_000, max_value=200_000))
        return "[" * depth + "]" * depth, "-1", FORMATION_VIOLATION
    if kind == "lone-surrogate":
        escape = draw(st.sampled_from(["\\ud800", "\\udfff", "\\udbff x", "\\udc00\\ud800"]))
        return f'[2,"{mid}","Authorize",{{"idTag":"{escape}"}}]', mid, FORMATION_VIOLATION
    # duplicate-id: the first use is answered, the second refused
    return json.dumps(heartbeat) + "\x00dup", mid, PROTOCOL_ERROR


@fuzz_settings(300)
@given(case=bad_frames())
async def test_bad_frames_get_the_contract_answer(wire, case):
    """Framing faults get FormationViolation (id -1 when unreadable), NotImplemented, NotSupported, or nothing."""
    text, message_id, code = case
    if text.endswith("\x00dup"):
        text = text[: -len("\x00dup")]
        first = await _one(wire, text)
        assert len(first) == 1 and first[0][:2] == [3, message_id], first
    answers = await _one(wire, text)
    if code is None:
        assert answers == [], (text[:200], answers)
    else:
        _assert_error(answers, message_id, code)


@fuzz_settings(100)
@given(payload=st.binary(max_size=2000))
async def test_binary_frames_are_refused(wire, payload):
    """A binary frame (OCPP-J is text only) gets [4, "-1", FormationViolation] and the socket stays open."""
    _assert_error(await _one(wire, payload, binary=True), "-1", FORMATION_VIOLATION)


# -- frames that end the connection ----------------------------------------------------------------


@fuzz_settings(25)
@given(
    prefix=st.sampled_from([b'[2,"u1","Authorize",{"idTag":"', b"", b"[2,"]),
    bad=st.sampled_from([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\x80"]),
)
async def test_invalid_utf8_closes_and_the_charger_comes_back(wire, prefix, bad):
    """Invalid UTF-8 in a text frame closes the socket (1007); the charger reconnects and is served without a new boot."""
    charger = await wire.ensure()
    charger.sendMessage(prefix + bad + b'"}]', isBinary=False)
    code, _ = await charger.wait_closed()
    assert code == 1007, code
    assert await wire.exchange('[2,"' + fresh_id() + '","Heartbeat",{}]') != []  # reconnected, answered


@pytest_twisted.ensureDeferred
async def test_oversized_frame_closes_with_1009(wire):
    """A frame over OCPP_MAX_FRAME_BYTES closes the socket with 1009; the charger reconnects and is served."""
    charger = await wire.ensure()
    big = json.dumps([2, fresh_id(), "DataTransfer", {"vendorId": "x", "data": "y" * (1024 * 1024 + 10)}])
    charger.send_text(big)
    code, _ = await charger.wait_closed()
    assert code == 1009, code
    answers = await wire.exchange(json.dumps([2, fresh_id(), "Heartbeat", {}]))
    assert len(answers) == 1 and answers[0][0] == 3, answers


# -- whole sessions ---------------------------------------------------------------------------------


@fuzz_settings(100)
@given(data=st.data())
async def test_sessions_with_any_valid_readings_start_and_stop(wire, data):
    """Any valid StartTransaction, then any valid StopTransaction of its transactionId (twice): all answered."""
    start = data.draw(valid_payload("StartTransaction"))
    first = await _one(wire, json.dumps([2, fresh_id(), "StartTransaction", start]))
    assert len(first) == 1 and first[0][0] == 3, (start, first)
    stop = data.draw(valid_payload("StopTransaction"))
    stop["transactionId"] = first[0][2]["transactionId"]
    for _ in range(2):
        answers = await _one(wire, json.dumps([2, fresh_id(), "StopTransaction", stop]))
        assert len(answers) == 1 and answers[0][0] == 3, (start, stop, answers)
        _VALIDATOR.check_response("StopTransaction", answers[0][2])


@pytest_twisted.ensureDeferred
async def test_everything_fuzzed_was_delivered(wire):
    """After the fuzzing, the outbox drains: no delivery is stuck retrying, none is parked."""
    from tests.helpers import until

    outbox = wire.service.outbox
    await until(lambda: outbox.depth() == 0, 30)
    assert outbox.dead_letters() == 0
