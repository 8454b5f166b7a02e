"""
The whole gateway in process (embedded store, no broker), on loopback with
real WebSocket chargers: boot gating, a session, the HTTP endpoints against
C{docs/openapi.yaml}, metrics, and the drain.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest_twisted
import treq
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ocpptw.app.gateway import make_gateway
from ocpptw.config import load_config
from tests.helpers import bounded, until
from tests.wsclient import connect_charger

OPENAPI = yaml.safe_load((Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml").read_text())


def _inline(node, root=OPENAPI):
    """The schema with every local $ref replaced by its target."""
    if isinstance(node, dict):
        if "$ref" in node:
            target = root
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part]
            return _inline(target, root)
        return {k: _inline(v, root) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, root) for v in node]
    return node


def check_documented(method: str, template: str, status: int, body: bytes, content_type: str) -> None:
    """The answer is documented for that path, method and status, and matches its schema."""
    operation = OPENAPI["paths"][template][method]
    responses = operation["responses"]
    assert str(status) in responses, f"{method.upper()} {template} answered undocumented {status}"
    response = _inline(responses[str(status)])
    media = response["content"]
    if "application/json" in media:
        assert content_type.startswith("application/json")
        jsonschema.validate(json.loads(body), media["application/json"]["schema"])
    elif "text/event-stream" in media or "text/html" in media:
        assert content_type.startswith(next(iter(media)))
    else:
        assert content_type.startswith("text/plain")


@pytest_twisted.async_yield_fixture
async def gateway(tmp_path):
    from twisted.internet import reactor

    config = load_config(
        "",
        {"DATA_DIR": str(tmp_path / "data"), "PORT": "0", "WEBSOCKET_HOST": "127.0.0.1", "OCPP_PING_INTERVAL": "0", "DRAIN_GRACE": "5"},
        {},
        hostname="it-1",
    )
    service = make_gateway(config, reactor)
    service.startService()
    await bounded(service.started)
    service.test_port = service.port.getHost().port
    yield service
    if service.running:
        await bounded(service.stopService())


async def boot(charger):
    frame = await charger.call("BootNotification", {"chargePointVendor": "ACME", "chargePointModel": "M1"})
    assert frame[0] == 3 and frame[2]["status"] == "Accepted", frame
    return frame


@pytest_twisted.ensureDeferred
async def test_boot_gating_then_a_session(gateway):
    """Before boot every CALL but BootNotification is SecurityError; after it a session runs."""
    charger = await connect_charger(gateway.test_port, "/ocpp/GW1")
    assert (await charger.call("Heartbeat", {}))[2] == "SecurityError"
    await boot(charger)
    assert (await charger.call("Heartbeat", {}))[0] == 3
    assert (await charger.call("Authorize", {"idTag": "TAG1"}))[2]["idTagInfo"]["status"] == "Accepted"
    start = {"connectorId": 1, "idTag": "TAG1", "meterStart": 100, "timestamp": "2026-11-24T10:00:00Z"}
    started = await charger.call("StartTransaction", start)
    tx = started[2]["transactionId"]
    assert isinstance(tx, int) and started[2]["idTagInfo"]["status"] == "Accepted"
    assert (await charger.call("StartTransaction", start))[2]["transactionId"] == tx
    stop = {"transactionId": tx, "meterStop": 2100, "timestamp": "2026-11-24T11:00:00Z"}
    assert (await charger.call("StopTransaction", stop))[0] == 3
    assert (await charger.call("StopTransaction", stop))[0] == 3
    assert (await charger.call("StopTransaction", dict(stop, transactionId=-1)))[0] == 3


@pytest_twisted.ensureDeferred
async def test_reconnect_without_boot_is_accepted(gateway):
    """A known charger that reconnects without booting again is accepted at once."""
    first = await connect_charger(gateway.test_port, "/ocpp/GW2")
    await boot(first)
    first.sendClose(1000)
    await first.wait_closed()
    again = await connect_charger(gateway.test_port, "/ocpp/GW2")
    assert (await again.call("Heartbeat", {}))[0] == 3


async def _request(gateway, method, path, body=None):
    url = f"http://127.0.0.1:{gateway.test_port}{path}"
    response = await bounded(treq.request(method, url, data=body, persistent=False))
    content = await bounded(response.content())
    content_type = (response.headers.getRawHeaders("content-type") or [""])[0]
    return response.code, content, content_type


async def stream_start(port, path):
    """Status, first bytes and content type of an event stream, which is then closed."""
    from twisted.internet.defer import Deferred
    from twisted.internet.protocol import Protocol

    response = await bounded(treq.get(f"http://127.0.0.1:{port}{path}", unbuffered=True, persistent=False))
    first: Deferred = Deferred()

    class Head(Protocol):
        def dataReceived(self, data):
            if not first.called:
                first.callback(data)
                self.transport.stopProducing()

        def connectionLost(self, reason):
            if not first.called:
                first.callback(b"")

    response.deliverBody(Head())
    head = await bounded(first)
    return response.code, head, (response.headers.getRawHeaders("content-type") or [""])[0]


@pytest_twisted.ensureDeferred
async def test_http_endpoints_match_openapi(gateway):
    """Every endpoint answers as docs/openapi.yaml says."""
    charger = await connect_charger(gateway.test_port, "/ocpp/GW3")
    await boot(charger)
    cases = [
        ("get", "/health", "/health", None),
        ("get", "/ready", "/ready", None),
        ("get", "/metrics", "/metrics", None),
        ("get", "/api/v1/chargers", "/api/v1/chargers", None),
        ("get", "/api/v1/chargers?scope=fleet", "/api/v1/chargers", None),
        ("get", "/api/v1/chargers/GW3", "/api/v1/chargers/{chargePointId}", None),
        ("get", "/api/v1/chargers/NOPE", "/api/v1/chargers/{chargePointId}", None),
        ("post", "/api/v1/chargers/NOPE/commands/Reset", "/api/v1/chargers/{chargePointId}/commands/{action}", b'{"type":"Soft"}'),
        ("post", "/api/v1/chargers/GW3/commands/Reset", "/api/v1/chargers/{chargePointId}/commands/{action}", b'{"type":"x"}'),
        ("post", "/api/v1/chargers/GW3/commands/ClearCache?timeout=0.2", "/api/v1/chargers/{chargePointId}/commands/{action}", b"{}"),
        ("get", "/api/v1/chargers/GW3/messages?limit=2", "/api/v1/chargers/{chargePointId}/messages", None),
        ("get", "/api/v1/chargers/GW3/messages?limit=501", "/api/v1/chargers/{chargePointId}/messages", None),
        ("get", "/api/v1/chargers/NOPE/messages", "/api/v1/chargers/{chargePointId}/messages", None),
        ("get", "/api/v1/chargers/GW3/sessions", "/api/v1/chargers/{chargePointId}/sessions", None),
        ("get", "/api/v1/overview", "/api/v1/overview", None),
        ("get", "/api/v1/schemas/1.6", "/api/v1/schemas/{ocppVersion}", None),
        ("get", "/api/v1/schemas/0.9", "/api/v1/schemas/{ocppVersion}", None),
        ("get", "/console/", "/console/", None),
    ]
    seen = set()
    for method, path, template, body in cases:
        status, content, content_type = await _request(gateway, method.upper(), path, body)
        check_documented(method, template, status, content, content_type)
        seen.add((template, method))
    assert (await charger.next())[2] == "ClearCache"  # the timed-out call did reach the charger
    status, head, content_type = await stream_start(gateway.test_port, "/api/v1/stream?chargePointId=GW3")
    check_documented("get", "/api/v1/stream", status, head, content_type)
    seen.add(("/api/v1/stream", "get"))
    documented = {(p, m) for p, ops in OPENAPI["paths"].items() for m in ops}
    assert documented == seen


@pytest_twisted.ensureDeferred
async def test_metrics_move_with_traffic(gateway):
    """Frame counters in /metrics grow as frames flow."""

    async def frames_in():
        _, content, _ = await _request(gateway, "GET", "/metrics")
        total = 0.0
        for family in text_string_to_metric_families(content.decode()):
            for sample in family.samples:
                if "frame" in sample.name and sample.labels.get("direction") == "in" and sample.name.endswith("_total"):
                    total += sample.value
        return total

    before = await frames_in()
    charger = await connect_charger(gateway.test_port, "/ocpp/GW4")
    await boot(charger)
    await charger.call("Heartbeat", {})
    assert await frames_in() >= before + 2


@pytest_twisted.ensureDeferred
async def test_drain_closes_sockets_with_1001(gateway):
    """stopService (SIGTERM) stops accepting and closes chargers with 1001."""
    charger = await connect_charger(gateway.test_port, "/ocpp/GW5")
    await boot(charger)
    await bounded(gateway.stopService())
    code, _ = await charger.wait_closed()
    assert code == 1001
    await until(lambda: len(gateway.registry) == 0)


@pytest_twisted.ensureDeferred
async def test_drain_lets_a_slow_handler_finish_before_closing_the_stores(tmp_path):
    """A CALL still waiting on the backend when the grace runs out finishes its writes before the stores close."""
    from twisted.internet import reactor

    from ocpptw.testing.backend import FakeBackend

    backend = FakeBackend()
    _, url = backend.listen(reactor)
    env = {
        "DATA_DIR": str(tmp_path / "data"),
        "PORT": "0",
        "WEBSOCKET_HOST": "127.0.0.1",
        "OCPP_PING_INTERVAL": "0",
        "DRAIN_GRACE": "0.5",
        "BACKEND_API_URL": url,
    }
    service = make_gateway(load_config("", env, {}, hostname="it-2"), reactor)
    service.startService()
    await bounded(service.started)
    try:
        charger = await connect_charger(service.port.getHost().port, "/ocpp/SLOW")
        backend.delay(1.5, endpoint="ensure_charger")
        charger.send_text('[2, "b1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]')
        await until(lambda: any(r.path.endswith("/ensure") for r in backend.requests))
        await bounded(service.stopService())
        code, _ = await charger.wait_closed()
        assert code == 1001
        assert service.ledger.charger_accepted("SLOW")  # the boot's own write landed
    finally:
        await bounded(backend.stop())
