# -*- test-case-name: tests.test_sim -*-
"""
One simulated charger: its WebSocket client protocol (Autobahn), its one CALL
in flight, the mix of actions it sends and its answers to the central
system's calls.  The worker (L{ocpptw.sim.worker}) decides when it sends.
"""

from __future__ import annotations

import json
import random
import time
from collections import deque
from typing import Any
from urllib.parse import quote

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.types import ConnectingRequest

from ocpptw.sim import payloads as p
from ocpptw.sim import payloads_v201 as p201
from ocpptw.transport.compat import skip_eager_debug_formatting

perf = time.perf_counter

#: what a charger does next when it is not inside a charging session
OPERATIONS = ("heartbeat", "status", "meter", "session")
DEFAULT_MIX = {"heartbeat": 1, "status": 1, "meter": 6, "session": 2}


def parse_mix(text: str) -> dict[str, int]:
    """
    C{heartbeat=1,status=1,meter=6,session=2} as a mapping of weights.
    """
    mix: dict[str, int] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, _, weight = part.partition("=")
        name = name.strip().lower()
        if name not in OPERATIONS:
            raise ValueError(f"unknown operation {name!r} in mix; known: {', '.join(OPERATIONS)}")
        mix[name] = int(weight or 1)
    if not mix or sum(mix.values()) <= 0:
        raise ValueError("the mix needs at least one operation with a positive weight")
    return mix


class SimProtocol(WebSocketClientProtocol):
    """
    The WebSocket side of a charger: hands frames to its L{Charger}.
    """

    charger: "Charger"

    def connectionMade(self):
        super().connectionMade()
        # Autobahn's connectionMade sets TCP_NODELAY from an attribute it has
        # not copied from the factory yet, so Nagle stays on: set it here.
        self.transport.setTcpNoDelay(True)

    def onConnecting(self, transport_details):
        f = self.factory
        protocols = ["ocpp2.0.1"] if self.charger.v201 else ["ocpp1.6"]
        return ConnectingRequest(
            host=f.host,
            port=f.port,
            resource=self.charger.resource,
            protocols=protocols,
            headers=self.charger.headers(),
        )

    def onOpen(self):
        self.charger.opened(self)

    def onMessage(self, payload, isBinary):
        self.charger.frame_received(payload)

    def onClose(self, wasClean, code, reason):
        self.charger.closed(self, code, reason)


def make_factory(url: str, handshake_timeout: float) -> WebSocketClientFactory:
    """
    One client factory shared by a worker's chargers (each gives its own path).
    """
    # the load generator's CPU should go to the wire (about a fifth of its cost per call)
    skip_eager_debug_formatting(force=True)
    # Each charger offers its own subprotocol (SimProtocol.onConnecting);
    # Autobahn accepts the server's choice when the factory lists it.
    factory = WebSocketClientFactory(url, protocols=["ocpp1.6", "ocpp2.0.1"])
    factory.protocol = SimProtocol
    factory.setProtocolOptions(
        autoPingInterval=0,
        openHandshakeTimeout=handshake_timeout,
        closeHandshakeTimeout=2,
        utf8validateIncoming=False,
        failByDrop=False,
        tcpNoDelay=True,
    )
    return factory


