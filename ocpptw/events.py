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

import uuid
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
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
        "id": str(uuid.uuid4()),
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

      - C{ocpp.message} becomes an outbox entry C{backend.store_message}
        (C{POST /api/charger/{deviceId}/ocpp-message}, or the embedded
        store), keyed on the charger so frames keep their order.
      - Every other event is handed to C{backend.record_event(event)} when
        the backend has that method (the embedded store keeps them);
        otherwise it is dropped here: what it reports already reaches the
        backend through its own calls (ensure, status, session start and
        stop).

    L{publish} fires once the event is durable (outbox committed, or the
    embedded store's write done).
    """

    log = Logger()

    def __init__(self, outbox: IOutbox, backend: IBackend | None = None) -> None:
        self._outbox = outbox
        self._record: Any = getattr(backend, "record_event", None) if backend is not None else None

    def publish(self, event: dict) -> Deferred[None]:
        if event["type"] == OCPP_MESSAGE:
            body = {"deviceId": event["deviceId"], "body": message_body(event)}
            return self._outbox.append(event["deviceId"], STORE_MESSAGE, body).addCallback(lambda _: None)
        if self._record is not None:
            return maybeDeferred(self._record, event).addCallback(lambda _: None)
        return succeed(None)

    def ready(self) -> tuple[bool, str]:
        return True, ""
