# -*- test-case-name: tests.ocpp.test_session_inbound -*-
"""
Tests for L{ocpptw.ocpp.session.OcppSession}: CALLs from the charger.
"""

from __future__ import annotations

import json

import pytest
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import LogLevel, globalLogPublisher
from zope.interface.verify import verifyObject

from ocpptw.interfaces import IFrameSink
from ocpptw.ocpp.errors import CODES, OcppError
from tests.ocpp.support import (
    ANSWERS,
    BOOT,
    NOW,
    RecordingSink,
    answer,
    call_frame,
    make_session,
)


def _error_code(frame: list) -> str:
    assert frame[0] == 4 and isinstance(frame[4], dict) and frame[2] in CODES, frame
    return frame[2]


def test_sink_provides_interface():
    """The recording sink used here provides IFrameSink."""
    verifyObject(IFrameSink, RecordingSink())


def test_session_exposes_identity_policy_and_context(clock):
    """charge_point_id, strict (default True) and a free context dict are exposed."""
    session, _, _ = make_session(clock)
    assert (session.charge_point_id, session.strict, session.context) == ("CP1", True, {})
    session.context["booted"] = True
    assert session.context == {"booted": True}


@pytest.mark.parametrize("action", sorted(ANSWERS))
def test_every_charger_action_is_dispatched_and_answered(clock, action):
    """A valid CALL reaches the handler with the session and its answer goes out as a CALLRESULT."""
    seen = []

    def handler(session, name, payload):
        seen.append((session, name, payload))
        return answer(session, name, payload)

    session, sink, _ = make_session(clock, handler)
    payload = {
        "Authorize": {"idTag": "TAG"},
        "BootNotification": BOOT,
        "DataTransfer": {"vendorId": "Acme"},
        "DiagnosticsStatusNotification": {"status": "Idle"},
        "FirmwareStatusNotification": {"status": "Idle"},
        "Heartbeat": {},
        "MeterValues": {"connectorId": 1, "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": "1"}]}]},
        "StartTransaction": {"connectorId": 1, "idTag": "TAG", "meterStart": 0, "timestamp": NOW},
        "StatusNotification": {"connectorId": 0, "errorCode": "NoError", "status": "Available"},
        "StopTransaction": {"transactionId": 1, "meterStop": 10, "timestamp": NOW},
        "SecurityEventNotification": {"type": "StartupOfTheDevice", "timestamp": NOW},
        "SignCertificate": {"csr": "CSR"},
        "LogStatusNotification": {"status": "Idle"},
        "SignedFirmwareStatusNotification": {"status": "Downloaded"},
    }[action]
    session.frame_received(call_frame("m1", action, payload))
    assert seen == [(session, action, payload)]
    assert sink.frames == [[3, "m1", ANSWERS[action]]]


@pytest.mark.parametrize("text", ["nope", '{"a":1}', "[]", '"x"', '[2,"x","Heartbeat",{"a":NaN}]', "[" * 5000])
def test_unreadable_frame_gets_formation_violation_minus_one(clock, text):
    """Not JSON, not an array, NaN, deep nesting: [4,"-1","FormationViolation",...]; connection stays usable."""
    session, sink, _ = make_session(clock)
    session.frame_received(text)
    (frame,) = sink.take()
    assert frame[:3] == [4, "-1", "FormationViolation"]
    session.frame_received(call_frame("h", "Heartbeat", {}))
    assert sink.take() == [[3, "h", {"currentTime": NOW}]]


def test_bad_shape_keeps_id_and_bad_id_gets_minus_one(clock):
    """A wrong CALL shape is answered with its id; an unusable id with -1."""
    session, sink, _ = make_session(clock)
    session.frame_received('[2,"m1","Heartbeat",[]]')
    session.frame_received('[2,"' + "x" * 37 + '","Heartbeat",{}]')
    session.frame_received('[2,"","Heartbeat",{}]')
    session.frame_received('[2,5,"Heartbeat",{}]')
    assert [(f[1], f[2]) for f in sink.frames] == [("m1", "FormationViolation")] + [("-1", "FormationViolation")] * 3


def test_unknown_message_type_is_ignored(clock):
    """A frame with an unknown MessageTypeId gets no answer and is logged at info."""
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        session, sink, observer = make_session(clock)
        session.frame_received('[7,"m1","Heartbeat",{}]')
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert sink.sent == [] and observer.frames == []
    assert [e["log_level"] for e in events if "MessageTypeId" in e.get("log_format", "")] == [LogLevel.info]


