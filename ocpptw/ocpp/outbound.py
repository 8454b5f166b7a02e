# -*- test-case-name: tests.ocpp.test_session_outbound -*-
"""
The server-to-charger half of an L{ocpptw.ocpp.session.OcppSession}: one
CALL in flight, the rest queued in order, each with a timeout on the
injected clock, answers matched by message id.

A call's timeout runs from the moment it is made, so a caller never waits
longer than it asked for: a call still queued when its time is up is never
sent.  At most C{session.max_outbound_queue} calls wait behind the one in
flight; beyond that a call fails at once with L{CallQueueFull}.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Any, Protocol

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocpptw.interfaces import (
    CallErrorReceived,
    ChargerOffline,
    CommandTimeout,
    InvalidPayload,
)
from ocpptw.ocpp.errors import FORMATION_VIOLATION, OcppError
from ocpptw.ocpp.frames import CallError, CallResult, FrameError, encode_call
from ocpptw.ocpp.validation import Validator


class CallSink(Protocol):
    """
    What L{OutboundCalls} needs of its session (an
    L{ocpptw.ocpp.session.OcppSession}): whom it calls, the limits and the
    policy, a way to send a frame, and where to record frames and tolerated
    violations.
    """

    charge_point_id: str
    strict: bool
    max_outbound_queue: int
    max_outbound_bytes: int

    def send_frame(self, text: str) -> None: ...

    def record_frame(
        self,
        direction: str,
        message_type: str,
        message_id: str,
        action: str | None,
        payload: Any,
        code: str | None,
        description: str | None,
        payload_text: str | None = None,
    ) -> None: ...

    def tolerated(self, action: str, error: OcppError) -> None: ...


_IN, _OUT = "in", "out"
_CALL, _RESULT, _ERROR = "CALL", "CALLRESULT", "CALLERROR"


class CallQueueFull(CommandTimeout):
    """
    Too many server-to-charger calls already wait for this charger, so this
    one could not be answered in time.  A L{CommandTimeout}, so the command
    API reports it as one.
    """


class _Outbound:
    """
    One server-to-charger call, queued or in flight.
    """

    __slots__ = ("action", "deferred", "message_id", "payload", "text", "timeout", "timer")

    def __init__(self, message_id: str, action: str, payload: dict, text: str, timeout: float) -> None:
        self.message_id = message_id
        self.action = action
        self.payload = payload
        self.text = text
        self.timeout = timeout
        self.deferred: Deferred[dict] | None = None
        self.timer: IDelayedCall | None = None


class OutboundCalls:
    """
    Server-to-charger calls for one session.

    Most chargers are never sent a call while connected, so the queue and the
    message id prefix are made on the first call, and the instance has slots.
    """

    __slots__ = ("_session", "_clock", "_validator", "_id_prefix", "_counter", "_pending", "_queue", "_closed")

    log = Logger()

    def __init__(self, session: CallSink, clock: IReactorTime, validator: Validator) -> None:
        self._session = session
        self._clock = clock
        self._validator = validator
        self._id_prefix: str | None = None
        self._counter = 0
        self._pending: _Outbound | None = None
        self._queue: deque[_Outbound] | None = None
        self._closed = False

    def busy(self) -> bool:
        """
        Whether a call is in flight or queued.
        """
        return self._pending is not None or bool(self._queue)

    def call(self, action: str, payload: dict, timeout: float) -> Deferred[dict]:
        """
        See L{ocpptw.ocpp.session.OcppSession.call}.
        """
        session = self._session
        if self._closed:
            return fail(ChargerOffline(f"{session.charge_point_id} is not connected"))
        version = self._validator.version
        if action not in version.server_to_charger or not self._validator.knows(action):
            return fail(InvalidPayload(f"{action!r} is not a server-to-charger action of OCPP {version.name}"))
        if type(payload) is not dict:
            return fail(InvalidPayload("the payload must be a JSON object"))
        try:
            self._validator.check_request(action, payload)
        except OcppError as error:
            return fail(InvalidPayload(f"{error.code}: {error.description}"))
        if self._id_prefix is None:
            self._id_prefix = os.urandom(3).hex() + "-"
        self._counter += 1
        message_id = self._id_prefix + str(self._counter)
        try:
            text = encode_call(message_id, action, payload)
            text.encode("utf-8")  # a lone surrogate (from a "\ud800" escape) cannot go on the wire
        except UnicodeEncodeError:
            return fail(InvalidPayload("the payload holds a lone UTF-16 surrogate"))
        except (TypeError, ValueError) as error:
            return fail(InvalidPayload(f"the payload is not JSON: {error}"))
        queue = self._queue
        if queue is None:
            queue = self._queue = deque()
        if queue and sum(len(waiting.text) for waiting in queue) + len(text) > session.max_outbound_bytes:
            return fail(
                CallQueueFull(
                    f"calls of {session.max_outbound_bytes} bytes already wait for {session.charge_point_id};"
                    f" {action} not sent"
                )
            )
        if len(queue) >= session.max_outbound_queue:
            return fail(
                CallQueueFull(
                    f"{session.max_outbound_queue} calls already wait for {session.charge_point_id};"
                    f" {action} not sent"
                )
            )
        outbound = _Outbound(message_id, action, payload, text, timeout)
        outbound.deferred = Deferred(lambda d: self._cancelled(outbound))
        outbound.timer = self._clock.callLater(timeout, self._timed_out, outbound)
        queue.append(outbound)
        self._pump()
        return outbound.deferred

    def result_received(self, result: CallResult) -> None:
        """
        A CALLRESULT from the charger.
        """
        session = self._session
        pending = self._pending
        if pending is None or pending.message_id != result.message_id:
            self._unmatched(result.message_id, _RESULT, result.payload, None, None)
            return
        action = pending.action
        session.record_frame(_IN, _RESULT, result.message_id, action, result.payload, None, None)
        try:
            self._validator.check_response(action, result.payload)
        except OcppError as error:
            if session.strict:
                self.log.warn(
                    "invalid {action} answer from {chargePointId}: {code} {description}",
                    action=action,
                    chargePointId=session.charge_point_id,
                    code=error.code,
                    description=error.description,
                )
                failure = CallErrorReceived(
                    self._validator.version.wire_code(error.code),
                    f"invalid CALLRESULT: {error.description}",
                    {"result": result.payload},
                )
                self._settle(pending, Failure(failure))
                return
            session.tolerated(action, error)
        self._settle(pending, result.payload)

    def error_received(self, error: CallError) -> None:
        """
        A CALLERROR from the charger.
        """
        pending = self._pending
        if pending is None or pending.message_id != error.message_id:
            self._unmatched(error.message_id, _ERROR, error.details, error.code, error.description)
            return
        self._session.record_frame(
            _IN, _ERROR, error.message_id, pending.action, error.details, error.code, error.description
        )
        self._settle(pending, Failure(CallErrorReceived(error.code, error.description, error.details)))

    def malformed_answer(self, error: FrameError) -> None:
        """
        A CALLRESULT or CALLERROR that is not well formed: it fails the call
        it names, if any, with C{FormationViolation}.
        """
        self.log.warn(
            "malformed answer {messageId} from {chargePointId}: {description}",
            chargePointId=self._session.charge_point_id,
            messageId=error.message_id,
            description=error.description,
        )
        pending = self._pending
        if pending is not None and pending.message_id == error.message_id:
            code = self._validator.version.wire_code(FORMATION_VIOLATION)
            failure = CallErrorReceived(code, f"malformed answer: {error.description}", {})
            self._settle(pending, Failure(failure))

    def connection_lost(self) -> None:
        """
        Fail the pending and queued calls with L{ChargerOffline} and stop
        their timers; later calls fail at once.
        """
        self._closed = True
        waiting = list(self._queue or ())
        self._queue = None
        if self._pending is not None:
            waiting.insert(0, self._pending)
            self._pending = None
        for outbound in waiting:
            self._stop_timer(outbound)
            deferred, outbound.deferred = outbound.deferred, None
            if deferred is not None:
                deferred.errback(
                    ChargerOffline(
                        f"{self._session.charge_point_id} disconnected before answering {outbound.action}"
                    )
                )

    def _pump(self) -> None:
        if self._pending is not None or not self._queue or self._closed:
            return
        outbound = self._queue.popleft()
        self._pending = outbound
        self._session.send_frame(outbound.text)
        self._session.record_frame(_OUT, _CALL, outbound.message_id, outbound.action, outbound.payload, None, None)

    def _unmatched(self, message_id: str, message_type: str, payload: Any, code: Any, description: Any) -> None:
        self.log.info(
            "dropped {messageType} {messageId} from {chargePointId}: nothing pending",
            messageType=message_type,
            messageId=message_id,
            chargePointId=self._session.charge_point_id,
        )
        self._session.record_frame(_IN, message_type, message_id, None, payload, code, description)

    def _settle(self, outbound: _Outbound, result: Any) -> None:
        """
        The in-flight call C{outbound} is over: send the next one, then fire.
        """
        if self._pending is outbound:
            self._pending = None
        self._stop_timer(outbound)
        deferred, outbound.deferred = outbound.deferred, None
        self._pump()
        if deferred is not None:
            if isinstance(result, Failure):
                deferred.errback(result)
            else:
                deferred.callback(result)

    def _timed_out(self, outbound: _Outbound) -> None:
        outbound.timer = None
        if self._pending is outbound:
            self.log.warn(
                "{chargePointId} did not answer {action} {messageId} within {timeout} s",
                chargePointId=self._session.charge_point_id,
                action=outbound.action,
                messageId=outbound.message_id,
                timeout=outbound.timeout,
            )
            reason = f"no answer to {outbound.action} within {outbound.timeout} s"
        else:
            assert self._queue is not None  # it was queued
            self._queue.remove(outbound)
            reason = f"{outbound.action} still queued after {outbound.timeout} s; not sent"
        self._settle(outbound, Failure(CommandTimeout(reason)))

    def _cancelled(self, outbound: _Outbound) -> None:
        if self._pending is outbound:
            self._pending = None
        elif self._queue and outbound in self._queue:
            self._queue.remove(outbound)
        self._stop_timer(outbound)
        outbound.deferred = None
        self._pump()

    @staticmethod
    def _stop_timer(outbound: _Outbound) -> None:
        timer, outbound.timer = outbound.timer, None
        if timer is not None and timer.active():
            timer.cancel()
