# -*- test-case-name: tests.transport.test_stream -*-
"""
C{GET /api/v1/stream}: the live feed as Server-Sent Events (docs/contract.md
section 8) on twisted.web.

Events are gathered for L{FLUSH} seconds and written to each client in one
piece (one write and one chunk for many frames: a busy fleet costs the
gateway a few writes a second per open console, not one per frame).  Each
client is a push producer registered on its request: while the
connection's send buffer is full, Twisted pauses it and its events wait in
a queue bounded in bytes (L{MAX_QUEUED}); a client whose queue would grow
past it cannot keep up and is dropped, counted in
C{ocpp_console_stream_dropped_total}.  A comment line every
L{HEARTBEAT} seconds keeps proxies from closing an idle stream.

Events::

    event: charger
    data: {"chargePointId": ..., "ocppVersion": ..., "connectedAt": ...,
           "lastSeen": ..., "online": ..., "connectors": [...], "change": ...}

    event: message
    data: {"chargePointId": ..., "timestamp": ..., "direction": ..., ...}
"""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

#: Bytes of events a paused client may have waiting before it is dropped.
MAX_QUEUED = 1024 * 1024
#: Seconds between two heartbeat comments.
HEARTBEAT = 15.0
#: Streams open at once; more are answered 503.
MAX_CLIENTS = 64
#: Seconds events are gathered before they are written.
FLUSH = 0.1

_PING = b": ping\n\n"


@implementer(IPushProducer)
class StreamClient:
    """
    One open stream: its request, its filter and its queue.
    """

    def __init__(self, hub: StreamHub, request: Request, charge_point_id: str | None, max_queued: int) -> None:
        self.hub = hub
        self.request = request
        self.charge_point_id = charge_point_id
        self._max_queued = max_queued
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self.pending: list[bytes] = []
        self.pending_size = 0
        self.paused = False
        self.closed = False

    def gather(self, data: bytes) -> bool:
        """
        Keep C{data} for the next flush; C{False} when that would hold more
        than the queue's bound (the client cannot keep up).
        """
        self.pending.append(data)
        self.pending_size += len(data)
        return self._queued + self.pending_size <= self._max_queued

    def flush(self) -> None:
        if self.pending:
            data = b"".join(self.pending)
            self.pending.clear()
            self.pending_size = 0
            self.send(data)

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.paused:
            self.request.write(data)
            return
        if self._queued + len(data) > self._max_queued:
            self.hub.dropped(self)
            return
        self._queue.append(data)
        self._queued += len(data)

    # IPushProducer: Twisted calls these as the connection's buffer fills and drains
    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        while self._queue and not self.paused and not self.closed:
            data = self._queue.popleft()
            self._queued -= len(data)
            self.request.write(data)

    def stopProducing(self) -> None:
        self.hub.forget(self)

    def close(self) -> None:
        """
        End the stream (the server's side).
        """
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        self._queued = 0
        self.pending.clear()
        self.pending_size = 0
        try:
            self.request.unregisterProducer()
            self.request.finish()
        except Exception:  # the connection went first
            pass


class StreamHub(Service):
    """
    Every open stream, fed by a L{ocpptw.services.live.LiveFeed}.

    @param feed: the live feed.
    @param clock: drives the heartbeats.
    """

    log = Logger()

    def __init__(
        self,
        feed: Any,
        clock: IReactorTime,
        heartbeat: float = HEARTBEAT,
        max_queued: int = MAX_QUEUED,
        max_clients: int = MAX_CLIENTS,
        flush: float = FLUSH,
    ) -> None:
        self._feed = feed
        self._clock = clock
        self._heartbeat = heartbeat
        self._max_queued = max_queued
        self._max_clients = max_clients
        self._flush_after = flush
        self._flush_call: Any = None
        self.clients: set[StreamClient] = set()
        self._loop: LoopingCall | None = None
        self._unlisten: Any = None
        self.dropped_count = 0
        self._count_dropped: Any = None

    def startService(self) -> None:
        super().startService()
        self._unlisten = self._feed.listen(self._event)
        self._loop = LoopingCall(self._ping)
        self._loop.clock = self._clock
        self._loop.start(self._heartbeat, now=False)

    def stopService(self) -> None:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
        for client in list(self.clients):
            client.close()
        self.clients.clear()

    def watch(self, metrics: Any) -> None:
        """
        Report open streams and dropped clients through an
        L{ocpptw.observability.metrics.Metrics}.
        """
        self._count_dropped = metrics.watch_console(lambda: len(self.clients))

    # -- clients ---------------------------------------------------------------

    def open(self, request: Request, charge_point_id: str | None) -> Any:
        """
        Answer C{request} with a stream; returns what C{render} returns.
        """
        if not self.running:
            return _refuse(request, 503, "the gateway is not serving streams now")
        if len(self.clients) >= self._max_clients:
            return _refuse(request, 503, "too many event streams are open")
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-accel-buffering", b"no")  # nginx: do not hold the stream back
        client = StreamClient(self, request, charge_point_id, self._max_queued)
        self.clients.add(client)
        request.registerProducer(client, True)
        request.notifyFinish().addBoth(lambda _: self.forget(client))
        request.write(b"retry: 3000\n: stream open\n\n")
        return NOT_DONE_YET

    def forget(self, client: StreamClient) -> None:
        client.closed = True
        self.clients.discard(client)

    def dropped(self, client: StreamClient) -> None:
        self.dropped_count += 1
        if self._count_dropped is not None:
            self._count_dropped()
        self.log.warn("console stream dropped: the client could not keep up")
        self.forget(client)
        client.close()
        transport = getattr(client.request, "transport", None)
        if transport is not None:
            transport.loseConnection()

    # -- events ----------------------------------------------------------------

    def _event(self, kind: str, charge_point_id: str, text: str) -> None:
        data: bytes | None = None
        for client in list(self.clients):
            if client.charge_point_id is not None and client.charge_point_id != charge_point_id:
                continue
            if data is None:
                data = b"event: " + kind.encode("ascii") + b"\ndata: " + text.encode("utf-8") + b"\n\n"
            if not client.gather(data):
                self.dropped(client)
        if data is not None and self._flush_call is None:
            self._flush_call = self._clock.callLater(self._flush_after, self._flush)

    def _flush(self) -> None:
        self._flush_call = None
        for client in list(self.clients):
            client.flush()

    def _ping(self) -> None:
        for client in list(self.clients):
            if not client.pending:
                client.send(_PING)


def _refuse(request: Request, status: int, description: str) -> bytes:
    from ocpptw.transport.api import write_json

    return write_json(request, status, {"error": {"code": "Unavailable", "description": description}})
