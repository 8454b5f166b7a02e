"""
Unit tests for L{ocpptw.transport.api}: who may use the command API.
"""

from __future__ import annotations

import json

from twisted.internet.address import IPv4Address
from twisted.web.test.requesthelper import DummyRequest

from ocpptw.services.registry import ChargerRegistry
from ocpptw.transport.api import CommandApi, is_loopback


def request(host: str, token: str | None = None) -> DummyRequest:
    r = DummyRequest([b"chargers"])
    r.client = IPv4Address("TCP", host, 40000)
    if token is not None:
        r.requestHeaders.setRawHeaders(b"authorization", [f"Bearer {token}".encode()])
    return r


def api(clock, token=None):
    return CommandApi(bus=None, registry=ChargerRegistry("gw", clock), token=token, call_timeout=30)


def test_without_a_token_only_loopback_is_served(clock):
    """With no ADMIN_API_TOKEN the API answers loopback clients and refuses others with 403."""
    local = request("127.0.0.1")
    assert json.loads(api(clock).render_GET(local)) == {"chargers": []}
    remote = request("10.1.2.3")
    body = json.loads(api(clock).render_GET(remote))
    assert remote.responseCode == 403 and "ADMIN_API_TOKEN" in body["error"]["description"]


def test_with_a_token_everyone_needs_it(clock):
    """With a token, even loopback needs it; the right one is served from anywhere."""
    for host in ("127.0.0.1", "10.1.2.3"):
        missing = request(host)
        api(clock, "t0k3n").render_GET(missing)
        assert missing.responseCode == 401
        wrong = request(host, "nope")
        api(clock, "t0k3n").render_GET(wrong)
        assert wrong.responseCode == 401
        right = request(host, "t0k3n")
        assert json.loads(api(clock, "t0k3n").render_GET(right)) == {"chargers": []}


def test_loopback_addresses():
    """IPv4 and IPv6 loopback count; others do not."""
    assert is_loopback("127.0.0.1") and is_loopback("127.9.9.9") and is_loopback("::1")
    assert not is_loopback("10.0.0.1") and not is_loopback("not-an-ip")
