"""
Canaries for every private name of Twisted or Autobahn that
L{ocpptw.transport.compat} uses: each fails loudly when a new release
renames the name or changes what the gateway relies on it for.  The
dependencies' upper bounds in pyproject.toml are the releases these pass on.
"""

from __future__ import annotations

import pytest
import pytest_twisted
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport
from twisted.web.http import HTTPChannel

from ocpptw.transport import compat

UPGRADE = (
    b"GET /ocpp/CP HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def open_protocol(**options):
    """An Autobahn server protocol after a complete opening handshake, on a string transport."""
    factory = WebSocketServerFactory("ws://127.0.0.1")
    factory.protocol = WebSocketServerProtocol
    factory.setProtocolOptions(**options)
    protocol = factory.buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(UPGRADE)
    assert transport.value().startswith(b"HTTP/1.1 101 "), transport.value()
    return protocol


def test_web_channel_registers_its_network_producer_and_keeps_requests():
    """twisted.web: the channel is the transport's producer through _networkProducer; requests is a list."""
    channel = HTTPChannel()
    transport = StringTransport()
    channel.makeConnection(transport)
    assert channel._networkProducer is transport and transport.producer is channel
    assert isinstance(channel.requests, list)
    channel.requests.append(object())
    compat.release_channel(channel)
    assert transport.producer is None and channel.requests == []


@pytest_twisted.ensureDeferred
async def test_tcp_port_accept_loop_names():
    """
    tcp.Port: once listening, doRead accepts up to numberAccepts connections
    through its socket's accept(), counting sessionno; _type names it in logs.
    """
    import socket

    from twisted.internet import reactor

    built = []

    class Recording(Factory):
        def buildProtocol(self, addr):
            built.append(addr)
            return Protocol()

    port = tcp.Port(0, Recording(), 5, "127.0.0.1", reactor)
    port.startListening()
    clients = []
    try:
        assert port.sessionno == 0 and port.connected and isinstance(port.numberAccepts, int)
        accepted = []

        class Wrapped:
            def __init__(self, inner):
                self.inner = inner

            def accept(self):
                accepted.append(True)
                return self.inner.accept()

            def __getattr__(self, name):
                return getattr(self.inner, name)

        port.socket = Wrapped(port.socket)
        for _ in range(3):
            client = socket.create_connection(("127.0.0.1", port.getHost().port), timeout=5)
            clients.append(client)
        port.numberAccepts = 1
        port.doRead()
        assert len(built) == 1 and port.sessionno == 1 and accepted
        assert port._type == "TCP"
        compat.mark_tls(port)
    finally:
        for client in clients:
            client.close()
        port.socket = port.socket.inner if hasattr(port.socket, "inner") else port.socket
    from twisted.logger import formatEvent, globalLogPublisher

    lines: list[str] = []
    globalLogPublisher.addObserver(lines.append)
    try:
        await port.stopListening()
    finally:
        globalLogPublisher.removeObserver(lines.append)
    assert any("(TLS Port" in formatEvent(e) for e in lines)  # what _type is for


def test_autobahn_per_connection_state_names():
    """Autobahn keeps the handshake in these attributes, and these flags at these values while a socket is open."""
    protocol = open_protocol()
    state = vars(protocol)
    ours = {name for name in compat.HANDSHAKE_STATE | compat.QUIET_STATE.keys() if name.startswith("_ocpp")}
    assert compat.HANDSHAKE_STATE - ours <= state.keys(), sorted(compat.HANDSHAKE_STATE - ours - state.keys())
    for name, value in compat.QUIET_STATE.items():
        if name not in ours:
            assert name in state and state[name] == value, (name, state.get(name, "missing"))


def test_autobahn_copies_config_attrs_from_the_factory():
    """CONFIG_ATTRS names every option; each is an attribute of the factory that Autobahn copies per connection."""
    factory = WebSocketServerFactory("ws://127.0.0.1")
    names = WebSocketServerProtocol.CONFIG_ATTRS
    assert "maxMessagePayloadSize" in names and "autoPingInterval" in names
    assert all(hasattr(factory, name) for name in names)
    protocol = open_protocol(maxMessagePayloadSize=1234)
    assert vars(protocol)["maxMessagePayloadSize"] == 1234  # copied onto the instance when the class lacks it


def test_autobahn_keepalive_pending_call_and_batched_timer():
    """The first keepalive ping is an autoPingPendingCall on the factory's _batched_timer, fired by _sendAutoPing."""
    protocol = open_protocol(autoPingInterval=10, autoPingTimeout=5)
    first = protocol.autoPingPendingCall
    assert first is not None and callable(protocol._sendAutoPing)
    assert callable(protocol.factory._batched_timer.call_later)
    assert compat.reschedule_first_ping(protocol, 3.0)
    assert protocol.autoPingPendingCall is not first
    protocol.autoPingPendingCall.cancel()


@pytest.mark.parametrize(
    "module, names",
    [("autobahn.twisted.websocket", ("hltype", "hlval")), ("autobahn.websocket.protocol", ("hltype", "hlval", "pformat"))],
)
def test_autobahn_debug_formatting_names(module, names):
    """The names Autobahn formats its debug arguments with exist in its modules (pformat is the costly one)."""
    import importlib

    loaded = importlib.import_module(module)
    for name in names:
        assert callable(getattr(loaded, name)), name


def test_web_channel_request_line_and_handling_flag():
    """
    twisted.web: from a request's first line until its body is read the
    channel keeps _command and _path; _handlingRequest is false between
    requests and true while one is handled; allHeadersReceived runs before
    the request gets its length (gotLength), which the request guard needs.
    """
    order = []

    class Request:
        def __init__(self, channel, queued=None):
            self.channel = channel
            from twisted.web.http_headers import Headers

            self.requestHeaders = Headers()

        def parseCookies(self):
            pass

        def gotLength(self, length):
            order.append(("gotLength", length))

        def handleContentChunk(self, data):
            pass

        def requestReceived(self, command, path, version):
            order.append(("received", command, path))

    class Channel(HTTPChannel):
        def allHeadersReceived(self):
            order.append(("headers", *compat.request_line(self), compat.reading_request_head(self)))
            super().allHeadersReceived()

    channel = Channel()
    channel.requestFactory = Request
    channel.makeConnection(StringTransport())
    assert compat.reading_request_head(channel)
    channel.dataReceived(b"POST /api/v1/x?y=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi")
    assert order == [("headers", b"POST", b"/api/v1/x?y=1", True), ("gotLength", 2), ("received", b"POST", b"/api/v1/x?y=1")]
    assert not compat.reading_request_head(channel)  # handling it now


def test_http_pool_builds_connection_factories_from_its_private_factory_class():
    """
    L{compat.quiet_connection_pool}: C{HTTPConnectionPool._factory} is still
    the class each new connection's factory is made from, and ours is quiet.
    """
    from twisted.internet.task import Clock
    from twisted.web.client import HTTPConnectionPool

    assert isinstance(HTTPConnectionPool._factory, type)
    pool = HTTPConnectionPool(Clock(), persistent=True)
    compat.quiet_connection_pool(pool)
    made = []

    class Endpoint:
        def connect(self, factory):
            made.append(factory)
            from twisted.internet.defer import Deferred

            return Deferred()

    pool.getConnection(("http", b"backend", 80), Endpoint())
    [factory] = made
    assert isinstance(factory, HTTPConnectionPool._factory)
    assert factory.noisy is False
