# -*- test-case-name: tests.services.test_live -*-
"""
What the operator console sees as it happens (docs/contract.md section 8).

L{LiveFeed} sits beside the frame recorder as the sessions' observer
(L{Tee}) and listens to the charger registry.  It keeps:

  - a table of the chargers seen since the start: identity, OCPP version,
    connected since, last seen, online, each connector's last status
    (bounded: the oldest offline chargers are forgotten first);
  - when the store keeps no message log (REST backend, broker), the last
    C{MESSAGE_HISTORY_SIZE} frames of each charger, for the history API
    (bounded in bytes as a whole too: the least recently active charger's
    frames go first);
  - listeners (the Server-Sent Events stream), handed each C{charger} and
    C{message} event encoded once, as JSON text, however many listen.

With no listener and no ring, a frame costs a dictionary update.
"""

from __future__ import annotations

import json
from collections import OrderedDict, deque
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from ocpptw.clock import iso_z, now_z
from ocpptw.interfaces import IChargerRegistry, ISessionObserver
from ocpptw.ocpp.jsontext import compact

#: Listener signature: C{(kind, chargePointId, json_text)}, kind C{"charger"} or C{"message"}.
Listener = Callable[[str, str, str], None]

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), check_circular=False).encode
_dumps_key = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode

#: Connectors remembered per charger (a charger that invents connector ids cannot grow it).
MAX_CONNECTORS = 64


def one_line(text: str) -> str:
    """
    JSON text without raw line breaks: a charger's own text may hold them
    between tokens (never inside strings, where JSON escapes them), and a
    Server-Sent Events data line must not.
    """
    if "\n" in text or "\r" in text:
        return text.replace("\r", " ").replace("\n", " ")
    return text


def message_text(
    timestamp: str,
    direction: str,
    message_type: str,
    message_id: str,
    action: str | None,
    payload_text: str | None,
    error_code: str | None,
    error_description: str | None,
    max_payload: int,
) -> str:
    """
    One message of the history (docs/contract.md section 8) as JSON text, the
    payload's text spliced in as it is unless it is longer than
    C{max_payload} characters: then it is kept cut, as a string, with
    C{truncated: true}.
    """
    head: dict[str, Any] = {"timestamp": timestamp, "direction": direction, "messageType": message_type, "messageId": message_id}
    if action is not None:
        head["action"] = action
    if error_code is not None:
        head["errorCode"] = error_code
        head["errorDescription"] = error_description or ""
    text = compact(head)  # strings only: the same text as _encode, faster
    if payload_text is None:
        return text
    if len(payload_text) > max_payload:
        return text[:-1] + ',"payload":' + _encode(payload_text[:max_payload]) + ',"truncated":true}'
    return text[:-1] + ',"payload":' + one_line(payload_text) + "}"


class _Ring:
    __slots__ = ("frames", "size")

    def __init__(self, size: int) -> None:
        self.frames: deque[tuple[int, str]] = deque(maxlen=size)
        self.size = 0  # bytes held


