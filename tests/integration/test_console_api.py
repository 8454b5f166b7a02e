"""
The console's API on a whole gateway (in process, real sockets, real
WebSocket chargers): the history API from the embedded store's message log
and from the in-memory ring (REST backend), and the event stream, each
checked against C{docs/openapi.yaml}.
"""

from __future__ import annotations

import json
import re

import jsonschema
import pytest_twisted
import treq
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol

from ocpptw.app.gateway import make_gateway
from ocpptw.config import load_config
from tests.helpers import bounded, until
from tests.integration.test_gateway import OPENAPI, _inline, boot, check_documented
from tests.wsclient import connect_charger

SCHEMAS = _inline(OPENAPI["components"]["schemas"])


async def started(tmp_path, **extra):
    from twisted.internet import reactor

    env = {"DATA_DIR": str(tmp_path / "data"), "PORT": "0", "WEBSOCKET_HOST": "127.0.0.1", "OCPP_PING_INTERVAL": "0",
           "DRAIN_GRACE": "1", **extra}
    service = make_gateway(load_config("", env, {}, hostname="console-it"), reactor)
    service.startService()
    await bounded(service.started)
    service.test_port = service.port.getHost().port
    return service


async def get(service, path):
    response = await bounded(treq.get(f"http://127.0.0.1:{service.test_port}{path}", persistent=False))
    body = await bounded(response.content())
    content_type = (response.headers.getRawHeaders("content-type") or [""])[0]
    template = re.sub(r"^/api/v1/chargers/[^/]+/", "/api/v1/chargers/{chargePointId}/", path.split("?")[0])
    check_documented("get", template, response.code, body, content_type)
    return response.code, json.loads(body)


class Events(Protocol):
    """Collects Server-Sent Events as (kind, data)."""

    def __init__(self):
        self.buffer = b""
        self.events = []

    def dataReceived(self, data):
        self.buffer += data
        while b"\n\n" in self.buffer:
            block, self.buffer = self.buffer.split(b"\n\n", 1)
            fields = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line and not line.startswith(b":"))
            if b"event" in fields:
                self.events.append((fields[b"event"].decode(), json.loads(fields[b"data"])))

    def connectionLost(self, reason):
        pass


async def open_stream(service, query=""):
    response = await bounded(treq.get(f"http://127.0.0.1:{service.test_port}/api/v1/stream{query}", unbuffered=True,
                                      persistent=False))
    assert response.code == 200
    events = Events()
    response.deliverBody(events)
    return events


async def history_of_a_charger(service):
    stream = await open_stream(service, "?chargePointId=CH1")
    everything = await open_stream(service)
    charger = await connect_charger(service.test_port, "/ocpp/CH1")
    await boot(charger)
    await charger.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing"})
    unknown = await charger.call("Nonsense", {})
    assert unknown[2] == "NotImplemented"
    await until(lambda: len([e for e in stream.events if e[0] == "message"]) >= 6)
    # the stream: the connect, the status, every frame, in order; valid as documented
    kinds = [(k, d.get("change") or d["messageType"]) for k, d in stream.events]
    assert kinds[0] == ("charger", "connected")
    assert ("charger", "status") in kinds
    for kind, data in stream.events:
        jsonschema.validate(data, SCHEMAS["ChargerState" if kind == "charger" else "StreamMessage"])
    messages = [d for k, d in stream.events if k == "message"]
    assert [(m["direction"], m["messageType"], m.get("action")) for m in messages][:2] == [
        ("in", "CALL", "BootNotification"), ("out", "CALLRESULT", "BootNotification")]
    error = messages[-1]
    assert error["messageType"] == "CALLERROR" and error["errorCode"] == "NotImplemented"
    # the history: newest first, an answer before its CALL, paged
    await until(lambda: len(everything.events) >= len(stream.events))
    code, page = await get(service, "/api/v1/chargers/CH1/messages?limit=2")
    assert code == 200 and [m["messageType"] for m in page["messages"]] == ["CALLERROR", "CALL"]
    assert page["messages"][0]["messageId"] == page["messages"][1]["messageId"]
    assert page["next"]
    seen = list(page["messages"])
    while page["next"]:
        code, page = await get(service, f"/api/v1/chargers/CH1/messages?limit=2&before={page['next']}")
        seen += page["messages"]
    assert [(m["messageType"], m.get("action")) for m in reversed(seen)][:2] == [
        ("CALL", "BootNotification"), ("CALLRESULT", "BootNotification")]
    assert len(seen) == 6
    code, overview = await get(service, "/api/v1/overview")
    (state,) = overview["chargers"]
    assert state["online"] and state["connectors"][0]["status"] == "Preparing"
    charger.sendClose(1000)
    await charger.wait_closed()
    await until(lambda: any(d.get("change") == "disconnected" for _, d in stream.events))
    assert all(d["chargePointId"] == "CH1" for _, d in stream.events)
    code, _ = await get(service, "/api/v1/chargers/NEVER/messages")
    assert code == 404
    return seen


@pytest_twisted.ensureDeferred
async def test_history_and_stream_with_the_embedded_store(tmp_path):
    service = await started(tmp_path)
    try:
        seen = await history_of_a_charger(service)
        assert "errorDescription" not in seen[0]  # the store's message log keeps no description
        assert service.parts.console.feed.keeps_history is False
    finally:
        await bounded(service.stopService())


@pytest_twisted.ensureDeferred
async def test_history_from_memory_with_a_rest_backend(tmp_path):
    from twisted.internet import reactor

    from ocpptw.testing.backend import FakeBackend

    backend = FakeBackend()
    _, url = backend.listen(reactor)
    service = await started(tmp_path, BACKEND_API_URL=url, MESSAGE_HISTORY_SIZE="4")
    try:
        assert service.parts.console.feed.keeps_history
        stream = await open_stream(service)
        charger = await connect_charger(service.test_port, "/ocpp/CH1")
        await boot(charger)
        for _ in range(3):
            await charger.call("Heartbeat", {})
        assert (await charger.call("Nonsense", {}))[2] == "NotImplemented"
        code, page = await get(service, "/api/v1/chargers/CH1/messages?limit=10")
        assert [m["messageType"] for m in page["messages"]] == ["CALLERROR", "CALL", "CALLRESULT", "CALL"]
        assert page["messages"][0]["errorDescription"] and page["next"] is None  # the last 4 frames only
        await until(lambda: any(k == "message" for k, _ in stream.events))
    finally:
        await bounded(service.stopService())
        await bounded(backend.stop())


@pytest_twisted.ensureDeferred
async def test_stopping_the_gateway_ends_open_streams(tmp_path):
    service = await started(tmp_path)
    stream_done: Deferred = Deferred()

    class Watch(Protocol):
        def connectionLost(self, reason):
            stream_done.callback(None)

    response = await bounded(treq.get(f"http://127.0.0.1:{service.test_port}/api/v1/stream", unbuffered=True,
                                      persistent=False))
    response.deliverBody(Watch())
    await bounded(service.stopService())
    await bounded(stream_done)