class Charger:
    """
    A simulated charger's state, kept across reconnects.
    """

    __slots__ = (
        "charger_id",
        "resource",
        "worker",
        "stats",
        "proto",
        "rng",
        "mix_ops",
        "mix_weights",
        "seq",
        "pending_id",
        "pending_action",
        "intended",
        "sent_at",
        "backlog",
        "steps",
        "transaction_id",
        "energy",
        "id_tag",
        "booted",
        "first_action",
        "session_meters",
        "pending_first",
        "attempts",
        "v201",
        "tx_seq",
        "tx_count",
    )

    def __init__(self, charger_id, base_path, worker, rng: random.Random, mix, session_meters=3, v201=False):
        self.charger_id = charger_id
        self.resource = base_path + quote(charger_id, safe="")
        self.worker = worker
        self.stats = worker.stats
        self.proto: Any = None
        self.rng = rng
        self.mix_ops = list(mix)
        self.mix_weights = [mix[k] for k in self.mix_ops]
        self.seq = 0
        self.pending_id: str | None = None
        self.pending_action: str | None = None
        self.intended = 0.0
        self.sent_at = 0.0
        self.backlog: deque[float] = deque()
        self.steps: list[str] = []
        #: an int from a 1.6 central system, the station's own string in 2.0.1
        self.transaction_id: Any = None
        self.energy = rng.randrange(1000, 5_000_000)
        self.id_tag = "TAG" + charger_id[-16:]
        self.booted = False
        self.first_action = "BootNotification"
        self.session_meters = session_meters
        self.pending_first = False
        self.attempts = 0
        #: speaks OCPP 2.0.1 (sessions as TransactionEvents) instead of 1.6
        self.v201 = v201
        self.tx_seq = 0
        self.tx_count = 0

    # -- connection ---------------------------------------------------------

    def headers(self) -> dict[str, str]:
        """
        The handshake's extra headers: Basic auth when a password is set
        (security profiles 1 and 2; the username is the charger id).
        """
        password = getattr(self.worker.o, "password", None)
        if password is None:
            return {}
        import base64

        secret = password.replace("{id}", self.charger_id)
        token = base64.b64encode(f"{self.charger_id}:{secret}".encode("utf-8")).decode("ascii")
        return {"Authorization": f"Basic {token}"}

    def opened(self, proto) -> None:
        if not self.worker.expects_open(self):
            # a late attempt the worker already gave up on
            proto.transport.abortConnection()
            return
        self.proto = proto
        self.worker.charger_opened(self)

    def closed(self, proto, code, reason) -> None:
        was_open = self.proto is proto
        if was_open:
            self.proto = None
        if self.pending_id is not None and was_open:
            self.pending_id = None
            self.stats.lost += 1
            self.worker.call_finished(self, lost=True)
        self.worker.charger_closed(self, proto, was_open, code, reason)

    # -- calls --------------------------------------------------------------

    def send(self, action: str, payload_json: str, intended: float, first: bool = False) -> bool:
        """
        Send one CALL; C{False} when the connection is gone.  The latency of
        a C{first} call (after connecting) is kept apart from the load's.
        """
        proto = self.proto
        if proto is None:
            return False
        self.pending_first = first
        self.seq += 1
        mid = str(self.seq)
        self.pending_id = mid
        self.pending_action = action
        self.intended = intended
        now = perf()
        self.sent_at = now
        self.stats.sent += 1
        proto.sendMessage(p.call_frame(mid, action, payload_json).encode())
        return True

    def send_first(self) -> bool:
        now = perf()
        if self.v201:
            if self.first_action == "BootNotification":
                return self.send("BootNotification", p201.boot_notification(self.charger_id), now, True)
            if self.first_action == "StatusNotification":
                return self.send("StatusNotification", p201.status_notification(1, False), now, True)
            return self.send("Heartbeat", p.HEARTBEAT, now, True)
        if self.first_action == "BootNotification":
            return self.send("BootNotification", p.boot_notification(self.charger_id), now, True)
        if self.first_action == "StatusNotification":
            return self.send("StatusNotification", p.status_notification(0, "Available"), now, True)
        return self.send("Heartbeat", p.HEARTBEAT, now, True)

    def send_next(self, intended: float) -> bool:
        """
        Send the next CALL of this charger's mix.
        """
        if not self.steps:
            op = self.rng.choices(self.mix_ops, self.mix_weights)[0]
            if op == "session":
                self.steps = (
                    ["StopTransaction"]
                    + ["MeterValues"] * self.session_meters
                    + [
                        "StartTransaction",
                        "Authorize",
                    ]
                )
            else:
                self.steps = [
                    {"heartbeat": "Heartbeat", "status": "StatusNotification"}.get(
                        op, "MeterValues"
                    )
                ]
        action = self.steps.pop()
        if self.v201:
            return self._send_v201(action, intended)
        if action == "MeterValues":
            self.energy += 37
            payload = p.meter_values(1, self.transaction_id, self.energy, self.seq)
        elif action == "Heartbeat":
            payload = p.HEARTBEAT
        elif action == "StatusNotification":
            payload = p.status_notification(1, "Charging" if self.transaction_id else "Available")
        elif action == "Authorize":
            payload = p.authorize(self.id_tag)
        elif action == "StartTransaction":
            payload = p.start_transaction(1, self.id_tag, self.energy)
        else:
            tx = self.transaction_id if self.transaction_id is not None else -1
            payload = p.stop_transaction(tx, self.id_tag, self.energy)
            self.transaction_id = None
        return self.send(action, payload, intended)

    def _send_v201(self, action: str, intended: float) -> bool:
        """
        The next step of the mix in OCPP 2.0.1: a session is TransactionEvent
        Started, Updated (the meter values), Ended; the station owns the id.
        """
        if action == "Heartbeat":
            return self.send("Heartbeat", p.HEARTBEAT, intended)
        if action == "StatusNotification":
            return self.send("StatusNotification", p201.status_notification(1, self.transaction_id is not None), intended)
        if action == "Authorize":
            return self.send("Authorize", p201.authorize(self.id_tag), intended)
        if action == "StartTransaction":
            self.tx_count += 1
            self.tx_seq = 0
            self.transaction_id = f"{self.charger_id[-20:]}-{self.tx_count}"
            payload = p201.transaction_event("Started", self.transaction_id, 0, self.id_tag, self.energy)
            return self.send("TransactionEvent", payload, intended)
        if action == "MeterValues":
            self.energy += 37
            if self.transaction_id is None:
                return self.send("MeterValues", p201.meter_values(self.energy), intended)
            self.tx_seq += 1
            payload = p201.transaction_event("Updated", self.transaction_id, self.tx_seq, None, self.energy)
            return self.send("TransactionEvent", payload, intended)
        if self.transaction_id is None:  # the start was refused: nothing to end
            return self.send("Heartbeat", p.HEARTBEAT, intended)
        self.tx_seq += 1
        payload = p201.transaction_event("Ended", self.transaction_id, self.tx_seq, None, self.energy)
        self.transaction_id = None
        return self.send("TransactionEvent", payload, intended)

    def frame_received(self, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
            kind = msg[0]
            mid = msg[1]
        except (ValueError, TypeError, IndexError, KeyError):
            self.stats.errors["unparseable frame"] += 1
            return
        if kind == 2:
            self.stats.server_calls += 1
            action = msg[2] if len(msg) > 2 and isinstance(msg[2], str) else "?"
            self.stats.server_actions[action] += 1
            if self.proto is not None:
                answer = p201.answer_server_call if self.v201 else p.answer_server_call
                self.proto.sendMessage(answer(str(mid), action).encode())
            return
        if mid != self.pending_id or kind not in (3, 4):
            self.stats.errors["unmatched answer"] += 1
            return
        now = perf()
        action = self.pending_action or ""
        self.pending_id = None
        stats = self.stats
        stats.answered += 1
        stats.by_action[action] += 1
        if self.pending_first:
            stats.boot_latency.record(now - self.sent_at)
        else:
            stats.latency.record(now - self.intended)
            stats.service.record(now - self.sent_at)
        if kind == 3:
            stats.results += 1
            body = msg[2] if len(msg) > 2 and isinstance(msg[2], dict) else {}
            if action == "StartTransaction":
                tx = body.get("transactionId")
                status = (body.get("idTagInfo") or {}).get("status")
                self.transaction_id = tx if isinstance(tx, int) else None
                if status != "Accepted":
                    self.steps = []
            elif action == "Authorize":
                info = body.get("idTokenInfo" if self.v201 else "idTagInfo") or {}
                if info.get("status") != "Accepted":
                    self.steps = []
            elif action == "TransactionEvent" and "idTokenInfo" in body:
                if body["idTokenInfo"].get("status") != "Accepted":
                    self.steps = ["StopTransaction"] if self.transaction_id is not None else []
            elif action == "BootNotification":
                self.booted = body.get("status") == "Accepted"
        else:
            code = msg[2] if len(msg) > 2 else "?"
            stats.errors[str(code)] += 1
            if action in ("StartTransaction", "Authorize"):
                self.steps = []
        self.worker.call_finished(self, now=now)

    def timed_out(self) -> None:
        self.pending_id = None
        self.stats.timeouts += 1
        self.worker.call_finished(self, lost=True)
