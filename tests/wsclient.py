"""
A real WebSocket charger for tests: Autobahn's Twisted client over loopback,
with a queue of received frames and bounded waits.
"""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred, DeferredQueue

from tests.helpers import WAIT


class TestCharger(WebSocketClientProtocol):
    """
    A charger whose frames can be awaited.
    """

    def __init__(self) -> None:
        super().__init__()
        self.received: DeferredQueue = DeferredQueue()
        self.closed: Deferred = Deferred()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._id = 0

    def onOpen(self) -> None:
        if not self.factory.ready.called:
            self.factory.ready.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.received.put(payload)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        self.close_code = code
        self.close_reason = reason
        if not self.factory.ready.called:
            self.factory.ready.callback(self)
        if not self.closed.called:
            self.closed.callback((code, reason))

    @property
    def subprotocol(self) -> str | None:
        return getattr(self, "websocket_protocol_in_use", None)

    def send_text(self, text: str) -> None:
        self.sendMessage(text.encode("utf-8"), isBinary=False)

    async def next(self, seconds: float = WAIT) -> Any:
        """
        The next frame, parsed as JSON.
        """
        from twisted.internet import reactor

        raw = await self.received.get().addTimeout(seconds, reactor)
        return json.loads(raw)

    async def call(self, action: str, payload: dict, seconds: float = WAIT) -> Any:
        """
        Send a CALL and wait for the frame that answers it.
        """
        self._id += 1
        message_id = f"t{self._id}"
        self.send_text(json.dumps([2, message_id, action, payload]))
        frame = await self.next(seconds)
        assert frame[1] == message_id, frame
        return frame

    async def wait_closed(self, seconds: float = WAIT) -> tuple[int | None, str | None]:
        from twisted.internet import reactor

        return await self.closed.addTimeout(seconds, reactor)


async def connect_charger(
    port: int,
    path: str = "/ocpp/CP1",
    protocols: list[str] | None = None,
    headers: dict | None = None,
    seconds: float = WAIT,
    tls: object | None = None,
) -> TestCharger:
    """
    Open a charger connection to 127.0.0.1:C{port}; returns the protocol once
    it is open or closed (a refused handshake closes it: check
    C{close_reason}).

    @param tls: client TLS options (C{optionsForClientTLS}) for wss.
    """
    from twisted.internet import reactor

    url = f"{'wss' if tls is not None else 'ws'}://127.0.0.1:{port}{path}"
    factory = WebSocketClientFactory(url, protocols=["ocpp1.6"] if protocols is None else protocols, headers=headers or {})
    factory.protocol = TestCharger
    factory.setProtocolOptions(autoPingInterval=0, openHandshakeTimeout=seconds)
    factory.ready = Deferred()
    if tls is not None:
        reactor.connectSSL("127.0.0.1", port, factory, tls, timeout=seconds)
    else:
        reactor.connectTCP("127.0.0.1", port, factory, timeout=seconds)
    return await factory.ready.addTimeout(seconds, reactor)
