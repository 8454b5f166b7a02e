"""
Tests for L{ocpptw.transport.pacing}: the accept pace on a C{Clock}, and a
paced port on loopback with real TCP clients.
"""

from __future__ import annotations

import socket

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.task import deferLater
from twisted.internet.testing import MemoryReactorClock

from ocpptw.transport.pacing import (
    AcceptPacer,
    PacedPort,
    PacedServerEndpoint,
    _listening_hooks,
    listen_queue,
)


def test_per_turn_only(clock):
    """Without a rate every turn may accept C{per_turn} connections."""
    pacer = AcceptPacer(clock, per_turn=3)
    assert pacer.allowance() == 3
    pacer.took(3)
    assert pacer.allowance() == 3
    assert pacer.accepted == 3


def test_rate_bucket_refills_with_time(clock):
    """With a rate, the burst goes first, then one accept per 1/rate seconds."""
    pacer = AcceptPacer(clock, per_turn=4, rate=10)
    assert pacer.allowance() == 4
    pacer.took(4)
    assert pacer.allowance() == 0
    assert pacer.wait() == pytest.approx(0.1)
    clock.advance(0.1)
    assert pacer.allowance() == 1
    clock.advance(10)
    assert pacer.allowance() == 4  # never more than the burst
    assert pacer.pauses == 1


def test_bad_parameters(clock):
    with pytest.raises(ValueError):
        AcceptPacer(clock, per_turn=0)
    with pytest.raises(ValueError):
        AcceptPacer(clock, rate=-1)


def test_port_pauses_until_a_token_is_due():
    """
    With no token left the port stops watching its socket (the kernel keeps
    the connections waiting) and starts again when the next token is due.
    """
    fake = MemoryReactorClock()
    pacer = AcceptPacer(fake, per_turn=1, rate=2)
    pacer.took(1)
    port = PacedPort(0, protocol.Factory(), 50, "127.0.0.1", fake, pacer, _listening_hooks)
    port.connected = True
    reading = []
    port.startReading = lambda: reading.append(True)  # type: ignore[method-assign]
    port.stopReading = lambda: reading.append(False)  # type: ignore[method-assign]
    port.doRead()
    assert reading == [False]
    fake.advance(0.49)
    assert reading == [False]
    fake.advance(0.01)
    assert reading == [False, True]


class _Hold(protocol.Protocol):
    def connectionMade(self):
        self.factory.made.append(self)


class _CountingPort(PacedPort):
    def doRead(self):
        before = self.sessionno
        super().doRead()
        self.per_read.append(self.sessionno - before)


@pytest_twisted.ensureDeferred
async def test_paced_port_accepts_one_per_turn_and_all_in_the_end():
    """
    Twenty clients connecting at once are all accepted, one per readiness of
    the listening socket.
    """
    pacer = AcceptPacer(reactor, per_turn=1)
    factory = protocol.Factory.forProtocol(_Hold)
    factory.made = []
    port = _CountingPort(0, factory, 64, "127.0.0.1", reactor, pacer, _listening_hooks)
    port.per_read = []
    port.startListening()
    clients = []
    try:
        for _ in range(20):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port.getHost().port))
            clients.append(s)
        for _ in range(500):
            if len(factory.made) == 20:
                break
            await deferLater(reactor, 0.01, lambda: None)
        assert len(factory.made) == 20
        assert pacer.accepted == 20
        assert max(port.per_read) == 1
    finally:
        for s in clients:
            s.close()
        for p in factory.made:
            p.transport.loseConnection()
        await defer.maybeDeferred(port.stopListening)


@pytest_twisted.ensureDeferred
async def test_endpoint_listens_and_serves():
    """The endpoint gives a listening port that accepts connections."""
    factory = protocol.Factory.forProtocol(_Hold)
    factory.made = []
    port = await PacedServerEndpoint(reactor, 0, AcceptPacer(reactor), backlog=64, interface="127.0.0.1").listen(factory)
    client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
    try:
        for _ in range(500):
            if factory.made:
                break
            await deferLater(reactor, 0.01, lambda: None)
        assert len(factory.made) == 1
        assert port.backlog == 64
    finally:
        client.close()
        for p in factory.made:
            p.transport.loseConnection()
        await defer.maybeDeferred(port.stopListening)


@pytest_twisted.ensureDeferred
async def test_listen_failure_is_a_failed_deferred():
    """A port already taken fails the Deferred (the daemon reports it in one line)."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    try:
        endpoint = PacedServerEndpoint(reactor, taken.getsockname()[1], AcceptPacer(reactor), interface="127.0.0.1")
        with pytest.raises(Exception, match="[Aa]ddress already in use|CannotListen"):
            await endpoint.listen(protocol.Factory.forProtocol(_Hold))
    finally:
        taken.close()


@pytest_twisted.ensureDeferred
async def test_abandoned_connections_are_dropped_at_the_accept():
    """
    Connections whose client closed or reset them while they waited in the
    listen queue are closed at the accept without a protocol and without
    using the pace; the live one behind them is served.
    """
    pacer = AcceptPacer(reactor, per_turn=1, rate=1000)
    seen = []
    pacer.on_abandoned = lambda: seen.append(True)
    factory = protocol.Factory.forProtocol(_Hold)
    factory.made = []
    port = PacedPort(0, factory, 64, "127.0.0.1", reactor, pacer, _listening_hooks)
    port.startListening()
    port.stopReading()  # everyone waits in the listen queue
    address = ("127.0.0.1", port.getHost().port)
    gave_up_fin, gave_up_rst, live = socket.socket(), socket.socket(), socket.socket()
    try:
        for s in (gave_up_fin, gave_up_rst, live):
            s.connect(address)
        gave_up_fin.sendall(b"GET /ocpp/CP1 HTTP/1.1\r\n")
        gave_up_fin.close()
        gave_up_rst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        gave_up_rst.close()
        port.startReading()
        for _ in range(500):
            if factory.made:
                break
            await deferLater(reactor, 0.01, lambda: None)
        assert len(factory.made) == 1
        assert pacer.abandoned == 2 and len(seen) == 2
        assert pacer.accepted == 1
        made = factory.made[0].transport.getPeer().port
        assert made == live.getsockname()[1]
    finally:
        live.close()
        for p in factory.made:
            p.transport.loseConnection()
        await defer.maybeDeferred(port.stopListening)


def test_listen_queue_counts_the_connections_waiting():
    """The accept queue's length is read off a listening socket."""
    listening = socket.create_server(("127.0.0.1", 0), backlog=16)
    clients = [socket.create_connection(listening.getsockname()) for _ in range(3)]
    try:
        assert listen_queue(listening) == 3
        listening.accept()[0].close()
        assert listen_queue(listening) == 2
    finally:
        for c in clients:
            c.close()
        listening.close()
