"""
Unit tests for L{ocpptw.transport.request_guard}: who may use the API
(findings 1), request bodies (4) and slow headers (5), without a socket.
"""

from __future__ import annotations

import json

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from ocpptw.services.registry import ChargerRegistry
from ocpptw.transport.api import CommandApi
from ocpptw.transport.auth import ProxyTrust
from ocpptw.transport.http import QuietSite
from ocpptw.transport.request_guard import (
    HEADER_TIMEOUT,
    MAX_BODY,
    PeerConnectionCap,
    api_refusal,
    client_address,
    foreign_origin,
    names_loopback,
)


def request(peer: str = "127.0.0.1", host: str | None = "localhost:9000", origin: str | None = None, **headers: str) -> DummyRequest:
    r = DummyRequest([b"chargers"])
    r.client = IPv4Address("TCP", peer, 40000)
    if host is not None:
        r.requestHeaders.setRawHeaders(b"host", [host.encode()])
    if origin is not None:
        r.requestHeaders.setRawHeaders(b"origin", [origin.encode()])
    for name, value in headers.items():
        r.requestHeaders.setRawHeaders(name.replace("_", "-").encode(), [value.encode()])
    return r


def api(clock, token=None, trusted=None):
    return CommandApi(bus=None, registry=ChargerRegistry("gw", clock), token=token, call_timeout=30, trusted=trusted)


# -- finding 1 ------------------------------------------------------------------


@pytest.mark.parametrize("host", ["localhost", "localhost:9000", "127.0.0.1:80", "[::1]:9000", "LOCALHOST:1"])
def test_finding_1_tokenless_api_serves_a_loopback_host(clock, host):
    """Without a token, a loopback peer naming loopback in Host is served."""
    r = request(host=host)
    assert json.loads(api(clock).render_GET(r)) == {"chargers": []}


@pytest.mark.parametrize("host", ["rebind.example:9000", "10.0.0.1:9000", "localhost.evil.example", "user@localhost", ""])
def test_finding_1_tokenless_api_refuses_dns_rebinding(clock, host):
    """Without a token, a Host that does not name loopback (DNS rebinding) gets 403, even from loopback."""
    r = request(host=host)
    body = json.loads(api(clock).render_GET(r))
    assert r.responseCode == 403 and body["error"]["code"] == "Forbidden"


@pytest.mark.parametrize("token", [None, "t0k3n"])
@pytest.mark.parametrize(
    "origin", ["http://evil.example", "null", "http://localhost:9001", "http://localhost", "garbage", "http://rebind.example:9000"]
)
def test_finding_1_foreign_origin_gets_403_in_every_mode(clock, token, origin):
    """A web page elsewhere (or Origin: null) gets 403 with or without a token, GET and POST alike."""
    for render in ("render_GET", "render_POST"):
        headers = {"authorization": f"Bearer {token}"} if token else {}
        r = request(origin=origin, **headers)
        r.method = b"POST" if render == "render_POST" else b"GET"
        getattr(api(clock, token), render)(r)
        assert r.responseCode == 403, (origin, render)


@pytest.mark.parametrize("origin", ["http://localhost:9000", "https://localhost:9000", "HTTP://LOCALHOST:9000"])
def test_finding_1_same_origin_is_served(clock, origin):
    """The API's own page (same host and port, any scheme) is served."""
    r = request(origin=origin)
    assert json.loads(api(clock).render_GET(r)) == {"chargers": []}


def test_finding_1_default_ports_equal_no_port():
    """Behind a TLS terminator Host may omit the port the Origin names (443), and the other way round."""
    assert not foreign_origin(request(host="gw.example", origin="https://gw.example:443"))
    assert not foreign_origin(request(host="gw.example:80", origin="http://gw.example"))
    assert foreign_origin(request(host="gw.example:8443", origin="https://gw.example"))


