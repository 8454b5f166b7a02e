# -*- test-case-name: tests.chaos -*-
"""
The chargers of the chaos scenarios: real WebSocket clients whose CALLs and
answers go into a L{tests.chaos.ledger.Book}, and the payloads they send.
"""

from __future__ import annotations

import json
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import Deferred, DeferredQueue

from tests.chaos.ledger import Book, Sent

#: Bound of every wait of a charger, in seconds.
WAIT = 10.0


class _Socket(WebSocketClientProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.frames: DeferredQueue = DeferredQueue()
        self.closed: Deferred = Deferred()

    def onOpen(self) -> None:
        if not self.factory.ready.called:
            self.factory.ready.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        self.frames.put(json.loads(payload))

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        if not self.factory.ready.called:
            self.factory.ready.errback(ConnectionError(f"handshake refused: {code} {reason}"))
        if not self.closed.called:
            self.closed.callback(code)
        self.frames.put(None)


class LedgerCharger:
    """
    A real WebSocket charger whose CALLs and answers go into a L{Book}.
    Message ids are unique over reconnects (C{<cp>.<n>}).
    """

    def __init__(self, cp: str, book: Book, port: int) -> None:
        self.cp = cp
        self.book = book
        self.port = port
        self.socket: _Socket | None = None
        self._n = 0

    async def connect(self, seconds: float = WAIT) -> "LedgerCharger":
        from twisted.internet import reactor

        url = f"ws://127.0.0.1:{self.port}/ocpp/{self.cp}"
        factory = WebSocketClientFactory(url, protocols=["ocpp1.6"])
        factory.protocol = _Socket
        factory.setProtocolOptions(autoPingInterval=0, openHandshakeTimeout=seconds)
        factory.ready = Deferred()
        reactor.connectTCP("127.0.0.1", self.port, factory, timeout=seconds)
        self.socket = await factory.ready.addTimeout(seconds, reactor)
        return self

    async def call(self, action: str, payload: dict, seconds: float = WAIT) -> list:
        """
        Send a CALL, wait for its answer (server CALLs in between are
        answered with an empty CALLRESULT); returns the answering frame.
        """
        from twisted.internet import reactor

        assert self.socket is not None
        self._n += 1
        entry = Sent(self.cp, f"{self.cp}.{self._n}", action, payload)
        self.book.sent.append(entry)
        self.socket.sendMessage(json.dumps([2, entry.message_id, action, payload]).encode(), isBinary=False)
        while True:
            frame = await self.socket.frames.get().addTimeout(seconds, reactor)
            if frame is None:
                raise ConnectionError(f"{self.cp} lost its connection waiting for {action}")
            if frame[0] == 2:
                self.socket.sendMessage(json.dumps([3, frame[1], {}]).encode(), isBinary=False)
                continue
            if frame[1] == entry.message_id:
                entry.answer = frame
                return frame

    async def boot(self) -> list:
        frame = await self.call("BootNotification", {"chargePointVendor": "Chaos", "chargePointModel": "C1"})
        assert frame[0] == 3 and frame[2]["status"] == "Accepted", frame
        return frame

    def abort(self) -> None:
        if self.socket is not None and self.socket.transport is not None:
            self.socket.transport.abortConnection()


def start_payload(connector: int, id_tag: str, meter_start: int, timestamp: str) -> dict:
    return {"connectorId": connector, "idTag": id_tag, "meterStart": meter_start, "timestamp": timestamp}


def meter_payload(connector: int, transaction_id: int, wh: int, timestamp: str) -> dict:
    sample = {"value": str(wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}
    return {
        "connectorId": connector,
        "transactionId": transaction_id,
        "meterValue": [{"timestamp": timestamp, "sampledValue": [sample]}],
    }


def stop_payload(transaction_id: int, meter_stop: int, timestamp: str, reason: str = "Local") -> dict:
    return {"transactionId": transaction_id, "meterStop": meter_stop, "timestamp": timestamp, "reason": reason}