@implementer(ISessionObserver)
class LiveFeed:
    """
    The console's view of this instance.

    @param clock: for timestamps.
    @param registry: the L{ocpptw.services.registry.ChargerRegistry}; the
        feed adds itself as a listener.
    @param history_size: frames kept per charger for the history API, or
        0 when the store keeps the message log (no ring at all).
    @param max_payload: longest payload text kept in the ring
        (C{MESSAGE_LOG_MAX_BYTES}).
    @param max_bytes: bound of all rings together.
    @param max_chargers: chargers remembered at most.
    @param accepted: C{(chargePointId) -> bool}; until it is true only a
        charger's BootNotification frames go into the ring, as into the
        message log (docs/contract.md section 1).  The stream shows every frame.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        registry: IChargerRegistry,
        history_size: int = 0,
        max_payload: int = 65536,
        max_bytes: int = 256 * 1024 * 1024,
        max_chargers: int = 10000,
        accepted: Callable[[str], bool] | None = None,
    ) -> None:
        self._clock = clock
        self._registry = registry
        self._history_size = history_size
        self._max_payload = max_payload
        self._max_bytes = max_bytes
        self._max_chargers = max_chargers
        self._accepted = accepted
        self._chargers: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._rings: OrderedDict[str, _Ring] = OrderedDict()
        self._ring_bytes = 0
        self._seq = 0
        self._listeners: list[Listener] = []
        if registry is not None:
            registry.add_listener(self.attached, self.detached)

    # -- listeners -------------------------------------------------------------

    @property
    def keeps_history(self) -> bool:
        return self._history_size > 0

    def listen(self, listener: Listener) -> Callable[[], None]:
        """
        Hear every event from now on; returns the function that stops it.
        """
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    def _emit(self, kind: str, charge_point_id: str, text: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, charge_point_id, text)
            except Exception:
                self.log.failure("a console stream listener failed")

    # -- chargers --------------------------------------------------------------

    def _record(self, charge_point_id: str) -> dict[str, Any]:
        record = self._chargers.get(charge_point_id)
        if record is None:
            record = self._chargers[charge_point_id] = {
                "chargePointId": charge_point_id,
                "ocppVersion": None,
                "connectedAt": None,
                "lastSeen": None,
                "seen": None,  # clock seconds of the last frame in, formatted when asked
                "online": False,
                "connectors": {},
            }
            self._forget_some(keep=charge_point_id)
        return record

    def _forget_some(self, keep: str) -> None:
        """
        Forget the oldest offline chargers beyond the bound (online ones
        are bounded by the connections).
        """
        if len(self._chargers) <= self._max_chargers:
            return
        for key in list(self._chargers):
            if len(self._chargers) <= self._max_chargers:
                return
            if key != keep and not self._chargers[key]["online"]:
                del self._chargers[key]

    def attached(self, charge_point_id: str) -> None:
        record = self._record(charge_point_id)
        described = self._registry.describe(charge_point_id) if self._registry is not None else None
        record["online"] = True
        record["connectedAt"] = (described or {}).get("connectedAt") or now_z(self._clock)
        record["lastSeen"] = record["connectedAt"]
        record["seen"] = None
        record["ocppVersion"] = ocpp_version(self._registry, charge_point_id, described)
        self._chargers.move_to_end(charge_point_id)
        self._changed(record, "connected")

    def detached(self, charge_point_id: str) -> None:
        record = self._chargers.get(charge_point_id)
        if record is None:
            return
        record["online"] = False
        self._changed(record, "disconnected")

    def _changed(self, record: dict[str, Any], change: str) -> None:
        if self._listeners:
            self._emit("charger", record["chargePointId"], _encode(self.public(record) | {"change": change}))

    @staticmethod
    def public(record: dict[str, Any]) -> dict[str, Any]:
        return {
            "chargePointId": record["chargePointId"],
            "ocppVersion": record["ocppVersion"],
            "connectedAt": record["connectedAt"],
            "lastSeen": _last_seen(record),
            "online": record["online"],
            "connectors": [dict(c, connectorId=k[1], evseId=k[0]) if k[0] is not None else dict(c, connectorId=k[1])
                           for k, c in sorted(record["connectors"].items(), key=lambda i: (i[0][0] or 0, i[0][1]))],
        }

    def chargers(self) -> list[dict[str, Any]]:
        """
        Every charger remembered, online or not, sorted by identity.
        """
        return [self.public(self._chargers[cp]) for cp in sorted(self._chargers)]

    def charger(self, charge_point_id: str) -> dict[str, Any] | None:
        record = self._chargers.get(charge_point_id)
        return None if record is None else self.public(record)

    def seen(self, charge_point_id: str) -> bool:
        """
        Whether this instance has held the charger (or holds its frames).
        """
        return charge_point_id in self._chargers or charge_point_id in self._rings

    def _status(self, record: dict[str, Any], payload: Any) -> None:
        if not isinstance(payload, dict):
            return
        status = payload.get("status", payload.get("connectorStatus"))
        connector = payload.get("connectorId")
        evse = payload.get("evseId")
        if not isinstance(status, str) or not isinstance(connector, int) or isinstance(connector, bool):
            return
        if evse is not None and (not isinstance(evse, int) or isinstance(evse, bool)):
            return
        key = (evse, connector)
        connectors = record["connectors"]
        if key not in connectors and len(connectors) >= MAX_CONNECTORS:
            return
        entry: dict[str, Any] = {"status": status}
        error_code = payload.get("errorCode")
        if isinstance(error_code, str):
            entry["errorCode"] = error_code
        timestamp = payload.get("timestamp")
        entry["timestamp"] = timestamp if isinstance(timestamp, str) else _last_seen(record)
        connectors[key] = entry
        self._changed(record, "status")

    # -- the sessions' observer ------------------------------------------------

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
        charge_point_id = session.charge_point_id
        record = self._chargers.get(charge_point_id)
        if record is not None and direction == "in":
            record["seen"] = self._clock.seconds()
            if message_type == "CALL" and action == "StatusNotification":
                self._status(record, payload)
        if not self._listeners and not self._history_size:
            return
        stamp = now_z(self._clock)
        if payload_text is None and payload is not None:
            payload_text = _encode(payload)
        text = message_text(stamp, direction, message_type, message_id, action, payload_text, error_code,
                            error_description, self._max_payload)
        if self._history_size and (action == "BootNotification" or self._accepted is None
                                   or self._accepted(charge_point_id)):
            self._keep(charge_point_id, text)
        if self._listeners:
            self._emit("message", charge_point_id, '{"chargePointId":' + _dumps_key(charge_point_id) + "," + text[1:])

    def violation(self, session: Any, action: str | None, error: Any) -> None:
        pass

    # -- the in-memory history -------------------------------------------------

    def _keep(self, charge_point_id: str, text: str) -> None:
        ring = self._rings.get(charge_point_id)
        if ring is None:
            ring = self._rings[charge_point_id] = _Ring(self._history_size)
        else:
            self._rings.move_to_end(charge_point_id)
        frames = ring.frames
        if len(frames) == frames.maxlen:
            dropped = len(frames[0][1])
            ring.size -= dropped
            self._ring_bytes -= dropped
        self._seq += 1
        frames.append((self._seq, text))
        ring.size += len(text)
        self._ring_bytes += len(text)
        while self._ring_bytes > self._max_bytes and len(self._rings) > 1:
            oldest, gone = next(iter(self._rings.items()))
            if oldest == charge_point_id:
                break
            del self._rings[oldest]
            self._ring_bytes -= gone.size

    def page(self, charge_point_id: str, before: int | None, limit: int) -> tuple[list[str], int | None]:
        """
        At most C{limit} frames of the ring older than sequence C{before},
        newest first, as JSON texts, and the cursor of the next page (the
        last frame's sequence) or C{None} when there is no older frame.
        """
        ring = self._rings.get(charge_point_id)
        if ring is None:
            return [], None
        out: list[tuple[int, str]] = []
        for seq, text in reversed(ring.frames):
            if before is not None and seq >= before:
                continue
            out.append((seq, text))
            if len(out) > limit:
                break
        more = len(out) > limit
        out = out[:limit]
        return [t for _, t in out], (out[-1][0] if more and out else None)


def _last_seen(record: dict[str, Any]) -> str | None:
    seen = record["seen"]
    if seen is None:
        return record["lastSeen"]
    record["lastSeen"] = iso_z(datetime.fromtimestamp(seen, tz=timezone.utc))
    record["seen"] = None
    return record["lastSeen"]


def ocpp_version(registry: IChargerRegistry, charge_point_id: str, described: dict | None = None) -> str:
    """
    The OCPP version a connected charger speaks: the registry's word when
    it says, else the connection's negotiated subprotocol, else 1.6.
    """
    if described and described.get("ocppVersion"):
        return str(described["ocppVersion"])
    connection = registry.get(charge_point_id) if registry is not None else None
    for source in (connection, getattr(connection, "session", None)):
        version = getattr(source, "ocpp_version", None)
        if isinstance(version, str) and version:
            return version.removeprefix("ocpp")
    return "1.6"


@implementer(ISessionObserver)
class Tee:
    """
    One session observer that hands every call to several.
    """

    def __init__(self, *observers: Any) -> None:
        self._observers = observers

    def frame(self, *args: Any, **kwargs: Any) -> None:
        for observer in self._observers:
            observer.frame(*args, **kwargs)

    def violation(self, *args: Any, **kwargs: Any) -> None:
        for observer in self._observers:
            observer.violation(*args, **kwargs)