def test_finding_1_forwarded_address_from_trusted_proxies_is_the_peer(clock):
    """Behind a same-host proxy in TRUSTED_PROXIES, the forwarded client is the peer: a remote client gets 403."""
    trusted = ProxyTrust(["127.0.0.1"])
    remote = request(x_forwarded_for="203.0.113.9")
    api(clock, trusted=trusted).render_GET(remote)
    assert remote.responseCode == 403
    assert client_address(remote, trusted) == "203.0.113.9"
    # The proxy's own entry is the last one; what the client claimed before it does not count.
    spoofed = request(x_forwarded_for="127.0.0.1, 203.0.113.9")
    api(clock, trusted=trusted).render_GET(spoofed)
    assert spoofed.responseCode == 403
    # A proxy that forwards no address: the client is unknown, never loopback.
    bare = request()
    api(clock, trusted=trusted).render_GET(bare)
    assert bare.responseCode == 403
    local = request(x_forwarded_for="127.0.0.1")
    assert json.loads(api(clock, trusted=trusted).render_GET(local)) == {"chargers": []}


def test_finding_1_forwarded_address_from_others_is_ignored():
    """X-Forwarded-For from a peer that is no trusted proxy changes nothing."""
    r = request(peer="10.9.9.9", x_forwarded_for="127.0.0.1")
    assert client_address(r, ProxyTrust(["127.0.0.1"])) == "10.9.9.9"
    assert client_address(r, None) == "10.9.9.9"
    assert api_refusal(r, None, ProxyTrust(["127.0.0.1"]))[0] == 403


def test_names_loopback_without_a_host_header():
    """An HTTP/1.0 request without Host names no other host; two Host headers fail."""
    assert names_loopback(request(host=None))
    twice = request()
    twice.requestHeaders.setRawHeaders(b"host", [b"localhost", b"evil.example"])
    assert not names_loopback(twice)


# -- a site over StringTransport ---------------------------------------------------


