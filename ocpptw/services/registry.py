# -*- test-case-name: tests.transport.test_websocket,tests.transport.test_api -*-
"""
The chargers connected to this instance.  "Newest connection wins": a
second connection with the same identity replaces the first, which is closed
with 4000.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ocpptw.clock import now_z
from ocpptw.interfaces import IChargerRegistry

#: Close code and reason for a connection replaced by a newer one.
REPLACED = (4000, "replaced by a newer connection")

Listener = Callable[[str], Any]


@implementer(IChargerRegistry)
class ChargerRegistry:
    """
    Identity -> live connection.  A connection is any object with a
    C{session} (L{ocpptw.ocpp.session.OcppSession}) and C{close(code,
    reason)}.

    Listeners added with L{add_listener} hear C{attached(charge_point_id)}
    and C{detached(charge_point_id)}; the broker adapter uses them to move
    command bindings with the charger.
    """

    log = Logger()

    def __init__(self, instance: str, clock: IReactorTime) -> None:
        self.instance = instance
        self._clock = clock
        self._connections: dict[str, Any] = {}
        self._connected_at: dict[str, str] = {}
        self._last_seen: dict[str, float] = {}
        self._on_attach: list[Listener] = []
        self._on_detach: list[Listener] = []

    def add_listener(self, attached: Listener, detached: Listener) -> None:
        self._on_attach.append(attached)
        self._on_detach.append(detached)

    def attach(self, charge_point_id: str, connection: Any) -> None:
        previous = self._connections.get(charge_point_id)
        self._connections[charge_point_id] = connection
        self._connected_at[charge_point_id] = now_z(self._clock)
        self._last_seen[charge_point_id] = self._clock.seconds()
        self.log.info(
            "{chargePointId} connected from {peer} speaking {ocppVersion} to instance {instance}",
            chargePointId=charge_point_id,
            peer=getattr(connection, "peer", "unknown"),
            ocppVersion=getattr(connection, "ocpp_version", None) or "no subprotocol",
            instance=self.instance,
        )
        if previous is not None and previous is not connection:
            self.log.info("{chargePointId} connected again; closing the older connection", chargePointId=charge_point_id)
            previous.close(*REPLACED)
        else:
            for listener in self._on_attach:
                listener(charge_point_id)

    def detach(self, charge_point_id: str, connection: Any) -> None:
        if self._connections.get(charge_point_id) is not connection:
            return
        del self._connections[charge_point_id]
        connected_at = self._connected_at.pop(charge_point_id, None)
        self._last_seen.pop(charge_point_id, None)
        self.log.info(
            "{chargePointId} disconnected from {peer} ({ocppVersion}) on instance {instance}, connected since {connectedAt}",
            chargePointId=charge_point_id,
            peer=getattr(connection, "peer", "unknown"),
            ocppVersion=getattr(connection, "ocpp_version", None) or "no subprotocol",
            instance=self.instance,
            connectedAt=connected_at,
        )
        for listener in self._on_detach:
            listener(charge_point_id)

    def get(self, charge_point_id: str) -> Any | None:
        return self._connections.get(charge_point_id)

    def touch(self, charge_point_id: str) -> None:
        """
        Record traffic from a charger (for C{lastSeen} in the charger list).
        """
        if charge_point_id in self._last_seen:
            self._last_seen[charge_point_id] = self._clock.seconds()

    def __len__(self) -> int:
        return len(self._connections)

    def __iter__(self):
        return iter(list(self._connections))

    def describe(self, charge_point_id: str) -> dict | None:
        if charge_point_id not in self._connections:
            return None
        from datetime import datetime, timezone

        from ocpptw.clock import iso_z

        seen = datetime.fromtimestamp(self._last_seen[charge_point_id], tz=timezone.utc)
        connection = self._connections[charge_point_id]
        version = getattr(connection, "version", None) or getattr(getattr(connection, "session", None), "version", None)
        return {
            "chargePointId": charge_point_id,
            "ocppVersion": getattr(version, "name", "1.6"),
            "connectedAt": self._connected_at[charge_point_id],
            "lastSeen": iso_z(seen),
            "instance": self.instance,
        }

    def describe_all(self) -> list[dict]:
        return [d for d in (self.describe(cp) for cp in sorted(self._connections)) if d is not None]