def test_duplicate_call_id_is_protocol_error(clock):
    """A CALL id already seen on this connection gets ProtocolError; the handler is not called again."""
    calls = []
    session, sink, _ = make_session(clock, lambda s, a, p: calls.append(a) or answer(s, a, p))
    session.frame_received(call_frame("same", "Heartbeat", {}))
    session.frame_received(call_frame("same", "Heartbeat", {}))
    frames = sink.frames
    assert frames[0][0] == 3 and frames[1][:3] == [4, "same", "ProtocolError"]
    assert calls == ["Heartbeat"]


def test_remembered_ids_are_bounded(clock, monkeypatch):
    """Only the last RecentIds.size ids are kept; older ones may be reused."""
    from ocpptw.ocpp.recent_ids import RecentIds

    monkeypatch.setattr(RecentIds, "size", 3)
    session, sink, _ = make_session(clock)
    for message_id in ("a", "b", "c", "d"):
        session.frame_received(call_frame(message_id, "Heartbeat", {}))
    assert len(session._seen) == 3
    session.frame_received(call_frame("a", "Heartbeat", {}))
    session.frame_received(call_frame("d", "Heartbeat", {}))
    assert [f[0] for f in sink.frames] == [3, 3, 3, 3, 3, 4]


def test_refused_calls_are_remembered_too(clock):
    """Even a refused CALL's id counts as used."""
    session, sink, _ = make_session(clock)
    session.frame_received(call_frame("x", "Heartbeat", {"bad": 1}))
    session.frame_received(call_frame("x", "Heartbeat", {}))
    assert [_error_code(f) for f in sink.frames] == ["FormationViolation", "ProtocolError"]


def test_unknown_action_not_implemented_and_wrong_direction_not_supported(clock):
    """No schema: NotImplemented. A server-to-charger action from a charger: NotSupported."""
    session, sink, _ = make_session(clock, lambda *a: pytest.fail("handler called"))
    session.frame_received(call_frame("1", "NotifyReport", {}))
    session.frame_received(call_frame("2", "Reset", {"type": "Soft"}))
    session.frame_received(call_frame("3", "HeartbeatResponse", {}))
    assert [(f[1], _error_code(f)) for f in sink.frames] == [
        ("1", "NotImplemented"),
        ("2", "NotSupported"),
        ("3", "NotImplemented"),
    ]


@pytest.mark.parametrize(
    "action, payload, code",
    [
        ("StatusNotification", {"connectorId": 1, "status": "Available"}, "OccurenceConstraintViolation"),
        ("StatusNotification", {"connectorId": "1", "errorCode": "NoError", "status": "Available"},
         "TypeConstraintViolation"),
        ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Sleeping"},
         "PropertyConstraintViolation"),
        ("Authorize", {"idTag": "x" * 21}, "PropertyConstraintViolation"),
        ("Heartbeat", {"unexpected": True}, "FormationViolation"),
    ],
)
def test_strict_validation_answers_mapped_code(clock, action, payload, code):
    """In strict mode an invalid payload gets the mapped CALLERROR and never reaches the handler."""
    session, sink, observer = make_session(clock, lambda *a: pytest.fail("handler called"))
    session.frame_received(call_frame("v", action, payload))
    (frame,) = sink.frames
    assert frame[1] == "v" and _error_code(frame) == code and frame[3]
    assert observer.violations == []


def test_lenient_validation_reports_and_still_handles(clock):
    """Lenient: the violation goes to the observer and the log (warn), and the handler answers."""
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        session, sink, observer = make_session(clock)
        session.strict = False
        session.frame_received(call_frame("l", "Heartbeat", {"vendorExtra": 1}))
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert sink.frames == [[3, "l", {"currentTime": NOW}]]
    assert [(a, c) for a, c, _ in observer.violations] == [("Heartbeat", "FormationViolation")]
    assert LogLevel.warn in [e["log_level"] for e in events if "tolerated" in e.get("log_format", "")]


@pytest.mark.parametrize(
    "exception", [KeyError("idTag"), TypeError("x"), ValueError("y"), AttributeError("z"), IndexError("i")]
)
def test_lenient_missing_data_answers_the_violation_code(clock, exception):
    """Lenient: a handler failing on missing data is answered with the validation error's code, not a bug."""

    def handler(session, action, payload):
        raise exception

    session, sink, observer = make_session(clock, handler)
    session.strict = False
    session.frame_received(call_frame("l", "Authorize", {}))
    (frame,) = sink.frames
    assert frame[1] == "l" and _error_code(frame) == "OccurenceConstraintViolation"


def test_lenient_missing_data_in_a_deferred_too(clock):
    """Lenient: the same holds when the handler's Deferred fails with KeyError."""
    session, sink, _ = make_session(clock, lambda *a: fail(KeyError("idTag")))
    session.strict = False
    session.frame_received(call_frame("l", "Authorize", {"idTag": 7}))
    assert _error_code(sink.frames[0]) == "TypeConstraintViolation"