class _Echo(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"ok"

    def render_POST(self, request):
        return b"%d" % len(request.content.read())


def channel(clock):
    root = Resource()
    root.putChild(b"health", _Echo())
    root.putChild(b"echo", _Echo())
    api_root = Resource()
    api_root.putChild(b"v1", _Echo())
    root.putChild(b"api", api_root)
    site = QuietSite(root, reactor=clock)
    protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    return protocol, transport


# -- finding 4 ------------------------------------------------------------------


@pytest.mark.parametrize("path", [b"/health", b"/api/v1/chargers/CP1/commands/Reset", b"/ocpp/CP1", b"/nowhere"])
def test_finding_4_declared_body_over_1_mib_gets_413_unread(clock, path):
    """Content-Length over 1 MiB: 413 at once, on every path, and no body is read or spooled."""
    protocol, transport = channel(clock)
    protocol.dataReceived(b"POST " + path + b" HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000000000\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 413 ")
    assert transport.disconnecting
    request = protocol.requests[-1] if protocol.requests else None
    assert request is None or getattr(request, "content", None) is None
    protocol.dataReceived(b"x" * 100_000)  # ignored
    protocol.connectionLost(None)
    assert not clock.getDelayedCalls() or not any(c.active() for c in clock.getDelayedCalls())


def test_finding_4_chunked_body_gets_413_once_past_1_mib(clock):
    """A chunked body is refused once it passes 1 MiB; what came before stays in memory, bounded."""
    protocol, transport = channel(clock)
    protocol.dataReceived(b"POST /api/v1/x HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"y" * 64 * 1024)
    for _ in range(MAX_BODY // (64 * 1024)):
        protocol.dataReceived(chunk)
    assert transport.value() == b""
    protocol.dataReceived(chunk)
    assert transport.value().startswith(b"HTTP/1.1 413 ")
    assert transport.disconnecting
    protocol.connectionLost(None)


def test_finding_4_only_api_posts_keep_a_body(clock):
    """A small body on another path is answered but never stored; an API POST keeps its body."""
    protocol, transport = channel(clock)
    protocol.dataReceived(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
    assert transport.value().startswith(b"HTTP/1.1 200") and transport.value().endswith(b"\r\n\r\n0")
    protocol2, transport2 = channel(clock)
    protocol2.dataReceived(b"POST /api/v1/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello")
    assert transport2.value().endswith(b"\r\n\r\n5")
    for p in (protocol, protocol2):
        p.connectionLost(None)


def test_finding_4_body_of_1_mib_exactly_is_accepted(clock):
    """1 MiB is still allowed (the contract refuses what is over it)."""
    protocol, transport = channel(clock)
    protocol.dataReceived(b"POST /api/v1/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n" % MAX_BODY)
    protocol.dataReceived(b"z" * MAX_BODY)
    assert transport.value().endswith(b"\r\n\r\n%d" % MAX_BODY)
    protocol.connectionLost(None)


# -- finding 5 ------------------------------------------------------------------


def test_finding_5_slowloris_headers_are_cut_off_after_10_s(clock):
    """One header line every few seconds no longer keeps a connection: the headers get 10 s from their first byte."""
    protocol, transport = channel(clock)
    protocol.dataReceived(b"GET /health HTTP/1.1\r\n")
    for i in range(4):
        clock.advance(2.4)
        protocol.dataReceived(b"X-Slow-%d: 1\r\n" % i)
    assert not transport.disconnecting and not transport.disconnected
    clock.advance(HEADER_TIMEOUT - 4 * 2.4 + 0.01)
    assert transport.disconnected or transport.disconnecting
    protocol.connectionLost(None)
    assert not any(c.active() for c in clock.getDelayedCalls())


def test_finding_5_complete_headers_disarm_the_deadline(clock):
    """A request whose headers arrive in time is served, and a keep-alive connection idles without the deadline."""
    protocol, transport = channel(clock)
    protocol.dataReceived(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert transport.value().endswith(b"ok")
    clock.advance(HEADER_TIMEOUT + 1)
    assert not transport.disconnecting
    protocol.dataReceived(b"GET /health HTTP/1.1\r\n")  # the next request starts its own deadline
    clock.advance(HEADER_TIMEOUT + 0.01)
    assert transport.disconnected or transport.disconnecting
    protocol.connectionLost(None)


def test_finding_5_connections_per_address_are_capped(clock):
    """MAX_CONNECTIONS_PER_IP: more open connections from one address are refused; a closed one frees its place."""
    site = QuietSite(Resource(), reactor=clock)
    refused = []
    cap = PeerConnectionCap(site, 2, refused=lambda: refused.append(1))
    a = IPv4Address("TCP", "192.0.2.1", 1)
    b = IPv4Address("TCP", "192.0.2.2", 1)
    first, second = cap.buildProtocol(a), cap.buildProtocol(a)
    assert first is not None and second is not None
    assert cap.buildProtocol(a) is None and refused == [1]
    assert cap.buildProtocol(b) is not None
    for p in (first, second):
        p.makeConnection(StringTransport())
    first.connectionLost(None)
    assert cap.open["192.0.2.1"] == 1
    third = cap.buildProtocol(a)
    assert third is not None
    assert cap.resource is site.resource  # the site's attributes pass through
    for p in (second, third):
        p.connectionLost(None)


@pytest.mark.parametrize("origin", ["http://[::1", "http://[::1]:x", "http://[", "http://a:b:c"])
def test_unreadable_origins_are_foreign_not_crashes(origin):
    """An Origin urlsplit cannot read counts as another site's (found by the HTTP fuzzer)."""
    assert foreign_origin(request(origin=origin))


@pytest.mark.parametrize(
    ("headers", "refused"),
    [
        ({}, False),  # chargers send no Origin, as a rule
        ({"host": "gw:9000"}, False),
        ({"host": "gw:9000", "origin": "file://"}, False),  # not a page's (Autobahn refuses it as null)
        ({"host": "gw:9000", "origin": "ws://charger.local"}, False),
        ({"host": "gw:9000", "origin": "http://gw:9000"}, False),  # a page of the gateway's own site
        ({"host": "gw", "origin": "https://gw:443"}, False),
        ({"host": "gw:9000", "origin": "http://evil.example"}, True),
        ({"host": "gw:9000", "origin": "HTTPS://evil.example:9000"}, True),
        ({"host": "gw:9000", "origin": "http://gw:9001"}, True),
        ({"host": "gw:9000", "origin": "null"}, True),  # a sandboxed page
        ({"host": "gw:9000", "origin": " Null "}, True),
        ({"origin": "http://gw:9000"}, True),  # no Host to compare with
        ({"host": "gw:9000", "origin": "http://gw:9000, http://evil.example"}, True),  # repeated
        ({"host": "gw:9000", "origin": "http://[::1"}, True),
    ],
)
def test_charger_port_refuses_web_pages_of_other_sites(headers, refused):
    """The charger port's Origin rule: browsers' page origins elsewhere (and null) refused, chargers' own pass."""
    from ocpptw.transport.request_guard import web_page_elsewhere

    assert web_page_elsewhere(headers) is refused
