# -*- test-case-name: tests.ocpp.test_session_outbound -*-
"""
Tests for L{ocpptw.ocpp.session.OcppSession}: calls to the charger.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from twisted.internet.defer import CancelledError

from ocpptw.interfaces import (
    CallErrorReceived,
    ChargerOffline,
    CommandTimeout,
    InvalidPayload,
)
from ocpptw.ocpp.frames import usable_id
from ocpptw.ocpp.session import CallQueueFull
from tests.helpers import failure_result_of, no_result, success_result_of
from tests.ocpp.support import NOW, call_frame, make_session

RESET = {"type": "Soft"}
ACCEPTED = {"status": "Accepted"}


def _result(message_id: str, payload: dict) -> str:
    return json.dumps([3, message_id, payload])


@pytest.mark.parametrize(
    "action, payload",
    [
        ("Heartbeat", {}),  # charger-to-server only
        ("NotifyReport", {}),  # not OCPP 1.6
        ("Reset", {"type": "Gentle"}),
        ("Reset", {}),
        ("Reset", {"type": "Soft", "extra": 1}),
        ("Reset", ["Soft"]),
        ("ChangeConfiguration", {"key": "k", "value": 5}),
        ("SetChargingProfile", {"connectorId": 1, "csChargingProfiles": {}}),
        ("DataTransfer", {"vendorId": "V", "data": "x", "messageId": Decimal("1")}),
    ],
)
def test_invalid_calls_fail_before_anything_is_sent(clock, action, payload):
    """Unknown, wrong-direction or schema-invalid calls fail with InvalidPayload and send nothing."""
    session, sink, _ = make_session(clock)
    failure_result_of(session.call(action, payload), InvalidPayload)
    assert sink.sent == []


def test_unencodable_payload_is_invalid(clock):
    """A payload that cannot be JSON (NaN) is InvalidPayload, not sent."""
    session, sink, _ = make_session(clock)
    profile = {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {"chargingRateUnit": "A",
                                 "chargingSchedulePeriod": [{"startPeriod": 0, "limit": float("nan")}]},
        },
    }
    failure_result_of(session.call("SetChargingProfile", profile), InvalidPayload)
    assert sink.sent == []


def test_call_round_trip(clock):
    """A call is sent as a CALL and fires with the matching CALLRESULT's payload."""
    session, sink, observer = make_session(clock)
    d = session.call("Reset", RESET)
    ((kind, message_id, action, payload),) = sink.frames
    assert (kind, action, payload) == (2, "Reset", RESET) and usable_id(message_id)
    no_result(d)
    session.frame_received(_result(message_id, ACCEPTED))
    assert success_result_of(d) == ACCEPTED
    assert observer.frames == [
        ("out", "CALL", message_id, "Reset", RESET, None, None),
        ("in", "CALLRESULT", message_id, "Reset", ACCEPTED, None, None),
    ]
    assert session.idle()


def test_one_in_flight_rest_queued_in_order(clock):
    """Only one call is in flight; the others follow in order as answers arrive."""
    session, sink, _ = make_session(clock)
    first = session.call("Reset", RESET)
    second = session.call("ClearCache", {})
    third = session.call("GetLocalListVersion", {})
    assert [f[2] for f in sink.frames] == ["Reset"]
    session.frame_received(_result(sink.frames[0][1], ACCEPTED))
    assert [f[2] for f in sink.frames] == ["Reset", "ClearCache"]
    session.frame_received(_result(sink.frames[1][1], ACCEPTED))
    session.frame_received(_result(sink.frames[2][1], {"listVersion": 3}))
    assert [success_result_of(d) for d in (first, second, third)] == [ACCEPTED, ACCEPTED, {"listVersion": 3}]
    ids = [f[1] for f in sink.frames]
    assert len(set(ids)) == 3 and all(usable_id(i) for i in ids)


def test_timeout_fails_and_next_goes(clock):
    """No answer within call_timeout: CommandTimeout, the next call is sent, a late answer is dropped."""
    session, sink, _ = make_session(clock, call_timeout=30)
    first = session.call("Reset", RESET)
    second = session.call("ClearCache", {}, timeout=100)
    clock.advance(29.9)
    no_result(first)
    clock.advance(0.1)
    failure_result_of(first, CommandTimeout)
    assert [f[2] for f in sink.frames] == ["Reset", "ClearCache"]
    session.frame_received(_result(sink.frames[0][1], ACCEPTED))  # late answer to Reset
    no_result(second)
    assert len(sink.frames) == 2
    session.frame_received(_result(sink.frames[1][1], ACCEPTED))
    assert success_result_of(second) == ACCEPTED


def test_timeout_covers_time_in_queue(clock):
    """A call still queued when its timeout passes fails and is never sent."""
    session, sink, _ = make_session(clock)
    first = session.call("Reset", RESET, timeout=60)
    queued = session.call("ClearCache", {}, timeout=5)
    clock.advance(5)
    failure_result_of(queued, CommandTimeout)
    session.frame_received(_result(sink.frames[0][1], ACCEPTED))
    success_result_of(first)
    assert [f[2] for f in sink.frames] == ["Reset"]


