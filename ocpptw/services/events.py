# -*- test-case-name: tests.test_events -*-
"""
The events of docs/contract.md section 5: their envelope and their types.

Envelope::

    {id, type, deviceId, occurredAt, instance, data}

C{id} is a fresh UUID4 (consumers deduplicate on it), C{occurredAt} is the
injected clock's time in ISO 8601 UTC with a C{Z}.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.interfaces import IReactorTime

from ocpptw.clock import now_z

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



_ids = random.SystemRandom().getrandbits(64)
_random = random.Random(_ids)
_bits = _random.getrandbits

# the version (4) and variant (RFC 4122) bits of a UUID4, as uuid.UUID(int=..., version=4) sets them
_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)


def new_id() -> str:
    """
    A random UUID4 string.  Seeded once from the system's entropy: event ids
    must be unique, not unguessable, and C{uuid.uuid4()} reads the kernel's
    entropy on every call, a cost on the per-frame path.  Formatted as
    C{str(uuid.UUID(int=..., version=4))} would, without building the object.
    """
    h = "%032x" % ((_bits(128) & _UUID4_CLEAR) | _UUID4_SET)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


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


def frame_data(
    direction: str, message_type: str, message_id: str, action: str | None, payload: Any, error_code: str | None
) -> dict[str, Any]:
    """
    What an C{ocpp.message} event's C{data} and the backend's
    C{ocpp-message} body share: C{{direction, messageType, messageId,
    action?, payload?, errorCode?}}.
    """
    data: dict[str, Any] = {"direction": direction, "messageType": message_type, "messageId": message_id}
    if action is not None:
        data["action"] = action
    if payload is not None:
        data["payload"] = payload
    if error_code is not None:
        data["errorCode"] = error_code
    return data
