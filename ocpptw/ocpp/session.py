# -*- test-case-name: tests.ocpp.test_session_inbound,tests.ocpp.test_session_outbound -*-
"""
L{OcppSession}: one charger's OCPP-J RPC state, on an injected clock.

Inbound (charger -> gateway), for each text frame::

    parse -> id rules -> action known? charger-to-server? -> validate
          -> handler(session, action, payload) -> validate the answer -> send

CALLs are handed to the handler one at a time in arrival order (at most
L{OcppSession.max_inbound_queue} wait; beyond that a CALL is answered
C{ProtocolError}, since OCPP-J allows one CALL in flight).  Cheap refusals
(duplicate id, unknown or wrong-direction action, schema violation in strict
mode) are answered as soon as the CALL arrives.

Outbound (gateway -> charger, L{ocpptw.ocpp.outbound}): L{OcppSession.call}
validates at once, then sends one CALL at a time; the rest wait in order (at
most L{OcppSession.max_outbound_queue}, beyond that L{CallQueueFull}).  Each
call's timeout runs from the moment C{call()} is made, so a caller never
waits longer than it asked for: a call still queued when its time is up is
never sent.  A CALLRESULT that breaks its schema fails the call in strict
mode with L{CallErrorReceived} (the mapped code, C{details={"result": ...}});
a malformed CALLRESULT/CALLERROR for the pending id fails it with
C{FormationViolation}.  The charger is never sent a CALLERROR in answer to
its CALLRESULT or CALLERROR.

The session never touches a socket: it writes through an L{IFrameSink}.

Observer calls, for metrics and C{ocpp.message} events::

    observer.frame(session, direction, message_type, message_id, action,
                   payload, error_code, error_description, payload_text)
    observer.violation(session, action, error)

C{frame} is called for every well-formed frame in (an unknown MessageTypeId
or a frame that does not parse is only logged) and every frame out.
C{direction} is C{"in"} or C{"out"}, C{message_type} is C{"CALL"},
C{"CALLRESULT"} or C{"CALLERROR"}; C{action} is resolved for
CALLRESULT/CALLERROR from the matching CALL (C{None} when nothing matches);
C{payload} is the CALLERROR's details for a CALLERROR; C{payload_text} is
that payload as JSON text when the session has it at hand without encoding
it again (the charger's own text of an inbound CALL, the text of an answer
the session sent), else C{None}.  C{violation} is
called for each schema violation tolerated in lenient mode, with the
L{OcppError} it would have been answered with.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from ocpptw.interfaces import IFrameSink
from ocpptw.ocpp.errors import (
    FORMATION_VIOLATION,
    INTERNAL_ERROR,
    NOT_IMPLEMENTED,
    NOT_SUPPORTED,
    PROTOCOL_ERROR,
    OcppError,
)
from ocpptw.ocpp.frames import (
    CALL,
    UNKNOWN_ID,
    Call,
    CallError,
    CallResult,
    FrameError,
    call_payload_text,
    encode_error,
    encode_result_parts,
    parse,
    unknown_type_id,
)
from ocpptw.ocpp.outbound import CallQueueFull, OutboundCalls
from ocpptw.ocpp.recent_ids import RecentIds
from ocpptw.ocpp.validation import Validator
from ocpptw.ocpp.versions import MESSAGE_TYPE_NOT_SUPPORTED, ProtocolVersion

__all__ = ["CallQueueFull", "Handler", "OcppSession"]

Handler = Callable[["OcppSession", str, dict], "dict | Deferred[dict]"]

_IN, _OUT = "in", "out"
_CALL, _RESULT, _ERROR = "CALL", "CALLRESULT", "CALLERROR"

#: What a handler may raise when a payload it was given leniently lacks data
#: or holds the wrong type: answered with the tolerated violation's code.
_MISSING_DATA = (LookupError, TypeError, ValueError, AttributeError)


class OcppSession:
    """
    One charger's OCPP-J conversation.

    @ivar charge_point_id: the charger's identity.
    @ivar strict: C{True} answers schema violations with a CALLERROR;
        C{False} reports them to the observer, logs them and still handles
        the message.
    @ivar context: a dict the handlers may use freely.
    @ivar call_timeout: the default timeout of L{call}, in seconds.
    @ivar version: the charger's OCPP version (L{ocpptw.ocpp.versions}),
        the one of its C{validator}: its action tables, schemas and
        CALLERROR spellings.
    """

    log = Logger()

    max_inbound_queue = 32
    #: Bytes of CALL frames that may wait behind the one being handled.
    max_inbound_bytes = 2 * 1024 * 1024
    max_outbound_queue = 100
    #: Bytes of server-to-charger CALLs that may wait behind the one in flight.
    max_outbound_bytes = 4 * 1024 * 1024

    #: Called with the session once a closed session's last CALL is handled.
    on_settled: Callable[[Any], None] | None = None

    def __init__(
        self,
        charge_point_id: str,
        sink: IFrameSink,
        handler: Handler,
        clock: IReactorTime,
        validator: Validator,
        call_timeout: float = 30.0,
        observer: Any = None,
    ) -> None:
        self.charge_point_id = charge_point_id
        self.strict = True
        self.context: dict[str, Any] = {}
        self.call_timeout = call_timeout
        self._sink = sink
        self._handler = handler
        self._clock = clock
        self._validator = validator
        self.version: ProtocolVersion = validator.version
        self._charger_to_server = validator.version.charger_to_server
        self._observer = observer
        self._closed = False
        # inbound
        self._seen = RecentIds()
        self._inbound: deque[tuple[Call, OcppError | None, int]] = deque()
        self._inbound_bytes = 0
        self._inbound_busy = False
        self._draining = False
        self._calls = OutboundCalls(self, clock, validator)

    # ------------------------------------------------------------------
    # Public API

    def frame_received(self, text: str) -> None:
        """
        Handle one text frame from the charger.
        """
        if self._closed:
            self.log.debug("frame after connection loss ignored for {chargePointId}",
                           chargePointId=self.charge_point_id)
            return
        try:
            message = parse(text)
        except FrameError as error:
            self._bad_frame(error)
            return
        if message is None:
            self._unknown_type(text)
            return
        if type(message) is Call:
            self._call_received(message, text)
        elif type(message) is CallResult:
            self._calls.result_received(message)
        elif type(message) is CallError:
            self._calls.error_received(message)

    def binary_received(self) -> None:
        """
        The charger sent a binary frame: OCPP-J is text only.
        """
        self.log.warn("binary frame from {chargePointId} refused", chargePointId=self.charge_point_id)
        self._send_error(UNKNOWN_ID, None, FORMATION_VIOLATION, "binary frames are not OCPP-J", None, rpc=True)

    def call(self, action: str, payload: dict, timeout: float | None = None) -> Deferred[dict]:
        """
        Send a server-to-charger CALL.

        @return: a Deferred firing with the CALLRESULT payload; it fails
            with L{InvalidPayload} (unknown or wrong-direction action,
            payload invalid; nothing is sent), L{CallErrorReceived} (the
            charger's CALLERROR, or an invalid CALLRESULT in strict mode),
            L{CommandTimeout} (no answer within C{timeout} seconds of this
            call; L{CallQueueFull} when too many calls wait already) or
            L{ChargerOffline} (the connection is or gets lost).
        """
        return self._calls.call(action, payload, self.call_timeout if timeout is None else timeout)

    def connection_lost(self) -> None:
        """
        The socket closed: fail every pending and queued call with
        L{ChargerOffline}, cancel every timer; later calls fail at once.
        Answers of handlers still running are dropped.
        """
        if self._closed:
            return
        self._closed = True
        self._inbound.clear()
        self._inbound_bytes = 0
        self._calls.connection_lost()

    def idle(self) -> bool:
        """
        Whether nothing is in flight or queued, in either direction.
        """
        return not (self._inbound_busy or self._inbound or self._calls.busy())

    # ------------------------------------------------------------------
    # Inbound CALLs

    def _bad_frame(self, error: FrameError) -> None:
        if error.message_type is None or error.message_type == CALL:
            self.log.warn(
                "malformed frame from {chargePointId}: {description}",
                chargePointId=self.charge_point_id,
                description=error.description,
            )
            self._send_error(error.message_id, None, FORMATION_VIOLATION, error.description, None, rpc=error.rpc)
            return
        self._calls.malformed_answer(error)

    def _unknown_type(self, text: str) -> None:
        """
        A well-formed array with an unknown MessageTypeId: OCPP 1.6 ignores
        it, OCPP 2.0.1 answers C{MessageTypeNotSupported} (with the frame's
        id when it can be read, else C{"-1"}).
        """
        if not self.version.answers_unknown_type:
            self.log.info(
                "ignored a frame with an unknown MessageTypeId from {chargePointId}",
                chargePointId=self.charge_point_id,
            )
            return
        self.log.info(
            "frame with an unknown MessageTypeId from {chargePointId} answered MessageTypeNotSupported",
            chargePointId=self.charge_point_id,
        )
        self._send_error(unknown_type_id(text), None, MESSAGE_TYPE_NOT_SUPPORTED, "unknown MessageTypeId", None)

    def _call_received(self, call: Call, text: str) -> None:
        message_id, action = call.message_id, call.action
        if self._observer is not None:
            try:
                payload_text: str | None = call_payload_text(text)
            except ValueError:  # cannot happen for a frame parse() accepted; the observer encodes then
                payload_text = None
            self._observe(_IN, _CALL, message_id, action, call.payload, None, None, payload_text)
        if message_id in self._seen:
            self._refuse(call, PROTOCOL_ERROR, "message id already used on this connection")
            return
        self._remember(message_id)
        if action not in self._charger_to_server:
            if self._validator.knows(action):
                self._refuse(call, NOT_SUPPORTED, f"{action} is not sent by a charge point")
            else:
                self._refuse(call, NOT_IMPLEMENTED, f"unknown action {action[:60]!r}")
            return
        violation = None
        try:
            self._validator.check_request(action, call.payload)
        except OcppError as error:
            if self.strict:
                self._refuse(call, error.code, error.description)
                return
            violation = error
            self._tolerate(action, error)
        if len(self._inbound) >= self.max_inbound_queue or (
            self._inbound and self._inbound_bytes + len(text) > self.max_inbound_bytes
        ):
            self._refuse(call, PROTOCOL_ERROR, "too many CALLs waiting for an answer")
            return
        self._inbound.append((call, violation, len(text)))
        self._inbound_bytes += len(text)
        self._drain_inbound()

    def _remember(self, message_id: str) -> None:
        self._seen.add(message_id)

    def _refuse(self, call: Call, code: str, description: str) -> None:
        self.log.warn(
            "{action} {messageId} from {chargePointId} refused: {code} {description}",
            action=call.action[:60],
            messageId=call.message_id,
            chargePointId=self.charge_point_id,
            code=code,
            description=description,
        )
        self._send_error(call.message_id, call.action, code, description, None)

    def _tolerate(self, action: str, error: OcppError) -> None:
        self.log.warn(
            "schema violation tolerated in {action} from {chargePointId}: {code} {description}",
            action=action,
            chargePointId=self.charge_point_id,
            code=error.code,
            description=error.description,
        )
        if self._observer is not None:
            try:
                self._observer.violation(self, action, error)
            except Exception:
                self.log.failure("observer failed on a violation from {chargePointId}",
                                 chargePointId=self.charge_point_id)

    def _drain_inbound(self) -> None:
        if self._draining:
            return
        self._draining = True
        try:
            while not self._inbound_busy and self._inbound:
                call, violation, size = self._inbound.popleft()
                self._inbound_bytes -= size
                self._handle(call, violation)
        finally:
            self._draining = False

    def _handle(self, call: Call, violation: OcppError | None) -> None:
        self._inbound_busy = True
        try:
            result = self._handler(self, call.action, call.payload)
        except Exception:
            self._handler_done(Failure(), call, violation)
            return
        if isinstance(result, Deferred):
            result.addBoth(self._handler_done, call, violation)
        else:
            self._handler_done(result, call, violation)

    def _handler_done(self, result: Any, call: Call, violation: OcppError | None) -> None:
        self._inbound_busy = False
        try:
            if isinstance(result, Failure):
                self._answer_failure(result, call, violation)
            else:
                self._answer(result, call)
        finally:
            if not self._closed:
                self._drain_inbound()
            elif self.on_settled is not None and self.idle():
                settled, self.on_settled = self.on_settled, None
                settled(self)

    def _answer(self, result: Any, call: Call) -> None:
        action = call.action
        try:
            if type(result) is not dict:
                raise TypeError(f"handler answered {type(result).__name__}, not dict")
            self._validator.check_response(action, result)
            text, payload_text = encode_result_parts(call.message_id, result)
        except Exception:
            self.log.failure(
                "invalid answer to {action} {messageId} from {chargePointId}",
                action=action,
                messageId=call.message_id,
                chargePointId=self.charge_point_id,
            )
            self._send_error(call.message_id, action, INTERNAL_ERROR, "internal error", None)
            return
        if self._closed:
            self.log.debug("answer to {messageId} dropped: connection lost", messageId=call.message_id)
            return
        self._send(text)
        self._observe(_OUT, _RESULT, call.message_id, action, result, None, None, payload_text)

    def _answer_failure(self, failure: Failure, call: Call, violation: OcppError | None) -> None:
        error = failure.value
        if isinstance(error, OcppError):
            self._send_error(call.message_id, call.action, error.code, error.description, error.details)
        elif violation is not None and isinstance(error, _MISSING_DATA):
            self.log.warn(
                "{action} {messageId} from {chargePointId} could not be handled: {code} {description}",
                action=call.action,
                messageId=call.message_id,
                chargePointId=self.charge_point_id,
                code=violation.code,
                description=violation.description,
            )
            self._send_error(call.message_id, call.action, violation.code, violation.description, None)
        else:
            self.log.failure(
                "handling {action} {messageId} from {chargePointId} failed",
                failure,
                action=call.action,
                messageId=call.message_id,
                chargePointId=self.charge_point_id,
            )
            self._send_error(call.message_id, call.action, INTERNAL_ERROR, "internal error", None)

    # ------------------------------------------------------------------
    # Sending and observing

    def _send(self, text: str) -> None:
        self._sink.send_text(text)

    def _send_error(
        self,
        message_id: str,
        action: str | None,
        code: str,
        description: str,
        details: dict | None,
        rpc: bool = False,
    ) -> None:
        if self._closed:
            return
        code = self.version.wire_code(code, rpc)
        if details is None:
            details = {}
        try:
            text = encode_error(message_id, code, description, details)
        except (TypeError, ValueError):
            self.log.failure("CALLERROR details are not JSON for {chargePointId}", chargePointId=self.charge_point_id)
            details = {}
            text = encode_error(message_id, code, description, details)
        self._send(text)
        self._observe(_OUT, _ERROR, message_id, action, details, code, description, "{}" if not details else None)

    def _observe(
        self,
        direction: str,
        message_type: str,
        message_id: str,
        action: str | None,
        payload: Any,
        code: str | None,
        description: str | None,
        payload_text: str | None = None,
    ) -> None:
        observer = self._observer
        if observer is None:
            return
        try:
            observer.frame(self, direction, message_type, message_id, action, payload, code, description, payload_text)
        except Exception:
            self.log.failure("observer failed on a frame of {chargePointId}", chargePointId=self.charge_point_id)

    # The sink of this session's outbound calls (L{ocpptw.ocpp.outbound.CallSink}).
    send_frame = _send
    record_frame = _observe
    tolerated = _tolerate
