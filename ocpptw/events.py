# -*- test-case-name: tests.test_events -*-
"""
The events of CONTRACT section 5: their envelope, their types, and the
publisher used when RabbitMQ is off (C{ENABLE_RABBITMQ=false}).

Envelope::

    {id, type, deviceId, occurredAt, instance, data}

C{id} is a fresh UUID4 (consumers deduplicate on it), C{occurredAt} is the
injected clock's time in ISO 8601 UTC with a C{Z}.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from ocpptw.clock import now_z
from ocpptw.interfaces import IBackend, IEventPublisher, IOutbox
from ocpptw.services.delivery import STORE_MESSAGE

OCPP_MESSAGE = "ocpp.message"
CHARGER_METADATA_UPDATE = "charger.metadataUpdate"
CHARGER_STATUS_UPDATE = "charger.statusUpdate"
CHARGER_LAST_SEEN = "charger.lastSeen"
CHARGING_STARTED = "charging.started"
CHARGING_METER_VALUES = "charging.meterValues"
CHARGING_STOPPED = "charging.stopped"

#: Every event type; the routing key on the events exchange is the type.
EVENT_TYPES: tuple[str, ...] = (
    OCPP_MESSAGE,
    CHARGER_METADATA_UPDATE,
    CHARGER_STATUS_UPDATE,
    CHARGER_LAST_SEEN,
    CHARGING_STARTED,
    CHARGING_METER_VALUES,
    CHARGING_STOPPED,
)

_MESSAGE_FIELDS = ("direction", "messageType", "messageId", "action", "payload", "errorCode")


_ids = random.SystemRandom().getrandbits(64)
_random = random.Random(_ids)


def new_id() -> str:
    """
    A random UUID4 string.  Seeded once from the system's entropy: event ids
    must be unique, not unguessable, and C{uuid.uuid4()} reads the kernel's
    entropy on every call, a cost on the per-frame path.
    """
    return str(uuid.UUID(int=_random.getrandbits(128), version=4))


def make_event(type: str, device_id: str, data: dict, clock: IReactorTime, instance: str) -> dict:
    """
    One event envelope.

    @param type: one of L{EVENT_TYPES}.
    @param device_id: the chargePointId.
    @param data: the type's C{data} object.
    @param clock: gives C{occurredAt}.
    @param instance: this instance's name (C{INSTANCE_ID}).
    """
    return {
        "id": new_id(),
        "type": type,
        "deviceId": device_id,
        "occurredAt": now_z(clock),
        "instance": instance,
        "data": data,
    }


def message_body(event: dict) -> dict:
    """
    The body of C{POST /api/charger/{deviceId}/ocpp-message} for an
    C{ocpp.message} event: C{{direction, messageType, messageId, action?,
    payload?, errorCode?, timestamp}}, C{timestamp} being C{occurredAt}.
    """
    data = event["data"]
    body = {name: data[name] for name in _MESSAGE_FIELDS if data.get(name) is not None}
    body["timestamp"] = event["occurredAt"]
    return body


@implementer(IEventPublisher)
class LocalEventPublisher:
    """
    Events when RabbitMQ is off.

      - C{ocpp.message} goes to the message log: with the embedded store,
        straight into it, the frames of one reactor turn in one write; with
        a REST backend, as outbox entries C{backend.store_message} (C{POST
        /api/charger/{deviceId}/ocpp-message}) keyed on the charger so frames
        keep their order.
      - Every other event is handed to the embedded store
        (C{record_event}), grouped the same way; with a REST backend it is
        dropped here: what it reports already reaches the backend through
        its own calls (ensure, status, session start and stop).

    L{publish} fires once the event is durable (outbox committed, or the
    embedded store's write done).

    @param clock: groups the writes of one reactor turn (C{callLater(0)});
        without it every event is written on its own.
    """

    log = Logger()

    def __init__(self, outbox: IOutbox, backend: IBackend | None = None, clock: IReactorTime | None = None) -> None:
        self._outbox = outbox
        self._clock = clock
        self._record: Any = getattr(backend, "record_event", None) if backend is not None else None
        self._record_many: Any = getattr(backend, "record_events", None) if clock is not None else None
        self._store_many: Any = getattr(backend, "store_messages", None) if clock is not None else None
        self._messages: list[tuple[str, dict]] = []
        self._events: list[dict] = []
        self._waiters: list[Deferred[None]] = []

    def publish(self, event: dict) -> Deferred[None]:
        if event["type"] == OCPP_MESSAGE:
            if self._store_many is not None:
                self._messages.append((event["deviceId"], message_body(event)))
                return self._batched()
            body = {"deviceId": event["deviceId"], "body": message_body(event)}
            return self._outbox.append(event["deviceId"], STORE_MESSAGE, body).addCallback(lambda _: None)
        if self._record_many is not None:
            self._events.append(event)
            return self._batched()
        if self._record is not None:
            return maybeDeferred(self._record, event).addCallback(lambda _: None)
        return succeed(None)

    def _batched(self) -> Deferred[None]:
        """
        A Deferred that fires when the current turn's batch is written.
        """
        if not self._waiters:
            assert self._clock is not None
            self._clock.callLater(0, self._flush)
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        return waiter

    def _flush(self) -> None:
        waiters, self._waiters = self._waiters, []
        messages, self._messages = self._messages, []
        events, self._events = self._events, []
        writes = []
        # maybeDeferred: a write that raises fails its waiters instead of leaving them (and the
        # chargers whose answers wait on this batch) hanging
        if messages:
            writes.append(maybeDeferred(self._store_many, messages))
        if events:
            writes.append(maybeDeferred(self._record_many, events))

        def done(result: Any) -> None:
            for waiter in waiters:
                if isinstance(result, Failure):
                    waiter.errback(result)
                else:
                    waiter.callback(None)

        gatherResults(writes, consumeErrors=True).addErrback(lambda f: f.value.subFailure).addBoth(done)

    def ready(self) -> tuple[bool, str]:
        return True, ""
