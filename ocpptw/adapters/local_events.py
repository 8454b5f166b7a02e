# -*- test-case-name: tests.test_events -*-
"""
The event publisher used when RabbitMQ is off (C{ENABLE_RABBITMQ=false}):
events go to the embedded store's log, or to the outbox for a REST backend.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ocpptw.clock import now_z
from ocpptw.interfaces import IBackend, IEventPublisher, IFrameLog, IMessageLog, IOutbox
from ocpptw.ocpp.jsontext import compact
from ocpptw.services.delivery import STORE_MESSAGE
from ocpptw.services.events import CHARGER_STATUS_UPDATE, OCPP_MESSAGE, frame_data

#: Seconds the frames of the message log may wait for other writes of the
#: embedded store to share their commit (see C{flush_with}).
FRAME_DELAY = 0.05


def _presence(event: dict) -> bool:
    """
    A charger's C{Connected} or C{Disconnected} (L{ocpptw.services.chargers.ChargerService.connected}):
    nobody waits on it but the drain, so it may wait for other writes like a frame.
    """
    if event["type"] != CHARGER_STATUS_UPDATE:
        return False
    data = event.get("data") or {}
    return "connectorId" not in data and data.get("status") in ("Connected", "Disconnected")


def _none(_: Any) -> None:
    return None


def _fire(result: Any, waiters: list[Deferred[None]]) -> None:
    """
    Fire every waiter of a write with its outcome.
    """
    if isinstance(result, Failure):
        for waiter in waiters:
            waiter.errback(result)
    else:
        for waiter in waiters:
            waiter.callback(None)


@implementer(IEventPublisher, IFrameLog)
class LocalEventPublisher:
    """
    Events when RabbitMQ is off.

      - C{ocpp.message} goes to the message log: with the embedded store,
        straight into it (L{log_frame}: no envelope, and the payload's text
        as the session has it), the frames of one reactor turn in one
        write; with a REST backend, as outbox entries
        C{backend.store_message} (C{POST
        /api/charger/{deviceId}/ocpp-message}) keyed on the charger so
        frames keep their order.
      - Every other event is handed to the embedded store
        (C{log_events}), grouped the same way; with a REST backend it is
        dropped here: what
        it reports already reaches the backend through its own calls
        (ensure, status, session start and stop).

    L{publish} fires once the event is durable (outbox committed, or the
    embedded store's write done).

    @param clock: groups the writes of one reactor turn (C{callLater(0)})
        and stamps the frames.
    @param flush_with: C{(flush, within)}: instead of C{callLater(0)},
        registers the flush of what was gathered to run just before the
        database is next handed writes
        (L{ocpptw.store.sqlite.Database.before_wake} of the embedded
        store), so that it shares their batch and commit.  Events (which
        their callers may wait on) go with this turn's hand-over; frames
        of the message log and a charger's C{Connected} and
        C{Disconnected} (which nobody waits on to answer a charger) wait
        up to L{FRAME_DELAY} seconds for one: a charger's answer then
        rides along with the next charger's writes instead of costing a
        commit of its own.
    """

    log = Logger()

    def __init__(
        self,
        outbox: IOutbox,
        backend: IBackend | None,
        clock: IReactorTime,
        flush_with: Callable[[Callable[[], None], float], object] | None = None,
    ) -> None:
        self._outbox = outbox
        self._clock = clock
        self._flush_with = flush_with
        log = backend if IMessageLog.providedBy(backend) else None
        self._record_many: Any = log.log_events if log is not None else None
        self._log_frames: Any = log.log_frames if log is not None else None
        self._frames: list[tuple[Any, ...]] = []
        self._frame_waiters: list[Deferred[None]] = []
        self._frames_written: Deferred[None] | None = None
        self._events: list[dict] = []
        self._waiters: list[Deferred[None]] = []
        self._flush_due = False
        self._flush_urgent = False

    def publish(self, event: dict) -> Deferred[None]:
        if event["type"] == OCPP_MESSAGE:
            data = event["data"]
            frame = (event["deviceId"], data.get("direction"), data.get("messageType"), data.get("messageId"),
                     data.get("action"), data.get("payload"), None, data.get("errorCode"), event["occurredAt"])
            if self._log_frames is None:
                return self._frame_to_outbox(*frame)
            self._add_frame(*frame)
            waiter: Deferred[None] = Deferred()
            self._frame_waiters.append(waiter)
            self._flush_soon(urgent=True)
            return waiter
        if self._record_many is not None:
            self._events.append(event)
            waiter = Deferred()
            self._waiters.append(waiter)
            self._flush_soon(urgent=not _presence(event))
            return waiter
        return succeed(None)

    def log_frame(
        self,
        device_id: str,
        direction: str,
        message_type: str,
        message_id: str,
        action: str | None,
        payload: Any,
        payload_text: str | None,
        error_code: str | None,
        error_description: str | None,
        truncated: bool = False,
        ocpp_version: str | None = None,
    ) -> Deferred[None]:
        """
        Log one frame: an C{ocpp.message} without its envelope, stamped
        with the clock's time.

        @param payload: the payload (the details of a CALLERROR), or C{None}.
        @param payload_text: C{payload} as JSON text when the caller has it
            (then it is kept as it is), else C{None}.
        @param error_description: a CALLERROR's description; the message
            log has no place for it (neither has the contract's
            C{ocpp-message} body).
        @param truncated: the payload was cut to C{MESSAGE_LOG_MAX_BYTES}
            (it is then a string); the backend body says C{truncated: true}.
        @param ocpp_version: the charger's C{ocppVersion}, added to the
            C{ocpp-message} body for the REST backend (the embedded message
            log has no column for it).
        @return: fires once the frame is durable.  With the embedded store
            every frame of one write shares that Deferred: add callbacks to
            it once (L{ocpptw.services.recorder.FrameRecorder} does).
        """
        at = now_z(self._clock)
        if self._log_frames is None:
            d = self._frame_to_outbox(device_id, direction, message_type, message_id, action, payload, payload_text,
                                      error_code, at, truncated, ocpp_version)
            return d
        self._add_frame(device_id, direction, message_type, message_id, action, payload, payload_text, error_code, at)
        shared = self._frames_written
        if shared is None:
            shared = self._frames_written = Deferred()
        return shared

    def _add_frame(
        self,
        device_id: str,
        direction: str,
        message_type: str,
        message_id: str,
        action: str | None,
        payload: Any,
        payload_text: str | None,
        error_code: str | None,
        stamp: str,
    ) -> None:
        if payload_text is None and payload is not None:
            payload_text = compact(payload)
        self._frames.append((device_id, direction, message_type, message_id, action, payload_text, error_code, stamp))
        self._flush_soon()

    def _frame_to_outbox(
        self,
        device_id: str,
        direction: str,
        message_type: str,
        message_id: str,
        action: str | None,
        payload: Any,
        payload_text: str | None,
        error_code: str | None,
        stamp: str,
        truncated: bool = False,
        ocpp_version: str | None = None,
    ) -> Deferred[None]:
        """
        A frame as a C{backend.store_message} outbox entry, its body that of
        C{POST /api/charger/{deviceId}/ocpp-message}: L{frame_data} and the
        C{timestamp}.
        """
        body = frame_data(direction, message_type, message_id, action, payload, error_code)
        if truncated:
            body["truncated"] = True
        body["timestamp"] = stamp
        if ocpp_version is not None:
            body["ocppVersion"] = ocpp_version
        return self._outbox.append(device_id, STORE_MESSAGE, {"deviceId": device_id, "body": body}).addCallback(_none)

    def _flush_soon(self, urgent: bool = False) -> None:
        """
        Write what this reactor turn gathered once it is over; with
        C{flush_with}, frames alone may wait for the next hand-over.
        """
        if self._flush_with is None:
            if not self._flush_due:
                self._flush_due = True
                self._clock.callLater(0, self._flush)
        elif urgent:
            if not self._flush_urgent:
                self._flush_due = self._flush_urgent = True
                self._flush_with(self._flush, 0.0)
        elif not self._flush_due:
            self._flush_due = True
            self._flush_with(self._flush, FRAME_DELAY)

    def _flush(self) -> None:
        # (with flush_with it may be registered twice: the second call finds nothing)
        self._flush_due = self._flush_urgent = False
        # maybeDeferred: a write that raises fails its waiters instead of leaving them (and the
        # chargers whose answers wait on this batch) hanging
        if self._frames:
            frames, self._frames = self._frames, []
            waiters, self._frame_waiters = self._frame_waiters, []
            if self._frames_written is not None:
                waiters.append(self._frames_written)
                self._frames_written = None
            maybeDeferred(self._log_frames, frames).addBoth(_fire, waiters)
        if self._events:
            events, self._events = self._events, []
            waiters, self._waiters = self._waiters, []
            maybeDeferred(self._record_many, events).addBoth(_fire, waiters)

    def ready(self) -> tuple[bool, str]:
        return True, ""