def test_callerror_fails_with_call_error_received(clock):
    """A matching CALLERROR fails the call with its code, description and details."""
    session, sink, observer = make_session(clock)
    d = session.call("Reset", RESET)
    message_id = sink.frames[0][1]
    session.frame_received(json.dumps([4, message_id, "NotSupported", "no reset", {"a": 1}]))
    error = failure_result_of(d, CallErrorReceived).value
    assert (error.code, error.description, error.details) == ("NotSupported", "no reset", {"a": 1})
    assert observer.frames[-1] == ("in", "CALLERROR", message_id, "Reset", {"a": 1}, "NotSupported", "no reset")


def test_unmatched_answers_are_dropped(clock):
    """A CALLRESULT or CALLERROR matching nothing is dropped: no answer, pending call untouched."""
    session, sink, observer = make_session(clock)
    d = session.call("Reset", RESET)
    session.frame_received(_result("nope", ACCEPTED))
    session.frame_received(json.dumps([4, "nope", "GenericError", "", {}]))
    no_result(d)
    assert len(sink.sent) == 1
    assert [(f[1], f[3]) for f in observer.frames[1:]] == [("CALLRESULT", None), ("CALLERROR", None)]
    session.connection_lost()
    failure_result_of(d, ChargerOffline)


def test_invalid_result_strict_fails_lenient_accepts(clock):
    """Strict: an invalid CALLRESULT fails the call (CallErrorReceived with the mapped code); lenient accepts it."""
    session, sink, observer = make_session(clock)
    d = session.call("Reset", RESET)
    session.frame_received(_result(sink.frames[0][1], {"status": "Maybe"}))
    error = failure_result_of(d, CallErrorReceived).value
    assert error.code == "PropertyConstraintViolation" and error.details == {"result": {"status": "Maybe"}}
    session.strict = False
    d = session.call("Reset", RESET)
    session.frame_received(_result(sink.frames[1][1], {"status": "Maybe"}))
    assert success_result_of(d) == {"status": "Maybe"}
    assert [v[:2] for v in observer.violations] == [("Reset", "PropertyConstraintViolation")]
    assert len(sink.sent) == 2  # never a CALLERROR in answer to a CALLRESULT


def test_malformed_answer_fails_the_pending_call(clock):
    """A malformed CALLRESULT for the pending id fails it with FormationViolation; nothing is sent back."""
    session, sink, _ = make_session(clock)
    d = session.call("Reset", RESET)
    session.frame_received(json.dumps([3, sink.frames[0][1], "Accepted"]))
    assert failure_result_of(d, CallErrorReceived).value.code == "FormationViolation"
    assert len(sink.sent) == 1


def test_inbound_call_handled_while_outbound_pending(clock):
    """A charger CALL is answered while our own call waits (no deadlock)."""
    session, sink, _ = make_session(clock)
    d = session.call("Reset", RESET)
    session.frame_received(call_frame("c1", "Heartbeat", {}))
    assert sink.frames[1] == [3, "c1", {"currentTime": NOW}]
    session.frame_received(_result(sink.frames[0][1], ACCEPTED))
    assert success_result_of(d) == ACCEPTED


