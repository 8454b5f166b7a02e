"""
Findings of the outside security review, over real loopback sockets against a
whole gateway: the tokenless API and its Host/Origin rules (1), the message
log of a charger that never booted (3), oversized bodies (4), slow headers (5).
"""

from __future__ import annotations

import sqlite3

import pytest
import pytest_twisted
import treq
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol

from ocpptw.app.gateway import make_gateway
from ocpptw.config import load_config
from tests.helpers import bounded, until
from tests.wsclient import connect_charger


async def start(tmp_path, **env):
    from twisted.internet import reactor

    base = {
        "DATA_DIR": str(tmp_path / "data"),
        "PORT": "0",
        "WEBSOCKET_HOST": "127.0.0.1",
        "OCPP_PING_INTERVAL": "0",
        "DRAIN_GRACE": "2",
    }
    gateway = make_gateway(load_config("", {**base, **env}, {}, hostname="hard"), reactor)
    gateway.startService()
    await bounded(gateway.started)
    gateway.test_port = gateway.port.getHost().port
    return gateway


@pytest_twisted.async_yield_fixture
async def gateway(tmp_path):
    service = await start(tmp_path)
    yield service
    await bounded(service.stopService(), 30)


class Raw(Protocol):
    """A raw TCP client: what it received, and when the server closed."""

    def __init__(self):
        self.data = b""
        self.closed: Deferred = Deferred()

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.closed.callback(self.data)


async def raw(port, payload: bytes) -> Raw:
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint

    protocol = await bounded(TCP4ClientEndpoint(reactor, "127.0.0.1", port).connect(Factory.forProtocol(Raw)))
    protocol.transport.write(payload)
    return protocol


@pytest_twisted.ensureDeferred
async def test_finding_1_tokenless_api_refuses_rebinding_and_foreign_origins(gateway):
    """A loopback peer is served only when Host names loopback and no other site's page asks."""
    base = f"http://127.0.0.1:{gateway.test_port}/api/v1/chargers"
    ok = await bounded(treq.get(base))
    assert ok.code == 200
    rebound = await bounded(treq.get(base, headers={"Host": "rebind.example"}))
    assert rebound.code == 403
    cross = await bounded(
        treq.post(base + "/CP1/commands/Reset", data=b'{"type":"Hard"}', headers={"Origin": "http://evil.example", "Content-Type": "text/plain"})
    )
    assert cross.code == 403
    same = await bounded(treq.get(base, headers={"Origin": f"http://127.0.0.1:{gateway.test_port}"}))
    assert same.code == 200
    for response in (ok, rebound, cross, same):
        await bounded(response.content())


@pytest_twisted.ensureDeferred
async def test_finding_3_a_charger_that_never_booted_fills_no_message_log(gateway, tmp_path):
    """20 large frames before BootNotification are answered SecurityError and not stored; the boot is."""
    charger = await connect_charger(gateway.test_port, "/ocpp/NOBOOT1")
    big = {"vendorId": "V", "data": "x" * 200_000}
    for _ in range(20):
        answer = await charger.call("DataTransfer", big)
        assert answer[2] == "SecurityError"
    answer = await charger.call("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"})
    assert answer[2]["status"] == "Accepted"
    await charger.call("Heartbeat", {})
    path = tmp_path / "data" / "embedded.sqlite"

    def actions():
        with sqlite3.connect(path) as conn:
            return [r[0] for r in conn.execute("SELECT action FROM messages WHERE device_id = 'NOBOOT1' ORDER BY id")]

    await until(lambda: actions().count("Heartbeat") == 2)
    assert actions() == ["BootNotification", "BootNotification", "Heartbeat", "Heartbeat"]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COALESCE(SUM(length(payload)), 0) FROM messages").fetchone()[0] < 10_000
    charger.sendClose()


@pytest.mark.parametrize("path", ["/health", "/api/v1/chargers/CP1/commands/Reset", "/ocpp/CP1"])
@pytest_twisted.ensureDeferred
async def test_finding_4_a_huge_declared_body_gets_413_at_once(gateway, path):
    """Content-Length: 2000000000 is answered 413 and closed before any of it is sent."""
    client = await raw(
        gateway.test_port, f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000000000\r\n\r\n".encode()
    )
    answer = await bounded(client.closed)
    assert answer.startswith(b"HTTP/1.1 413 ")


@pytest_twisted.ensureDeferred
async def test_finding_5_headers_trickling_in_are_cut_off(tmp_path, monkeypatch):
    """A client that never finishes its headers is closed after the header deadline, whatever it keeps sending."""
    from twisted.internet import reactor
    from twisted.internet.task import LoopingCall

    from ocpptw.transport import request_guard

    monkeypatch.setattr(request_guard.GuardedChannel, "header_timeout", 0.5)
    service = await start(tmp_path)
    try:
        client = await raw(service.test_port, b"GET /health HTTP/1.1\r\n")
        trickle = LoopingCall(lambda: client.transport.write(b"X-A: b\r\n"))
        trickle.clock = reactor
        trickle.start(0.1)
        try:
            await bounded(client.closed, 5)
        finally:
            trickle.stop()
        assert client.data == b""
    finally:
        await bounded(service.stopService(), 30)



@pytest_twisted.ensureDeferred
async def test_finding_5_open_connections_per_address_are_capped(tmp_path):
    """MAX_CONNECTIONS_PER_IP=2: two chargers connect, a third connection is closed at once; a closed one frees its place."""
    service = await start(tmp_path, MAX_CONNECTIONS_PER_IP="2")
    try:
        first = await connect_charger(service.test_port, "/ocpp/CAP1")
        second = await connect_charger(service.test_port, "/ocpp/CAP2")
        await until(lambda: len(service.registry) == 2)
        third = await raw(service.test_port, b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert await bounded(third.closed) == b""
        first.sendClose()
        await first.wait_closed()
        await until(lambda: len(service.registry) == 1)
        fourth = await connect_charger(service.test_port, "/ocpp/CAP4")
        await until(lambda: service.registry.get("CAP4") is not None)
        for charger in (second, fourth):
            charger.sendClose()
    finally:
        await bounded(service.stopService(), 30)


@pytest_twisted.ensureDeferred
async def test_finding_5_connection_cap_holds_on_tls_before_any_handshake(tmp_path):
    """
    With wss the cap counts TCP connections outside TLS: a connection over
    the cap is closed before the TLS handshake, with nothing logged as an
    error; a closed one frees its place.
    """
    from tests.transport.certs import issue, make_ca

    ca = make_ca("Cap CA")
    cert, key = issue(ca, "localhost", kind="rsa", server=True).write(tmp_path, "server")
    service = await start(tmp_path, MAX_CONNECTIONS_PER_IP="1", TLS_CERT=cert, TLS_KEY=key)
    try:
        first = await raw(service.test_port, b"")  # holds the address's one place (a TLS client that has not spoken)
        second = await raw(service.test_port, b"\x16\x03\x01\x00\x05hello")
        assert await bounded(second.closed) == b""  # no ServerHello: closed at the accept
        first.transport.loseConnection()
        await bounded(first.closed)
        await until(lambda: not service.parts.listeners.chargers.port.factory.open)
        third = await raw(service.test_port, b"\x16\x03\x01\x00\x05hello")  # now served: TLS answers (an alert)
        await bounded(third.closed)
        assert third.data != b""
    finally:
        await bounded(service.stopService(), 30)