def test_handler_ocpp_error_becomes_callerror(clock):
    """A handler raising OcppError is answered with its code, description and details."""

    def handler(session, action, payload):
        raise OcppError("SecurityError", "not booted", {"hint": "boot first"})

    session, sink, _ = make_session(clock, handler)
    session.frame_received(call_frame("s", "Heartbeat", {}))
    assert sink.frames == [[4, "s", "SecurityError", "not booted", {"hint": "boot first"}]]


def test_strict_mode_key_error_is_a_bug(clock, fail_on_logged_errors):
    """Strict: a valid payload reached the handler, so its KeyError is our bug (InternalError)."""
    session, sink, _ = make_session(clock, lambda s, a, p: p["nothing"])
    session.frame_received(call_frame("k", "Heartbeat", {}))
    assert sink.frames[0][:3] == [4, "k", "InternalError"]
    assert len(fail_on_logged_errors) == 1
    fail_on_logged_errors.clear()


def test_handler_bug_is_internal_error_and_logged(clock, fail_on_logged_errors):
    """Any other exception is logged as a failure and answered InternalError, without a traceback."""

    def handler(session, action, payload):
        raise RuntimeError("secret internals")

    session, sink, _ = make_session(clock, handler)
    session.frame_received(call_frame("b", "Heartbeat", {}))
    (frame,) = sink.frames
    assert frame[:3] == [4, "b", "InternalError"] and "secret" not in json.dumps(frame)
    assert len(fail_on_logged_errors) == 1
    fail_on_logged_errors.clear()
    session.frame_received(call_frame("c", "Heartbeat", {}))
    assert sink.frames[-1][0] == 4  # the session still works (handler still broken)
    fail_on_logged_errors.clear()


@pytest.mark.parametrize("result", [{"currentTime": "soon"}, {}, None, ["x"], {"currentTime": NOW, "x": float("nan")}])
def test_invalid_answer_is_our_bug(clock, fail_on_logged_errors, result):
    """A handler answer that is not a schema-valid JSON object: failure logged, InternalError sent."""
    session, sink, _ = make_session(clock, lambda *a: result)
    session.frame_received(call_frame("i", "Heartbeat", {}))
    assert [f[:3] for f in sink.frames] == [[4, "i", "InternalError"]]
    assert len(fail_on_logged_errors) == 1
    fail_on_logged_errors.clear()


def test_deferred_answers_and_calls_are_handled_in_order(clock):
    """CALLs wait for the previous answer; answers go out in arrival order."""
    pending: list[Deferred] = []
    seen = []

    def handler(session, action, payload):
        seen.append(action)
        d = Deferred()
        pending.append(d)
        return d

    session, sink, _ = make_session(clock, handler)
    session.frame_received(call_frame("1", "Heartbeat", {}))
    session.frame_received(call_frame("2", "StatusNotification",
                                      {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}))
    assert seen == ["Heartbeat"] and sink.sent == [] and not session.idle()
    pending[0].callback({"currentTime": NOW})
    assert seen == ["Heartbeat", "StatusNotification"] and sink.take() == [[3, "1", {"currentTime": NOW}]]
    pending[1].errback(OcppError("GenericError", "later"))
    assert sink.take() == [[4, "2", "GenericError", "later", {}]]
    assert session.idle()


def test_synchronously_fired_deferreds_drain_the_queue(clock):
    """A handler returning already-fired Deferreds is answered at once, in order."""
    session, sink, _ = make_session(clock, lambda s, a, p: succeed(answer(s, a, p)))
    for message_id in "abc":
        session.frame_received(call_frame(message_id, "Heartbeat", {}))
    assert [f[1] for f in sink.frames] == ["a", "b", "c"]


def test_inbound_queue_is_bounded(clock):
    """Beyond max_inbound_queue waiting CALLs, the next gets ProtocolError."""
    held = Deferred()
    results = [held, {"currentTime": NOW}, {"currentTime": NOW}]
    session, sink, _ = make_session(clock, lambda *a: results.pop(0))
    session.max_inbound_queue = 2
    for message_id in "abcd":
        session.frame_received(call_frame(message_id, "Heartbeat", {}))
    assert [(f[1], f[2]) for f in sink.frames] == [("d", "ProtocolError")]
    held.callback({"currentTime": NOW})
    assert [f[1] for f in sink.frames] == ["d", "a", "b", "c"]