def test_handler_may_call_the_charger(clock):
    """A handler may start a server-to-charger call while answering a CALL."""
    calls = []

    def handler(session, action, payload):
        calls.append(session.call("TriggerMessage", {"requestedMessage": "StatusNotification"}))
        return {"status": "Accepted", "currentTime": NOW, "interval": 300}

    session, sink, _ = make_session(clock, handler)
    session.frame_received(call_frame("b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}))
    assert [(f[0], f[2] if f[0] == 2 else f[1]) for f in sink.frames] == [(2, "TriggerMessage"), (3, "b")]
    session.frame_received(_result(sink.frames[0][1], ACCEPTED))
    assert success_result_of(calls[0]) == ACCEPTED


def test_connection_lost_fails_everything_and_stops_timers(clock):
    """connection_lost fails pending and queued calls with ChargerOffline; later calls fail at once."""
    session, sink, _ = make_session(clock)
    pending, queued = session.call("Reset", RESET), session.call("ClearCache", {})
    session.connection_lost()
    failure_result_of(pending, ChargerOffline)
    failure_result_of(queued, ChargerOffline)
    assert clock.getDelayedCalls() == []
    failure_result_of(session.call("Reset", RESET), ChargerOffline)
    session.connection_lost()  # twice is harmless
    assert len(sink.sent) == 1


def test_outbound_queue_is_bounded(clock):
    """Beyond max_outbound_queue waiting calls, call() fails with CallQueueFull (a CommandTimeout)."""
    session, sink, _ = make_session(clock)
    session.max_outbound_queue = 2
    calls = [session.call("ClearCache", {}) for _ in range(3)]
    failure_result_of(session.call("ClearCache", {}), CallQueueFull, CommandTimeout)
    assert issubclass(CallQueueFull, CommandTimeout)
    session.connection_lost()
    for d in calls:
        failure_result_of(d, ChargerOffline)


def test_cancelling_a_call(clock):
    """Cancelling the Deferred of a pending call stops its timer and sends the next one."""
    session, sink, _ = make_session(clock)
    first, second = session.call("Reset", RESET), session.call("ClearCache", {})
    first.cancel()
    failure_result_of(first, CancelledError)
    assert [f[2] for f in sink.frames] == ["Reset", "ClearCache"]
    queued = session.call("Reset", RESET)
    queued.cancel()
    failure_result_of(queued, CancelledError)
    session.frame_received(_result(sink.frames[1][1], ACCEPTED))
    success_result_of(second)
    assert len(sink.sent) == 2 and clock.getDelayedCalls() == []


def test_callback_may_chain_another_call(clock):
    """A caller's callback that makes the next call finds the session ready for it."""
    session, sink, _ = make_session(clock)
    d = session.call("Reset", RESET)
    chained = []
    d.addCallback(lambda _: chained.append(session.call("ClearCache", {})))
    session.frame_received(_result(sink.frames[0][1], ACCEPTED))
    assert [f[2] for f in sink.frames] == ["Reset", "ClearCache"]
    session.frame_received(_result(sink.frames[1][1], ACCEPTED))
    assert success_result_of(chained[0]) == ACCEPTED


def test_outbound_state_is_made_on_the_first_call(clock):
    """
    A session that is never sent a call holds no outbound queue nor id prefix
    (most chargers); the first call makes them, and one session's ids keep
    one prefix.  A session that never called loses its connection cleanly.
    """
    idle, _, _ = make_session(clock)
    assert not hasattr(idle._calls, "__dict__")
    assert idle._calls._queue is None and idle._calls._id_prefix is None
    assert idle.idle()
    idle.connection_lost()
    failure_result_of(idle.call("Reset", RESET), ChargerOffline)

    session, sink, _ = make_session(clock)
    first, second = session.call("Reset", RESET), session.call("ClearCache", {})
    assert session._calls._queue is not None and not session.idle()
    session.frame_received(_result(sink.frames[0][1], ACCEPTED))
    session.frame_received(_result(sink.frames[1][1], ACCEPTED))
    success_result_of(first), success_result_of(second)
    prefixes = {f[1].rsplit("-", 1)[0] for f in sink.frames}
    assert len(prefixes) == 1 and session.idle()


def test_finding_12_bytes_of_waiting_outbound_calls_are_bounded(clock):
    """Calls of 1 MiB each queue behind the one in flight only up to max_outbound_bytes; then CallQueueFull."""
    session, sink, _ = make_session(clock)
    big = {"vendorId": "V", "data": "x" * (1024 * 1024 - 200)}
    calls = [session.call("DataTransfer", big) for _ in range(8)]
    full = [d for d in calls if d.called]
    for d in full:
        failure_result_of(d, CallQueueFull)
    waiting = len(calls) - 1 - len(full)
    assert full and waiting * 1024 * 1024 <= session.max_outbound_bytes
    assert len(sink.sent) == 1
    small = session.call("ClearCache", {})  # small ones still fit
    session.connection_lost()
    for d in [small] + [d for d in calls if d not in full]:
        failure_result_of(d, ChargerOffline)


class _Sink:
    """
    A L{CallSink} that is not a session: all that L{OutboundCalls} may use.
    """

    charge_point_id = "CP9"
    strict = True
    max_outbound_queue = 2
    max_outbound_bytes = 4096

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.recorded: list[tuple] = []
        self.violations: list[tuple] = []

    def send_frame(self, text: str) -> None:
        self.sent.append(text)

    def record_frame(self, *frame: Any) -> None:
        self.recorded.append(frame)

    def tolerated(self, action: str, error: Any) -> None:
        self.violations.append((action, error.code))


def test_outbound_calls_need_only_their_sink(clock):
    """OutboundCalls sends, records and answers through the narrow CallSink alone."""
    from ocpptw.ocpp.frames import parse
    from ocpptw.ocpp.outbound import OutboundCalls
    from ocpptw.ocpp.validation import Validator

    sink = _Sink()
    calls = OutboundCalls(sink, clock, Validator())
    d = calls.call("ClearCache", {}, 30)
    [text] = sink.sent
    sent = json.loads(text)
    assert sent[0] == 2 and sent[2] == "ClearCache"
    calls.result_received(parse(_result(sent[1], {"status": "Accepted"})))
    assert success_result_of(d) == {"status": "Accepted"}
    assert [frame[:4] for frame in sink.recorded] == [
        ("out", "CALL", sent[1], "ClearCache"),
        ("in", "CALLRESULT", sent[1], "ClearCache"),
    ]
    assert sink.violations == []
