# -*- test-case-name: tests.test_recorder -*-
"""
Every frame in and out becomes an C{ocpp.message} event (docs/contract.md section 5)
and a metric.  Called by each L{ocpptw.ocpp.session.OcppSession} as its
observer; never waits: the event is durable on its own (broker confirm or
outbox), and the charger's answer does not wait for it.

Until a charger is accepted only its BootNotification frames and their
answers are kept (C{accepted}); the rest are counted
(C{ocpp_frames_not_logged_total{reason="not_accepted"}}).  A payload over
C{MESSAGE_LOG_MAX_BYTES} is kept cut short: its JSON text's first bytes as
a JSON string, and C{truncated: true} in the event or backend body
(L{cap_payload}).

A publisher that keeps the message log itself (L{ocpptw.adapters.local_events.LocalEventPublisher}:
C{log_frame}) is handed the frame without an envelope, with the payload's
text when the session has it, so nothing is encoded twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ocpptw.interfaces import IEventPublisher, IFrameLog, ISessionObserver, StorageFull
from ocpptw.services.events import OCPP_MESSAGE, frame_data, make_event

#: The longest action, CALLERROR code or message id kept in the message log
#: (OCPP's longest action names have some 35 characters, ids at most 36).
MAX_NAME_CHARS = 64


@implementer(ISessionObserver)
class FrameRecorder:
    """
    The sessions' observer.

    @param publisher: where C{ocpp.message} events go.
    @param metrics: an L{ocpptw.observability.metrics.Metrics} or C{None}.
    @param presence: called with the charger's identity for every frame
        from it, or C{None}.
    """

    log = Logger()

    def __init__(
        self,
        publisher: IEventPublisher,
        clock: IReactorTime,
        instance: str,
        metrics: Any = None,
        accepted: Callable[[str], bool] | None = None,
        max_payload_bytes: int | None = None,
        presence: Any = None,
    ) -> None:
        self._accepted = accepted
        self._max_payload = max_payload_bytes
        self._publisher = publisher
        #: C{(charge_point_id) -> None}, told of every frame from a charger
        #: (C{lastSeen}: L{ocpptw.services.presence.Presence}).
        self._presence = presence
        self._clock = clock
        self._instance = instance
        self._metrics = metrics
        self._refused = False
        self._log_frame: Any = publisher.log_frame if IFrameLog.providedBy(publisher) else None
        self._watched: Any = None

    def frame(
        self,
        session: Any,
        direction: str,
        message_type: str,
        message_id: str,
        action: str | None,
        payload: dict | None,
        error_code: str | None,
        error_description: str | None,
        payload_text: str | None = None,
    ) -> None:
        metrics = self._metrics
        if metrics is not None:
            metrics.frame(direction, message_type, action)
            if error_code is not None:
                metrics.call_error(error_code)
            self._time(session, direction, message_type, message_id, action, metrics)
        charge_point_id = session.charge_point_id
        if direction == "in" and self._presence is not None:
            self._presence(charge_point_id)  # lastSeen: every frame counts, logged or not
        if action != "BootNotification" and self._accepted is not None and not self._accepted(charge_point_id):
            # Until a charger is accepted only its boots are kept: what else it sends is refused anyway.
            if metrics is not None:
                metrics.frame_not_logged("not_accepted")
            return
        truncated = False
        # Names a charger chose (an unknown action, a stray CALLERROR's code,
        # an id) are kept to what no real one exceeds, so they cannot fill the log.
        if action is not None and len(action) > MAX_NAME_CHARS:
            action, truncated = action[:MAX_NAME_CHARS], True
        if error_code is not None and len(error_code) > MAX_NAME_CHARS:
            error_code, truncated = error_code[:MAX_NAME_CHARS], True
        if len(message_id) > MAX_NAME_CHARS:
            message_id, truncated = message_id[:MAX_NAME_CHARS], True
        if self._max_payload is not None and payload is not None:
            payload, payload_text, truncated = cap_payload(payload, payload_text, self._max_payload)
            if truncated and metrics is not None:
                metrics.frame_not_logged("truncated")
        version = getattr(getattr(session, "version", None), "name", None)
        if self._log_frame is not None:
            description = None if error_code is None else error_description or ""
            extra: dict[str, Any] = {}
            if truncated:
                extra["truncated"] = True
            if version is not None:
                extra["ocpp_version"] = version
            d = self._log_frame(
                charge_point_id, direction, message_type, message_id, action, payload, payload_text, error_code,
                description, **extra,
            )
            if d is self._watched:  # one write for the frames of a reactor turn: one callback
                return
            self._watched = d
        else:
            data = frame_data(direction, message_type, message_id, action, payload, error_code)
            if error_code is not None:
                data["errorDescription"] = error_description or ""
            if truncated:
                data["truncated"] = True
            if version is not None:
                data["ocppVersion"] = version
            d = self._publisher.publish(make_event(OCPP_MESSAGE, charge_point_id, data, self._clock, self._instance))
        if self._refused:
            d.addCallback(self._recorded)
        d.addErrback(self._lost, charge_point_id)

    def _time(self, session: Any, direction: str, message_type: str, message_id: str, action: str | None, metrics: Any) -> None:
        """
        Latency of inbound calls (CALL in -> answer out) and of
        server-to-charger calls (CALL out -> answer in).
        """
        started = session.context.get("_started")
        if started is None:
            started = session.context["_started"] = {}
        key = (direction == "in", message_id) if message_type == "CALL" else (direction == "out", message_id)
        if message_type == "CALL":
            if len(started) > 256:  # answers that never came (timeouts): forget them
                started.clear()
            started[key] = self._clock.seconds()
            return
        began = started.pop(key, None)
        if began is None or action is None:
            return
        elapsed = self._clock.seconds() - began
        if direction == "out":
            metrics.handled(action, elapsed)
        else:
            metrics.outbound_call(action, "result" if message_type == "CALLRESULT" else "error", elapsed)

    def violation(self, session: Any, action: str | None, error: Any) -> None:
        if self._metrics is not None:
            self._metrics.violation(action)

    def _recorded(self, result: Any) -> Any:
        if self._refused:
            self._refused = False
            self.log.info("frames are recorded again")
        return result

    def _lost(self, failure: Any, charge_point_id: str) -> None:
        if failure.check(StorageFull):  # once per outage; /ready and the outbox report it too
            if not self._refused:
                self._refused = True
                self.log.warn("frames are not recorded while DATA_DIR refuses writes: {error}", error=failure.getErrorMessage())
            return
        self.log.failure("recording a frame of {chargePointId} failed", failure, chargePointId=charge_point_id)


_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode


def cap_payload(payload: Any, payload_text: str | None, limit: int) -> tuple[Any, str | None, bool]:
    """
    C{(payload, payload_text, truncated)} for the message log: as given
    when the payload's JSON text has at most C{limit} UTF-8 bytes; else the
    text's first C{limit} bytes as a JSON I{string} (where a payload is
    always an object: the mark of a cut payload) and C{truncated} true.
    """
    text = payload_text if payload_text is not None else _encode(payload)
    if len(text) * 4 <= limit:
        return payload, text, False
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return payload, text, False
    head = raw[:limit].decode("utf-8", "ignore")
    return head, _encode(head), True