def test_binary_frame_is_formation_violation(clock):
    """binary_received answers FormationViolation with id -1."""
    session, sink, observer = make_session(clock)
    session.binary_received()
    assert sink.frames[0][:3] == [4, "-1", "FormationViolation"]
    assert observer.frames[0][:3] == ("out", "CALLERROR", "-1")


def test_observer_sees_frames_in_and_out(clock):
    """Every well-formed frame in and every frame out reaches the observer, with its action."""
    session, sink, observer = make_session(clock)
    session.frame_received(call_frame("1", "BootNotification", BOOT))
    session.frame_received(call_frame("2", "Foo", {}))
    session.frame_received("junk")
    assert observer.frames == [
        ("in", "CALL", "1", "BootNotification", BOOT, None, None),
        ("out", "CALLRESULT", "1", "BootNotification", ANSWERS["BootNotification"], None, None),
        ("in", "CALL", "2", "Foo", {}, None, None),
        ("out", "CALLERROR", "2", "Foo", {}, "NotImplemented", "unknown action 'Foo'"),
        ("out", "CALLERROR", "-1", None, {}, "FormationViolation", "frame is not valid JSON"),
    ]


def test_observer_bug_does_not_break_the_session(clock, fail_on_logged_errors):
    """An observer that raises is logged as a failure; frames still flow."""
    session, sink, observer = make_session(clock)
    observer.frame = lambda *a: 1 / 0
    session.frame_received(call_frame("1", "Heartbeat", {}))
    assert sink.frames == [[3, "1", {"currentTime": NOW}]]
    assert len(fail_on_logged_errors) == 2
    fail_on_logged_errors.clear()


def test_no_logging_above_debug_on_the_happy_path(clock):
    """A valid exchange logs nothing above debug."""
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        session, _, _ = make_session(clock)
        for n in range(3):
            session.frame_received(call_frame(str(n), "Heartbeat", {}))
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert [e for e in events if e.get("log_level", LogLevel.debug) > LogLevel.debug
            and e.get("log_namespace", "").startswith("ocpptw")] == []


def test_answer_after_connection_lost_is_dropped(clock):
    """A handler answering after the socket closed sends nothing; later frames are ignored."""
    held = Deferred()
    session, sink, observer = make_session(clock, lambda *a: held)
    session.frame_received(call_frame("1", "Heartbeat", {}))
    session.connection_lost()
    held.callback({"currentTime": NOW})
    session.frame_received(call_frame("2", "Heartbeat", {}))
    assert sink.sent == [] and [f[1] for f in observer.frames] == ["CALL"]


def test_observer_gets_the_payload_text_without_encoding_again(clock):
    """A CALL's payload text is the charger's own (spacing and escapes kept); an answer's is what was sent."""
    session, sink, observer = make_session(clock)
    text = '[ 2 , "a\\"1" ,\n "BootNotification" , { "chargePointVendor" : "Gr\\u00fc\\u00dfe", "chargePointModel": "M{]" } ]'
    session.frame_received(text)
    session.frame_received(call_frame("2", "Foo", {}))
    assert observer.payload_texts[0] == '{ "chargePointVendor" : "Gr\\u00fc\\u00dfe", "chargePointModel": "M{]" }'
    assert json.loads(observer.payload_texts[0]) == observer.frames[0][4]
    assert observer.payload_texts[1] == json.dumps(sink.frames[0][2], separators=(",", ":"))
    assert sink.sent[0] == '[3,"a\\"1",' + observer.payload_texts[1] + "]"
    assert observer.payload_texts[3] == "{}"  # the CALLERROR's details


def test_finding_12_bytes_of_waiting_calls_are_bounded(clock):
    """32 CALLs of 1 MiB cannot be held: CALLs waiting behind the one in hand stay within max_inbound_bytes."""
    held = Deferred()
    answers = [held] + [{"status": "Accepted"}] * 40
    session, sink, _ = make_session(clock, lambda *a: answers.pop(0))
    big = {"vendorId": "V", "data": "x" * (1024 * 1024 - 100)}
    for n in range(32):
        session.frame_received(call_frame(f"m{n}", "DataTransfer", big))
    refused = [f[1] for f in sink.frames if f[0] == 4]
    assert refused and all(f[2] == "ProtocolError" for f in sink.frames)
    waiting = 32 - 1 - len(refused)
    assert waiting * 1024 * 1024 <= session.max_inbound_bytes
    assert session._inbound_bytes <= session.max_inbound_bytes
    # A small CALL fits next to them only while there is room; a large one alone always gets in.
    held.callback({"status": "Accepted"})
    assert session._inbound_bytes == 0 and session.idle()
    session.frame_received(call_frame("alone", "DataTransfer", big))
    assert sink.frames[-1][:2] == [3, "alone"]
