# -*- test-case-name: tests.ocpp.test_session_properties -*-
"""
Property tests for L{ocpptw.ocpp.session.OcppSession}: whatever a charger
sends, the session answers with at most one well-formed frame, never raises,
and keeps working.
"""

from __future__ import annotations

import json
from math import isinf

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from ocpptw.ocpp.errors import CODES
from ocpptw.ocpp.frames import usable_id
from ocpptw.ocpp.validation import Validator
from tests.ocpp.support import ANSWERS, BOOT, NOW, make_session

_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    # the autouse log checker is meant to span every example of a test
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

_VALIDATOR = Validator()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5),
    max_leaves=20,
)

_VALID_FRAMES = [
    [2, "b1", "BootNotification", BOOT],
    [2, "s1", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}],
    [2, "m1", "MeterValues", {"connectorId": 1, "transactionId": 5,
                              "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": "10", "unit": "Wh"}]}]}],
    [2, "t1", "StartTransaction", {"connectorId": 1, "idTag": "TAG", "meterStart": 0, "timestamp": NOW}],
    [2, "t2", "StopTransaction", {"transactionId": 5, "meterStop": 10, "timestamp": NOW, "reason": "Local"}],
    [2, "a1", "Authorize", {"idTag": "TAG"}],
    [2, "h1", "Heartbeat", {}],
    [2, "d1", "DataTransfer", {"vendorId": "Acme", "data": "x"}],
    [3, "r1", {"status": "Accepted"}],
    [4, "e1", "NotSupported", "no", {}],
]


@st.composite
def mutated_frames(draw) -> str:
    """A valid frame with one random change to the array or its payload."""
    frame = json.loads(json.dumps(draw(st.sampled_from(_VALID_FRAMES))))
    kind = draw(st.sampled_from(["replace", "delete", "insert", "payload-set", "payload-drop", "none"]))
    if kind in ("replace", "delete", "insert"):
        index = draw(st.integers(min_value=0, max_value=len(frame) - (0 if kind == "insert" else 1)))
        if kind == "replace":
            frame[index] = draw(json_values)
        elif kind == "delete":
            del frame[index]
        else:
            frame.insert(index, draw(json_values))
    elif isinstance(frame[-1], dict) and frame[0] != 4:
        payload = frame[-1]
        if kind == "payload-set":
            key = draw(st.sampled_from([*payload, "extraField"]) if payload else st.just("extraField"))
            payload[key] = draw(json_values)
        elif kind == "payload-drop" and payload:
            del payload[draw(st.sampled_from(sorted(payload)))]
    return json.dumps(frame)


frames = st.one_of(
    st.text(max_size=60),
    json_values.map(json.dumps),
    mutated_frames(),
    mutated_frames().map(lambda text: text.replace("1", "NaN", 1)),
    st.just("[" * 3000 + "]" * 3000),
)


def _raise(name):
    raise ValueError(name)


def _finite(text):
    value = float(text)
    if isinf(value):
        raise ValueError(text)
    return value


def _expected_answers(text: str) -> int:
    """One answer, except for a readable array whose type id is an integer other than 2."""
    try:
        value = json.loads(text, parse_constant=_raise, parse_float=_finite)
    except (ValueError, RecursionError):
        return 1
    if type(value) is list and value and type(value[0]) is int and value[0] != 2:
        return 0
    return 1


def _check_answer(text: str, frame: list) -> None:
    """The answer is a well-formed CALLRESULT (schema-valid) or CALLERROR."""
    assert type(frame) is list and frame[0] in (3, 4), frame
    message_id = frame[1]
    assert usable_id(message_id) or message_id == "-1", frame
    if frame[0] == 3:
        call = json.loads(text)
        assert len(frame) == 3 and call[0] == 2 and call[1] == message_id
        _VALIDATOR.check_response(call[2], frame[2])
    else:
        assert len(frame) == 5 and frame[2] in CODES and type(frame[3]) is str and type(frame[4]) is dict, frame


def _lenient_handler(session, action, payload):
    """Reads required fields the way real handlers do, so lenient mode meets missing or mistyped data."""
    if action == "StatusNotification":
        payload["connectorId"] + 0
        payload["status"].lower()
    elif action in ("StartTransaction", "StopTransaction"):
        payload["timestamp"].upper()
    elif action == "Authorize":
        payload["idTag"].strip()
    return dict(ANSWERS[action])


def _run(text: str, strict: bool) -> None:
    clock = Clock()
    session, sink, _ = make_session(clock, _lenient_handler)
    session.strict = strict
    session.frame_received(text)
    answers = sink.take()
    assert len(answers) == _expected_answers(text), (text, answers)
    for frame in answers:
        _check_answer(text, frame)
    final_id = "final-heartbeat"
    while final_id in text:
        final_id += "x"
    session.frame_received(json.dumps([2, final_id, "Heartbeat", {}]))
    assert sink.take() == [[3, final_id, {"currentTime": NOW}]]
    assert clock.getDelayedCalls() == []


@_SETTINGS
@given(frames)
def test_any_input_strict(text):
    """Strict mode: any frame yields at most one well-formed answer and the session keeps working."""
    _run(text, strict=True)


@_SETTINGS
@given(frames)
def test_any_input_lenient(text):
    """Lenient mode: the same holds, including handlers tripping over tolerated bad data."""
    _run(text, strict=False)
