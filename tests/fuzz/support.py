# -*- test-case-name: tests.fuzz.test_ocpp_wire -*-
"""
Support for the fuzzers that talk to a running gateway: starting one with
a test configuration, and a charger connection that sends one case and
collects every frame it causes, using a Heartbeat as the end marker.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

from ocpptw.app.gateway import make_gateway
from ocpptw.config import load_config
from tests.helpers import bounded
from tests.wsclient import connect_charger

BOOT = {"chargePointVendor": "Fuzz", "chargePointModel": "F1"}
_ids = itertools.count(1)


def fresh_id(prefix: str = "f") -> str:
    """A message id never used before in this process (at most 36 characters)."""
    return f"{prefix}{next(_ids)}"


async def start_gateway(data_dir: str, **env: str) -> Any:
    """An in-process gateway on 127.0.0.1, started; C{test_port} is its port."""
    from twisted.internet import reactor

    environ = {
        "DATA_DIR": data_dir,
        "PORT": "0",
        "WEBSOCKET_HOST": "127.0.0.1",
        "OCPP_PING_INTERVAL": "0",
        "DRAIN_GRACE": "5",
    }
    environ.update(env)
    service = make_gateway(load_config("", environ, {}, hostname="fuzz-1"), reactor)
    service.startService()
    await bounded(service.started)
    service.test_port = service.port.getHost().port
    return service


async def stop_gateway(service: Any) -> None:
    if service.running:
        await bounded(service.stopService(), 30)


async def _next_or_closed(charger: Any, seconds: float) -> Any:
    """The next frame; fails at once (not after the timeout) when the socket closes first."""
    from twisted.internet import reactor
    from twisted.internet.defer import CancelledError, Deferred

    if charger.closed.called and not charger.received.pending:
        raise AssertionError(f"connection closed: {charger.close_code} {charger.close_reason}")
    waiter: Deferred = Deferred()
    frame = charger.received.get()
    frame.addCallback(lambda raw: waiter.called or waiter.callback(("frame", raw)))
    frame.addErrback(lambda failure: failure.trap(CancelledError))

    def closed(result: Any) -> Any:
        if not waiter.called:
            waiter.callback(("closed", None))
        return result

    charger.closed.addBoth(closed)
    kind, raw = await waiter.addTimeout(seconds, reactor)
    if kind == "closed":
        frame.cancel()
        raise AssertionError(f"connection closed: {charger.close_code} {charger.close_reason}")
    return json.loads(raw)


class WireCharger:
    """
    A booted test charger that reconnects (without booting again, as OCPP-J
    allows) whenever a case made the gateway close the socket.
    """

    def __init__(self, port: int, identity: str) -> None:
        self.port = port
        self.identity = identity
        self.charger: Any = None
        self.connections = 0

    async def connect(self, boot: bool = False) -> Any:
        self.charger = await connect_charger(self.port, f"/ocpp/{self.identity}")
        assert self.charger.closed.called is False, self.charger.close_reason
        self.connections += 1
        if boot:
            answer = await self.charger.call("BootNotification", BOOT)
            assert answer[0] == 3 and answer[2]["status"] == "Accepted", answer
        return self.charger

    async def ensure(self) -> Any:
        if self.charger is None or self.charger.closed.called:
            await self.connect()
        return self.charger

    async def exchange(self, frame: str | bytes, binary: bool = False, seconds: float = 10.0) -> list[Any]:
        """
        Send one frame, then a Heartbeat; every frame that came back before
        the Heartbeat's answer, parsed.  Fails when the Heartbeat is not
        answered (the connection is no longer usable).
        """
        charger = await self.ensure()
        if isinstance(frame, str):
            frame = frame.encode("utf-8")
        charger.sendMessage(frame, isBinary=binary)
        marker = fresh_id("hb")
        charger.send_text(json.dumps([2, marker, "Heartbeat", {}]))
        got: list[Any] = []
        while True:
            answer = await _next_or_closed(charger, seconds)
            if answer[:2] == [3, marker]:
                assert set(answer[2]) == {"currentTime"}, answer
                return got
            got.append(answer)
            assert len(got) < 5, got
